# METADATA
# title: Read-only root filesystem
# description: >-
#   On Kubernetes the container's root filesystem is read-only (the stack renders
#   readOnlyRootFilesystem true and an emptyDir for scratch space); any value other than
#   true is a violation.
# custom:
#   id: MDL-019
#   severity: medium
#   enforcement: mandatory
#   enforcement_by_environment: {dev: advisory}
#   controls: ["CIS Kubernetes 5.2.x", "NIST SP 800-190 4.4.3"]
#   remediation: Remove spec.target.security_context.read_only_root_filesystem or set it to true.
package modelops.read_only_root_fs

context := object.get(input, ["spec", "target", "security_context"], {})

deny contains {"msg": msg, "path": "spec.target.security_context.read_only_root_filesystem"} if {
	object.get(input, ["spec", "target", "platform"], "local") == "kubernetes"
	"read_only_root_filesystem" in object.keys(context)
	context.read_only_root_filesystem != true
	msg := sprintf("read_only_root_filesystem is %v; the root filesystem must be read-only", [context.read_only_root_filesystem])
}

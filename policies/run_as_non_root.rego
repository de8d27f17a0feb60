# METADATA
# title: Containers run as non-root
# description: >-
#   On Kubernetes the model server runs as a non-root user. The kubernetes stack renders
#   runAsNonRoot true unless the spec says otherwise, so a missing value passes and any
#   value other than true (false, "false", null) is a violation.
# custom:
#   id: MDL-018
#   severity: high
#   enforcement: mandatory
#   controls: ["CIS Kubernetes 5.2.6", "NIST SP 800-190 4.4", "SOC 2 CC6.8"]
#   remediation: Remove spec.target.security_context.run_as_non_root or set it to true.
package modelops.run_as_non_root

context := object.get(input, ["spec", "target", "security_context"], {})

deny contains {"msg": msg, "path": "spec.target.security_context.run_as_non_root"} if {
	object.get(input, ["spec", "target", "platform"], "local") == "kubernetes"
	"run_as_non_root" in object.keys(context)
	context.run_as_non_root != true
	msg := sprintf("run_as_non_root is %v; the container must run as a non-root user", [context.run_as_non_root])
}

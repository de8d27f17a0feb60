# METADATA
# title: No privileged containers or privilege escalation
# description: >-
#   On Kubernetes the container is not privileged and cannot gain privileges
#   (allowPrivilegeEscalation false). Any value other than false is a violation.
# custom:
#   id: MDL-020
#   severity: critical
#   enforcement: mandatory
#   waivable: false
#   controls: ["CIS Kubernetes 5.2.1", "CIS Kubernetes 5.2.5", "PCI-DSS 2.2.1"]
#   remediation: Remove allow_privilege_escalation and privileged, or set them to false.
package modelops.no_privilege_escalation

context := object.get(input, ["spec", "target", "security_context"], {})

deny contains {"msg": msg, "path": concat(".", ["spec.target.security_context", field])} if {
	object.get(input, ["spec", "target", "platform"], "local") == "kubernetes"
	some field in ["allow_privilege_escalation", "privileged"]
	field in object.keys(context)
	context[field] != false
	msg := sprintf("%v is %v; it must be false", [field, context[field]])
}

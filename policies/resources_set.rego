# METADATA
# title: Resource requests and limits set on Kubernetes
# description: >-
#   Every Kubernetes deployment sets CPU and memory requests (for scheduling) and limits
#   (so one model cannot starve its neighbours).
# custom:
#   id: MDL-007
#   severity: medium
#   enforcement: mandatory
#   enforcement_by_environment: {dev: advisory}
#   controls: ["SOC 2 A1.1", "CIS Kubernetes 5.7.x"]
#   remediation: Set spec.target.resources.requests and .limits (cpu and memory).
package modelops.resources_set

deny contains {"msg": msg, "path": concat(".", ["spec.target.resources", kind, res])} if {
	object.get(input, ["spec", "target", "platform"], "local") == "kubernetes"
	some kind in ["requests", "limits"]
	some res in ["cpu", "memory"]
	value := object.get(input, ["spec", "target", "resources", kind, res], null)
	not valid(value)
	msg := sprintf("%v.%v is not set (got %v); set a Kubernetes quantity such as 500m or 1Gi", [kind, res, value])
}

valid(value) if {
	is_string(value)
	value != ""
}

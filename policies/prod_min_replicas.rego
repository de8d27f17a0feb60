# METADATA
# title: At least two replicas in production (PodDisruptionBudget)
# description: >-
#   Production deployments on Kubernetes and SageMaker run at least
#   data.organization.min_production_replicas replicas, so that the PodDisruptionBudget
#   (minAvailable 1) rendered for them lets a node drain or an instance be replaced without
#   an outage. A missing or non-numeric min_replicas (e.g. "1") is a violation.
# custom:
#   id: MDL-010
#   severity: high
#   enforcement: mandatory
#   controls: ["SOC 2 A1.2", "ISO 27001 A.17.2.1"]
#   remediation: Set spec.target.autoscaling.min_replicas to 2 or more in the prod overlay.
package modelops.prod_min_replicas

replicated_platforms := {"kubernetes", "aws-sagemaker"}

minimum := data.organization.min_production_replicas

deny contains {"msg": msg, "path": "spec.target.autoscaling.min_replicas"} if {
	input.environment in data.organization.production_environments
	object.get(input, ["spec", "target", "platform"], "local") in replicated_platforms
	value := object.get(input, ["spec", "target", "autoscaling", "min_replicas"], null)
	not enough(value)
	msg := sprintf("min_replicas is %v; production needs at least %v replicas so the PodDisruptionBudget keeps one serving during a drain", [value, minimum])
}

enough(value) if {
	is_number(value)
	value >= minimum
}

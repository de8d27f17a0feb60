# METADATA
# title: Progressive rollout in production
# description: >-
#   Production deployments on Kubernetes and SageMaker roll out with a canary or
#   blue-green strategy, so that a bad model reaches a fraction of traffic first.
# custom:
#   id: MDL-011
#   severity: low
#   enforcement: advisory
#   controls: ["SOC 2 CC8.1"]
#   remediation: Set spec.target.rollout.strategy to canary (with steps) or blue-green.
package modelops.prod_progressive_rollout

progressive := {"canary", "blue-green"}

shown(v) := "missing (rolling)" if v == null

shown(v) := v if v != null

deny contains {"msg": msg, "path": "spec.target.rollout.strategy"} if {
	input.environment in data.organization.production_environments
	object.get(input, ["spec", "target", "platform"], "local") in {"kubernetes", "aws-sagemaker"}
	strategy := object.get(input, ["spec", "target", "rollout", "strategy"], null)
	not strategy in progressive
	msg := sprintf("rollout strategy is %v; use canary or blue-green in production", [shown(strategy)])
}

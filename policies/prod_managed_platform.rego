# METADATA
# title: Production runs on a managed platform
# description: >-
#   The local platform (a bentoml serve process on loopback) is for development and
#   staging only; production runs on Kubernetes or AWS.
# custom:
#   id: MDL-027
#   severity: high
#   enforcement: mandatory
#   controls: ["SOC 2 A1.2"]
#   remediation: Set spec.target.platform for the prod environment to kubernetes or aws-*.
package modelops.prod_managed_platform

deny contains {"msg": "production must not run on the local platform", "path": "spec.target.platform"} if {
	input.environment in data.organization.production_environments
	object.get(input, ["spec", "target", "platform"], "local") == "local"
}

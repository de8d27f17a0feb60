# METADATA
# title: Model version pinned in production
# description: >-
#   A production deployment names its model version and does not follow a moving alias
#   (latest) in the model URI, so that a rollback has something to roll back to.
# custom:
#   id: MDL-025
#   severity: medium
#   enforcement: advisory
#   controls: ["SOC 2 CC8.1", "EU AI Act Art. 12 (record-keeping)"]
#   remediation: Set spec.model.version and point spec.model.uri at a fixed version.
package modelops.prod_model_version

# Each field by its full path (see policies/README.md, "Answers are reused").
version := object.get(input, ["spec", "model", "version"], null)

uri := object.get(input, ["spec", "model", "uri"], "")

production if input.environment in data.organization.production_environments

deny contains {"msg": "spec.model.version is missing; production pins a model version", "path": "spec.model.version"} if {
	production
	not is_string(version)
}

deny contains {"msg": msg, "path": "spec.model.uri"} if {
	production
	is_string(uri)
	regex.match(`(@|:|/)latest$`, uri)
	msg := sprintf("model uri %v follows a moving alias; pin a version", [uri])
}

# METADATA
# title: Monitoring and drift detection in production
# description: >-
#   Production deployments enable monitoring (spec.monitoring.enabled: true), with a
#   schedule, reference data and a drift method, so that silent model decay is noticed.
# custom:
#   id: MDL-014
#   severity: high
#   enforcement: mandatory
#   enforcement_by_environment: {staging: advisory, dev: disabled}
#   controls: ["SOC 2 CC7.2", "EU AI Act Art. 72 (post-market monitoring)"]
#   remediation: Set spec.monitoring.enabled true with schedule, reference and drift.
package modelops.prod_monitoring

# Each field by its full path (see policies/README.md, "Answers are reused").
enabled := object.get(input, ["spec", "monitoring", "enabled"], null)

needed := {
	"schedule": object.get(input, ["spec", "monitoring", "schedule"], null),
	"reference": object.get(input, ["spec", "monitoring", "reference"], null),
	"drift": object.get(input, ["spec", "monitoring", "drift"], null),
}

production if input.environment in data.organization.production_environments

deny contains {"msg": msg, "path": "spec.monitoring.enabled"} if {
	production
	enabled != true
	msg := sprintf("monitoring.enabled is %v; production must be monitored", [enabled])
}

deny contains {"msg": sprintf("monitoring.%v is missing; drift detection needs it", [field]), "path": concat(".", ["spec.monitoring", field])} if {
	production
	enabled == true
	some field, value in needed
	value == null
}

# METADATA
# title: Replica ceiling per team
# description: >-
#   The autoscaling maximum stays within the owning team's ceiling
#   (data.organization.team_limits.<team>.max_replicas, else default). A value that is not
#   a number (e.g. "50") is a violation.
# custom:
#   id: MDL-009
#   severity: medium
#   enforcement: mandatory
#   controls: ["SOC 2 CC3.2 (cost)", "FinOps"]
#   remediation: Lower spec.target.autoscaling.max_replicas or ask for a higher ceiling.
package modelops.replica_ceiling

team := object.get(input, ["metadata", "team"], null)

limits := object.get(data.organization.team_limits, [team], data.organization.team_limits["default"])

autoscaling := object.get(input, ["spec", "target", "autoscaling"], {})

deny contains {"msg": msg, "path": "spec.target.autoscaling.max_replicas"} if {
	"max_replicas" in object.keys(autoscaling)
	value := autoscaling.max_replicas
	not within(value)
	msg := sprintf("max_replicas is %v; team %v may scale to at most %v replicas", [value, team, limits.max_replicas])
}

within(value) if {
	is_number(value)
	value <= limits.max_replicas
}

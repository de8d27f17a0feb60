# METADATA
# title: GPU count within the team's ceiling
# description: >-
#   GPUs requested or limited per replica stay within the owning team's ceiling
#   (data.organization.team_limits.<team>.max_gpus, else default). A GPU count that is not
#   a whole number is a violation.
# custom:
#   id: MDL-008
#   severity: medium
#   enforcement: mandatory
#   controls: ["SOC 2 CC3.2 (cost)", "FinOps"]
#   remediation: Lower spec.target.resources.*.gpu or ask for a higher team ceiling.
package modelops.gpu_ceiling

team := object.get(input, ["metadata", "team"], null)

limits := object.get(data.organization.team_limits, [team], data.organization.team_limits["default"])

deny contains {"msg": msg, "path": concat(".", ["spec.target.resources", kind, "gpu"])} if {
	some kind in ["requests", "limits"]
	gpu := object.get(input, ["spec", "target", "resources", kind, "gpu"], 0)
	not within(gpu)
	msg := sprintf("%v.gpu is %v; team %v may use at most %v GPU(s) per replica", [kind, gpu, team, limits.max_gpus])
}

within(gpu) if {
	is_number(gpu)
	gpu >= 0
	gpu <= limits.max_gpus
}

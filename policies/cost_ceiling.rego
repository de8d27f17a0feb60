# METADATA
# title: Monthly cost within the team's ceiling
# description: >-
#   The deployment's estimated monthly cost at its maximum scale (input.cost.monthly_usd.max,
#   USD per 730 h: docs/cost.md) stays within the owning team's ceiling
#   (data.organization.team_limits.<team>.max_monthly_usd, else default; a team without
#   one has no ceiling). Only runs that price the rendered deployment give input.cost
#   (plan, plan --base, apply); without it the rule has nothing to judge.
# custom:
#   id: MDL-040
#   severity: medium
#   enforcement: mandatory
#   controls: ["SOC 2 CC3.2 (cost)", "FinOps"]
#   remediation: Lower the maximum replicas or instance size, or ask for a higher max_monthly_usd (or a waiver).
package modelops.cost_ceiling

team := object.get(input, ["metadata", "team"], null)

limits := object.get(data.organization.team_limits, [team], data.organization.team_limits["default"])

deny contains {"msg": msg, "path": "spec.target"} if {
	ceiling := limits.max_monthly_usd
	cost := input.cost.monthly_usd.max
	not under_ceiling(cost, ceiling)
	msg := sprintf("estimated at up to %v USD/month (prices as of %v); team %v may spend at most %v USD/month per deployment", [ceiling_usd(cost), input.cost.prices_date, team, ceiling])
}

under_ceiling(cost, ceiling) if {
	is_number(cost)
	is_number(ceiling)
	cost <= ceiling
}

# A figure in USD with cents; anything else as it is (a non-number still fires above).
ceiling_usd(x) := sprintf("%.2f", [x]) if is_number(x)

ceiling_usd(x) := sprintf("%v", [x]) if not is_number(x)

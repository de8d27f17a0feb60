# METADATA
# title: Monthly cost increase within the team's limit
# description: >-
#   A change raises the deployment's expected monthly cost (input.cost.increase_usd.expected:
#   the estimate after minus before, at minimum scale, USD per 730 h; a new deployment
#   counts from 0) by no more than the owning team's limit
#   (data.organization.team_limits.<team>.max_monthly_increase_usd, else default; a team
#   without one has no limit). Only runs that price the rendered deployment give
#   input.cost (plan, plan --base, apply).
# custom:
#   id: MDL-041
#   severity: medium
#   enforcement: mandatory
#   controls: ["SOC 2 CC3.2 (cost)", "FinOps"]
#   remediation: Raise capacity in smaller steps, or ask for a higher max_monthly_increase_usd (or a waiver).
package modelops.cost_increase

team := object.get(input, ["metadata", "team"], null)

limits := object.get(data.organization.team_limits, [team], data.organization.team_limits["default"])

deny contains {"msg": msg, "path": "spec.target"} if {
	limit := limits.max_monthly_increase_usd
	increase := input.cost.increase_usd.expected
	not under_limit(increase, limit)
	before := object.get(input, ["cost", "before_monthly_usd", "expected"], 0)
	msg := sprintf("raises the expected cost by %v USD/month (%v -> %v, prices as of %v); team %v may add at most %v USD/month in one change", [increase_usd(increase), increase_usd(before), increase_usd(input.cost.monthly_usd.expected), input.cost.prices_date, team, limit])
}

under_limit(increase, limit) if {
	is_number(increase)
	is_number(limit)
	increase <= limit
}

# A figure in USD with cents; anything else as it is (a non-number still fires above).
increase_usd(x) := sprintf("%.2f", [x]) if is_number(x)

increase_usd(x) := sprintf("%v", [x]) if not is_number(x)

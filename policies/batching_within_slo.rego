# METADATA
# title: Batching window fits the latency SLO
# description: >-
#   When adaptive batching is on, its maximum wait (max_latency_ms) uses at most half of
#   the p99 latency SLO, leaving the other half for inference and the network.
# custom:
#   id: MDL-024
#   severity: low
#   enforcement: advisory
#   controls: ["SRE: latency SLO"]
#   remediation: Lower spec.serving.batching.max_latency_ms or revisit the SLO.
package modelops.batching_within_slo

batching := object.get(input, ["spec", "serving", "batching"], {})

slo := object.get(input, ["spec", "serving", "slo", "p99_latency_ms"], null)

deny contains {"msg": msg, "path": "spec.serving.batching.max_latency_ms"} if {
	object.get(batching, ["enabled"], true) != false
	wait := object.get(batching, ["max_latency_ms"], null)
	wait != null
	slo != null
	not fits(wait, slo)
	msg := sprintf("batching may wait %v ms of a %v ms p99 SLO; keep it at or under half", [wait, slo])
}

fits(wait, budget) if {
	is_number(wait)
	is_number(budget)
	wait * 2 <= budget
}

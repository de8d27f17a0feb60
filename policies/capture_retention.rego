# METADATA
# title: Inference capture retention within limits
# description: >-
#   When inference capture is on, captured requests are kept at least the minimum number of
#   days (audit, drift analysis) and at most the maximum (data minimisation), from
#   data.organization.capture_retention_days. Capture counts as on unless enabled is false.
# custom:
#   id: MDL-015
#   severity: medium
#   enforcement: mandatory
#   enforcement_by_environment: {dev: advisory}
#   controls: ["SOC 2 CC7.2", "GDPR Art. 5(1)(e)", "HIPAA 164.316(b)(2)"]
#   remediation: Set spec.monitoring.capture.retention_days within the limits.
package modelops.capture_retention

capture := object.get(input, ["spec", "monitoring", "capture"], null)

limits := data.organization.capture_retention_days

capturing if {
	capture != null
	object.get(capture, ["enabled"], true) != false
}

deny contains {"msg": msg, "path": "spec.monitoring.capture.retention_days"} if {
	capturing
	days := object.get(capture, ["retention_days"], null)
	not within(days)
	msg := sprintf("capture retention_days is %v; keep captured requests between %v and %v days", [days, limits.min, limits.max])
}

within(days) if {
	is_number(days)
	days >= limits.min
	days <= limits.max
}

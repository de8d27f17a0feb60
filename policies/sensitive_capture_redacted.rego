# METADATA
# title: Captured sensitive data is redacted
# description: >-
#   For sensitive data (pii, phi, pci by default), inference capture is either off
#   (enabled false) or redacted (redact drop or hash); raw capture of sensitive fields is a
#   second copy of the data outside its controls.
# custom:
#   id: MDL-016
#   severity: high
#   enforcement: mandatory
#   controls: ["HIPAA 164.514(b)", "GDPR Art. 25", "PCI-DSS 3.4.1"]
#   remediation: Set spec.monitoring.capture.redact to drop or hash, or enabled to false.
package modelops.sensitive_capture_redacted

capture := object.get(input, ["spec", "monitoring", "capture"], null)

classification := object.get(input, ["spec", "data", "classification"], null)

shown(v) := "missing" if v == null

shown(v) := v if v != null

deny contains {"msg": msg, "path": "spec.monitoring.capture.redact"} if {
	classification in data.organization.sensitive_classifications
	capture != null
	object.get(capture, ["enabled"], true) != false
	redact := object.get(capture, ["redact"], null)
	not redact in {"drop", "hash"}
	msg := sprintf("capture of %v data has redact %v; set redact to drop or hash, or turn capture off", [classification, shown(redact)])
}

# METADATA
# title: Captured sensitive data is redacted
# description: >-
#   For sensitive data (pii, phi, pci by default), inference capture is either off
#   (enabled false) or redacted (redact drop or hash) with the sensitive features named in
#   spec.data.sensitive_fields: redact applies only to those features, so an empty list
#   captures every feature as sent. Raw capture of sensitive fields is a second copy of
#   the data outside its controls.
# custom:
#   id: MDL-016
#   severity: high
#   enforcement: mandatory
#   controls: ["HIPAA 164.514(b)", "GDPR Art. 25", "PCI-DSS 3.4.1"]
#   remediation: >-
#     Set spec.monitoring.capture.redact to drop or hash and list the sensitive features
#     in spec.data.sensitive_fields, or set spec.monitoring.capture.enabled to false.
package modelops.sensitive_capture_redacted

capture := object.get(input, ["spec", "monitoring", "capture"], null)

classification := object.get(input, ["spec", "data", "classification"], null)

shown(v) := "missing" if v == null

shown(v) := v if v != null

sensitive if classification in data.organization.sensitive_classifications

capturing if {
	capture != null
	object.get(capture, ["enabled"], true) != false
}

# At least one named feature (a wrong type, such as a string, names none).
fields_listed if {
	fields := object.get(input, ["spec", "data", "sensitive_fields"], null)
	is_array(fields)
	count(fields) > 0
}

deny contains {"msg": msg, "path": "spec.monitoring.capture.redact"} if {
	sensitive
	capturing
	redact := object.get(capture, ["redact"], null)
	not redact in {"drop", "hash"}
	msg := sprintf("capture of %v data has redact %v; set redact to drop or hash, or turn capture off", [classification, shown(redact)])
}

deny contains {"msg": msg, "path": "spec.data.sensitive_fields"} if {
	sensitive
	capturing
	object.get(capture, ["redact"], null) in {"drop", "hash"}
	not fields_listed
	msg := sprintf("capture of %v data: redact applies to spec.data.sensitive_fields, which is empty: every feature is captured as sent; list the sensitive features, or turn capture off", [classification])
}

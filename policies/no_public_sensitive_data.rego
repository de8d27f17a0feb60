# METADATA
# title: No public endpoint for sensitive data
# description: >-
#   A deployment whose data is classified as sensitive (pii, phi, pci by default) must not
#   be served on a public endpoint. Any value of spec.exposure.public other than false
#   counts as public, and a missing classification counts as sensitive.
# custom:
#   id: MDL-001
#   severity: critical
#   enforcement: mandatory
#   waivable: false
#   controls: ["PCI-DSS 1.3.1", "HIPAA 164.312(e)(1)", "SOC 2 CC6.6", "GDPR Art. 32"]
#   remediation: Set spec.exposure.public to false and reach the model through an internal gateway.
package modelops.no_public_sensitive_data

public_value := object.get(input, ["spec", "exposure", "public"], false)

classification := object.get(input, ["spec", "data", "classification"], null)

sensitive if classification in data.organization.sensitive_classifications

sensitive if not is_string(classification)

deny contains {"msg": msg, "path": "spec.exposure.public"} if {
	public_value != false
	sensitive
	msg := sprintf(
		"data classified %v must not be served on a public endpoint (spec.exposure.public is %v); set it to false",
		[classification, public_value],
	)
}

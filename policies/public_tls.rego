# METADATA
# title: TLS on public endpoints
# description: >-
#   A public endpoint (any spec.exposure.public other than false) terminates TLS:
#   spec.exposure.tls must be true.
# custom:
#   id: MDL-023
#   severity: high
#   enforcement: mandatory
#   controls: ["PCI-DSS 4.2.1", "HIPAA 164.312(e)(1)", "SOC 2 CC6.7"]
#   remediation: Set spec.exposure.tls to true.
package modelops.public_tls

# Each field by its full path (see policies/README.md, "Answers are reused").
public := object.get(input, ["spec", "exposure", "public"], false)

tls := object.get(input, ["spec", "exposure", "tls"], null)

# "not set" rather than Rego's null in the message
tls_text := "not set" if tls == null
tls_text := sprintf("%v", [tls]) if tls != null

deny contains {"msg": msg, "path": "spec.exposure.tls"} if {
	public != false
	tls != true
	msg := sprintf("public endpoint with tls %v; set spec.exposure.tls to true", [tls_text])
}

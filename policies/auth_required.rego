# METADATA
# title: Authentication required when exposed or in production
# description: >-
#   An endpoint that is public, or that serves a production environment on a managed
#   platform, must require authentication (spec.exposure.auth: required). An edge
#   deployment serves no endpoint (the model runs on the device).
# custom:
#   id: MDL-002
#   severity: high
#   enforcement: mandatory
#   controls: ["PCI-DSS 8.2", "HIPAA 164.312(d)", "SOC 2 CC6.1"]
#   remediation: Set spec.exposure.auth to required.
package modelops.auth_required

auth := object.get(input, ["spec", "exposure", "auth"], null)

shown(v) := "missing" if v == null

shown(v) := v if v != null

exposed if object.get(input, ["spec", "exposure", "public"], false) != false

exposed if {
	input.environment in data.organization.production_environments
	not object.get(input, ["spec", "target", "platform"], "local") in {"local", "edge"}
}

deny contains {"msg": msg, "path": "spec.exposure.auth"} if {
	exposed
	auth != "required"
	msg := sprintf("spec.exposure.auth is %v; an exposed or production endpoint must set it to required", [shown(auth)])
}

# METADATA
# title: Model digest pinned in production
# description: >-
#   A production deployment pins its model file by SHA-256 (spec.model.sha256), so that
#   the model loaded (a pickle runs code when loaded) is the one that was reviewed. This
#   holds for every source: a repository path, an s3:// object (which can be overwritten)
#   and an MLflow alias (which can be moved) alike; the build refuses other bytes.
# custom:
#   id: MDL-013
#   severity: critical
#   enforcement: mandatory
#   waivable: false
#   controls: ["SOC 2 CC8.1", "NIST SSDF PS.2.1", "SLSA integrity"]
#   remediation: Set spec.model.sha256 to the 64-hex-digit SHA-256 of the model file.
package modelops.prod_model_digest

deny contains {"msg": msg, "path": "spec.model.sha256"} if {
	input.environment in data.organization.production_environments
	value := object.get(input, ["spec", "model", "sha256"], null)
	not digest(value)
	msg := sprintf("spec.model.sha256 is %v; production needs the model's SHA-256 (64 lower-case hex digits)", [value])
}

digest(value) if {
	is_string(value)
	regex.match(`^[a-f0-9]{64}$`, value)
}

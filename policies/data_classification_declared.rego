# METADATA
# title: Data classification and residency declared
# description: >-
#   Every deployment declares the classification and residency of the data it serves
#   (spec.data), because the exposure, encryption, capture and region rules depend on it.
# custom:
#   id: MDL-026
#   severity: high
#   enforcement: mandatory
#   enforcement_by_environment: {dev: advisory}
#   controls: ["ISO 27001 A.5.12", "SOC 2 CC3.2", "GDPR Art. 30"]
#   remediation: Set spec.data.classification and spec.data.residency.
package modelops.data_classification_declared

deny contains {"msg": sprintf("spec.data.%v is not declared", [field]), "path": concat(".", ["spec.data", field])} if {
	some field, value in {
		"classification": object.get(input, ["spec", "data", "classification"], null),
		"residency": object.get(input, ["spec", "data", "residency"], null),
	}
	not is_string(value)
}

# METADATA
# title: Owner, team and cost-center labels
# description: >-
#   Every deployment names its owner and team and carries the labels the organisation
#   requires (data.organization.required_labels, with their formats), so that an incident
#   or a bill reaches a person.
# custom:
#   id: MDL-012
#   severity: medium
#   enforcement: mandatory
#   controls: ["SOC 2 CC1.3", "ISO 27001 A.8.1.2"]
#   remediation: Set metadata.owner, metadata.team and metadata.labels.cost-center (cc-NNNN).
package modelops.ownership_labels

meta := object.get(input, ["metadata"], {})

deny contains {"msg": sprintf("metadata.%v is missing or empty", [field]), "path": concat(".", ["metadata", field])} if {
	some field in ["owner", "team"]
	not non_empty(object.get(meta, [field], null))
}

deny contains {"msg": msg, "path": concat(".", ["metadata.labels", label])} if {
	some label, pattern in data.organization.required_labels
	value := object.get(meta, ["labels", label], null)
	not matches(value, pattern)
	msg := sprintf("label %v is %v; it must be set and match %v", [label, value, pattern])
}

non_empty(value) if {
	is_string(value)
	trim_space(value) != ""
}

matches(value, pattern) if {
	is_string(value)
	regex.match(pattern, value)
}

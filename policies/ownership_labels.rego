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

# Each field is read by its full path, so an answer holds for every deployment with the
# same owner, team and labels (modelops reuses it; see policies/README.md).
people := {
	"owner": object.get(input, ["metadata", "owner"], null),
	"team": object.get(input, ["metadata", "team"], null),
}

deny contains {"msg": sprintf("metadata.%v is missing or empty", [field]), "path": concat(".", ["metadata", field])} if {
	some field, value in people
	not non_empty(value)
}

deny contains {"msg": msg, "path": concat(".", ["metadata.labels", label])} if {
	some label, pattern in data.organization.required_labels
	value := object.get(input, ["metadata", "labels", label], null)
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

# METADATA
# title: Region allowed for the data's residency
# description: >-
#   A cloud deployment must run in a region that the organisation allows for the data's
#   residency (data.organization.residency_regions). A missing residency or region is a
#   violation: the rule cannot be shown to hold.
# custom:
#   id: MDL-004
#   severity: high
#   enforcement: mandatory
#   controls: ["GDPR Art. 44", "SOC 2 CC6.1"]
#   remediation: Move spec.target.region to an allowed region, or correct spec.data.residency.
package modelops.region_residency

cloud_platforms := {"aws-sagemaker", "aws-serverless"}

on_cloud if object.get(input, ["spec", "target", "platform"], "local") in cloud_platforms

residency := object.get(input, ["spec", "data", "residency"], null)

region := object.get(input, ["spec", "target", "region"], null)

allowed := object.get(data.organization.residency_regions, [residency], []) if is_string(residency)

deny contains {"msg": "no data residency declared: set spec.data.residency", "path": "spec.data.residency"} if {
	on_cloud
	not is_string(residency)
}

deny contains {"msg": "no region: set spec.target.region", "path": "spec.target.region"} if {
	on_cloud
	is_string(residency)
	not is_string(region)
}

deny contains {"msg": msg, "path": "spec.target.region"} if {
	on_cloud
	is_string(region)
	not region in allowed
	# concat, not sprintf: regopy passes a concat result to sprintf with its JSON quotes
	msg := concat("", [
		sprintf("region %v is not allowed for %v data residency; allowed: ", [region, residency]),
		listed(allowed),
	])
}

# A list for a message, without JSON quoting: "a, b, c" ("none" when empty).
listed(items) := "none" if count(items) == 0

listed(items) := concat(", ", [sprintf("%v", [item]) | some item in items]) if count(items) > 0

# METADATA
# title: Images only from allowed registries
# description: >-
#   Deployments on a cloud or cluster platform pull their image from a registry the
#   organisation allows (data.organization.allowed_registries, prefix match); the
#   registry must be named. Local and edge deployments run no image (an edge bundle is
#   an ONNX file published to spec.edge.destination).
# custom:
#   id: MDL-005
#   severity: high
#   enforcement: mandatory
#   controls: ["SOC 2 CC8.1", "PCI-DSS 6.3.2", "NIST SP 800-190 4.2"]
#   remediation: Push the image to an allowed registry and set spec.target.registry.
package modelops.allowed_registries

platform := object.get(input, ["spec", "target", "platform"], "local")

# Platforms that pull an image (not local: a bentoml process; not edge: a bundle).
pulls_image if not platform in {"local", "edge"}

# Read by full path, each field on its own (modelops reuses an answer for every deployment
# with the same values; see policies/README.md). A null field counts as not set.
images := {field: ref |
	some field, ref in {
		"registry": object.get(input, ["spec", "target", "registry"], null),
		"image": object.get(input, ["spec", "target", "image"], null),
	}
	ref != null
}

allowed(ref) if {
	is_string(ref)
	some prefix in data.organization.allowed_registries
	startswith(ref, prefix)
}

allowed(ref) if {
	is_string(ref)
	some prefix in data.organization.allowed_registries
	ref == trim_suffix(prefix, "/")
}

deny contains {"msg": "no registry: set spec.target.registry (or a pinned spec.target.image)", "path": "spec.target.registry"} if {
	pulls_image
	count(images) == 0
}

deny contains {"msg": msg, "path": concat(".", ["spec.target", field])} if {
	pulls_image
	some field, ref in images
	not allowed(ref)
	# concat, not sprintf: regopy passes a concat result to sprintf with its JSON quotes
	msg := concat("", [
		sprintf("%v %v is not from an allowed registry; allowed: ", [field, ref]),
		listed(data.organization.allowed_registries),
	])
}

# A list for a message, without JSON quoting: "a, b, c" ("none" when empty).
listed(items) := "none" if count(items) == 0

listed(items) := concat(", ", [sprintf("%v", [item]) | some item in items]) if count(items) > 0

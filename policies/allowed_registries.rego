# METADATA
# title: Images only from allowed registries
# description: >-
#   Deployments on a cloud or cluster platform pull their image from a registry the
#   organisation allows (data.organization.allowed_registries, prefix match); the
#   registry must be named.
# custom:
#   id: MDL-005
#   severity: high
#   enforcement: mandatory
#   controls: ["SOC 2 CC8.1", "PCI-DSS 6.3.2", "NIST SP 800-190 4.2"]
#   remediation: Push the image to an allowed registry and set spec.target.registry.
package modelops.allowed_registries

platform := object.get(input, ["spec", "target", "platform"], "local")

target := object.get(input, ["spec", "target"], {})

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
	platform != "local"
	not "registry" in object.keys(target)
	not "image" in object.keys(target)
}

deny contains {"msg": msg, "path": concat(".", ["spec.target", field])} if {
	platform != "local"
	some field in ["registry", "image"]
	field in object.keys(target)
	not allowed(target[field])
	msg := sprintf("%v %v is not from an allowed registry; allowed: %v", [field, target[field], data.organization.allowed_registries])
}

# METADATA
# title: Explicit images pinned by digest
# description: >-
#   An explicit spec.target.image must be pinned by digest (name@sha256:<64 hex>) so that
#   what was reviewed is what runs; tags such as :latest can be moved. Images modelops
#   builds itself are named after the content-addressed Bento tag. Local and edge
#   deployments run no image.
# custom:
#   id: MDL-006
#   severity: medium
#   enforcement: mandatory
#   enforcement_by_environment: {dev: advisory}
#   controls: ["SOC 2 CC8.1", "NIST SP 800-190 4.2.2"]
#   remediation: Use image@sha256:<digest> in spec.target.image.
package modelops.image_pinned_digest

image := object.get(input, ["spec", "target", "image"], null)

deny contains {"msg": msg, "path": "spec.target.image"} if {
	not object.get(input, ["spec", "target", "platform"], "local") in {"local", "edge"}
	image != null
	not pinned(image)
	msg := sprintf("image %v is not pinned by digest; use <name>@sha256:<64 hex digits>", [image])
}

pinned(ref) if {
	is_string(ref)
	regex.match(`^[^@\s]+@sha256:[a-f0-9]{64}$`, ref)
}

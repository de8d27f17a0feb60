# METADATA
# title: Secrets only as references
# description: >-
#   spec.secrets entries name a secret store reference (AWS Secrets Manager ARN, SSM
#   parameter, Kubernetes secret/key, Vault path#key), never a value: a spec lives in Git.
# custom:
#   id: MDL-017
#   severity: critical
#   enforcement: mandatory
#   waivable: false
#   controls: ["PCI-DSS 8.3.2", "SOC 2 CC6.1", "CWE-798"]
#   remediation: Store the value in a secret manager and reference it in spec.secrets[].from.
package modelops.secrets_references

deny contains {"msg": msg, "path": sprintf("spec.secrets.%d.from", [i])} if {
	some i, secret in object.get(input, ["spec", "secrets"], [])
	ref := object.get(secret, ["from"], null)
	not reference(ref)
	msg := sprintf("secret %v is not a secret store reference (aws-secretsmanager:<arn>, aws-ssm:<name>, k8s:<secret>/<key>, vault:<path>#<key>)", [object.get(secret, ["name"], i)])
}

reference(ref) if {
	is_string(ref)
	some pattern in data.organization.secret_reference_patterns
	regex.match(pattern, ref)
}

# METADATA
# title: Customer-managed encryption key on cloud targets
# description: >-
#   SageMaker and serverless deployments must encrypt model artefacts and endpoint
#   storage with a customer-managed KMS key (a key ARN, not an AWS-managed alias) in the
#   deployment's own region.
# custom:
#   id: MDL-003
#   severity: high
#   enforcement: mandatory
#   enforcement_by_environment: {dev: advisory}
#   controls: ["PCI-DSS 3.5.1", "HIPAA 164.312(a)(2)(iv)", "SOC 2 CC6.7"]
#   remediation: Set spec.target.encryption.kms_key_id to arn:aws:kms:<region>:<account>:key/<id>.
package modelops.cloud_encryption_cmk

cloud_platforms := {"aws-sagemaker", "aws-serverless"}

key := object.get(input, ["spec", "target", "encryption", "kms_key_id"], null)

region := object.get(input, ["spec", "target", "region"], null)

on_cloud if object.get(input, ["spec", "target", "platform"], "local") in cloud_platforms

deny contains {"msg": "no customer-managed KMS key: set spec.target.encryption.kms_key_id", "path": "spec.target.encryption.kms_key_id"} if {
	on_cloud
	not is_string(key)
}

deny contains {"msg": msg, "path": "spec.target.encryption.kms_key_id"} if {
	on_cloud
	is_string(key)
	not regex.match(`^arn:aws:kms:[a-z0-9-]+:[0-9]{12}:key/[A-Za-z0-9-]+$`, key)
	msg := sprintf("kms_key_id %v is not a customer-managed key ARN (arn:aws:kms:<region>:<account>:key/<id>); aliases and AWS-managed keys are not accepted", [key])
}

deny contains {"msg": msg, "path": "spec.target.encryption.kms_key_id"} if {
	on_cloud
	is_string(key)
	regex.match(`^arn:aws:kms:[a-z0-9-]+:[0-9]{12}:key/[A-Za-z0-9-]+$`, key)
	key_region := split(key, ":")[3]
	key_region != region
	msg := sprintf("the KMS key is in %v but the deployment runs in %v; use a key in the same region", [key_region, region])
}

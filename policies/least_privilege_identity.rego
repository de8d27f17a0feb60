# METADATA
# title: Least-privilege service account and role
# description: >-
#   The workload identity has only what serving needs: on Kubernetes no cluster-admin
#   binding and no automounted API token; on AWS no IAM role whose name marks broad
#   privileges (data.organization.privileged_role_patterns, matched case-insensitively
#   as IAM matches role names).
# custom:
#   id: MDL-021
#   severity: high
#   enforcement: mandatory
#   controls: ["CIS Kubernetes 5.1.1", "CIS Kubernetes 5.1.6", "SOC 2 CC6.3", "PCI-DSS 7.2.1"]
#   remediation: Drop cluster_admin and automount_token, and use a role scoped to the endpoint.
package modelops.least_privilege_identity

account := object.get(input, ["spec", "target", "service_account"], {})

platform := object.get(input, ["spec", "target", "platform"], "local")

deny contains {"msg": msg, "path": concat(".", ["spec.target.service_account", field])} if {
	platform == "kubernetes"
	some field in ["cluster_admin", "automount_token"]
	field in object.keys(account)
	account[field] != false
	msg := sprintf("service_account.%v is %v; a model server needs neither cluster-admin nor an API token", [field, account[field]])
}

deny contains {"msg": msg, "path": "spec.target.service_account.role_arn"} if {
	platform in {"aws-sagemaker", "aws-serverless", "kubernetes"}
	"role_arn" in object.keys(account)
	role := account.role_arn
	broad(role)
	msg := sprintf("role %v looks broadly privileged; use a role scoped to this endpoint", [role])
}

broad(role) if not is_string(role)

broad(role) if {
	is_string(role)
	some pattern in data.organization.privileged_role_patterns
	# IAM role names are case-insensitive (AWS refuses "Admin" beside "admin"), so is this
	# match: both lowercased (regopy has no (?i)); patterns avoid \S, \W, \D classes
	regex.match(lower(pattern), lower(role))
}

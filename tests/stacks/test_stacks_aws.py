"""The SageMaker stacks, run for real under Pulumi's mocks through the offline renderer."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from reconciler.build.artifact import Artifact
from reconciler.core.config import load_config
from reconciler.engine.plan import diff
from reconciler.engine.render import RenderError, render
from reconciler.spec.repo import load_all
from stacks.common import to_aws_cron


def edit_spec(root: Path, name: str, change) -> None:
    path = root / "specs" / f"{name}.yaml"
    doc = yaml.safe_load(path.read_text())
    change(doc)
    path.write_text(yaml.safe_dump(doc, sort_keys=False))


def rendered(root: Path, name: str, artifact=None):
    config = load_config(root)
    result = load_all(config, [name], "prod")
    assert not result.errors, [str(d) for d in result.errors]
    return render(result.deployments[0], artifact, config)


def one(state, kind, name=None):
    found = [r for r in state.of_kind(kind) if name is None or r.name == name]
    assert len(found) == 1, [r.name for r in state.of_kind(kind)]
    return found[0].inputs


def policy_of(state, role_name):
    return json.loads(one(state, "RolePolicy", role_name)["policy"])


def test_sagemaker_resources(spec_repo):
    state = rendered(spec_repo, "diabetes-progression")
    kinds = sorted(r.kind for r in state.resources)
    assert kinds == [
        "Endpoint",
        "EndpointConfiguration",
        "MetricAlarm",
        "MetricAlarm",
        "Model",
        "Policy",
        "Role",
        "Role",
        "RolePolicy",
        "RolePolicy",
        "Schedule",
        "Schedule",
        "Target",
    ]
    assert state.outputs["endpoint_name"] == "diabetes-progression-prod"
    assert state.outputs["url"].endswith("/endpoints/diabetes-progression-prod/invocations")


def test_endpoint_config_uses_the_customer_managed_key_and_captures(spec_repo):
    state = rendered(spec_repo, "diabetes-progression")
    config = one(state, "EndpointConfiguration")
    key = "arn:aws:kms:eu-west-1:123456789012:key/1a2b3c4d-0000-4000-8000-123456789abc"
    assert config["kmsKeyArn"] == key
    capture = config["dataCaptureConfig"]
    assert capture["initialSamplingPercentage"] == 5  # sample_rate 0.05
    assert capture["destinationS3Uri"] == "s3://clinical-ml-capture/diabetes"
    assert capture["kmsKeyId"] == key
    (variant,) = config["productionVariants"]
    assert variant["instanceType"] == "ml.m5.large"
    assert variant["initialInstanceCount"] == 2


def test_kms_key_is_created_when_the_spec_names_none(spec_repo):
    edit_spec(spec_repo, "diabetes-progression", lambda d: d["spec"]["target"].pop("encryption"))
    state = rendered(spec_repo, "diabetes-progression")
    key = one(state, "Key")
    assert key["enableKeyRotation"] is True
    marker = "[unknown aws:kms/key:Key diabetes-progression-prod-key.arn]"
    assert one(state, "EndpointConfiguration")["kmsKeyArn"] == marker


def test_alarm_thresholds_equal_the_slo_and_drive_rollback(spec_repo):
    state = rendered(spec_repo, "diabetes-progression")
    latency = one(state, "MetricAlarm", "diabetes-progression-prod-p99-latency")
    # ModelLatency is in microseconds: 300 ms SLO → 300000.
    assert latency["threshold"] == 300 * 1000
    assert latency["extendedStatistic"] == "p99" and latency["metricName"] == "ModelLatency"
    # serving.slo.max_error_rate: 0.01 → the 5xx share of requests, by metric math.
    errors = one(state, "MetricAlarm", "diabetes-progression-prod-5xx-rate")
    assert errors["threshold"] == 0.01 and errors["comparisonOperator"] == "GreaterThanThreshold"
    queries = {q["id"]: q for q in errors["metricQueries"]}
    assert queries["errors"]["metric"]["metricName"] == "Invocation5XXErrors"
    assert queries["invocations"]["metric"]["metricName"] == "Invocations"
    for q in ("errors", "invocations"):
        assert queries[q]["metric"]["stat"] == "Sum" and queries[q]["returnData"] is False
        assert queries[q]["metric"]["dimensions"] == {
            "EndpointName": "diabetes-progression-prod",
            "VariantName": "AllTraffic",
        }
    assert queries["error_rate"]["expression"] == "IF(invocations > 0, errors / invocations, 0)"
    assert queries["error_rate"]["returnData"] is True
    endpoint = one(state, "Endpoint")
    rollback = endpoint["deploymentConfig"]["autoRollbackConfiguration"]["alarms"]
    assert [a["alarmName"] for a in rollback] == [latency["name"], errors["name"]]
    routing = endpoint["deploymentConfig"]["blueGreenUpdatePolicy"]["trafficRoutingConfiguration"]
    assert routing["type"] == "CANARY"
    assert routing["canarySize"] == {"type": "CAPACITY_PERCENT", "value": 10}


def test_without_max_error_rate_any_5xx_rolls_back(spec_repo):
    edit_spec(
        spec_repo,
        "diabetes-progression",
        lambda d: d["spec"]["serving"]["slo"].pop("max_error_rate"),
    )
    state = rendered(spec_repo, "diabetes-progression")
    errors = one(state, "MetricAlarm", "diabetes-progression-prod-5xx")
    assert errors["metricName"] == "Invocation5XXErrors" and errors["threshold"] == 0
    assert not [r for r in state.of_kind("MetricAlarm") if r.name.endswith("-5xx-rate")]
    rollback = one(state, "Endpoint")["deploymentConfig"]["autoRollbackConfiguration"]["alarms"]
    assert "diabetes-progression-prod-5xx" in [a["alarmName"] for a in rollback]


@pytest.mark.parametrize("name", ["diabetes-progression", "fraud-scorer-serverless"])
def test_min_throughput_alarm_fires_on_too_few_invocations_and_never_rolls_back(spec_repo, name):
    state = rendered(spec_repo, name)
    assert not [r for r in state.of_kind("MetricAlarm") if r.name.endswith("-min-throughput")]
    edit_spec(spec_repo, name, lambda d: d["spec"]["serving"]["slo"].update(min_throughput_rps=2.5))
    state = rendered(spec_repo, name)
    alarm = one(state, "MetricAlarm", f"{name}-prod-min-throughput")
    assert alarm["metricName"] == "Invocations" and alarm["statistic"] == "Sum"
    assert alarm["period"] == 60 and alarm["threshold"] == 2.5 * 60
    assert alarm["comparisonOperator"] == "LessThanThreshold"
    # No requests in a minute publish no data point: that is below any minimum.
    assert alarm["treatMissingData"] == "breaching"
    rollback = (
        one(state, "Endpoint").get("deploymentConfig", {}).get("autoRollbackConfiguration", {})
    )
    assert alarm["name"] not in [a["alarmName"] for a in rollback.get("alarms", [])]


def test_autoscaling_on_invocations_per_instance(spec_repo):
    state = rendered(spec_repo, "diabetes-progression")
    target = one(state, "Target")
    assert (target["minCapacity"], target["maxCapacity"]) == (2, 4)
    assert target["resourceId"] == "endpoint/diabetes-progression-prod/variant/AllTraffic"
    policy = one(state, "Policy")["targetTrackingScalingPolicyConfiguration"]
    assert policy["targetValue"] == 200
    assert policy["predefinedMetricSpecification"] == {
        "predefinedMetricType": "SageMakerVariantInvocationsPerInstance"
    }


def test_execution_role_is_scoped_to_the_capture_bucket_repo_and_key(spec_repo):
    state = rendered(spec_repo, "diabetes-progression")
    role = one(state, "Role", "diabetes-progression-prod-sagemaker")
    trust = json.loads(role["assumeRolePolicy"])
    assert trust["Statement"][0]["Principal"] == {"Service": "sagemaker.amazonaws.com"}
    statements = {
        s["Sid"]: s for s in policy_of(state, "diabetes-progression-prod-sagemaker")["Statement"]
    }
    assert statements["CaptureReadWrite"]["Resource"] == [
        "arn:aws:s3:::clinical-ml-capture/diabetes/*"
    ]
    assert statements["EcrPull"]["Resource"] == [
        "arn:aws:ecr:eu-west-1:123456789012:repository/ml/diabetes-progression"
    ]
    for s in statements.values():
        if s["Sid"] != "EcrAuth":  # GetAuthorizationToken has no resource-level scope
            assert "*" != s["Resource"] and "arn:aws:s3:::*" not in s["Resource"]


def test_schedules_run_modelops_jobs_in_the_model_image(spec_repo):
    artifact = Artifact(
        "diabetes-progression:abc",
        "a" * 64,
        "123456789012.dkr.ecr.eu-west-1.amazonaws.com/ml/diabetes-progression:abc",
        image_built=True,
    )
    state = rendered(spec_repo, "diabetes-progression", artifact)
    schedules = {r.name: r.inputs for r in state.of_kind("Schedule")}
    monitor = schedules["diabetes-progression-prod-monitor"]
    retrain = schedules["diabetes-progression-prod-retrain"]
    assert monitor["scheduleExpression"] == "cron(30 */6 * * ? *)"
    assert retrain["scheduleExpression"] == "cron(0 4 1 * ? *)"
    job = json.loads(monitor["target"]["input"])
    assert job["AppSpecification"] == {
        "ImageUri": artifact.image,
        "ContainerEntrypoint": [
            "modelops",
            "monitor",
            "run",
            "diabetes-progression",
            "--env",
            "prod",
        ],
    }
    assert json.loads(retrain["target"]["input"])["AppSpecification"]["ContainerEntrypoint"] == [
        "modelops",
        "retrain",
        "diabetes-progression",
        "--env",
        "prod",
    ]
    assert "<aws.scheduler.execution-id>" in job["ProcessingJobName"]
    assert len(job["ProcessingJobName"].replace("<aws.scheduler.execution-id>", "x" * 36)) <= 63


def test_new_image_replaces_the_model(spec_repo):
    a1 = Artifact("d:1", "1" * 64, "123456789012.dkr.ecr.eu-west-1.amazonaws.com/ml/d:1")
    a2 = Artifact("d:2", "2" * 64, "123456789012.dkr.ecr.eu-west-1.amazonaws.com/ml/d:2")
    old = rendered(spec_repo, "diabetes-progression", a1).to_dict()
    plan = diff(old, rendered(spec_repo, "diabetes-progression", a2), "diabetes-progression-prod")
    model = next(c for c in plan.changes if c.type == "aws:sagemaker/model:Model")
    assert model.action == "replace"
    assert model.replace_paths == ["primaryContainer.image"]
    assert ("primaryContainer.image", a1.image, a2.image) in model.fields
    # The new model gets a new generated name, so the endpoint configuration that names
    # it is replaced too, as Pulumi's preview would show.
    config = next(c for c in plan.changes if c.type.endswith("EndpointConfiguration"))
    assert config.action == "replace"
    assert config.replace_paths == ["productionVariants[0].modelName"]
    assert config.fields[-1][2] == "[known after replacement]"


def test_serverless_memory_and_concurrency_from_the_spec(spec_repo):
    state = rendered(spec_repo, "fraud-scorer-serverless")
    (variant,) = one(state, "EndpointConfiguration")["productionVariants"]
    assert variant["serverlessConfig"] == {"memorySizeInMb": 2048, "maxConcurrency": 20}
    assert "dataCaptureConfig" not in one(state, "EndpointConfiguration")
    env = one(state, "Model")["primaryContainer"]["environment"]
    assert env["MODELOPS_CAPTURE_SINK"] == "s3://payments-capture/fraud-serverless"
    assert env["MODELOPS_CAPTURE_KMS_KEY"].startswith("arn:aws:kms:")
    names = sorted(r.name for r in state.of_kind("Schedule"))
    assert names == ["fraud-scorer-serverless-prod-monitor"]
    latency = one(state, "MetricAlarm", "fraud-scorer-serverless-prod-p99-latency")
    assert latency["threshold"] == 1000 * 1000


def test_non_ecr_registry_is_reported_with_its_line(spec_repo):
    edit_spec(
        spec_repo,
        "diabetes-progression",
        lambda d: d["spec"]["target"].update(registry="registry.example.com/ml"),
    )
    with pytest.raises(RenderError) as err:
        rendered(spec_repo, "diabetes-progression")
    (diag,) = err.value.diagnostics
    assert diag.field == "spec.target.registry" and diag.position.line > 0
    assert "ECR" in diag.message


def test_capture_sink_must_be_s3_on_aws(spec_repo):
    config = load_config(spec_repo)
    dep = load_all(config, ["diabetes-progression"], "prod").deployments[0]
    edit_spec(
        spec_repo,
        "diabetes-progression",
        lambda d: d["spec"]["monitoring"]["capture"].update(sink="captures/local"),
    )
    # validate refuses it first, at the field (reconciler/spec/validate.py) ...
    errors = load_all(config, ["diabetes-progression"], "prod").errors
    assert [d.field for d in errors] == ["spec.monitoring.capture.sink"]
    # ... and the stack still refuses a deployment that did not go through validate
    dep.data["spec"]["monitoring"]["capture"]["sink"] = "captures/local"
    with pytest.raises(RenderError) as err:
        render(dep, None, config, cache=False)
    assert err.value.diagnostics[0].field == "spec.monitoring.capture.sink"


@pytest.mark.parametrize(
    "cron,expected",
    [
        ("0 3 * * 0", "cron(0 3 ? * SUN *)"),
        ("0 * * * *", "cron(0 * * * ? *)"),
        ("15 2 * * 1-5", "cron(15 2 ? * MON-FRI *)"),
        ("0 4 1 * *", "cron(0 4 1 * ? *)"),
    ],
)
def test_to_aws_cron(cron, expected):
    assert to_aws_cron(cron) == expected


def test_to_aws_cron_refuses_both_day_fields():
    with pytest.raises(ValueError, match="both"):
        to_aws_cron("0 3 1 * 1")


def test_fields_serverless_cannot_honour_are_refused(spec_repo):
    edit_spec(
        spec_repo,
        "fraud-scorer-serverless",
        lambda d: d["spec"]["target"].update(autoscaling={"min_replicas": 1, "max_replicas": 3}),
    )
    with pytest.raises(RenderError) as err:
        rendered(spec_repo, "fraud-scorer-serverless")
    (diag,) = err.value.diagnostics
    assert diag.field == "spec.target.autoscaling" and "max_concurrency" in diag.message

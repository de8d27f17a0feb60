"""SageMaker guardrails from spec.target.rollout (stacks/aws_guardrails.py), under Pulumi's mocks.

A shadow rollout keeps the stable image on the production variant and runs the new image
as a shadow variant with the sampling share; a canary with analysis adds the analysis
alarms, among them the model-quality alarm on the service's label-free estimate, to the
alarms that roll the blue/green deployment back.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from reconciler.build.artifact import Artifact
from reconciler.core.config import load_config
from reconciler.engine.plan import diff, render_plan_text
from reconciler.engine.render import render
from reconciler.spec.repo import load_all
from stacks.aws_guardrails import QUALITY_METRIC, SHADOW_VARIANT, SIGNALS_NAMESPACE

ECR = "123456789012.dkr.ecr.eu-west-1.amazonaws.com/ml"
OLD = f"{ECR}/fraud-detector:old"
NEW = Artifact("fraud-detector:new", "d" * 64, f"{ECR}/fraud-detector:new")
ANALYSIS = {
    "interval_seconds": 90,
    "pause_seconds": 300,
    "failure_limit": 1,
    "metrics": {"error_rate": 0.02, "p99_latency_ms": "from_slo", "estimated_quality": 0.85},
}


def _on_sagemaker(root: Path, rollout: dict) -> None:
    """fraud-detector (a classifier) on SageMaker in prod, with ``rollout``."""
    path = root / "specs" / "fraud-detector.yaml"
    doc = yaml.safe_load(path.read_text())
    target = doc["spec"]["target"]
    for field in ("namespace", "resources"):
        target.pop(field, None)
    target.update(
        platform="aws-sagemaker",
        region="eu-west-1",
        registry=ECR,
        instance_type="ml.m5.large",
        autoscaling={"min_replicas": 2, "max_replicas": 4},
        rollout=rollout,
    )
    doc["spec"].pop("secrets", None)
    doc["spec"]["monitoring"]["capture"]["sink"] = "s3://payments-capture/fraud"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))


def _render(root: Path, stable_image=None):
    config = load_config(root)
    result = load_all(config, ["fraud-detector"], "prod")
    assert not result.errors, [str(d) for d in result.errors]
    return render(result.deployments[0], NEW, config, stable_image=stable_image, cache=False)


def _models(state) -> dict:
    return {r.name: r.inputs for r in state.of_kind("Model")}


def test_a_shadow_runs_the_new_image_beside_the_stable_one_with_the_sampling_share(spec_repo):
    _on_sagemaker(spec_repo, {"strategy": "shadow", "shadow": {"sample_percent": 20}})
    state = _render(spec_repo, stable_image=OLD)
    (config,) = [r.inputs for r in state.of_kind("EndpointConfiguration")]
    (production,) = config["productionVariants"]
    (shadow,) = config["shadowProductionVariants"]
    models = _models(state)
    images = {name: m["primaryContainer"]["image"] for name, m in models.items()}
    assert sorted(images.values()) == [NEW.image, OLD]
    assert shadow["variantName"] == SHADOW_VARIANT
    assert shadow["initialVariantWeight"] == pytest.approx(0.2)  # 20 % of production's weight 1
    assert production["initialVariantWeight"] == 1
    # the production variant serves the stable image; the shadow the new one
    # (the mocks show each variant's model name as the unknown output of its Model)
    assert "fraud-detector-prod-model.name" in production["modelName"]
    assert "fraud-detector-prod-shadow-model.name" in shadow["modelName"]
    assert images["fraud-detector-prod-model"] == OLD
    assert images["fraud-detector-prod-shadow-model"] == NEW.image
    env = models["fraud-detector-prod-shadow-model"]["primaryContainer"]["environment"]
    assert env["MODELOPS_SIGNALS_VARIANT"] == SHADOW_VARIANT
    assert state.outputs["stable_image"] == OLD and state.outputs["shadow_image"] == NEW.image
    assert state.outputs["shadow_sample_percent"] == 20


def test_a_first_shadow_has_nothing_to_shadow_and_the_plan_says_so(spec_repo):
    _on_sagemaker(spec_repo, {"strategy": "shadow", "shadow": {"sample_percent": 20}})
    state = _render(spec_repo)
    (config,) = [r.inputs for r in state.of_kind("EndpointConfiguration")]
    assert "shadowProductionVariants" not in config
    assert state.outputs["stable_image"] == NEW.image
    assert "no earlier version" in render_plan_text([diff(None, state, "fraud-detector-prod")])


def test_analysis_adds_a_quality_alarm_beside_latency_and_5xx_and_all_roll_back(spec_repo):
    _on_sagemaker(spec_repo, {"strategy": "canary", "steps": [10, 100], "analysis": ANALYSIS})
    state = _render(spec_repo)
    alarms = {r.name: r.inputs for r in state.of_kind("MetricAlarm")}
    quality = alarms["fraud-detector-prod-estimated-quality"]
    assert quality["namespace"] == SIGNALS_NAMESPACE and quality["metricName"] == QUALITY_METRIC
    assert quality["comparisonOperator"] == "LessThanThreshold" and quality["threshold"] == 0.85
    # interval 90 s -> two-minute periods; failure_limit 1 -> the second failing period fires
    assert quality["period"] == 120 and quality["evaluationPeriods"] == 2
    latency = alarms["fraud-detector-prod-analysis-p99-latency"]
    assert latency["threshold"] == 200 * 1000  # serving.slo.p99_latency_ms, in microseconds
    rate = alarms["fraud-detector-prod-analysis-5xx-rate"]
    assert rate["threshold"] == 0.02
    endpoint = next(iter(state.of_kind("Endpoint"))).inputs
    config = endpoint["deploymentConfig"]
    rollback = {a["alarmName"] for a in config["autoRollbackConfiguration"]["alarms"]}
    assert {n for n in alarms if "throughput" not in n} == rollback
    routing = config["blueGreenUpdatePolicy"]["trafficRoutingConfiguration"]
    assert routing["waitIntervalInSeconds"] == 300  # analysis.pause_seconds
    model = next(iter(_models(state).values()))
    assert (
        model["primaryContainer"]["environment"]["MODELOPS_SIGNALS_NAMESPACE"] == SIGNALS_NAMESPACE
    )

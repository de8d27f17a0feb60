"""SageMaker deployment guardrails from ``spec.target.rollout``: analysis alarms and shadow tests.

``rollout.analysis`` becomes CloudWatch alarms that roll a blue/green deployment back
(beside the SLO alarms of :func:`stacks.aws_common.alarms`): the 5xx share and p99
latency thresholds of the analysis, and a model-quality alarm on the label-free quality
estimate the generated service publishes as a CloudWatch metric (``runtime/signals.py``
writes it in CloudWatch's embedded metric format to the container log, which SageMaker
ships to CloudWatch Logs, where it becomes the metric :data:`QUALITY_METRIC` in
:data:`SIGNALS_NAMESPACE`). A metric is checked every ``interval_seconds`` rounded up to
whole minutes (SageMaker's endpoint metrics are per minute) and the alarm fires after
``failure_limit + 1`` failing periods. ``strategy: shadow`` becomes a shadow variant
(:func:`shadow_variant`). Rationale: ``docs/rollout.md``.
"""

from __future__ import annotations

import math

import pulumi_aws as aws

from reconciler.spec.model import Deployment
from stacks.aws_common import MODEL_LATENCY_UNITS_PER_MS, VARIANT, error_share_queries

SIGNALS_NAMESPACE = "modelops"
QUALITY_METRIC = "EstimatedQuality"
SHADOW_VARIANT = "Shadow"
#: Environment of the served container that turns on the embedded-metric-format signals.
SIGNALS_ENV = {
    "MODELOPS_SIGNALS_NAMESPACE": SIGNALS_NAMESPACE,
}
PERIOD_S = 60


def _period_and_count(dep: Deployment) -> tuple[int, int]:
    analysis = dep.get("spec.target.rollout.analysis") or {}
    interval = int(analysis.get("interval_seconds", PERIOD_S))
    period = PERIOD_S * max(1, math.ceil(interval / PERIOD_S))
    return period, int(analysis.get("failure_limit", 0)) + 1


def signals_env(endpoint_name: str, variant: str) -> dict[str, str]:
    """The container environment that makes the service publish its model signals as
    CloudWatch metrics with the dimensions the quality alarm reads."""
    return {
        **SIGNALS_ENV,
        "MODELOPS_SIGNALS_ENDPOINT": endpoint_name,
        "MODELOPS_SIGNALS_VARIANT": variant,
    }


def analysis_alarms(dep: Deployment, endpoint_name: str, region: str, tags: dict) -> list:
    """The alarms of ``rollout.analysis.metrics`` (strategy canary); ``[]`` without analysis.

    * ``<endpoint>-analysis-5xx-rate``: ``Invocation5XXErrors / Invocations`` above
      ``error_rate``;
    * ``<endpoint>-analysis-p99-latency``: p99 ``ModelLatency`` (microseconds) above
      ``p99_latency_ms`` (``from_slo``: ``serving.slo.p99_latency_ms``) × 1000;
    * ``<endpoint>-estimated-quality``: the average of :data:`QUALITY_METRIC` below
      ``estimated_quality``; no data (no scored traffic) is not breaching.
    """
    if dep.get("spec.target.rollout.strategy") != "canary":
        return []
    metrics = dep.get("spec.target.rollout.analysis.metrics") or {}
    period, count = _period_and_count(dep)
    dims = {"EndpointName": endpoint_name, "VariantName": VARIANT}
    common = {
        "evaluation_periods": count,
        "treat_missing_data": "notBreaching",
        "region": region,
        "tags": tags,
    }
    out = []
    if "error_rate" in metrics:
        name = f"{endpoint_name}-analysis-5xx-rate"
        out.append(
            aws.cloudwatch.MetricAlarm(
                name,
                name=name,
                alarm_description=(
                    f"rollout analysis of {dep.key}: 5xx share above "
                    f"{float(metrics['error_rate']):.2%}"
                ),
                metric_queries=error_share_queries(dims, period),
                threshold=float(metrics["error_rate"]),
                comparison_operator="GreaterThanThreshold",
                **common,
            )
        )
    if "p99_latency_ms" in metrics:
        ms = metrics["p99_latency_ms"]
        if ms == "from_slo":
            ms = dep.get("spec.serving.slo.p99_latency_ms")
        name = f"{endpoint_name}-analysis-p99-latency"
        out.append(
            aws.cloudwatch.MetricAlarm(
                name,
                name=name,
                alarm_description=(
                    f"rollout analysis of {dep.key}: p99 model latency above {float(ms):g} ms"
                ),
                namespace="AWS/SageMaker",
                metric_name="ModelLatency",
                extended_statistic="p99",
                dimensions=dims,
                period=period,
                threshold=float(ms) * MODEL_LATENCY_UNITS_PER_MS,
                comparison_operator="GreaterThanThreshold",
                **common,
            )
        )
    if "estimated_quality" in metrics:
        name = f"{endpoint_name}-estimated-quality"
        out.append(
            aws.cloudwatch.MetricAlarm(
                name,
                name=name,
                alarm_description=(
                    f"model quality of {dep.key}: label-free estimate (mean top-class "
                    f"probability) below {float(metrics['estimated_quality']):g}"
                ),
                namespace=SIGNALS_NAMESPACE,
                metric_name=QUALITY_METRIC,
                statistic="Average",
                dimensions=dims,
                period=period,
                threshold=float(metrics["estimated_quality"]),
                comparison_operator="LessThanThreshold",
                **common,
            )
        )
    return out


def wait_seconds(dep: Deployment, default_s: int) -> int:
    """Seconds between blue/green traffic shifts: ``analysis.pause_seconds`` when set."""
    pause = dep.get("spec.target.rollout.analysis.pause_seconds")
    return int(pause) if isinstance(pause, int) else default_s


def shadow_variant(dep: Deployment, model_name, instance_type: str, count: int) -> dict:
    """The endpoint configuration's shadow variant for ``strategy: shadow``.

    SageMaker copies a share of the production variant's requests to it (its answers are
    logged, never returned): the shadow's weight relative to the production variant's
    (weight 1), i.e. ``rollout.shadow.sample_percent`` / 100 (default 100 %).
    """
    percent = float(dep.get("spec.target.rollout.shadow.sample_percent", 100))
    return {
        "variant_name": SHADOW_VARIANT,
        "model_name": model_name,
        "initial_instance_count": count,
        "instance_type": instance_type,
        "initial_variant_weight": percent / 100,
    }


__all__ = ["analysis_alarms", "shadow_variant", "signals_env", "wait_seconds"]

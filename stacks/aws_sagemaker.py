"""SageMaker real-time stack (``spec.target.platform: aws-sagemaker``).

``program(dep, image, stable_image=None) -> dict`` (``stacks.common``): model, endpoint
configuration and endpoint with blue/green deployment and auto-rollback, alarms,
autoscaling, schedules. The resources: ``docs/engine.md``.
"""

from __future__ import annotations

import pulumi
import pulumi_aws as aws

from reconciler.spec.model import Deployment
from stacks import aws_common, aws_guardrails
from stacks.common import (
    ImageRef,
    JobContext,
    StackError,
    aws_tags,
    k8s_name,
    reject_fields,
    runtime_env,
)

DEFAULT_INSTANCE_TYPE = "ml.m5.large"
DEFAULT_WAIT_MINUTES = 10
# SageMaker blue/green: the canary step may be at most 50 % of the fleet
# (API reference, TrafficRoutingConfig.CanarySize).
MAX_CANARY_PERCENT = 50
TERMINATION_WAIT_S = 300
SCALE_IN_COOLDOWN_S = 300
SCALE_OUT_COOLDOWN_S = 60
DEFAULT_INVOCATIONS_PER_INSTANCE = 100


def deployment_config(dep: Deployment, alarm_names: list) -> dict:
    """The Endpoint's ``deployment_config`` for ``spec.target.rollout``.

    canary with steps ``[s0, …, 100]``: LINEAR with step ``s0`` when all increments are
    equal, else CANARY of ``s0`` percent; both wait ``wait_minutes`` (default 10) between
    steps (``analysis.pause_seconds`` when the rollout has an analysis). blue-green, shadow
    or no rollout: ALL_AT_ONCE. rolling: a rolling update of 50 %
    batches. Every mode rolls back automatically when an alarm fires.

    Raises:
        StackError: a first canary step above 50 percent.
    """
    rollout = dep.get("spec.target.rollout") or {}
    wait_s = aws_guardrails.wait_seconds(
        dep, int(rollout.get("wait_minutes", DEFAULT_WAIT_MINUTES)) * 60
    )
    rollback = {"alarms": [{"alarm_name": n} for n in alarm_names]}
    strategy = rollout.get("strategy")
    if strategy == "rolling":
        return {
            "rolling_update_policy": {
                "maximum_batch_size": {"type": "CAPACITY_PERCENT", "value": 50},
                "wait_interval_in_seconds": wait_s,
            },
            "auto_rollback_configuration": rollback,
        }
    steps = rollout.get("steps") or [100]
    if strategy == "canary" and steps[0] < 100:
        first = int(steps[0])
        if first > MAX_CANARY_PERCENT:
            raise StackError(
                "spec.target.rollout.steps",
                f"SageMaker canaries may shift at most {MAX_CANARY_PERCENT}% first; "
                f"the first step is {first}%",
            )
        increments = {b - a for a, b in zip([0, *steps], steps, strict=False)}
        if len(increments) == 1 and len(steps) > 2:
            routing = {
                "type": "LINEAR",
                "linear_step_size": {"type": "CAPACITY_PERCENT", "value": first},
                "wait_interval_in_seconds": wait_s,
            }
        else:
            routing = {
                "type": "CANARY",
                "canary_size": {"type": "CAPACITY_PERCENT", "value": first},
                "wait_interval_in_seconds": wait_s,
            }
        phases = len(steps)
    else:
        routing = {"type": "ALL_AT_ONCE", "wait_interval_in_seconds": 0}
        phases = 1
    return {
        "blue_green_update_policy": {
            "traffic_routing_configuration": routing,
            "termination_wait_in_seconds": TERMINATION_WAIT_S,
            # bounds 600..14400 s (API reference, BlueGreenUpdatePolicy)
            "maximum_execution_timeout_in_seconds": min(
                14400, max(600, wait_s * phases + TERMINATION_WAIT_S + 600)
            ),
        },
        "auto_rollback_configuration": rollback,
    }


def program(
    dep: Deployment,
    image: ImageRef,
    stable_image: str | None = None,
    job_context: JobContext | None = None,
) -> dict:
    """Declare the SageMaker real-time resources of ``dep`` (see the module docstring).

    Args:
        dep: resolved deployment with ``spec.target.platform: aws-sagemaker``.
        image: the model image (must be in Amazon ECR).
        stable_image: the image the production variant ran at the last apply; used only
            by ``strategy: shadow``, where it keeps serving while the new image runs as
            the shadow variant (SageMaker's blue/green keeps the old fleet itself).

    Returns:
        Stack outputs: ``endpoint_name``, ``region``, ``url`` (the runtime invocation URL),
        ``image``, ``stable_image`` (the production variant's image), ``schedules``; with a
        shadow, ``shadow_image`` and ``shadow_sample_percent``; ``rollout_note`` when a
        shadow has nothing to shadow yet.

    Raises:
        StackError: no region, non-ECR image, capture sink not on S3, serving mode not
            realtime, bad canary steps or schedules.
    """
    mode = dep.get("spec.serving.mode", "realtime")
    if mode != "realtime":
        raise StackError(
            "spec.serving.mode",
            f"platform aws-sagemaker serves realtime endpoints; {mode!r} needs "
            + ("platform aws-serverless" if mode == "serverless" else "platform kubernetes"),
        )
    reject_fields(
        dep,
        {
            "spec.target.serverless": "it configures platform aws-serverless; real-time "
            "endpoints are sized by target.instance_type and autoscaling",
        },
    )
    region = aws_common.region_of(dep)
    name = dep.key
    tags = aws_tags(dep, image)
    key_arn = aws_common.kms_key(dep, name, region, tags)
    role = aws_common.execution_role(dep, name, image, key_arn, region, tags)
    env = runtime_env(dep, image)
    # SageMaker captures traffic itself (DataCaptureConfig); the service must not also.
    env.pop("MODELOPS_CAPTURE_SINK", None)
    env.pop("MODELOPS_CAPTURE_SAMPLE_RATE", None)
    env.update(aws_common.secret_env(dep))
    endpoint_name = k8s_name(name, "", 63)
    outputs: dict = {}
    shadow = dep.get("spec.target.rollout.strategy") == "shadow"
    production_image = image.ref
    if shadow and stable_image and stable_image != image.ref:
        production_image = stable_image  # the new image answers nothing: it is the shadow
    elif shadow:
        outputs["rollout_note"] = (
            "shadow: no earlier version runs on this endpoint to shadow, so the new version "
            "serves all traffic; the next version will run as its shadow"
        )
    quality = "estimated_quality" in (dep.get("spec.target.rollout.analysis.metrics") or {})

    def model_of(res_name: str, ref: str, variant_name: str):
        environment = dict(env)
        if quality or shadow:
            environment.update(aws_guardrails.signals_env(endpoint_name, variant_name))
        return aws.sagemaker.Model(
            res_name,
            execution_role_arn=role.arn,
            primary_container={"image": ref, "mode": "SingleModel", "environment": environment},
            region=region,
            tags=tags,
        )

    model = model_of(f"{name}-model", production_image, aws_common.VARIANT)
    auto = dep.get("spec.target.autoscaling") or {}
    min_n = max(int(auto.get("min_replicas", 1)), 1)
    max_n = max(int(auto.get("max_replicas", min_n)), min_n)
    instance_type = dep.get("spec.target.instance_type") or DEFAULT_INSTANCE_TYPE
    variant = {
        "variant_name": aws_common.VARIANT,
        "model_name": model.name,
        "initial_instance_count": min_n,
        "instance_type": instance_type,
        "initial_variant_weight": 1,
    }
    config_args: dict = {"production_variants": [variant], "kms_key_arn": key_arn}
    if production_image != image.ref:
        shadow_model = model_of(f"{name}-shadow-model", image.ref, aws_guardrails.SHADOW_VARIANT)
        config_args["shadow_production_variants"] = [
            aws_guardrails.shadow_variant(dep, shadow_model.name, instance_type, min_n)
        ]
        outputs["shadow_image"] = image.ref
        outputs["shadow_sample_percent"] = float(
            dep.get("spec.target.rollout.shadow.sample_percent", 100)
        )
    sink = aws_common.capture_sink(dep)
    if sink:
        rate = float(dep.get("spec.monitoring.capture.sample_rate", 1.0))
        config_args["data_capture_config"] = {
            "enable_capture": True,
            "initial_sampling_percentage": round(rate * 100),
            "destination_s3_uri": sink,
            "kms_key_id": key_arn,
            "capture_options": [{"capture_mode": "Input"}, {"capture_mode": "Output"}],
            "capture_content_type_header": {"json_content_types": ["application/json"]},
        }
    endpoint_config = aws.sagemaker.EndpointConfiguration(
        f"{name}-config", region=region, tags=tags, **config_args
    )
    alarm_list = aws_common.alarms(dep, endpoint_name, region, tags)
    alarm_list += aws_guardrails.analysis_alarms(dep, endpoint_name, region, tags)
    aws_common.throughput_alarm(dep, endpoint_name, region, tags)
    endpoint = aws.sagemaker.Endpoint(
        endpoint_name,
        name=endpoint_name,
        endpoint_config_name=endpoint_config.name,
        deployment_config=deployment_config(dep, [a.name for a in alarm_list]),
        region=region,
        tags=tags,
    )
    if auto:
        resource_id = f"endpoint/{endpoint_name}/variant/{aws_common.VARIANT}"
        target = aws.appautoscaling.Target(
            f"{name}-scaling",
            service_namespace="sagemaker",
            resource_id=resource_id,
            scalable_dimension="sagemaker:variant:DesiredInstanceCount",
            min_capacity=min_n,
            max_capacity=max_n,
            region=region,
            tags=tags,
            opts=pulumi.ResourceOptions(depends_on=[endpoint]),
        )
        per_instance = int(
            auto.get("target_invocations_per_instance", DEFAULT_INVOCATIONS_PER_INSTANCE)
        )
        aws.appautoscaling.Policy(
            f"{name}-invocations",
            name=f"{endpoint_name}-invocations-per-instance",
            policy_type="TargetTrackingScaling",
            service_namespace="sagemaker",
            resource_id=resource_id,
            scalable_dimension="sagemaker:variant:DesiredInstanceCount",
            target_tracking_scaling_policy_configuration={
                "target_value": per_instance,
                "predefined_metric_specification": {
                    "predefined_metric_type": "SageMakerVariantInvocationsPerInstance"
                },
                "scale_in_cooldown": SCALE_IN_COOLDOWN_S,
                "scale_out_cooldown": SCALE_OUT_COOLDOWN_S,
            },
            region=region,
            opts=pulumi.ResourceOptions(depends_on=[target]),
        )
    jobs = aws_common.schedules(dep, name, image, role, key_arn, region, tags, job_context)
    return {
        "endpoint_name": endpoint_name,
        "region": region,
        "url": (
            f"https://runtime.sagemaker.{region}.amazonaws.com/endpoints/{endpoint_name}/invocations"
        ),
        "image": image.ref,
        "stable_image": production_image,
        "schedules": jobs,
        **outputs,
    }

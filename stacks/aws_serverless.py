"""SageMaker Serverless Inference stack (``spec.target.platform: aws-serverless``).

``program(dep, image, stable_image=None) -> dict`` (``stacks.common``): one serverless
variant; no SageMaker data capture there, so the Bento's service captures itself. The
resources and the feature exclusions: ``docs/engine.md``.
"""

from __future__ import annotations

import pulumi
import pulumi_aws as aws

from reconciler.spec.model import Deployment
from stacks import aws_common
from stacks.common import (
    ImageRef,
    JobContext,
    StackError,
    aws_tags,
    k8s_name,
    reject_fields,
    runtime_env,
)

DEFAULT_MEMORY_MB = 2048
DEFAULT_MAX_CONCURRENCY = 20


def program(
    dep: Deployment,
    image: ImageRef,
    stable_image: str | None = None,
    job_context: JobContext | None = None,
) -> dict:
    """Declare the SageMaker Serverless resources of ``dep`` (see the module docstring).

    Args:
        dep: resolved deployment with ``spec.target.platform: aws-serverless``.
        image: the model image (must be in Amazon ECR).
        stable_image: unused.

    Returns:
        Stack outputs: ``endpoint_name``, ``region``, ``url``, ``image``, ``schedules``,
        ``memory_mb``, ``max_concurrency``.

    Raises:
        StackError: no region, non-ECR image, capture sink not on S3, serving mode batch.
    """
    if dep.get("spec.serving.mode", "serverless") == "batch":
        raise StackError(
            "spec.serving.mode", "platform aws-serverless serves requests; batch needs kubernetes"
        )
    reject_fields(
        dep,
        {
            "spec.target.autoscaling": "serverless endpoints scale themselves up to "
            "target.serverless.max_concurrency",
            "spec.target.instance_type": "serverless endpoints have no instances; size them "
            "with target.serverless.memory_mb",
            "spec.target.rollout": "serverless endpoints do not support blue/green traffic "
            "shifting",
        },
    )
    region = aws_common.region_of(dep)
    name = dep.key
    tags = aws_tags(dep, image)
    key_arn = aws_common.kms_key(dep, name, region, tags)
    role = aws_common.execution_role(dep, name, image, key_arn, region, tags)
    env = runtime_env(dep, image)
    aws_common.capture_sink(dep)  # checks the sink is on S3
    env.update(aws_common.secret_env(dep))

    def container_env(key: str) -> dict:
        out = dict(env)
        if "MODELOPS_CAPTURE_SINK" in out:
            out["MODELOPS_CAPTURE_KMS_KEY"] = key
        return out

    model = aws.sagemaker.Model(
        f"{name}-model",
        execution_role_arn=role.arn,
        primary_container={
            "image": image.ref,
            "mode": "SingleModel",
            "environment": pulumi.Output.from_input(key_arn).apply(container_env),
        },
        region=region,
        tags=tags,
    )
    memory = int(dep.get("spec.target.serverless.memory_mb") or DEFAULT_MEMORY_MB)
    concurrency = int(dep.get("spec.target.serverless.max_concurrency") or DEFAULT_MAX_CONCURRENCY)
    endpoint_config = aws.sagemaker.EndpointConfiguration(
        f"{name}-config",
        production_variants=[
            {
                "variant_name": aws_common.VARIANT,
                "model_name": model.name,
                "serverless_config": {
                    "memory_size_in_mb": memory,
                    "max_concurrency": concurrency,
                },
            }
        ],
        region=region,
        tags=tags,
    )
    endpoint_name = k8s_name(name, "", 63)
    aws_common.alarms(dep, endpoint_name, region, tags)
    aws_common.throughput_alarm(dep, endpoint_name, region, tags)
    aws.sagemaker.Endpoint(
        endpoint_name,
        name=endpoint_name,
        endpoint_config_name=endpoint_config.name,
        region=region,
        tags=tags,
    )
    jobs = aws_common.schedules(dep, name, image, role, key_arn, region, tags, job_context)
    return {
        "endpoint_name": endpoint_name,
        "region": region,
        "url": (
            f"https://runtime.sagemaker.{region}.amazonaws.com/endpoints/{endpoint_name}/invocations"
        ),
        "image": image.ref,
        "schedules": jobs,
        "memory_mb": memory,
        "max_concurrency": concurrency,
    }

"""Pieces shared by the SageMaker stacks (``aws_sagemaker``, ``aws_serverless``).

The execution role and its least-privilege policy, CloudWatch alarms, the monitor and
retrain schedules; every resource sets ``region`` from ``spec.target.region``.
Details: ``docs/engine.md``.
"""

from __future__ import annotations

import json
import re

import pulumi
import pulumi_aws as aws

from reconciler.runtime.uris import S3Uri, parse_s3_uri
from reconciler.spec.model import Deployment
from stacks.common import (
    ImageRef,
    JobContext,
    StackError,
    is_secret_reference,
    job_commands,
    k8s_name,
    secret_source,
    to_aws_cron,
)

VARIANT = "AllTraffic"
ECR_HOST = re.compile(r"^(?P<account>\d{12})\.dkr\.ecr\.(?P<region>[a-z0-9-]+)\.amazonaws\.com/")
KMS_ARN = re.compile(r"^arn:aws[a-z-]*:kms:(?P<region>[a-z0-9-]+):(?P<account>\d{12}):key/.+$")
# Processing instance for the scheduled jobs (ml.m5.large: available to Processing in
# every commercial region).
JOB_INSTANCE_TYPE = "ml.m5.large"
JOB_VOLUME_GB = 30
JOB_TIMEOUT_S = 3600
JOB_NAME_PREFIX_CHARS = 22
# CloudWatch reports SageMaker ModelLatency in microseconds (SageMaker "Monitor with
# CloudWatch" metrics table); the SLO is in milliseconds.
MODEL_LATENCY_UNITS_PER_MS = 1000
ALARM_PERIOD_S = 60
ALARM_EVALUATION_PERIODS = 3
# The throughput floor fires after 10 quiet minutes, as the PrometheusRule on kubernetes.
THROUGHPUT_EVALUATION_PERIODS = 10
SCHEDULER_TARGET = "arn:aws:scheduler:::aws-sdk:sagemaker:createProcessingJob"


def region_of(dep: Deployment) -> str:
    """``spec.target.region``.

    Raises:
        StackError: no region (AWS targets need one).
    """
    region = dep.get("spec.target.region")
    if not region:
        raise StackError("spec.target.region", "AWS targets need a region, e.g. eu-west-1")
    return str(region)


def ecr_parts(image: ImageRef) -> tuple[str, str, str]:
    """``(account, region, repository)`` of an Amazon ECR image reference.

    Raises:
        StackError: the image is not in ECR (SageMaker pulls only from ECR).
    """
    m = ECR_HOST.match(image.ref)
    if not m:
        raise StackError(
            "spec.target.registry",
            f"SageMaker pulls images from Amazon ECR only; {image.ref!r} is not an ECR image "
            "(use <account>.dkr.ecr.<region>.amazonaws.com/<repository>)",
        )
    repo = image.ref[m.end() :].rsplit(":", 1)[0].split("@", 1)[0]
    return m.group("account"), m.group("region"), repo


def s3_uri(field: str, uri: str) -> S3Uri:
    """The parsed ``s3://`` URI of a spec field (``reconciler.runtime.uris.parse_s3_uri``).

    Raises:
        StackError: the URI is not a valid S3 URI (names ``field``).
    """
    try:
        return parse_s3_uri(uri)
    except ValueError as exc:
        raise StackError(field, str(exc)) from None


def kms_key(dep: Deployment, name: str, region: str, tags: dict):
    """The customer-managed KMS key ARN: the spec's ``encryption.kms_key_id`` or a new key.

    A new key has rotation on and a 30-day deletion window.
    """
    given = dep.get("spec.target.encryption.kms_key_id")
    if given:
        return str(given)
    key = aws.kms.Key(
        f"{name}-key",
        description=f"modelops {dep.key}: endpoint storage, data capture, schedules",
        enable_key_rotation=True,
        deletion_window_in_days=30,
        region=region,
        tags=tags,
    )
    return key.arn


def capture_sink(dep: Deployment) -> str | None:
    """The capture destination when capture is enabled, which must be ``s3://`` on AWS.

    Raises:
        StackError: capture enabled with a sink that is not ``s3://``.
    """
    capture = dep.get("spec.monitoring.capture") or {}
    if not capture or capture.get("enabled", True) is False or not capture.get("sink"):
        return None
    sink = str(capture["sink"])
    if not sink.startswith("s3://"):
        raise StackError(
            "spec.monitoring.capture.sink",
            f"{sink!r} is not an S3 URI; AWS targets capture to s3://<bucket>/<prefix>",
        )
    return sink


def _s3_statements(dep: Deployment, sink: str | None) -> list[dict]:
    out = []
    reads = []
    uri = dep.get("spec.model.uri")
    if isinstance(uri, str) and uri.startswith("s3://"):
        reads.append(s3_uri("spec.model.uri", uri))
    ref = dep.get("spec.monitoring.reference")
    if isinstance(ref, str) and ref.startswith("s3://"):
        reads.append(s3_uri("spec.monitoring.reference", ref))
    if sink:
        bucket, prefix = s3_uri("spec.monitoring.capture.sink", sink)
        obj = f"arn:aws:s3:::{bucket}/{prefix}/*" if prefix else f"arn:aws:s3:::{bucket}/*"
        out.append(
            {
                "Sid": "CaptureReadWrite",
                "Effect": "Allow",
                "Action": ["s3:PutObject", "s3:GetObject"],
                "Resource": [obj],
            }
        )
        out.append(
            {
                "Sid": "CaptureList",
                "Effect": "Allow",
                "Action": ["s3:ListBucket"],
                "Resource": [f"arn:aws:s3:::{bucket}"],
            }
        )
    if reads:
        out.append(
            {
                "Sid": "ModelAndReferenceRead",
                "Effect": "Allow",
                "Action": ["s3:GetObject"],
                "Resource": sorted({f"arn:aws:s3:::{b}/{p}*" for b, p in reads}),
            }
        )
    return out


def _secret_statements(dep: Deployment) -> list[dict]:
    sm, ssm = [], []
    for item in dep.get("spec.secrets") or []:
        src = item.get("from")
        if not is_secret_reference(src):
            continue  # never a resource of the policy: it may be the secret itself
        if src.startswith("aws-secretsmanager:"):
            sm.append(src.split(":", 1)[1])
        elif src.startswith("aws-ssm:"):
            ssm.append(src.split(":", 1)[1])
    out = []
    if sm:
        out.append(
            {
                "Sid": "SecretsRead",
                "Effect": "Allow",
                "Action": ["secretsmanager:GetSecretValue"],
                "Resource": sorted(sm),
            }
        )
    if ssm:
        out.append(
            {
                "Sid": "ParametersRead",
                "Effect": "Allow",
                "Action": ["ssm:GetParameter"],
                "Resource": sorted(ssm),
            }
        )
    return out


def secret_env(dep: Deployment) -> dict[str, str]:
    """Secret *references* for the container: ``MODELOPS_SECRET_<NAME>=<source>``.

    SageMaker has no secret injection, so the service resolves each reference at start
    with the execution role (which may read exactly these secrets); values never appear
    in the stack: a ``from`` that is not a secret-store reference (a pasted secret, which
    MDL-017 blocks at plan and apply) is written as
    :data:`stacks.common.NOT_A_SECRET_REFERENCE`.
    """
    return {
        f"MODELOPS_SECRET_{s['name']}": secret_source(s.get("from"))
        for s in dep.get("spec.secrets") or []
    }


def execution_role(dep: Deployment, name: str, image: ImageRef, key_arn, region: str, tags: dict):
    """The SageMaker execution role and its least-privilege policy (a RolePolicy).

    Trusted by ``sagemaker.amazonaws.com`` only. Allows pulling the model image from its
    ECR repository, the S3 reads/writes of :func:`_s3_statements`, KMS use of the
    deployment's key, CloudWatch Logs under ``/aws/sagemaker/``, and reading the
    spec's secrets.
    """
    account, ecr_region, repo = ecr_parts(image)
    sink = capture_sink(dep)
    trust = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"Service": "sagemaker.amazonaws.com"},
                "Action": "sts:AssumeRole",
                "Condition": {"StringEquals": {"aws:SourceAccount": account}},
            }
        ],
    }

    def policy(key: str) -> str:
        statements = [
            {
                "Sid": "EcrAuth",
                "Effect": "Allow",
                "Action": ["ecr:GetAuthorizationToken"],
                "Resource": "*",
            },
            {
                "Sid": "EcrPull",
                "Effect": "Allow",
                "Action": [
                    "ecr:BatchCheckLayerAvailability",
                    "ecr:BatchGetImage",
                    "ecr:GetDownloadUrlForLayer",
                ],
                "Resource": [f"arn:aws:ecr:{ecr_region}:{account}:repository/{repo}"],
            },
            {
                "Sid": "Logs",
                "Effect": "Allow",
                "Action": ["logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents"],
                "Resource": [f"arn:aws:logs:{region}:{account}:log-group:/aws/sagemaker/*"],
            },
            {
                "Sid": "Kms",
                "Effect": "Allow",
                "Action": [
                    "kms:Decrypt",
                    "kms:Encrypt",
                    "kms:GenerateDataKey*",
                    "kms:DescribeKey",
                    "kms:CreateGrant",
                ],
                "Resource": [key],
            },
            *_s3_statements(dep, sink),
            *_secret_statements(dep),
        ]
        return json.dumps({"Version": "2012-10-17", "Statement": statements}, sort_keys=True)

    role = aws.iam.Role(
        f"{name}-sagemaker",
        name=k8s_name(name, "sagemaker", 64),
        description=f"SageMaker execution role of modelops deployment {dep.key}",
        assume_role_policy=json.dumps(trust, sort_keys=True),
        tags=tags,
    )
    # A separate RolePolicy: Role.inline_policies is deprecated in pulumi-aws 7.
    aws.iam.RolePolicy(
        f"{name}-sagemaker",
        name="modelops-least-privilege",
        role=role.name,
        policy=pulumi.Output.from_input(key_arn).apply(policy),
    )
    return role


def alarms(dep: Deployment, endpoint_name: str, region: str, tags: dict, opts=None) -> list:
    """CloudWatch alarms that roll a deployment back; returns the alarm resources.

    * ``<endpoint>-p99-latency``: p99 ``ModelLatency`` above ``serving.slo.p99_latency_ms``
      (threshold in microseconds = ms × 1000) for 3 of 3 one-minute periods; only when
      the spec has that SLO.
    * ``<endpoint>-5xx-rate`` when the spec sets ``serving.slo.max_error_rate``: the share
      ``Invocation5XXErrors / Invocations`` (metric math; 0 in a minute without requests)
      above it for 3 of 3 one-minute periods.
    * ``<endpoint>-5xx`` otherwise: ``Invocation5XXErrors`` sum above 0 in a one-minute
      period.

    The minimum-throughput alarm is :func:`throughput_alarm`: little traffic is no reason
    to roll back.
    """
    dims = {"EndpointName": endpoint_name, "VariantName": VARIANT}
    out = []
    slo = dep.get("spec.serving.slo.p99_latency_ms")
    if slo:
        out.append(
            aws.cloudwatch.MetricAlarm(
                f"{endpoint_name}-p99-latency",
                name=f"{endpoint_name}-p99-latency",
                alarm_description=(
                    f"p99 model latency of {dep.key} above its SLO of {slo} ms "
                    "(ModelLatency is in microseconds)"
                ),
                namespace="AWS/SageMaker",
                metric_name="ModelLatency",
                extended_statistic="p99",
                dimensions=dims,
                period=ALARM_PERIOD_S,
                evaluation_periods=ALARM_EVALUATION_PERIODS,
                threshold=float(slo) * MODEL_LATENCY_UNITS_PER_MS,
                comparison_operator="GreaterThanThreshold",
                treat_missing_data="notBreaching",
                region=region,
                tags=tags,
                opts=opts,
            )
        )
    max_error_rate = dep.get("spec.serving.slo.max_error_rate")
    if max_error_rate is not None:
        out.append(
            aws.cloudwatch.MetricAlarm(
                f"{endpoint_name}-5xx-rate",
                name=f"{endpoint_name}-5xx-rate",
                alarm_description=(
                    f"share of {dep.key}'s requests answered 5xx above its SLO of "
                    f"{float(max_error_rate):.2%}"
                ),
                metric_queries=error_share_queries(dims, ALARM_PERIOD_S),
                evaluation_periods=ALARM_EVALUATION_PERIODS,
                threshold=float(max_error_rate),
                comparison_operator="GreaterThanThreshold",
                treat_missing_data="notBreaching",
                region=region,
                tags=tags,
                opts=opts,
            )
        )
    else:
        out.append(
            aws.cloudwatch.MetricAlarm(
                f"{endpoint_name}-5xx",
                name=f"{endpoint_name}-5xx",
                alarm_description=f"5xx errors from {dep.key}",
                namespace="AWS/SageMaker",
                metric_name="Invocation5XXErrors",
                statistic="Sum",
                dimensions=dims,
                period=ALARM_PERIOD_S,
                evaluation_periods=1,
                threshold=0,
                comparison_operator="GreaterThanThreshold",
                treat_missing_data="notBreaching",
                region=region,
                tags=tags,
                opts=opts,
            )
        )
    return out


def throughput_alarm(dep: Deployment, endpoint_name: str, region: str, tags: dict, opts=None):
    """``<endpoint>-min-throughput``: fewer ``Invocations`` per one-minute period than
    ``serving.slo.min_throughput_rps`` × 60 for :data:`THROUGHPUT_EVALUATION_PERIODS`
    periods; ``None`` when the spec sets no minimum.

    SageMaker publishes no ``Invocations`` data point for a minute without requests, so
    missing data counts as breaching (no traffic is below any minimum).
    """
    rps = dep.get("spec.serving.slo.min_throughput_rps")
    if rps is None:
        return None
    return aws.cloudwatch.MetricAlarm(
        f"{endpoint_name}-min-throughput",
        name=f"{endpoint_name}-min-throughput",
        alarm_description=f"{dep.key} served fewer than {float(rps):g} requests per second",
        namespace="AWS/SageMaker",
        metric_name="Invocations",
        statistic="Sum",
        dimensions={"EndpointName": endpoint_name, "VariantName": VARIANT},
        period=ALARM_PERIOD_S,
        evaluation_periods=THROUGHPUT_EVALUATION_PERIODS,
        threshold=float(rps) * ALARM_PERIOD_S,
        comparison_operator="LessThanThreshold",
        treat_missing_data="breaching",
        region=region,
        tags=tags,
        opts=opts,
    )


#: The job's entrypoint prefix with a spec repository: check it out at the applied
#: revision, then run the job in it (``reconciler/state/checkout.py``).
CHECKOUT_ENTRYPOINT = ["python", "-m", "reconciler.state.checkout"]


def _context_env(context: JobContext | None) -> dict[str, str]:
    """The scheduled job's environment from its :class:`JobContext` (set values only;
    the Git token as its Secrets Manager *reference*)."""
    if context is None:
        return {}
    env = {
        "MODELOPS_STATE_URL": context.state_url,
        "MODELOPS_SPEC_REPOSITORY": context.repository,
    }
    if context.repository:
        env["MODELOPS_GIT_TOKEN_SECRET"] = context.aws_credentials
    return {k: v for k, v in env.items() if v}


def _token_policy(context: JobContext) -> str:
    """The execution role's policy to read the jobs' Git token secret, and nothing else."""
    arn = context.aws_credentials.split(":", 1)[1]
    return json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Sid": "GitTokenRead",
                    "Effect": "Allow",
                    "Action": ["secretsmanager:GetSecretValue"],
                    "Resource": [arn],
                }
            ],
        },
        sort_keys=True,
    )


def schedules(
    dep: Deployment,
    name: str,
    image: ImageRef,
    role,
    key_arn,
    region: str,
    tags: dict,
    context: JobContext | None = None,
) -> dict:
    """EventBridge Scheduler schedules for the monitor and retrain jobs.

    ``context`` (the shared state URL, the spec repository, the Git token's Secrets Manager
    reference) becomes the job's environment (``MODELOPS_STATE_URL``,
    ``MODELOPS_SPEC_REPOSITORY``, ``MODELOPS_GIT_TOKEN_SECRET``); credentials come from the
    execution role, never values. With a repository the job's entrypoint is
    :data:`CHECKOUT_ENTRYPOINT` followed by the ``modelops`` argv: it checks the spec
    repository out at the deployment's applied revision (read from the shared state)
    and runs the job there, as the Kubernetes CronJobs' init containers do; with a token
    reference the execution role also gets ``secretsmanager:GetSecretValue`` on exactly
    that secret.

    Each fires on the spec's cron (converted to EventBridge's six-field form, UTC) and
    starts a SageMaker Processing job in the model image whose entrypoint is the
    ``modelops`` argv; the job name carries the schedule's execution id so every run is
    unique. The scheduler's own role may only create those jobs and pass the execution
    role to SageMaker.

    Returns:
        ``{"monitor"|"retrain": schedule name}``.

    Raises:
        StackError: a schedule EventBridge cannot express (both day fields restricted).
    """
    jobs = job_commands(dep)
    if not jobs:
        return {}
    account, _, _ = ecr_parts(image)
    # Job names: at most 63 characters = prefix + "-mon-" + execution id (≤ 36).
    prefix = k8s_name(name, "", JOB_NAME_PREFIX_CHARS)
    trust = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"Service": "scheduler.amazonaws.com"},
                "Action": "sts:AssumeRole",
                "Condition": {"StringEquals": {"aws:SourceAccount": account}},
            }
        ],
    }

    def scheduler_policy(role_arn: str) -> str:
        return json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [
                    {
                        "Sid": "StartJobs",
                        "Effect": "Allow",
                        "Action": ["sagemaker:CreateProcessingJob", "sagemaker:AddTags"],
                        "Resource": [
                            f"arn:aws:sagemaker:{region}:{account}:processing-job/{prefix}-*"
                        ],
                    },
                    {
                        "Sid": "PassExecutionRole",
                        "Effect": "Allow",
                        "Action": ["iam:PassRole"],
                        "Resource": [role_arn],
                        "Condition": {
                            "StringEquals": {"iam:PassedToService": "sagemaker.amazonaws.com"}
                        },
                    },
                ],
            },
            sort_keys=True,
        )

    scheduler_role = aws.iam.Role(
        f"{name}-scheduler",
        name=k8s_name(name, "scheduler", 64),
        description=f"EventBridge Scheduler role of modelops deployment {dep.key}",
        assume_role_policy=json.dumps(trust, sort_keys=True),
        tags=tags,
    )
    aws.iam.RolePolicy(
        f"{name}-scheduler",
        name="modelops-start-jobs",
        role=scheduler_role.name,
        policy=role.arn.apply(scheduler_policy),
    )
    if context is not None and context.repository and context.aws_credentials:
        aws.iam.RolePolicy(
            f"{name}-git-token",
            name="modelops-git-token",
            role=role.name,
            policy=_token_policy(context),
        )
    out = {}
    timeout = int(dep.get("spec.retraining.timeout_s") or JOB_TIMEOUT_S)
    for kind, (cron, argv) in sorted(job_commands(dep).items()):
        path = "spec.monitoring.schedule" if kind == "monitor" else "spec.retraining.schedule"
        try:
            expression = to_aws_cron(cron)
        except ValueError as exc:
            raise StackError(path, str(exc)) from None

        checkout = context is not None and bool(context.repository)
        entry = [*CHECKOUT_ENTRYPOINT, *argv] if checkout else argv

        def job_input(values, kind=kind, entry=entry) -> str:
            role_arn, key = values
            return json.dumps(
                {
                    "ProcessingJobName": f"{prefix}-{kind[:3]}-<aws.scheduler.execution-id>",
                    "RoleArn": role_arn,
                    "AppSpecification": {"ImageUri": image.ref, "ContainerEntrypoint": entry},
                    "ProcessingResources": {
                        "ClusterConfig": {
                            "InstanceCount": 1,
                            "InstanceType": JOB_INSTANCE_TYPE,
                            "VolumeSizeInGB": JOB_VOLUME_GB,
                            "VolumeKmsKeyId": key,
                        }
                    },
                    "StoppingCondition": {
                        "MaxRuntimeInSeconds": timeout if kind == "retrain" else JOB_TIMEOUT_S
                    },
                    "Environment": {
                        "MODELOPS_DEPLOYMENT": dep.name,
                        "MODELOPS_ENVIRONMENT": dep.env,
                        **_context_env(context),
                    },
                },
                sort_keys=True,
            )

        schedule_name = k8s_name(name, kind, 64)
        aws.scheduler.Schedule(
            schedule_name,
            name=schedule_name,
            description=f"modelops {kind} job of {dep.key}: {' '.join(argv)}",
            schedule_expression=expression,
            schedule_expression_timezone="Etc/UTC",
            flexible_time_window={"mode": "OFF"},
            kms_key_arn=key_arn,
            target={
                "arn": SCHEDULER_TARGET,
                "role_arn": scheduler_role.arn,
                "input": pulumi.Output.all(role.arn, key_arn).apply(job_input),
                "retry_policy": {"maximum_retry_attempts": 2, "maximum_event_age_in_seconds": 3600},
            },
            region=region,
        )
        out[kind] = schedule_name
    return out


def error_share_queries(dims: dict, period_s: int) -> list[dict]:
    """CloudWatch metric-math queries for the share of an endpoint variant's requests
    answered 5xx (``Invocation5XXErrors / Invocations`` summed over ``period_s`` seconds,
    0 when there were no requests); the alarm compares the ``error_rate`` query. Used by
    the SLO alarm and the rollout-analysis alarm (``stacks/aws_guardrails.py``)."""

    def metric(query_id: str, metric_name: str) -> dict:
        return {
            "id": query_id,
            "metric": {
                "namespace": "AWS/SageMaker",
                "metric_name": metric_name,
                "dimensions": dims,
                "period": period_s,
                "stat": "Sum",
            },
            "return_data": False,
        }

    return [
        metric("errors", "Invocation5XXErrors"),
        metric("invocations", "Invocations"),
        {
            "id": "error_rate",
            "expression": "IF(invocations > 0, errors / invocations, 0)",
            "label": "5xx share of requests",
            "return_data": True,
        },
    ]

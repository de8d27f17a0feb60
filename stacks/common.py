"""Helpers shared by the Pulumi programs in ``stacks/``.

Every program is ``program(dep, image, stable_image=None) -> dict`` (stack outputs),
run under Pulumi's mocks by the offline renderer and as the Automation API's inline
program; a spec value it cannot turn into infrastructure raises :class:`StackError`
with the spec path. Details: ``docs/engine.md``.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

from reconciler.spec.model import Deployment

MANAGED_BY = "modelops"
PLACEHOLDER_TAG = "unbuilt"
# The health endpoints every BentoML 1.4 server exposes (bentoml/_internal/server/base_app.py).
LIVENESS_PATH = "/livez"
READINESS_PATH = "/readyz"
DEFAULT_PORT = 3000  # `bentoml serve` default port
# BentoML 1.4's request metrics on a server's /metrics (Prometheus text format), written by
# bentoml/_internal/server/http/instruments.py (RunnerTrafficMetricsMiddleware) under the
# namespace `api_server.metrics.namespace` (default "bentoml_service"). Labels: endpoint,
# service_name, service_version, http_response_code, runner_name. /metrics itself is not
# counted, but the health endpoints are (measured on a served Bento): the kubelet's probes
# would otherwise count as traffic, so every SLO figure leaves HEALTH_PATHS out.
METRICS_PATH = "/metrics"
REQUEST_DURATION_METRIC = "bentoml_service_request_duration_seconds"  # histogram, seconds
REQUEST_TOTAL_METRIC = "bentoml_service_request_total"  # counter
STATUS_LABEL = "http_response_code"
ENDPOINT_LABEL = "endpoint"
HEALTH_PATHS = (LIVENESS_PATH, READINESS_PATH, "/healthz")
# `bentoml containerize` images run as user bentoml, uid/gid 1034
# (bentoml/_internal/container/generate.py: BENTO_UID_GID).
BENTO_UID = 1034


# The secret-store reference forms a spec may put in ``spec.secrets[].from``: the defaults
# of ``secret_reference_patterns`` in policies/organization.yaml (policy MDL-017), kept
# equal by tests/test_render_secrets.py. Kept here rather than read from the organisation
# file so that a render stays a pure function of its cached inputs (reconciler.engine.render).
SECRET_REFERENCE_PATTERNS = (
    r"^aws-secretsmanager:arn:aws:secretsmanager:[a-z0-9-]+:[0-9]{12}:secret:[A-Za-z0-9/_+=.@-]+$",
    r"^aws-ssm:/?[A-Za-z0-9/_.-]+$",
    r"^k8s:[a-z0-9]([-a-z0-9]*[a-z0-9])?/[A-Za-z0-9_.-]+$",
    r"^vault:[A-Za-z0-9/_.-]+#[A-Za-z0-9_.-]+$",
)
_SECRET_REFERENCES = tuple(re.compile(p) for p in SECRET_REFERENCE_PATTERNS)
NOT_A_SECRET_REFERENCE = "<not a secret reference: redacted>"


def is_secret_reference(value: object) -> bool:
    """Whether ``value`` is a string of one of :data:`SECRET_REFERENCE_PATTERNS` (whole
    string, as Rego's ``regex.match`` with ``^…$``: a trailing newline does not match)."""
    return isinstance(value, str) and any(p.fullmatch(value) for p in _SECRET_REFERENCES)


def secret_source(value: object) -> str:
    """What a stack may write for a ``spec.secrets[].from`` value (annotation, environment
    variable, policy resource): the value when it is a secret-store reference, else
    :data:`NOT_A_SECRET_REFERENCE`.

    A ``from`` that is not a reference is most likely the secret itself pasted into the
    spec; policy MDL-017 blocks plan and apply, and this keeps it out of ``render`` output
    and its files too.
    """
    return value if is_secret_reference(value) else NOT_A_SECRET_REFERENCE


class StackError(Exception):
    """A spec value the stack cannot render.

    Args:
        path: dotted path of the offending field in the resolved deployment
            (``spec.monitoring.capture.sink``).
        message: what is wrong and what would be valid.
    """

    def __init__(self, path: str, message: str) -> None:
        super().__init__(f"{path}: {message}")
        self.path = path
        self.message = message


@dataclass(frozen=True)
class ImageRef:
    """The container image a stack runs.

    Attributes:
        ref: full image reference (``registry.example.com/ml/fraud-detector:abc123``).
        built: whether the image was built and pushed (False: derived, placeholder tag).
        bento_tag: the BentoML tag (``fraud-detector:abc123``) or '' when not built.
        digest: build-input digest of the Bento ('' when not built).
    """

    ref: str
    built: bool
    bento_tag: str = ""
    digest: str = ""

    @property
    def tag(self) -> str:
        """The tag part of :attr:`ref` (after the last ``:`` of the last path segment)."""
        last = self.ref.rsplit("/", 1)[-1]
        return last.split(":", 1)[1] if ":" in last else "latest"

    def to_dict(self) -> dict:
        """JSON-ready mapping: ref, built, bento_tag, digest."""
        return {
            "ref": self.ref,
            "built": self.built,
            "bento_tag": self.bento_tag,
            "digest": self.digest,
        }


def image_ref(dep: Deployment, artifact=None) -> ImageRef:
    """The image of ``dep``: the spec's explicit ``target.image``, the artifact's, or derived.

    Args:
        dep: the resolved deployment.
        artifact: a ``reconciler.build.artifact.Artifact`` or ``None``. Without one the
            reference is ``<registry>/<name>:unbuilt`` and marked not built.

    Returns:
        An :class:`ImageRef`.
    """
    explicit = dep.get("spec.target.image")
    if isinstance(explicit, str) and explicit:
        tag = artifact.bento_tag if artifact is not None else ""
        return ImageRef(explicit, True, tag, artifact.digest if artifact is not None else "")
    registry = str(dep.get("spec.target.registry", "") or "").rstrip("/")
    if artifact is not None:
        ref = artifact.image
        if not ref:
            version = artifact.bento_tag.split(":", 1)[1] if ":" in artifact.bento_tag else "latest"
            ref = f"{registry}/{dep.name}:{version}" if registry else f"{dep.name}:{version}"
        return ImageRef(ref, bool(artifact.image_built), artifact.bento_tag, artifact.digest)
    ref = (
        f"{registry}/{dep.name}:{PLACEHOLDER_TAG}" if registry else f"{dep.name}:{PLACEHOLDER_TAG}"
    )
    return ImageRef(ref, False)


def short_hash(text: str, n: int = 6) -> str:
    """First ``n`` hex digits of the SHA-256 of ``text`` (for name suffixes)."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:n]


def k8s_name(base: str, suffix: str = "", limit: int = 63) -> str:
    """A DNS-1123 label ``<base>-<suffix>`` of at most ``limit`` characters.

    When too long, ``base`` is cut and a 6-hex-digit hash of the full name is added so
    names stay unique and stable. Limits: 63 for labels and Services, 52 for CronJobs
    (the controller appends an 11-character suffix to Job names).
    """
    full = f"{base}-{suffix}" if suffix else base
    if len(full) <= limit:
        return full
    digest = short_hash(full)
    keep = limit - len(digest) - 1 - (len(suffix) + 1 if suffix else 0)
    head = base[:keep].rstrip("-")
    return f"{head}-{digest}-{suffix}" if suffix else f"{head}-{digest}"


_LABEL_VALUE = re.compile(r"[^A-Za-z0-9_.-]")


def label_value(value: str) -> str:
    """``value`` made a valid Kubernetes label value (≤63 chars, alphanumeric at both ends)."""
    cleaned = _LABEL_VALUE.sub("-", value)[:63]
    return cleaned.strip("-_.")


def version_of(dep: Deployment, image: ImageRef) -> str:
    """The deployment's version label: ``model.version``, else the image tag."""
    version = dep.get("spec.model.version")
    return label_value(str(version)) if version else label_value(image.tag)


def spec_labels(dep: Deployment) -> dict[str, str]:
    """The spec's ``metadata.labels`` plus team and environment (``modelops.dev/...``)."""
    labels = {str(k): str(v) for k, v in (dep.get("metadata.labels") or {}).items()}
    labels["modelops.dev/team"] = str(dep.get("metadata.team", ""))
    labels["modelops.dev/environment"] = dep.env
    return labels


def recommended_labels(dep: Deployment, image: ImageRef, component: str) -> dict[str, str]:
    """Kubernetes recommended labels plus the spec's team and cost-center.

    ``app.kubernetes.io/name`` (deployment name), ``instance`` (``<name>-<env>``),
    ``version``, ``component``, ``part-of`` and ``managed-by: modelops``, over the
    spec's own labels (see https://kubernetes.io/docs/concepts/overview/working-with-objects/common-labels/).
    """
    labels = spec_labels(dep)
    labels.update(
        {
            "app.kubernetes.io/name": dep.name,
            "app.kubernetes.io/instance": label_value(dep.key),
            "app.kubernetes.io/version": version_of(dep, image),
            "app.kubernetes.io/component": component,
            "app.kubernetes.io/part-of": "modelops",
            "app.kubernetes.io/managed-by": MANAGED_BY,
        }
    )
    return labels


def aws_tags(dep: Deployment, image: ImageRef) -> dict[str, str]:
    """AWS resource tags: the spec's labels, team, owner, environment, managed-by."""
    tags = {str(k): str(v) for k, v in (dep.get("metadata.labels") or {}).items()}
    tags.update(
        {
            "modelops:deployment": dep.name,
            "modelops:environment": dep.env,
            "modelops:team": str(dep.get("metadata.team", "")),
            "modelops:owner": str(dep.get("metadata.owner", "")),
            "modelops:version": version_of(dep, image),
            "managed-by": MANAGED_BY,
        }
    )
    return tags


def job_commands(dep: Deployment) -> dict[str, tuple[str, list[str]]]:
    """Scheduled jobs of a deployment: ``{"monitor"|"retrain": (cron, argv)}``.

    ``monitor`` runs ``modelops monitor run <name> --env <env>`` on
    ``spec.monitoring.schedule`` (unless ``monitoring.enabled`` is false); ``retrain``
    runs ``modelops retrain <name> --env <env>`` on ``spec.retraining.schedule``. Both
    run in the model image. Commands are argv lists, never shell strings.
    """
    jobs: dict[str, tuple[str, list[str]]] = {}
    mon = dep.get("spec.monitoring.schedule")
    if mon and dep.get("spec.monitoring.enabled", True) is not False:
        jobs["monitor"] = (mon, ["modelops", "monitor", "run", dep.name, "--env", dep.env])
    ret = dep.get("spec.retraining.schedule")
    if ret:
        jobs["retrain"] = (ret, ["modelops", "retrain", dep.name, "--env", dep.env])
    return jobs


#: The image of the Kubernetes jobs' checkout init container: Alpine's git, pinned (a
#: shell and git, nothing else). ``modelops.yaml`` ``jobs.git_image`` overrides it.
DEFAULT_GIT_IMAGE = "alpine/git:2.47.2"


@dataclass(frozen=True)
class JobContext:
    """What a scheduled job needs beyond the spec to run where it is rendered.

    Attributes:
        repository: the spec repository's clone URL (``https://…`` or ``git@…``), without
            credentials; ``""`` when unknown (the job then gets no checkout, and
            ``validate`` warns).
        credentials: ``k8s:<secret>/<key>`` holding a token (HTTPS URLs) or a deploy key
            (SSH URLs), or ``""`` for a public repository. Only the reference is rendered.
        aws_credentials: ``aws-secretsmanager:<secret ARN>`` holding a token, for the jobs
            EventBridge starts on AWS (HTTPS URLs), or ``""``. Only the reference is
            rendered; the job reads the value with its execution role when it starts.
        state_url: the shared state (``s3://bucket/prefix``) the job reads and records in.
        git_image: the checkout init container's image.
    """

    repository: str = ""
    credentials: str = ""
    state_url: str = ""
    git_image: str = DEFAULT_GIT_IMAGE
    aws_credentials: str = ""

    def to_dict(self) -> dict[str, str]:
        """JSON form (part of the render cache key)."""
        return {
            "repository": self.repository,
            "credentials": self.credentials,
            "state_url": self.state_url,
            "git_image": self.git_image,
            "aws_credentials": self.aws_credentials,
        }

    @property
    def ssh(self) -> bool:
        """Whether the repository is reached over SSH (a deploy key, not a token)."""
        return self.repository.startswith(("git@", "ssh://"))


def runtime_env(dep: Deployment, image: ImageRef) -> dict[str, str]:
    """Plain (non-secret) environment variables for the serving container.

    Identifies the deployment to the Bento's service and passes the capture settings
    (``MODELOPS_CAPTURE_SINK``, ``MODELOPS_CAPTURE_SAMPLE_RATE`` as a 0..1 fraction)
    when capture is enabled.
    """
    env = {
        "MODELOPS_DEPLOYMENT": dep.name,
        "MODELOPS_ENVIRONMENT": dep.env,
        "BENTOML_DO_NOT_TRACK": "True",
    }
    capture = dep.get("spec.monitoring.capture") or {}
    if capture.get("enabled", bool(capture)) and capture.get("sink"):
        env["MODELOPS_CAPTURE_SINK"] = str(capture["sink"])
        env["MODELOPS_CAPTURE_SAMPLE_RATE"] = str(capture.get("sample_rate", 1.0))
    return env


def reject_fields(dep: Deployment, fields: dict[str, str]) -> None:
    """Refuse spec fields a platform cannot honour, rather than ignore them silently.

    Args:
        dep: the resolved deployment.
        fields: dotted spec path → why the platform does not use it.

    Raises:
        StackError: the first of ``fields`` that the deployment sets.
    """
    for path, why in fields.items():
        if dep.get(path) is not None:
            raise StackError(path, f"not used on platform {dep.platform}: {why}")


def canary_weight(dep: Deployment) -> int:
    """The current canary traffic weight in percent (100 when not a canary rollout).

    From ``spec.target.rollout``: ``steps[step]`` (step defaults to 0) when the strategy
    is ``canary``.
    """
    rollout = dep.get("spec.target.rollout") or {}
    if rollout.get("strategy") != "canary":
        return 100
    steps = rollout.get("steps") or [100]
    step = int(rollout.get("step", 0) or 0)
    return int(steps[min(step, len(steps) - 1)])


_DOW_NAMES = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"]


def _dow_to_aws(field: str) -> str:
    def conv(part: str) -> str:
        base, _, step = part.partition("/")
        base = re.sub(r"\d+", lambda m: _DOW_NAMES[int(m.group()) % 7], base)
        return f"{base}/{step}" if step else base

    return ",".join(conv(p) for p in field.split(","))


def to_aws_cron(expr: str) -> str:
    """A five-field Unix cron expression as an EventBridge ``cron(...)`` expression.

    EventBridge uses six fields (minute hour day-of-month month day-of-week year),
    needs ``?`` in one of day-of-month / day-of-week, and numbers weekdays 1-7 from
    Sunday; weekday numbers are therefore written as names (``MON``). Example:
    ``"0 3 * * 0"`` → ``"cron(0 3 ? * SUN *)"``.

    Raises:
        ValueError: both day-of-month and day-of-week are restricted (EventBridge
            cannot express that), or the expression does not have five fields.
    """
    parts = expr.split()
    if len(parts) != 5:
        raise ValueError(f"{expr!r} is not a five-field cron expression")
    minute, hour, dom, month, dow = parts
    if dow == "*":
        dow = "?"
    elif dom == "*":
        dom = "?"
        dow = _dow_to_aws(dow)
    else:
        raise ValueError(
            f"{expr!r} restricts both day-of-month and day-of-week, which EventBridge "
            "Scheduler cannot express; restrict only one of them"
        )
    return f"cron({minute} {hour} {dom} {month} {dow} *)"

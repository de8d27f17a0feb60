"""Monthly cost estimates of rendered deployments, offline (``docs/cost.md``).

:func:`estimate` prices one :class:`~reconciler.engine.render.DesiredState` (one
deployment × environment) for a month of :data:`HOURS_PER_MONTH` hours, from

* the price snapshot shipped in ``reconciler/engine/prices/aws.json`` (:func:`load_prices`:
  SageMaker hosting, Processing and Serverless, CloudWatch alarms, EventBridge Scheduler,
  KMS keys, S3; per region; with its publication date), and
* the Kubernetes rates of ``modelops.yaml`` (``kubernetes_rates``: USD per vCPU-hour,
  per GiB-hour and per GPU-hour of *requests*, as OpenCost's custom pricing does;
  defaults :data:`~reconciler.core.config.DEFAULT_KUBERNETES_RATES`).

Every figure is a range: ``expected`` (minimum replicas or instances, jobs at their
expected run time) and ``max`` (maximum replicas or instances, jobs at their deadline).
Every :class:`CostLine` says what it priced and at which rate. A price that is not known
(an instance type or region missing from the snapshot, a GPU without a rate, a usage
figure that is negative or not a number) raises :class:`CostError` naming the spec
field and what is known: never a silent zero.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

from reconciler.core.config import DEFAULT_KUBERNETES_RATES
from reconciler.core.diagnostics import EXIT_FINDINGS, EXIT_USAGE, ModelopsError
from reconciler.engine.render import DesiredState
from reconciler.spec import cron
from reconciler.spec.validate import parse_quantity

#: Hours in the month every estimate covers (365 × 24 / 12 = 730, as AWS and Infracost use).
HOURS_PER_MONTH = 730
#: Days in that month (730 / 24).
DAYS_PER_MONTH = HOURS_PER_MONTH / 24
PRICES_FILE = Path(__file__).parent / "prices" / "aws.json"
CURRENCY = "USD"
#: Serverless usage assumed when a spec gives no ``spec.cost.usage`` (stated on the line).
DEFAULT_USAGE = {"requests_per_month": 1_000_000, "mean_duration_ms": 100}
#: Expected run time of a scheduled job, seconds, when it has no deadline shorter than it
#: (the ceiling is the deadline: ``activeDeadlineSeconds`` / ``MaxRuntimeInSeconds``).
DEFAULT_JOB_RUN_S = 600
#: Price sections every region of the snapshot must have, and the keys each holds
#: (``None``: a mapping from instance type to USD per instance-hour).
SECTIONS: dict[str, tuple[str, ...] | None] = {
    "sagemaker_hosting": None,
    "sagemaker_processing": None,
    "sagemaker_serverless": ("gb_second", "request"),
    "cloudwatch_alarm": ("standard_month", "high_resolution_month"),
    "eventbridge_scheduler": ("invocation",),
    "kms_key": ("key_month",),
    "s3": ("storage_gb_month", "put_request"),
}
INSTANCE_TYPE = re.compile(r"^ml\.[a-z0-9]+\.[a-z0-9]+$")
_GIB = 2**30
_GPU_KEYS = ("nvidia.com/gpu", "amd.com/gpu")


class PriceSnapshotError(ModelopsError):
    """The price snapshot is malformed (exit 2); the message names the key."""

    def __init__(self, message: str) -> None:
        super().__init__(message, EXIT_USAGE)


class CostError(ModelopsError):
    """A price that is not known (exit 1: a finding about the spec).

    Attributes:
        path: the spec field it concerns (``spec.target.instance_type``), for
            ``Deployment.locate``.
    """

    def __init__(self, path: str, message: str) -> None:
        super().__init__(message, EXIT_FINDINGS)
        self.path = path


@dataclass(frozen=True)
class Prices:
    """The price snapshot.

    Attributes:
        publication_date: ISO date the figures are as of (printed with every figure).
        source: where the figures come from.
        currency: ``USD``.
        regions: ``{region: {section: {key: USD}}}`` (:data:`SECTIONS`); hosting and
            processing sections map instance types to USD per instance-hour.
    """

    publication_date: str
    source: str
    currency: str
    regions: dict

    def region(self, region: str, path: str) -> dict:
        """The price sections of ``region``.

        Raises:
            CostError: the snapshot has no prices for it (names ``path`` and the regions
                it has).
        """
        found = self.regions.get(region)
        if found is None:
            raise CostError(
                path,
                f"no prices for region {region!r} in the price snapshot of "
                f"{self.publication_date}; regions priced: {', '.join(sorted(self.regions))}",
            )
        return found

    def instance_hour(self, region: str, section: str, instance_type: str, path: str) -> float:
        """USD per instance-hour of ``instance_type`` in ``region`` (``sagemaker_hosting``
        or ``sagemaker_processing``).

        Raises:
            CostError: region or instance type not in the snapshot.
        """
        table = self.region(region, "spec.target.region")[section]
        if instance_type not in table:
            raise CostError(
                path,
                f"no {section.replace('_', ' ')} price for instance type {instance_type!r} "
                f"in {region} (price snapshot of {self.publication_date}); priced types: "
                f"{', '.join(sorted(table))}",
            )
        return table[instance_type]


def _number(value, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise PriceSnapshotError(f"price snapshot: {where}: expected a number, got {value!r}")
    if value < 0:
        raise PriceSnapshotError(f"price snapshot: {where}: a price cannot be negative ({value})")
    return float(value)


def parse_prices(doc: object, name: str = "aws.json") -> Prices:
    """Check a price snapshot document and return it as :class:`Prices`.

    Raises:
        PriceSnapshotError: (exit 2) a missing or wrong-typed key, a date that is not ISO,
            an instance type that is not ``ml.<family>.<size>``, a price that is not a
            finite non-negative number; the message names the key.
    """
    if not isinstance(doc, dict):
        raise PriceSnapshotError(f"price snapshot {name}: expected a JSON object")
    if doc.get("schema_version") != 1:
        raise PriceSnapshotError(
            f"price snapshot {name}: schema_version: expected 1, got {doc.get('schema_version')!r}"
        )
    for key in ("publication_date", "source", "currency"):
        if not isinstance(doc.get(key), str) or not doc[key].strip():
            raise PriceSnapshotError(f"price snapshot {name}: {key}: expected a non-empty string")
    try:
        dt.date.fromisoformat(doc["publication_date"])
    except ValueError:
        raise PriceSnapshotError(
            f"price snapshot {name}: publication_date: expected YYYY-MM-DD, "
            f"got {doc['publication_date']!r}"
        ) from None
    if doc["currency"] != CURRENCY:
        raise PriceSnapshotError(f"price snapshot {name}: currency: expected {CURRENCY}")
    regions = doc.get("regions")
    if not isinstance(regions, dict) or not regions:
        raise PriceSnapshotError(f"price snapshot {name}: regions: expected a non-empty object")
    out: dict = {}
    for region, sections in regions.items():
        if not isinstance(sections, dict):
            raise PriceSnapshotError(f"price snapshot {name}: regions.{region}: expected an object")
        out[region] = {}
        for section, keys in SECTIONS.items():
            where = f"regions.{region}.{section}"
            table = sections.get(section)
            if not isinstance(table, dict) or (keys is None and not table):
                raise PriceSnapshotError(f"price snapshot {name}: {where}: missing or empty")
            if keys is None:
                for itype in table:
                    if not INSTANCE_TYPE.match(str(itype)):
                        raise PriceSnapshotError(
                            f"price snapshot {name}: {where}: {itype!r} is not an instance "
                            "type (ml.<family>.<size>)"
                        )
                out[region][section] = {
                    t: _number(p, f"{where}.{t}") for t, p in sorted(table.items())
                }
            else:
                missing = [k for k in keys if k not in table]
                if missing:
                    raise PriceSnapshotError(
                        f"price snapshot {name}: {where}: missing {', '.join(missing)}"
                    )
                out[region][section] = {k: _number(table[k], f"{where}.{k}") for k in keys}
        unknown = sorted(set(sections) - set(SECTIONS))
        if unknown:
            raise PriceSnapshotError(
                f"price snapshot {name}: regions.{region}: unknown section(s) {', '.join(unknown)}"
            )
    return Prices(doc["publication_date"], doc["source"], doc["currency"], out)


@functools.cache
def load_prices(path: Path = PRICES_FILE) -> Prices:
    """The price snapshot at ``path`` (default: the one shipped), read and checked once.

    Raises:
        PriceSnapshotError: (exit 2) unreadable, not JSON, or malformed (:func:`parse_prices`).
    """
    try:
        doc = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise PriceSnapshotError(f"price snapshot {path}: cannot be read as JSON: {exc}") from None
    return parse_prices(doc, Path(path).name)


@dataclass(frozen=True)
class KubernetesRates:
    """USD per hour of requested vCPU, GiB of memory and GPU (``modelops.yaml``
    ``kubernetes_rates``); ``gpu_hour`` ``None`` means no GPU rate is known."""

    cpu_hour: float = DEFAULT_KUBERNETES_RATES["cpu_hour"]
    memory_gib_hour: float = DEFAULT_KUBERNETES_RATES["memory_gib_hour"]
    gpu_hour: float | None = DEFAULT_KUBERNETES_RATES["gpu_hour"]
    source: str = "OpenCost's default rates"

    @classmethod
    def from_config(cls, config) -> KubernetesRates:
        """The rates of a :class:`~reconciler.core.config.Config` (defaults without one)."""
        rates = {**DEFAULT_KUBERNETES_RATES, **(getattr(config, "kubernetes_rates", None) or {})}
        if rates == DEFAULT_KUBERNETES_RATES:
            return cls()
        return cls(
            rates["cpu_hour"],
            rates["memory_gib_hour"],
            rates["gpu_hour"],
            "modelops.yaml kubernetes_rates",
        )


@dataclass(frozen=True)
class CostLine:
    """One priced item.

    Attributes:
        item: what was priced (``kubernetes Deployment fraud-detector: 0.5 vCPU + 1 GiB
            per replica, 3-10 replicas``).
        rate: the rate used and where it comes from.
        expected, max: USD per month.
    """

    item: str
    rate: str
    expected: float
    max: float

    def to_dict(self) -> dict:
        """``{"item", "rate", "expected", "max"}`` (USD/month, rounded to 1/10,000)."""
        return {
            "item": self.item,
            "rate": self.rate,
            "expected": round(self.expected, 4),
            "max": round(self.max, 4),
        }


@dataclass
class Estimate:
    """The monthly cost of one deployment × environment.

    Attributes:
        deployment: ``<name>-<env>``; ``name``, ``environment``, ``platform``, ``team``.
        lines: the priced items.
        unpriced: resources with no charge of their own (IAM roles, Services...), by kind.
        prices_date: publication date of the price snapshot used.
    """

    deployment: str
    name: str
    environment: str
    platform: str
    team: str
    lines: list[CostLine] = field(default_factory=list)
    unpriced: dict[str, int] = field(default_factory=dict)
    prices_date: str = ""

    @property
    def expected(self) -> float:
        """USD per month at minimum replicas/instances and expected job run times."""
        return sum(line.expected for line in self.lines)

    @property
    def max(self) -> float:
        """USD per month at maximum replicas/instances and jobs at their deadline."""
        return sum(line.max for line in self.lines)

    def to_dict(self) -> dict:
        """JSON-ready mapping (also the policy input's ``cost.after``/``cost.before``)."""
        return {
            "deployment": self.deployment,
            "name": self.name,
            "environment": self.environment,
            "platform": self.platform,
            "team": self.team,
            "currency": CURRENCY,
            "hours_per_month": HOURS_PER_MONTH,
            "prices_date": self.prices_date,
            "expected": round(self.expected, 4),
            "max": round(self.max, 4),
            "lines": [line.to_dict() for line in self.lines],
            "unpriced": dict(self.unpriced),
        }


# -- schedules -----------------------------------------------------------------------------


def runs_per_month(expression: str) -> float:
    """How many times a schedule fires in a month of :data:`HOURS_PER_MONTH` hours: the
    one schedule reader, :func:`reconciler.spec.cron.runs_per_month` (Unix cron, Kubernetes
    macros, EventBridge ``cron()``/``rate()``/``at()``).

    Raises:
        ValueError: an expression it cannot read.
    """
    return cron.runs_per_month(expression, HOURS_PER_MONTH)


# -- the estimate --------------------------------------------------------------------------


def _money(value: float) -> str:
    """A rate as written in the snapshot (``0.0000224``, ``0.128``), no exponent."""
    return f"{value:.10f}".rstrip("0").rstrip(".") or "0"


def _pod_requests(pod_spec: dict) -> tuple[float, float, int]:
    """(vCPU, GiB, GPUs) requested by a pod's containers (limits stand in for a missing
    request, as Kubernetes defaults them)."""
    cpu = mem = 0.0
    gpu = 0
    for c in pod_spec.get("containers") or []:
        res = c.get("resources") or {}
        req, lim = res.get("requests") or {}, res.get("limits") or {}
        cpu_q = req.get("cpu", lim.get("cpu"))
        mem_q = req.get("memory", lim.get("memory"))
        cpu += parse_quantity(str(cpu_q)) if cpu_q is not None else 0.0
        mem += parse_quantity(str(mem_q)) / _GIB if mem_q is not None else 0.0
        for key in _GPU_KEYS:
            n = req.get(key, lim.get(key))
            gpu += int(float(n)) if n is not None else 0
    return cpu, mem, gpu


class _Pricer:
    def __init__(self, prices: Prices, rates: KubernetesRates) -> None:
        self.prices = prices
        self.rates = rates

    def pod_hour(self, cpu: float, mem: float, gpu: int) -> tuple[float, str]:
        r = self.rates
        if gpu and r.gpu_hour is None:
            raise CostError(
                "spec.target.resources.requests.gpu",
                f"{gpu} GPU(s) requested but no GPU rate is known: set kubernetes_rates.gpu_hour "
                f"in modelops.yaml (known rates: cpu_hour {_money(r.cpu_hour)}, "
                f"memory_gib_hour {_money(r.memory_gib_hour)} USD)",
            )
        hourly = cpu * r.cpu_hour + mem * r.memory_gib_hour + gpu * (r.gpu_hour or 0.0)
        rate = (
            f"{_money(r.cpu_hour)} USD/vCPU-h, {_money(r.memory_gib_hour)} USD/GiB-h"
            + (f", {_money(r.gpu_hour or 0.0)} USD/GPU-h" if gpu else "")
            + f" ({r.source})"
        )
        return hourly, rate


def _what(cpu: float, mem: float, gpu: int) -> str:
    parts = [f"{cpu:g} vCPU", f"{mem:g} GiB"] + ([f"{gpu} GPU"] if gpu else [])
    return " + ".join(parts)


def _range(lo: float, hi: float) -> str:
    return f"{lo:g}" if lo == hi else f"{lo:g}-{hi:g}"


def _kubernetes(state: DesiredState, pricer: _Pricer, out: Estimate) -> None:
    hpas = {
        ((r.inputs.get("spec") or {}).get("scaleTargetRef") or {}).get("name"): r.inputs["spec"]
        for r in state.of_kind("HorizontalPodAutoscaler")
    }
    for r in state.of_kind("Deployment"):
        if not r.type.startswith("kubernetes:"):
            continue
        spec = r.inputs.get("spec") or {}
        name = (r.inputs.get("metadata") or {}).get("name", r.name)
        cpu, mem, gpu = _pod_requests((spec.get("template") or {}).get("spec") or {})
        hourly, rate = pricer.pod_hour(cpu, mem, gpu)
        hpa = hpas.get(name)
        if hpa is not None:
            lo = int(hpa.get("minReplicas", 1))
            hi = int(hpa.get("maxReplicas", lo))
        else:
            lo = hi = int(spec.get("replicas", 1))
        out.lines.append(
            CostLine(
                f"kubernetes Deployment {name}: {_what(cpu, mem, gpu)} per replica × "
                f"{_range(lo, hi)} replica(s) × {HOURS_PER_MONTH} h",
                rate,
                hourly * lo * HOURS_PER_MONTH,
                hourly * hi * HOURS_PER_MONTH,
            )
        )
    for r in state.of_kind("CronJob"):
        spec = r.inputs.get("spec") or {}
        job = (spec.get("jobTemplate") or {}).get("spec") or {}
        name = (r.inputs.get("metadata") or {}).get("name", r.name)
        cpu, mem, gpu = _pod_requests((job.get("template") or {}).get("spec") or {})
        hourly, rate = pricer.pod_hour(cpu, mem, gpu)
        deadline = job.get("activeDeadlineSeconds")
        _job_line(
            out,
            f"kubernetes CronJob {name}",
            spec.get("schedule", ""),
            deadline,
            "activeDeadlineSeconds",
            _what(cpu, mem, gpu),
            hourly,
            rate,
        )


def _job_line(out, what, schedule, deadline, deadline_name, size, hourly, rate) -> None:
    try:
        runs = runs_per_month(str(schedule))
    except (ValueError, KeyError):
        raise CostError(
            "spec.monitoring.schedule",
            f"{what}: cannot count the runs of schedule {schedule!r}",
        ) from None
    expected_s = min(DEFAULT_JOB_RUN_S, deadline) if deadline else DEFAULT_JOB_RUN_S
    max_s = deadline or DEFAULT_JOB_RUN_S
    bound = (
        f"{_range(expected_s, max_s)} s per run ({deadline_name})"
        if deadline
        else f"{expected_s:g} s per run (assumed: no {deadline_name})"
    )
    out.lines.append(
        CostLine(
            f"{what}: {size}, {runs:.4g} run(s)/month ({schedule}), {bound}",
            rate,
            hourly * runs * expected_s / 3600,
            hourly * runs * max_s / 3600,
        )
    )


def _usage(usage: dict | None) -> tuple[float, float, str]:
    stated = usage is None
    use = DEFAULT_USAGE if usage is None else usage
    values = []
    for key in ("requests_per_month", "mean_duration_ms"):
        value = use.get(key, DEFAULT_USAGE[key])
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        if not ok or not math.isfinite(value) or value < 0:
            raise CostError(
                f"spec.cost.usage.{key}",
                f"spec.cost.usage.{key} must be a finite number of at least 0, got {value!r} "
                f"(default when cost.usage is absent: {DEFAULT_USAGE[key]})",
            )
        values.append(float(value))
    note = "default usage: no spec.cost.usage" if stated else "spec.cost.usage"
    return values[0], values[1], note


def _aws(state: DesiredState, prices: Prices, usage: dict | None, out: Estimate) -> None:
    targets = {
        str(r.inputs.get("resourceId", "")).rsplit("/", 1)[-1]: r.inputs
        for r in state.of_kind("Target")
        if r.type.startswith("aws:appautoscaling")
    }
    region_of = lambda r: str(r.inputs.get("region") or "")  # noqa: E731 - one lookup
    for r in state.of_kind("EndpointConfiguration"):
        region = region_of(r)
        for variant in r.inputs.get("productionVariants") or []:
            vname = variant.get("variantName", "")
            serverless = variant.get("serverlessConfig")
            if serverless:
                section = prices.region(region, "spec.target.region")["sagemaker_serverless"]
                requests, duration_ms, note = _usage(usage)
                gb = float(serverless.get("memorySizeInMb", 0)) / 1024
                gb_s = requests * duration_ms / 1000 * gb
                cost = gb_s * section["gb_second"] + requests * section["request"]
                out.lines.append(
                    CostLine(
                        f"SageMaker serverless {r.name}/{vname} ({region}): {gb:g} GB × "
                        f"{requests:,.0f} requests × {duration_ms:g} ms ({note})",
                        f"{_money(section['gb_second'])} USD/GB-s, "
                        f"{_money(section['request'])} USD/request",
                        cost,
                        cost,
                    )
                )
                continue
            itype = str(variant.get("instanceType", ""))
            price = prices.instance_hour(
                region, "sagemaker_hosting", itype, "spec.target.instance_type"
            )
            count = int(variant.get("initialInstanceCount", 1))
            scaling = targets.get(vname)
            lo = int(scaling.get("minCapacity", count)) if scaling else count
            hi = int(scaling.get("maxCapacity", lo)) if scaling else count
            out.lines.append(
                CostLine(
                    f"SageMaker endpoint {r.name}/{vname} ({region}): {itype} × "
                    f"{_range(lo, hi)} instance(s) × {HOURS_PER_MONTH} h",
                    f"{_money(price)} USD/instance-h (SageMaker hosting, {region})",
                    price * lo * HOURS_PER_MONTH,
                    price * hi * HOURS_PER_MONTH,
                )
            )
    for r in state.of_kind("Schedule"):
        region = region_of(r)
        expr = str(r.inputs.get("scheduleExpression", ""))
        try:
            runs = runs_per_month(expr)
        except (ValueError, KeyError):
            raise CostError(
                "spec.monitoring.schedule", f"schedule {r.name}: cannot count the runs of {expr!r}"
            ) from None
        sections = prices.region(region, "spec.target.region")
        invocation = sections["eventbridge_scheduler"]["invocation"]
        out.lines.append(
            CostLine(
                f"EventBridge schedule {r.name} ({region}): {runs:.4g} invocation(s)/month",
                f"{_money(invocation)} USD/invocation",
                runs * invocation,
                runs * invocation,
            )
        )
        target = r.inputs.get("target") or {}
        try:
            job = json.loads(target.get("input") or "{}")
        except (TypeError, ValueError):
            job = {}
        cluster = ((job.get("ProcessingResources") or {}).get("ClusterConfig")) or {}
        if not cluster:
            continue
        itype = str(cluster.get("InstanceType", ""))
        count = int(cluster.get("InstanceCount", 1))
        price = prices.instance_hour(region, "sagemaker_processing", itype, "spec.target.region")
        deadline = (job.get("StoppingCondition") or {}).get("MaxRuntimeInSeconds")
        _job_line(
            out,
            f"SageMaker processing job {r.name} ({region})",
            expr,
            deadline,
            "MaxRuntimeInSeconds",
            f"{itype} × {count}",
            price * count,
            f"{_money(price)} USD/instance-h (SageMaker Processing, {region})",
        )
    for r in state.of_kind("MetricAlarm"):
        region = region_of(r)
        alarm = prices.region(region, "spec.target.region")["cloudwatch_alarm"]
        high = int(r.inputs.get("period", 60) or 60) < 60
        price = alarm["high_resolution_month" if high else "standard_month"]
        out.lines.append(
            CostLine(
                f"CloudWatch alarm {r.name} ({region}, "
                f"{'high' if high else 'standard'} resolution)",
                f"{_money(price)} USD/alarm-month",
                price,
                price,
            )
        )
    for r in state.of_kind("Key"):
        if not r.type.startswith("aws:kms"):
            continue
        region = region_of(r)
        price = prices.region(region, "spec.target.region")["kms_key"]["key_month"]
        out.lines.append(
            CostLine(f"KMS key {r.name} ({region})", f"{_money(price)} USD/key-month", price, price)
        )


_PRICED = {
    "Deployment",
    "CronJob",
    "EndpointConfiguration",
    "Schedule",
    "MetricAlarm",
    "Key",
    "BentoServer",
    "Bundle",
}


def team_of(state: DesiredState) -> str:
    """The team a DesiredState belongs to: its ``modelops.dev/team`` label (Kubernetes) or
    ``modelops:team`` tag (AWS); ``""`` when none carries one (local servers)."""
    for r in state.resources:
        labels = (r.inputs.get("metadata") or {}).get("labels") or {}
        tags = r.inputs.get("tags") or {}
        team = labels.get("modelops.dev/team") or tags.get("modelops:team")
        if isinstance(team, str) and team:
            return team
    return ""


def estimate(
    state: DesiredState,
    prices: Prices | None = None,
    rates: KubernetesRates | None = None,
    usage: dict | None = None,
    team: str | None = None,
) -> Estimate:
    """The monthly cost of one rendered deployment × environment.

    Args:
        state: the DesiredState the plan rendered (or the ledger's, via ``from_dict``).
        prices: the price snapshot (default: the shipped one, :func:`load_prices`).
        rates: Kubernetes rates (default: :class:`KubernetesRates` defaults).
        usage: ``spec.cost.usage`` (``{requests_per_month, mean_duration_ms}``) for
            serverless endpoints; ``None`` uses :data:`DEFAULT_USAGE`, stated on the line.
        team: the owning team (default: read from the labels/tags, :func:`team_of`).

    Returns:
        An :class:`Estimate` in USD per month of :data:`HOURS_PER_MONTH` hours. A local
        server is one line of 0 USD, said to be local. Resources with no charge of their
        own are counted in ``unpriced`` by kind. About 0.1 ms per deployment
        (``bench/bench_gitops.py``).

    Raises:
        CostError: (exit 1) a region or instance type not in the snapshot, GPUs without
            a rate, a negative or non-numeric usage figure, a schedule it cannot read, or
            a resource of a shape it cannot read (a hand-edited recorded state).
    """
    prices = prices or load_prices()
    out = Estimate(
        state.deployment,
        state.name,
        state.environment,
        state.platform,
        team if team is not None else team_of(state),
        prices_date=prices.publication_date,
    )
    try:
        _price(state, prices, rates, usage, out)
    except (ValueError, TypeError, KeyError, AttributeError) as exc:
        # A recorded state edited by hand, or a shape this code does not know: say so.
        raise CostError(
            "spec.target",
            f"cannot price the resources of {state.deployment}: {type(exc).__name__}: {exc}",
        ) from None
    for r in state.resources:
        if r.kind not in _PRICED:
            out.unpriced[r.kind] = out.unpriced.get(r.kind, 0) + 1
    return out


def _price(state, prices, rates, usage, out: Estimate) -> None:
    if state.platform == "local":
        out.lines.append(CostLine("local BentoML server on this machine", "no cloud charge", 0, 0))
    elif state.platform == "kubernetes":
        _kubernetes(state, _Pricer(prices, rates or KubernetesRates()), out)
    elif state.platform.startswith("aws-"):
        _aws(state, prices, usage, out)
    else:  # edge: a bundle published for devices; no cloud resource runs it
        out.lines.append(
            CostLine(f"{state.platform} target: runs outside the cloud", "no cloud charge", 0, 0)
        )

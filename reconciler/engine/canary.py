"""The local canary: stable and new Bento side by side behind the router, judged per interval.

With ``spec.target.rollout.strategy: canary`` and an ``analysis`` section, a local
re-apply does not switch all traffic at once (``reconciler.engine.local``): the new
server (the *canary*) gets each weight of ``rollout.steps`` in turn for
``pause_seconds``; every ``interval_seconds`` the router's readings of both backends
(``reconciler.runtime.router``: requests, 5xx, latency histogram, row agreement of the
two versions' predictions on mirrored requests, mean top-class probability) are diffed
against the previous reading and checked against ``analysis.metrics``:

- ``error_rate``: share of the canary's answers that were 5xx or none (max);
- ``p99_latency_ms``: the canary's p99 (ms, from the histogram, interpolated within the
  bucket as Prometheus' ``histogram_quantile``); ``from_slo`` is
  ``serving.slo.p99_latency_ms`` (max);
- ``agreement``: share of rows whose predicted label equals the stable version's (min);
- ``estimated_quality``: the canary's mean top-class probability, the label-free
  (confidence-based) accuracy estimate; it is not recalibrated on the reference here (min);
- ``realized_quality``: the canary's realized ``metric`` on its captured predictions since
  the canary started joined to the labels that arrived meanwhile (min), read through the
  ``realized`` callback the caller gives (the engine cannot read labels: the flow passes
  the monitoring job's join, ``reconciler.monitor.quality.realized_metric``). Labels are
  counted since the start of the canary, not per interval (they arrive late and few);
  with fewer than ``min_labels`` joined it is not measurable (neither passes nor fails).

A check with no canary request is ``inconclusive`` (neither passes nor fails). More than
``failure_limit`` failed checks abort: traffic returns to the stable version (the router's
fallback has already answered every request the canary failed, so clients saw stable's
answers). The last step (100) promotes when no abort came and at least one check passed.
While the analysis runs, a probe sends the smoke request through the router every
:data:`PROBE_PERIOD_S` (marked ``X-Modelops-Synthetic: canary``: never captured), so a
canary is judged even without user traffic. Every check and the verdict are returned
(:class:`Rollout`) for the status writer to record.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import httpx

from reconciler.core.clock import now_iso
from reconciler.engine.routing import RouterHandle, read_status, set_backends
from reconciler.runtime.capture import SYNTHETIC_HEADER
from reconciler.spec.model import Deployment

STABLE = "stable"
CANARY = "canary"
PROBE_PERIOD_S = 0.05
"""Seconds between two probe requests during an analysis."""
MIN_LABELS = 30
"""Default ``realized_quality.min_labels``: the quality job's ``MIN_LABELS`` (joined rows
below which it gives no verdict; ``reconciler.monitor.quality``)."""
PROMOTED = "promoted"
ABORTED = "aborted"
PASSED = "passed"
FAILED = "failed"
INCONCLUSIVE = "inconclusive"


@dataclass(frozen=True)
class Analysis:
    """``spec.target.rollout`` of a canary with analysis, with defaults filled in.

    Attributes:
        steps: canary weights in percent, ascending, ending at 100.
        interval_s: seconds between checks; pause_s: seconds at each step (>= interval).
        failure_limit: failed checks tolerated; one more aborts.
        error_rate, p99_latency_ms, agreement, estimated_quality: thresholds (``None``:
            not checked); ``p99_latency_ms`` in ms, the others shares 0..1.
        realized_quality: ``(metric, min, min_labels)`` or ``None``: the realized metric
            (``monitoring.quality``'s name) must be at least ``min`` once ``min_labels``
            predictions are joined.
    """

    steps: tuple[int, ...]
    interval_s: float
    pause_s: float
    failure_limit: int
    error_rate: float | None = None
    p99_latency_ms: float | None = None
    agreement: float | None = None
    estimated_quality: float | None = None
    realized_quality: tuple[str, float, int] | None = None

    @classmethod
    def of(cls, dep: Deployment) -> Analysis | None:
        """The analysis of ``dep``, or ``None`` when it is not a canary with analysis."""
        return cls.from_rollout(
            dep.get("spec.target.rollout"), dep.get("spec.serving.slo.p99_latency_ms")
        )

    @classmethod
    def from_rollout(cls, rollout: object, slo_p99_ms: object = None) -> Analysis | None:
        """The analysis of a ``spec.target.rollout`` mapping (``None`` unless it is a
        canary with ``analysis``); ``slo_p99_ms`` is ``serving.slo.p99_latency_ms``, which
        ``p99_latency_ms: from_slo`` reads."""
        if not isinstance(rollout, dict) or rollout.get("strategy") != "canary":
            return None
        analysis = rollout.get("analysis")
        if not isinstance(analysis, dict):
            return None
        steps = tuple(int(s) for s in rollout.get("steps") or [100])
        if steps[-1] != 100:
            steps = (*steps, 100)
        interval = float(analysis.get("interval_seconds") or 30)
        metrics = analysis.get("metrics") or {}
        p99 = metrics.get("p99_latency_ms")
        if p99 == "from_slo":
            p99 = slo_p99_ms

        def number(value) -> float | None:
            return float(value) if isinstance(value, int | float) else None

        realized = metrics.get("realized_quality")
        realized_quality = None
        if isinstance(realized, dict) and number(realized.get("min")) is not None:
            realized_quality = (
                str(realized.get("metric") or "accuracy"),
                float(realized["min"]),
                int(realized.get("min_labels") or MIN_LABELS),
            )

        return cls(
            steps=steps,
            interval_s=interval,
            pause_s=max(interval, float(analysis.get("pause_seconds") or interval)),
            failure_limit=int(analysis.get("failure_limit") or 0),
            error_rate=number(metrics.get("error_rate")),
            p99_latency_ms=number(p99),
            agreement=number(metrics.get("agreement")),
            estimated_quality=number(metrics.get("estimated_quality")),
            realized_quality=realized_quality,
        )


@dataclass
class Rollout:
    """What a canary did: every check, and the verdict.

    Attributes:
        verdict: ``promoted`` or ``aborted``.
        reason: one sentence.
        checks: one dict per check: ``step`` (index), ``weight`` (percent), ``result``
            (``passed`` | ``failed`` | ``inconclusive``), ``requests`` (canary answers in
            the window), ``error_rate``, ``p99_latency_ms``, ``agreement``,
            ``estimated_quality``, ``realized_quality`` (``None`` when not measurable),
            ``labelled`` (joined predictions behind ``realized_quality``, only with that
            metric), ``failed`` (the thresholds missed, one phrase each).
        steps: the weights walked, in order (the last one reached included).
    """

    verdict: str = ""
    reason: str = ""
    checks: list[dict] = field(default_factory=list)
    steps: list[int] = field(default_factory=list)
    strategy: str = "canary"

    def to_dict(self) -> dict:
        return asdict(self)


def quantile_ms(buckets: dict[str, int], q: float) -> float | None:
    """Quantile ``q`` (0..1) of a latency histogram (``{upper bound ms: count}``, last
    ``"inf"``), interpolated linearly within its bucket (Prometheus'
    ``histogram_quantile``); ``None`` when empty; in the unbounded bucket, the last finite
    bound."""
    total = sum(buckets.values())
    if total <= 0:
        return None
    rank = q * total
    seen, lower = 0, 0.0
    for bound, count in buckets.items():
        if bound == "inf":
            return lower
        upper = float(bound)
        if count and seen + count >= rank:
            return lower + (upper - lower) * (rank - seen) / count
        seen += count
        lower = upper
    return lower


def window(before: dict, after: dict) -> dict:
    """What a backend did between two router readings (``GET /-/router`` backends[name]):
    ``requests``, ``errors``, ``buckets``, ``rows``, ``agreed``, ``conf_sum``, ``conf_n``.
    A backend missing from ``before`` counts from zero."""

    def d(key: str) -> float:
        return float(after.get(key, 0)) - float(before.get(key, 0))

    b_before = before.get("latency_buckets_ms", {})
    return {
        "requests": int(d("requests")),
        "errors": int(d("errors")),
        "buckets": {
            k: int(v) - int(b_before.get(k, 0))
            for k, v in after.get("latency_buckets_ms", {}).items()
        },
        "rows": int(after.get("agreement", {}).get("rows", 0))
        - int(before.get("agreement", {}).get("rows", 0)),
        "agreed": int(after.get("agreement", {}).get("agreed", 0))
        - int(before.get("agreement", {}).get("agreed", 0)),
        "conf_sum": d("confidence_sum"),
        "conf_n": int(d("confidence_n")),
    }


def evaluate(analysis: Analysis, canary: dict, realized: dict | None = None) -> dict:
    """One check of the canary's :func:`window` against the thresholds.

    ``realized`` is the canary's realized quality so far (``{"value", "n"}``: the
    metric's value, ``None`` when it has none, and the joined predictions), for
    ``analysis.realized_quality``; ``None`` when it could not be read.

    Returns:
        ``{"result", "requests", "error_rate", "p99_latency_ms", "agreement",
        "estimated_quality", "realized_quality", "failed": [phrase, ...]}`` (and
        ``labelled`` with a realized_quality metric); ``inconclusive`` without any
        canary answer in the window.
    """
    n = canary["requests"]
    error_rate = canary["errors"] / n if n else None
    p99 = quantile_ms(canary["buckets"], 0.99) if n else None
    agreement = canary["agreed"] / canary["rows"] if canary["rows"] else None
    quality = canary["conf_sum"] / canary["conf_n"] if canary["conf_n"] else None
    realized_value = None
    if analysis.realized_quality is not None and realized is not None:
        if realized.get("value") is not None and realized["n"] >= analysis.realized_quality[2]:
            realized_value = float(realized["value"])
    failed = []
    if n == 0:
        result = INCONCLUSIVE
    else:
        if analysis.error_rate is not None and error_rate > analysis.error_rate:
            failed.append(f"error rate {error_rate:.3f} > {analysis.error_rate:g}")
        if analysis.p99_latency_ms is not None and p99 is not None:
            if p99 > analysis.p99_latency_ms:
                failed.append(f"p99 {p99:.0f} ms > {analysis.p99_latency_ms:g} ms")
        if analysis.agreement is not None and agreement is not None:
            if agreement < analysis.agreement:
                failed.append(f"agreement {agreement:.3f} < {analysis.agreement:g}")
        if analysis.estimated_quality is not None and quality is not None:
            if quality < analysis.estimated_quality:
                failed.append(f"estimated quality {quality:.3f} < {analysis.estimated_quality:g}")
        if analysis.realized_quality is not None and realized_value is not None:
            metric, floor, _ = analysis.realized_quality
            if realized_value < floor:
                failed.append(
                    f"realized {metric} {realized_value:.3f} < {floor:g} "
                    f"(n={realized['n']} labelled)"
                )
        result = FAILED if failed else PASSED
    out = {
        "result": result,
        "requests": n,
        "error_rate": error_rate,
        "p99_latency_ms": None if p99 is None or math.isinf(p99) else round(p99, 1),
        "agreement": agreement,
        "estimated_quality": quality,
        "realized_quality": realized_value,
        "failed": failed,
    }
    if analysis.realized_quality is not None:
        out["labelled"] = int(realized["n"]) if realized is not None else 0
    return out


class Probe:
    """Sends ``body`` to ``<url>/predict`` every :data:`PROBE_PERIOD_S` in a thread,
    marked synthetic, until :meth:`stop`; answers are not checked (the router counts
    them)."""

    def __init__(self, url: str, body: dict | None) -> None:
        self.url, self.body = url, body
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Probe:
        if self.body is not None:
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        if self._thread.is_alive():
            self._thread.join(timeout=60)

    def _run(self) -> None:
        headers = {SYNTHETIC_HEADER: "canary"}
        with httpx.Client(timeout=30, trust_env=False) as client:
            while not self._done.is_set():
                try:
                    client.post(f"{self.url}/predict", json=self.body, headers=headers)
                except httpx.HTTPError:
                    pass  # the router counts what failed; a probe never decides
                self._done.wait(PROBE_PERIOD_S)


def run_canary(
    router: RouterHandle,
    stable_url: str,
    canary_url: str,
    analysis: Analysis,
    *,
    probe_body: dict | None = None,
    sleep: Callable[[float], None] = time.sleep,
    on_check: Callable[[dict], None] | None = None,
    realized: Callable[[], dict | None] | None = None,
) -> Rollout:
    """Walk ``analysis.steps`` with ``canary_url`` beside ``stable_url`` behind ``router``.

    On return the router sends every request to the canary (``promoted``) or to the stable
    version (``aborted``); stopping the server that lost is the caller's. ``on_check``
    gets each check as it is made (the flow records it: ``status.canary_progress``).
    ``realized`` returns the canary's realized quality so far (``{"value", "n"}`` or
    ``None``), read at each check when ``analysis.realized_quality`` is set; without it
    that metric is never measurable.

    Raises:
        RouterError: the router could not be switched (the caller aborts: the stable
            version is put back by the caller).
    """
    rollout = Rollout()
    mirror = 1.0 if analysis.agreement is not None else 0.0
    failures = 0
    with Probe(router.url, probe_body):
        for index, weight in enumerate(analysis.steps):
            rollout.steps.append(weight)
            if weight >= 100:
                break
            set_backends(
                router,
                [
                    {"name": STABLE, "url": stable_url, "weight": 100 - weight},
                    {"name": CANARY, "url": canary_url, "weight": weight},
                ],
                fallback=STABLE,
                mirror=mirror,
            )
            before = read_status(router.url)["backends"].get(CANARY, {})
            checks = max(1, int(analysis.pause_s // analysis.interval_s))
            for _ in range(checks):
                sleep(analysis.interval_s)
                after = read_status(router.url)["backends"].get(CANARY, {})
                quality = (
                    realized()
                    if realized is not None and analysis.realized_quality is not None
                    else None
                )
                check = evaluate(analysis, window(before, after), quality)
                before = after
                check.update(step=index, weight=weight, time=now_iso())
                rollout.checks.append(check)
                if on_check is not None:
                    on_check(check)
                if check["result"] == FAILED:
                    failures += 1
                    if failures > analysis.failure_limit:
                        set_backends(router, [{"name": STABLE, "url": stable_url, "weight": 100}])
                        rollout.verdict = ABORTED
                        rollout.reason = (
                            f"check {len(rollout.checks)} at {weight}% failed "
                            f"({'; '.join(check['failed'])}); {failures} failed check(s), "
                            f"failure_limit {analysis.failure_limit}"
                        )
                        return rollout
    if not any(c["result"] == PASSED for c in rollout.checks):
        set_backends(router, [{"name": STABLE, "url": stable_url, "weight": 100}])
        rollout.verdict = ABORTED
        rollout.reason = "no check saw a canary answer (no traffic reached it): not promoted"
        return rollout
    set_backends(router, [{"name": STABLE, "url": canary_url, "weight": 100}])
    rollout.verdict = PROMOTED
    rollout.reason = (
        f"{sum(c['result'] == PASSED for c in rollout.checks)} of {len(rollout.checks)} "
        f"check(s) passed over steps {', '.join(map(str, rollout.steps))}"
    )
    if analysis.realized_quality is not None and all(
        c.get("realized_quality") is None for c in rollout.checks
    ):
        metric, _, least = analysis.realized_quality
        most = max((int(c.get("labelled") or 0) for c in rollout.checks), default=0)
        rollout.reason += (
            f"; realized {metric} not judged: {most} labelled prediction(s) of the new "
            f"version arrived in time, {least} needed"
        )
    return rollout

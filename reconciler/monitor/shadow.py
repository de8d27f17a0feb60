"""The shadow report: a new version judged on the requests the stable version answered.

In a shadow rollout (``spec.target.rollout.strategy: shadow``) both versions answer the
same requests; only the stable answer is returned. Both answers are captured in the
capture format (``runtime/capture.py``: ``request_id``, ``model_version``, ``outputs``,
``probabilities``, ``latency_ms``) and joined here by request id. The report gives the
label agreement, the distribution of the probability differences (per row, the largest
absolute difference over the classes), the latency of both versions on the same
requests, and a verdict: ``promote``, ``drop`` (with the reasons) or ``insufficient
data`` below :data:`MIN_PAIRS` joined rows. Thresholds come from
``rollout.analysis.metrics`` (``agreement``, ``p99_latency_ms``, ``estimated_quality``)
and default to :data:`DEFAULT_MIN_AGREEMENT` and ``serving.slo.p99_latency_ms``.
Rationale: ``docs/rollout.md``.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np

from reconciler.core.config import Config
from reconciler.monitor.data import MonitorInputError, field_origin
from reconciler.monitor.labels import capture_files, capture_records
from reconciler.spec.model import Deployment

PROMOTE = "promote"
DROP = "drop"
INSUFFICIENT = "insufficient data"
#: Fewest joined rows a verdict is given on: the 95 % interval of an agreement near 0.95
#: is then about ±0.02 (normal approximation, sqrt(0.95 * 0.05 / 400) * 1.96).
MIN_PAIRS = 400
DEFAULT_MIN_AGREEMENT = 0.95
#: Edges of the histogram of per-row probability differences.
DIFF_BINS = (0.0, 0.01, 0.05, 0.1, 0.2, 0.5, 1.0)


@dataclass(frozen=True)
class Thresholds:
    """What the shadow must meet: smallest agreement (share), largest p99 latency (ms,
    ``None``: not judged), smallest mean top-class probability (``None``: not judged)."""

    min_agreement: float = DEFAULT_MIN_AGREEMENT
    max_p99_ms: float | None = None
    min_estimated_quality: float | None = None

    @classmethod
    def of(cls, dep) -> Thresholds:
        """From a deployment's ``rollout.analysis.metrics`` and ``serving.slo``."""
        metrics = dep.get("spec.target.rollout.analysis.metrics") or {}
        p99 = metrics.get("p99_latency_ms", "from_slo")
        if p99 == "from_slo":
            p99 = dep.get("spec.serving.slo.p99_latency_ms")
        return cls(
            float(metrics.get("agreement", DEFAULT_MIN_AGREEMENT)),
            float(p99) if p99 is not None else None,
            metrics.get("estimated_quality"),
        )


@dataclass
class ShadowReport:
    """The comparison of the stable and the shadow version on joined requests.

    Attributes:
        stable_version, shadow_version: the two ``model_version`` values compared.
        requests: requests answered by both (joined by ``request_id``); rows: their rows.
        unmatched: requests seen from only one version (``{"stable": n, "shadow": n}``).
        agreement: share of rows with equal labels (``None`` without rows).
        prob_diff: quantiles (``p50``, ``p90``, ``p99``, ``max``) of the per-row largest
            absolute probability difference, and ``histogram`` (counts per
            :data:`DIFF_BINS` interval); ``{}`` without probabilities.
        latency_ms: ``{"stable": {"p50", "p99"}, "shadow": {...}}`` over joined requests.
        estimated_quality: the shadow's mean top-class probability (``None`` without).
        verdict: ``promote``, ``drop`` or ``insufficient data``; reasons: why.
    """

    stable_version: str
    shadow_version: str
    requests: int
    rows: int
    unmatched: dict
    agreement: float | None
    prob_diff: dict
    latency_ms: dict
    estimated_quality: float | None
    verdict: str
    reasons: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        """JSON-ready fields."""
        return asdict(self)

    def text(self) -> str:
        """The report as terminal text."""
        lines = [
            f"shadow {self.shadow_version} vs stable {self.stable_version}: "
            f"{self.requests} joined requests ({self.rows} rows); unmatched "
            f"stable {self.unmatched['stable']}, shadow {self.unmatched['shadow']}",
        ]
        if self.agreement is not None:
            lines.append(f"  label agreement: {self.agreement:.2%}")
        if self.prob_diff:
            q = self.prob_diff
            lines.append(
                f"  probability difference: p50 {q['p50']:.3f}, p90 {q['p90']:.3f}, "
                f"p99 {q['p99']:.3f}, max {q['max']:.3f}"
            )
            edges = list(DIFF_BINS)
            bins = ", ".join(
                f"[{a:g}, {b:g}): {n}"
                for a, b, n in zip(edges, edges[1:], q["histogram"], strict=False)
            )
            lines.append(f"    histogram: {bins}")
        for side in ("stable", "shadow"):
            lat = self.latency_ms.get(side)
            if lat:
                lines.append(f"  latency {side}: p50 {lat['p50']:.1f} ms, p99 {lat['p99']:.1f} ms")
        if self.estimated_quality is not None:
            lines.append(f"  shadow estimated quality: {self.estimated_quality:.3f}")
        why = f" ({'; '.join(self.reasons)})" if self.reasons else ""
        lines.append(f"  verdict: {self.verdict}{why}")
        return "\n".join(lines) + "\n"


def read_records(paths: Iterable[Path]) -> list[dict]:
    """Capture records (JSON Lines) of ``paths``; lines that are not JSON objects are
    skipped (the drift job reports malformed files; the report only needs joinable ones).
    """
    out = []
    for path in paths:
        with open(path, encoding="utf-8", errors="replace") as fh:
            for line in fh:
                try:
                    rec = json.loads(line)
                except ValueError:
                    continue
                if isinstance(rec, dict):
                    out.append(rec)
    return out


def _quantiles(values: np.ndarray) -> dict:
    return {
        "p50": float(np.quantile(values, 0.5)),
        "p99": float(np.quantile(values, 0.99)),
    }


def compare(
    records: Iterable[dict],
    stable_version: str,
    shadow_version: str,
    thresholds: Thresholds = Thresholds(),
    min_pairs: int = MIN_PAIRS,
) -> ShadowReport:
    """Join ``records`` of the two versions by ``request_id`` and judge the shadow.

    A request whose two records give a different number of rows is left out (counted
    as unmatched on both sides). Drop when agreement is below ``min_agreement``, the
    shadow's p99 latency above ``max_p99_ms`` or its mean top-class probability below
    ``min_estimated_quality``; below ``min_pairs`` joined rows: insufficient data.
    """
    by_version: dict[str, dict[str, dict]] = {stable_version: {}, shadow_version: {}}
    for rec in records:
        version, rid = str(rec.get("model_version")), rec.get("request_id")
        if version in by_version and isinstance(rid, str):
            by_version[version][rid] = rec
    stable, shadow = by_version[stable_version], by_version[shadow_version]
    joined = []
    for rid in sorted(set(stable) & set(shadow)):
        a, b = stable[rid], shadow[rid]
        if len(a.get("outputs") or []) == len(b.get("outputs") or []) and a.get("outputs"):
            joined.append((a, b))
    unmatched = {"stable": len(stable) - len(joined), "shadow": len(shadow) - len(joined)}
    labels_a = [y for a, _ in joined for y in a["outputs"]]
    labels_b = [y for _, b in joined for y in b["outputs"]]
    rows = len(labels_a)
    agreement = (
        float(np.mean([x == y for x, y in zip(labels_a, labels_b, strict=True)])) if rows else None
    )
    with_proba = [
        (a["probabilities"], b["probabilities"])
        for a, b in joined
        if a.get("probabilities") and b.get("probabilities")
    ]
    prob_diff: dict = {}
    quality = None
    if with_proba:
        pa = np.array([row for a, _ in with_proba for row in a], dtype=float)
        pb = np.array([row for _, b in with_proba for row in b], dtype=float)
        diff = np.abs(pa - pb).max(axis=1)
        prob_diff = {
            "p50": float(np.quantile(diff, 0.5)),
            "p90": float(np.quantile(diff, 0.9)),
            "p99": float(np.quantile(diff, 0.99)),
            "max": float(diff.max()),
            "histogram": np.histogram(diff, bins=DIFF_BINS)[0].tolist(),
        }
        quality = float(pb.max(axis=1).mean())
    latency: dict = {}
    for side, index in (("stable", 0), ("shadow", 1)):
        values = [pair[index].get("latency_ms") for pair in joined]
        values = np.array([v for v in values if isinstance(v, int | float)], dtype=float)
        if values.size:
            latency[side] = _quantiles(values)
    reasons = []
    if rows < min_pairs:
        verdict = INSUFFICIENT
        reasons.append(f"{rows} joined rows, fewer than {min_pairs}")
    else:
        if agreement is not None and agreement < thresholds.min_agreement:
            reasons.append(f"agreement {agreement:.2%} below {thresholds.min_agreement:.2%}")
        p99 = latency.get("shadow", {}).get("p99")
        if thresholds.max_p99_ms is not None and p99 is not None and p99 > thresholds.max_p99_ms:
            reasons.append(f"shadow p99 {p99:.1f} ms above {thresholds.max_p99_ms:g} ms")
        floor = thresholds.min_estimated_quality
        if floor is not None and quality is not None and quality < floor:
            reasons.append(f"estimated quality {quality:.3f} below {floor:g}")
        verdict = DROP if reasons else PROMOTE
    return ShadowReport(
        stable_version,
        shadow_version,
        len(joined),
        rows,
        unmatched,
        agreement,
        prob_diff,
        latency,
        quality,
        verdict,
        reasons,
    )


def run_shadow(
    dep: Deployment,
    config: Config,
    *,
    stable: str | None = None,
    shadow: str | None = None,
    now: datetime | None = None,
) -> ShadowReport:
    """The shadow report of ``dep`` on its captured traffic of
    ``spec.monitoring.window_hours`` (default 24) back from ``now``.

    The shadow is ``shadow`` or the spec's ``model.version`` (the version the rollout
    brings); the stable one is ``stable`` or the other captured version with the most
    requests in the window (as the A/B experiment picks A). Records marked synthetic are
    left out; ``notes`` says what was read.

    Raises:
        MonitorInputError: (exit 2) the rollout strategy is not ``shadow``; no shadow
            version (no ``model.version`` and no ``shadow``); a capture file that is not
            JSON Lines of objects; no other version than the shadow captured in the window.
    """
    strategy = dep.get("spec.target.rollout.strategy")
    if strategy != "shadow":
        raise MonitorInputError(
            f"{field_origin(dep, 'spec.target.rollout.strategy')} is {strategy!r}: the "
            "shadow report compares the two versions of a shadow rollout (strategy: shadow)"
        )
    shadow = shadow or (str(dep.get("spec.model.version") or "") or None)
    if shadow is None:
        raise MonitorInputError(
            f"{dep.key}: spec.model.version is not set: name the shadow version (--shadow)"
        )
    end = (now or datetime.now(UTC)).astimezone(UTC)
    start = end - timedelta(hours=dep.get("spec.monitoring.window_hours", 24))
    files, notes = capture_files(dep, config, start, end)
    records: list[dict] = []
    synthetic = 0
    for path in files:
        for _where, rec in capture_records(path, config):
            if rec.get("synthetic"):
                synthetic += 1
                continue
            try:
                stamp = datetime.fromisoformat(str(rec.get("timestamp")).replace("Z", "+00:00"))
            except ValueError:
                continue
            if stamp.tzinfo is not None and start <= stamp <= end:
                records.append(rec)
    seen = Counter(str(r.get("model_version")) for r in records)
    span = f"{start:%Y-%m-%d %H:%M} to {end:%Y-%m-%d %H:%M} UTC"
    notes.append(
        f"{len(records)} captured request(s) from {len(files)} file(s), {span}; versions: "
        + (", ".join(f"{v} ({n})" for v, n in seen.most_common()) or "none")
    )
    if synthetic:
        notes.append(f"{synthetic} synthetic request(s) left out")
    if stable is None:
        others = [v for v, _n in seen.most_common() if v != shadow]
        if not others:
            raise MonitorInputError(
                f"{dep.key}: no captured request of a version other than the shadow "
                f"{shadow} from {span} (versions seen: {dict(seen) or 'none'}); name the "
                "stable version (--stable) or widen spec.monitoring.window_hours"
            )
        stable = others[0]
    report = compare(records, stable, shadow, Thresholds.of(dep))
    report.notes = notes
    return report

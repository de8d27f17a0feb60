"""Cron schedules of the drift job and of retraining: the next run times shown in the plan.

Five-field cron expressions, read in UTC (croniter); see ``docs/monitor.md``.
"""

from __future__ import annotations

from datetime import datetime

from reconciler.core.diagnostics import ModelopsError
from reconciler.spec import cron


def next_runs(expr: str, n: int = 3, now: datetime | None = None) -> list[datetime]:
    """The next ``n`` run times of a five-field cron expression, after ``now``.

    Args:
        expr: e.g. ``"0 3 * * 0"`` (03:00 UTC every Sunday).
        n: how many run times (>= 1).
        now: the starting point (default: the current time); a naive datetime is taken
            as UTC.

    Returns:
        ``n`` timezone-aware UTC datetimes, strictly after ``now``, ascending.

    Raises:
        ModelopsError: (exit 2) not a valid five-field cron expression, one that never
            runs (:mod:`reconciler.spec.cron`), or ``n < 1``.
    """
    if n < 1:
        raise ModelopsError(f"next_runs: n must be at least 1, got {n}")
    try:
        return cron.next_runs(expr, n, now)
    except cron.CronError as exc:
        raise ModelopsError(f"{expr!r} is not a valid 5-field cron expression: {exc}") from None


def schedules(dep) -> dict[str, list[datetime]]:
    """Next three runs of each schedule a deployment has (for the plan).

    Returns:
        ``{"monitor": [...], "retrain": [...], "batch": [...]}`` with only the schedules
        that are set (for monitoring, not disabled by ``spec.monitoring.enabled: false``;
        for batch, in ``serving.mode: batch``).

    Raises:
        ModelopsError: a schedule that is invalid or never runs (validate reports those
            first, with their position).
    """
    out = {}
    mon = dep.get("spec.monitoring.schedule")
    if isinstance(mon, str) and dep.get("spec.monitoring.enabled", True) is not False:
        out["monitor"] = next_runs(mon)
    ret = dep.get("spec.retraining.schedule")
    if isinstance(ret, str):
        out["retrain"] = next_runs(ret)
    batch = dep.get("spec.serving.batch.schedule")
    if isinstance(batch, str) and dep.get("spec.serving.mode") == "batch":
        out["batch"] = next_runs(batch)
    return out

"""Cron schedules of the drift job and of retraining: the next run times shown in the plan.

Five-field cron expressions, read in UTC (croniter); see ``docs/monitor.md``.
"""

from __future__ import annotations

from datetime import UTC, datetime

from croniter import croniter

from reconciler.core.diagnostics import ModelopsError


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
        ModelopsError: (exit 2) not a valid five-field cron expression, or ``n < 1``.
    """
    if n < 1:
        raise ModelopsError(f"next_runs: n must be at least 1, got {n}")
    if not isinstance(expr, str) or len(expr.split()) != 5 or not croniter.is_valid(expr):
        raise ModelopsError(
            f"{expr!r} is not a valid 5-field cron expression "
            "(minute hour day-of-month month day-of-week, e.g. '0 3 * * 0')"
        )
    start = now or datetime.now(UTC)
    start = start.replace(tzinfo=UTC) if start.tzinfo is None else start.astimezone(UTC)
    it = croniter(expr, start)
    return [it.get_next(datetime).astimezone(UTC) for _ in range(n)]


def schedules(dep) -> dict[str, list[datetime]]:
    """Next three runs of each schedule a deployment has (for the plan).

    Returns:
        ``{"monitor": [...], "retrain": [...]}`` with only the schedules that are set
        (and, for monitoring, not disabled by ``spec.monitoring.enabled: false``).
    """
    out = {}
    mon = dep.get("spec.monitoring.schedule")
    if isinstance(mon, str) and dep.get("spec.monitoring.enabled", True) is not False:
        out["monitor"] = next_runs(mon)
    ret = dep.get("spec.retraining.schedule")
    if isinstance(ret, str):
        out["retrain"] = next_runs(ret)
    return out

"""next_runs: the next three run times of a cron schedule, shown in the plan (croniter)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from support.monitor import deployment, fraud_repo

from reconciler.core.diagnostics import ModelopsError
from reconciler.monitor.schedule import next_runs, schedules


def test_weekly_schedule_from_a_fixed_time() -> None:
    now = datetime(2026, 11, 29, 7, 0, tzinfo=UTC)  # a Sunday
    assert next_runs("0 3 * * 0", now=now) == [
        datetime(2026, 12, 6, 3, 0, tzinfo=UTC),
        datetime(2026, 12, 13, 3, 0, tzinfo=UTC),
        datetime(2026, 12, 20, 3, 0, tzinfo=UTC),
    ]


def test_runs_are_strictly_after_now_and_in_utc() -> None:
    now = datetime(2026, 11, 29, 9, 0, tzinfo=timezone(timedelta(hours=2)))  # 07:00 UTC
    runs = next_runs("0 * * * *", n=2, now=now)
    assert runs == [
        datetime(2026, 11, 29, 8, 0, tzinfo=UTC),
        datetime(2026, 11, 29, 9, 0, tzinfo=UTC),
    ]
    naive = next_runs("30 */6 * * *", n=1, now=datetime(2026, 11, 29, 6, 30))
    assert naive == [datetime(2026, 11, 29, 12, 30, tzinfo=UTC)]


@pytest.mark.parametrize("expr", ["61 * * * *", "* * *", "0 3 * * 0 *", "", "every day"])
def test_invalid_expressions_are_rejected(expr: str) -> None:
    with pytest.raises(ModelopsError, match="not a valid 5-field cron expression"):
        next_runs(expr)


def test_schedules_of_a_deployment(tmp_path) -> None:
    _, dep = deployment(fraud_repo(tmp_path), "prod")
    out = schedules(dep)
    assert sorted(out) == ["monitor", "retrain"]
    assert all(len(v) == 3 and v == sorted(v) for v in out.values())
    assert all(t.minute == 0 for t in out["monitor"])  # "0 * * * *"
    assert all(t.weekday() == 6 and t.hour == 3 for t in out["retrain"])  # "0 3 * * 0"

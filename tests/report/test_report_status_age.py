"""``modelops status``: model version, last apply time and its age, from a real ledger record."""

from __future__ import annotations

from datetime import UTC, datetime

from rich.console import Console

from reconciler.report import ledger
from reconciler.state.ledger import LedgerRecord


def _record() -> LedgerRecord:
    rec = LedgerRecord("fraud-detector", "dev", platform="local")
    rec.record_success(
        "a" * 40,
        "d1",
        artifact={"bento_tag": "fraud-detector:0123abcd", "model_sha256": "f" * 64},
        outputs={"url": "http://127.0.0.1:3000"},
    )
    return rec


def test_status_row_names_model_version_apply_time_and_age():
    rec = _record()
    rec.history[-1]["time"] = "2026-12-06T17:00:00Z"
    rec.record_failure("b" * 40, "d2", "build failed")  # a later failure is not an apply
    now = datetime(2026, 12, 6, 20, 12, 30, tzinfo=UTC)
    row = ledger.status_row(rec, "Healthy", now=now)
    assert row["model"] == "f" * 12
    assert row["bento_tag"] == "fraud-detector:0123abcd"
    assert row["applied_at"] == "2026-12-06T17:00:00Z"
    assert row["age_s"] == 3 * 3600 + 12 * 60 + 30
    assert row["applied"] == "2026-12-06T17:00:00Z (3h 12m ago)"


def test_a_rollback_counts_as_the_last_apply_and_no_apply_shows_a_dash():
    rec = _record()
    rec.history[-1]["time"] = "2026-12-01T00:00:00Z"
    rec.record_success("c" * 40, "d3", action="rollback")
    rec.history[-1]["time"] = "2026-12-06T20:00:00Z"
    now = datetime(2026, 12, 6, 20, 0, 45, tzinfo=UTC)
    assert ledger.status_row(rec, "Healthy", now=now)["applied"] == (
        "2026-12-06T20:00:00Z (45s ago)"
    )
    fresh = LedgerRecord("x", "dev", platform="local")
    fresh.record_failure("b" * 40, "d2", "failed")
    row = ledger.status_row(fresh, "Failed", now=now)
    assert (row["applied"], row["applied_at"], row["age_s"], row["model"]) == ("-", "", None, "-")


def test_age_text_keeps_the_two_largest_units():
    assert [ledger.age_text(s) for s in (0, 59, 60, 3600, 3661, 90061)] == [
        "0s",
        "59s",
        "1m 0s",
        "1h 0m",
        "1h 1m",
        "1d 1h",
    ]


def test_a_failed_apply_is_shown_until_a_later_apply_succeeds():
    """An apply that exited 3 (SLO missed, canary aborted) with the old version still
    serving: `status` said Healthy and "stalled: no", only JSON had "failures": 1. The
    health now ends with the failure, in text and JSON, until an apply succeeds."""
    rec = _record()
    assert ledger.status_row(rec, "Healthy")["last_failure"] is None
    rec.record_failure("b" * 40, "d2", "p99 latency 512 ms > SLO 200 ms\nload test: 40 req")
    failed_at = rec.history[-1]["time"]
    row = ledger.status_row(rec, "Healthy")
    assert row["last_failure"] == {
        "action": "apply",
        "time": failed_at,
        "revision": "b" * 40,
        "reason": "p99 latency 512 ms > SLO 200 ms",
    }
    marker = f"last apply failed at {failed_at}: p99 latency 512 ms > SLO 200 ms (rev {'b' * 12})"
    assert row["health"] == f"Healthy; {marker}" and row["stalled"] == "no"
    console = Console(width=400, record=True)
    console.print(ledger.status_table([row]))
    assert marker in console.export_text()
    # a transient failure (another run held the stack) is shown too, a long reason cut
    rec.record_failure("c" * 40, "d3", "x" * 1000, transient=True)
    reason = ledger.status_row(rec, "Healthy")["last_failure"]["reason"]
    assert reason.startswith("transient: xxx") and len(reason) == ledger.FAILURE_REASON_CHARS
    # an apply that found nothing to change (Ready True again), or a success, clears it
    rec.set_condition("Ready", "True", "ApplySucceeded", "apply of c found nothing to change")
    assert ledger.status_row(rec, "Healthy")["last_failure"] is None
    rec.record_failure("d" * 40, "d4", "smoke test failed")
    rec.record_success("e" * 40, "d5")
    row = ledger.status_row(rec, "Healthy")
    assert row["last_failure"] is None and row["health"] == "Healthy"

"""The one timestamp format of the ledger, the lock, the engines and the monitor jobs."""

from __future__ import annotations

from datetime import UTC, datetime


def now_iso() -> str:
    """The current UTC time as ISO 8601 with seconds (``2026-11-29T07:37:30Z``)."""
    return datetime.now(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")

"""``modelops monitor run`` and ``modelops retrain``: run a monitor job, record what it returns.

The jobs (:mod:`reconciler.monitor.drift`, :mod:`reconciler.monitor.retrain`) return
their result, or raise their failure, and write nothing to the ledger; these functions
hand it to the one status writer (:mod:`reconciler.state.status`). For retraining they
also read the last completed run (the cooldown) and pass it to the job.
Who records what: ``docs/state.md``; the jobs: ``docs/monitor.md``.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import TYPE_CHECKING

from reconciler.core.clock import now_iso
from reconciler.core.config import Config
from reconciler.core.diagnostics import ModelopsError
from reconciler.monitor.drift import DriftResult, run_drift
from reconciler.monitor.reason import check_reason
from reconciler.monitor.retrain import (
    COMPLETED,
    RetrainError,
    RetrainResult,
    parse_time,
    run_retraining,
)
from reconciler.spec.model import Deployment
from reconciler.state import status
from reconciler.state.ledger import Ledger, LedgerRecord

if TYPE_CHECKING:  # annotations only
    import pandas as pd

RETRAIN_FIELDS = (
    "reason",
    "metric",
    "candidate_score",
    "live_score",
    "branch",
    "commit",
    "sha256",
    "model_uri",
    "log",
)
"""The fields of a :class:`RetrainResult` a ``retrain`` history entry keeps (when set)."""


def monitor_run(
    dep: Deployment,
    config: Config,
    *,
    current: pd.DataFrame | str | None = None,
    sample_size: int | None = None,
    seed: int = 0,
    now: datetime | None = None,
) -> DriftResult:
    """Run the drift job once (:func:`reconciler.monitor.drift.run_drift`) and record it.

    The ledger record gets the run's summary as its ``drift`` field (the report and
    summary paths relative to the repository) and a ``monitor`` history entry; a failed
    run records ``{"status": "failed", "message", "time"}`` (the last successful
    summary kept under ``previous``). A what-if run (``current`` given) records
    nothing, failed or not: it is not the live deployment's traffic.

    Returns:
        The job's :class:`DriftResult`.

    Raises:
        ModelopsError: (exit 2) the job's failure (``MonitorInputError``...), recorded
            first.
    """
    try:
        result = run_drift(
            dep, config, current=current, sample_size=sample_size, seed=seed, now=now
        )
    except ModelopsError as exc:
        if current is not None:
            raise
        failure = {"status": "failed", "message": exc.message, "time": now_iso()}
        status.drift_result(Ledger(config.state_dir), dep, failure, "failed", exc.message)
        raise
    if result.what_if:
        return result
    summary = result.to_dict()
    summary["report_html"] = config.rel(result.report_html)
    summary["summary_json"] = config.rel(result.summary_json)
    status.drift_result(
        Ledger(config.state_dir), dep, summary, summary["status"], result.history_message
    )
    return result


def retrain(
    dep: Deployment,
    config: Config,
    *,
    reason: str = "manual",
    repo=None,
    training_data: str | None = None,
    force: bool = False,
    now: datetime | None = None,
) -> RetrainResult:
    """Run retraining once (:func:`reconciler.monitor.retrain.run_retraining`) and record it.

    The job gets the newest completed retraining (:func:`last_completed`) for its
    cooldown. Every run, skipped and failed ones included, becomes a ``retrain`` history
    entry; a completed one (``proposed``, ``rejected``, ``unchanged``) is also written to
    ``last-completed.json`` (by the writer). Arguments as ``run_retraining``.

    Returns:
        The job's :class:`RetrainResult` (``proposed``, ``rejected``, ``unchanged`` or
        ``skipped``).

    Raises:
        ModelopsError: (exit 2) a ``reason`` that :func:`check_reason` refuses; nothing is
            read, run or recorded.
        RetrainError: (exit 2) the failed run, recorded (``failed``) first.
    """
    reason = check_reason(reason)  # before anything is read or recorded
    last = last_completed(dep, config)
    try:
        result = run_retraining(
            dep,
            config,
            reason=reason,
            repo=repo,
            training_data=training_data,
            force=force,
            now=now,
            last=last,
        )
    except RetrainError as exc:
        _record_retraining(dep, config, exc.result)
        raise
    _record_retraining(dep, config, result)
    return result


def last_retraining(record: LedgerRecord | None) -> dict | None:
    """The newest completed retraining entry of a ledger record's history, or ``None``."""
    if record is None:
        return None
    for entry in reversed(record.history):
        if entry.get("action") == "retrain" and entry.get("result") in COMPLETED:
            return entry
    return None


def last_completed(dep: Deployment, config: Config) -> dict | None:
    """The newest completed retraining: from the ledger history or ``last-completed.json``."""
    ledger = Ledger(config.state_dir)
    found = [last_retraining(ledger.get(dep.name, dep.env))]
    try:
        found.append(json.loads(ledger.last_retraining_path(dep.name, dep.env).read_text()))
    except (OSError, ValueError):
        pass
    dated = [(parse_time(e.get("time", "")), e) for e in found if isinstance(e, dict)]
    dated = [(t, e) for t, e in dated if t is not None]
    return max(dated, key=lambda te: te[0])[1] if dated else None


def _record_retraining(dep: Deployment, config: Config, result: RetrainResult) -> None:
    """A ``retrain`` history entry (a completed run also counts for the cooldown)."""
    extra = {
        k: v for k, v in result.to_dict().items() if k in RETRAIN_FIELDS and v not in ("", None)
    }
    status.retraining_result(
        Ledger(config.state_dir),
        dep,
        result.status,
        result.message,
        completed=result.status in COMPLETED,
        **extra,
    )

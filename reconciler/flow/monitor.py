"""``modelops monitor run`` and ``modelops retrain``: run a monitor job, record what it returns.

The jobs (:mod:`reconciler.monitor.drift`, :mod:`reconciler.monitor.retrain`) return
their result, or raise their failure, and write nothing to the ledger; these functions
hand it to the one status writer (:mod:`reconciler.state.status`). For retraining they
also read the last completed run (the cooldown) and pass it to the job.
Who records what: ``docs/state.md``; the jobs: ``docs/monitor.md``.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from reconciler.core.clock import now_iso
from reconciler.core.config import Config
from reconciler.core.diagnostics import ModelopsError
from reconciler.flow.propose import deliver
from reconciler.flow.rollback import rollback
from reconciler.monitor.drift import DriftResult, run_drift
from reconciler.monitor.experiment import run_experiment
from reconciler.monitor.labels import IngestResult, ingest_labels
from reconciler.monitor.proposal import proposal_repo
from reconciler.monitor.quality import QualityResult, model_classes, run_quality
from reconciler.monitor.reason import MAX_REASON_CHARS, check_reason
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
    "model_version",
    "published",
    "edited",
    "remote",
    "pull_request",
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
        status.drift_result(Ledger.of(config), dep, failure, "failed", exc.message)
        raise
    if result.what_if:
        return result
    summary = result.to_dict()
    summary["report_html"] = config.rel(result.report_html)
    summary["summary_json"] = config.rel(result.summary_json)
    status.drift_result(Ledger.of(config), dep, summary, summary["status"], result.history_message)
    return result


def labels_ingest(
    dep: Deployment, config: Config, file, *, now: datetime | None = None
) -> IngestResult:
    """Ingest one label file (:func:`reconciler.monitor.labels.ingest_labels`) and record it.

    Every ingest, failed ones included, becomes a ``labels`` history entry with its
    counts (accepted, rejected per reason, duplicates, late) and files.

    Raises:
        ModelopsError: (exit 2) labels not configured, unreadable file, missing columns;
            recorded (``failed``) first.
    """
    ledger = Ledger.of(config)
    try:
        result = ingest_labels(dep, config, file, classes=model_classes(dep, config), now=now)
    except ModelopsError as exc:
        status.labels_result(ledger, dep, "failed", exc.message[:2000])
        raise
    doc = result.to_dict()
    extra = {
        k: doc[k]
        for k in (
            "file",
            "format",
            "rows",
            "accepted",
            "duplicates",
            "late",
            "rejected",
            "stored",
            "rejected_file",
        )
        if doc[k] not in ("", None, {})
    }
    status.labels_result(ledger, dep, doc["status"], result.message, **extra)
    return result


def quality_run(
    dep: Deployment,
    config: Config,
    *,
    now: datetime | None = None,
    seed: int = 0,
    report_html: str | None = None,
) -> QualityResult:
    """Run the quality job once (:func:`reconciler.monitor.quality.run_quality`) and record it.

    The ledger record gets the run's summary as its ``quality`` field and a ``quality``
    history entry (shown by ``modelops status``), with the A/B verdict of an accuracy
    experiment under ``experiment`` (:func:`reconciler.monitor.experiment.run_experiment`,
    continued from the previous run's); a failed run records
    ``{"status": "failed", "message", "time"}``. ``report_html``: the drift run's report,
    which gets the quality section (one HTML file for drift, quality and KPI).

    Raises:
        ModelopsError: (exit 2) the job's failure, recorded first.
    """
    ledger = Ledger.of(config)
    try:
        result = run_quality(dep, config, now=now, seed=seed, report_html=report_html)
    except ModelopsError as exc:
        failure = {"status": "failed", "message": exc.message, "time": now_iso()}
        status.quality_result(ledger, dep, failure, "failed", exc.message[:2000])
        raise
    summary = result.to_dict()
    summary["summary_json"] = config.rel(result.summary_json)
    summary["report_html"] = config.rel(result.report_html)
    message = result.message
    record = ledger.get(dep.name, dep.env)
    previous = ((record.quality if record else None) or {}).get("experiment")
    try:
        experiment = run_experiment(dep, config, previous, now)
    except ModelopsError as exc:
        experiment = {"verdict": "failed", "message": exc.message[:2000]}
    if experiment is not None:
        summary["experiment"] = experiment
        message += f"; experiment {experiment.get('summary') or experiment['verdict']}"
    status.quality_result(ledger, dep, summary, result.verdict, message)
    return result


def act_on_quality(dep: Deployment, config: Config, result: QualityResult) -> dict:
    """Do what ``spec.monitoring.quality.on_quality_drop`` says after a quality alert.

    ``alert``: nothing more (the alert is recorded). ``retrain``: one retraining run
    (:func:`retrain`) whose reason quotes the verdict (it goes into the proposal's commit
    and the ledger). ``rollback``: re-apply the last good revision
    (:func:`reconciler.flow.rollback.rollback`), recorded by the apply as usual.

    Returns:
        ``{"action", "status", ...}``: the retraining result's fields, or the
        rollback's ``{"revision", "exit_code"}``.

    Raises:
        ModelopsError: rollback without a last good revision; the failed retraining.
    """
    action = result.action
    if not result.alerted or action == "alert":
        return {"action": action, "status": "none" if not result.alerted else "alerted"}
    if action == "retrain":
        reason = check_reason(f"quality: {result.message}"[:MAX_REASON_CHARS])
        return {"action": action, **retrain(dep, config, reason=reason).to_dict()}
    record = Ledger.of(config).get(dep.name, dep.env)
    if record is None or not record.lastGoodRevision:
        raise ModelopsError(
            f"{dep.key}: quality alert with on_quality_drop: rollback, but no last good "
            "revision is recorded; roll back by hand with modelops rollback --to REV"
        )
    to = record.lastGoodRevision.removesuffix("-dirty")
    report = rollback(config, dep.name, dep.env, to)
    return {
        "action": action,
        "status": "rolled back" if report.exit_code == 0 else "failed",
        "revision": to,
        "exit_code": report.exit_code,
    }


def retrain(
    dep: Deployment,
    config: Config,
    *,
    reason: str = "manual",
    repo=None,
    training_data: str | None = None,
    force: bool = False,
    now: datetime | None = None,
    base: bool = False,
    remote: str | None = None,
) -> RetrainResult:
    """Run retraining once (:func:`reconciler.monitor.retrain.run_retraining`), deliver a
    proposal (:func:`reconciler.flow.propose.deliver`: push, pull request) and record it.

    The job gets the newest completed retraining (:func:`last_completed`) for its
    cooldown. Every run, skipped and failed ones included, becomes a ``retrain`` history
    entry; a completed one (``proposed``, ``rejected``, ``unchanged``) is also written to
    ``last-completed.json`` (by the writer). Arguments as ``run_retraining``; ``remote``
    as ``deliver`` (default ``origin`` when there is one).

    Returns:
        The job's :class:`RetrainResult` (``proposed``, ``rejected``, ``unchanged`` or
        ``skipped``).

    Raises:
        ModelopsError: (exit 2) a ``reason`` that :func:`check_reason` refuses; nothing is
            read, run or recorded.
        RetrainError: (exit 2) the failed run, recorded (``failed``) first; a push or a
            pull request that failed is a failed run too, with its branches deleted.
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
            base=base,
        )
        if result.status == "proposed":
            _deliver(dep, config, repo, result, remote)
    except RetrainError as exc:
        _record_retraining(dep, config, exc.result)
        raise
    _record_retraining(dep, config, result)
    return result


def _deliver(dep, config, repo, result: RetrainResult, remote: str | None) -> None:
    """Push the proposal and open its pull request; a failure fails the run.

    Raises:
        RetrainError: the push or the forge failed (the branches are deleted by then).
    """
    record = Ledger.of(config).get(dep.name, dep.env)
    try:
        deliver(proposal_repo(config, repo), dep, result, record, remote=remote)
    except ModelopsError as exc:
        result.status = "failed"
        result.message = exc.message
        result.branch = result.commit = ""  # deleted: the history names no branch
        raise RetrainError(exc.message, result) from None


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
    ledger = Ledger.of(config)
    found = [
        last_retraining(ledger.get(dep.name, dep.env)),
        ledger.last_retraining(dep.name, dep.env),
    ]
    dated = [(parse_time(e.get("time", "")), e) for e in found if isinstance(e, dict)]
    dated = [(t, e) for t, e in dated if t is not None]
    return max(dated, key=lambda te: te[0])[1] if dated else None


def _record_retraining(dep: Deployment, config: Config, result: RetrainResult) -> None:
    """A ``retrain`` history entry (a completed run also counts for the cooldown)."""
    extra = {
        k: v for k, v in result.to_dict().items() if k in RETRAIN_FIELDS and v not in ("", None)
    }
    status.retraining_result(
        Ledger.of(config),
        dep,
        result.status,
        result.message,
        completed=result.status in COMPLETED,
        **extra,
    )

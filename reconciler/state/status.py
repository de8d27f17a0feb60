"""The one status writer: every change to a ledger record goes through these functions.

Engines and jobs return values (:class:`~reconciler.engine.base.ApplyResult`, a drift
summary, a retraining result); the flow hands them to a function here, which
writes the record once, with the right history entry (``docs/state.md``). A stalled
deployment is marked by :func:`failed` (after ``config.stalled_after`` failures with the
same inputs), a held one by :func:`rolled_back`.

Every write is a read, a change and a conditional write (:meth:`Ledger.put`): when another
writer changed the record in between (a monitor job beside an apply, two runners on shared
``s3://`` state: an ETag mismatch), the function reads the record again and redoes its
change, up to :data:`CONFLICT_RETRIES` times; nothing is ever overwritten unseen.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import TypeVar

from reconciler.build.artifact import Artifact
from reconciler.core.clock import now_iso
from reconciler.engine.base import ApplyResult
from reconciler.spec.model import Deployment
from reconciler.state.backend import StateConflict, StateStoreError, StateWriteError
from reconciler.state.ledger import Ledger, LedgerRecord, actor
from reconciler.state.reasons import (
    ABORTED,
    APPLY,
    APPLY_SUCCEEDED,
    CANARY,
    DESTROY,
    FAILED,
    LABELS,
    MONITOR,
    PROMOTED,
    QUALITY,
    READY,
    RESTORE_FAILED,
    RETRAIN,
    ROLLBACK,
    ROLLBACK_SUCCEEDED,
    STALLED,
    SUCCEEDED,
)

#: How many times a status write reads the record again after a conflicting write (each
#: retry is another writer's completed write in between, so five in a row means a writer
#: that never stops, not contention).
CONFLICT_RETRIES = 5

_F = TypeVar("_F", bound=Callable)


def _merging(fn: _F) -> _F:
    """Run a status function again (it reads the record afresh) when its write conflicts.

    Raises:
        ModelopsError: (exit 2) still conflicting after :data:`CONFLICT_RETRIES` retries:
            the message names the record; nothing was overwritten.
    """

    @functools.wraps(fn)
    def run(ledger: Ledger, *args, **kwargs):
        for _ in range(CONFLICT_RETRIES):
            try:
                return fn(ledger, *args, **kwargs)
            except StateConflict:
                continue
        try:
            return fn(ledger, *args, **kwargs)
        except StateConflict as exc:
            raise StateConflict(
                f"{ledger.backend.describe(exc.key)} was changed by another writer each of "
                f"{CONFLICT_RETRIES + 1} times this run recorded its {fn.__name__} result "
                "(ETag mismatch); nothing was overwritten. Find the other writer (a second "
                "runner on the same state?) and run the command again.",
                exc.key,
            ) from None

    return run  # type: ignore[return-value]


def _record_of(ledger: Ledger, dep: Deployment) -> LedgerRecord:
    return ledger.get(dep.name, dep.env) or LedgerRecord(dep.name, dep.env)


def _live_again(rec: LedgerRecord, dep: Deployment, digest: str, state: dict | None) -> None:
    """What every successful apply (changed or not) records besides its history entry.

    ``lastAttemptedDigest`` and ``lastAppliedDigest`` are the flow's inputs digest
    (stalled detection, rollback holds, ``OutOfSync``); ``inputsDigest`` stays the
    engine's own (the local engine compares it to decide that a re-apply is a no-op).
    """
    rec.lastAttemptedDigest = rec.lastAppliedDigest = digest
    rec.failures = 0
    rec.conditions = [c for c in rec.conditions if c.get("type") != STALLED]
    rec.suspended = {}
    rec.destroyed = {}  # applied again after a destroy: live, the history goes on
    rec.specFile = dep.spec.file
    rec.platform = dep.platform
    if state is not None:
        rec.desiredState = state


def _rollout(rec: LedgerRecord, revision: str, rollout: dict | None) -> None:
    """History of a local canary: one ``canary`` entry per step walked (its checks), then
    one with the verdict (``promoted`` | ``aborted``); the verdict is also kept in
    ``outputs.rollout`` (``{"verdict", "reason", "steps", "time"}``) for ``status``."""
    if not rollout:
        return
    checks = rollout.get("checks") or []
    for weight in rollout.get("steps") or []:
        mine = [c for c in checks if c.get("weight") == weight]
        if not mine:
            continue
        failed = [c for c in mine if c.get("result") == FAILED]
        rec.add_history(
            CANARY,
            revision,
            FAILED if failed else SUCCEEDED,
            f"step {weight}%: {len(mine) - len(failed)} of {len(mine)} check(s) passed"
            + (f"; {'; '.join(failed[-1].get('failed') or [])}" if failed else ""),
            weight=weight,
            checks=mine,
            **({"time": mine[-1]["time"]} if mine[-1].get("time") else {}),  # step's end
        )
    verdict = PROMOTED if rollout.get("verdict") == PROMOTED else ABORTED
    rec.add_history(CANARY, revision, verdict, str(rollout.get("reason", ""))[:2000])
    rec.outputs = {
        **rec.outputs,
        "rollout": {
            "verdict": verdict,
            "reason": str(rollout.get("reason", ""))[:500],
            "steps": list(rollout.get("steps") or []),
            "time": rec.history[-1]["time"],
        },
    }


def _success(
    rec: LedgerRecord,
    dep: Deployment,
    result: ApplyResult,
    revision: str,
    artifact: Artifact,
    action: str,
) -> None:
    rec.record_success(
        revision,
        result.engine_digest,
        action=action,
        message=result.message,
        artifact=artifact.to_dict(),
        outputs=dict(result.outputs),
        platform=dep.platform,
        spec_file=dep.spec.file,
        **({"smoke": result.smoke.to_dict()} if result.smoke is not None else {}),
    )


@_merging
def applied(
    ledger: Ledger,
    dep: Deployment,
    result: ApplyResult,
    *,
    revision: str,
    digest: str,
    artifact: Artifact,
    desired_state: dict | None,
) -> None:
    """Record an apply that ran (``result.ran``): what is live now, and an ``apply`` entry.

    Args:
        ledger: the ledger.
        dep: the deployment.
        result: what the engine returned.
        revision: the Git revision applied.
        digest: the flow's inputs digest (:func:`reconciler.flow.digests.inputs_digest`).
        artifact: the Bento applied.
        desired_state: the rendered DesiredState (JSON form) for later offline plans;
            ``None`` keeps the recorded one.
    """
    rec = _record_of(ledger, dep)
    _success(rec, dep, result, revision, artifact, APPLY)
    _rollout(rec, revision, result.rollout)
    _live_again(rec, dep, digest, desired_state)
    _settled(rec)
    ledger.put(rec)


@_merging
def unchanged(
    ledger: Ledger,
    dep: Deployment,
    *,
    revision: str,
    digest: str,
    desired_state: dict | None,
) -> None:
    """Record an apply the engine found nothing to do for (``result.ran`` False).

    No history entry; the applied revision moves to ``revision``; ``Ready`` becomes
    ``True`` when an attempt before had failed. The file is rewritten only when
    something in it changes.
    """
    rec = _record_of(ledger, dep)
    before = rec.to_dict()
    _unchanged(rec, dep, revision, digest, desired_state)
    ready = rec.condition(READY) or {}
    if ready.get("status") != "True":  # a failed attempt before: what is live is fine again
        rec.set_condition(
            READY, "True", APPLY_SUCCEEDED, f"apply of {revision[:12]} found nothing to change"
        )
    _settled(rec)
    if rec.to_dict() != before:
        ledger.put(rec)


def _unchanged(rec, dep, revision: str, digest: str, desired_state: dict | None) -> None:
    if revision and rec.lastAppliedRevision != revision:
        rec.lastAppliedRevision = revision
        rec.lastAttemptedRevision = revision
    _live_again(rec, dep, digest, desired_state)


@_merging
def failed(
    ledger: Ledger,
    dep: Deployment,
    *,
    revision: str,
    digest: str,
    message: str,
    stalled_after: int,
    outputs: dict | None = None,
    restore_failed: str = "",
    transient: bool = False,
    rollout: dict | None = None,
) -> None:
    """Record a failed apply attempt once; what was applied before stays recorded.

    Consecutive failures with the same ``digest`` are counted; at ``stalled_after`` the
    record is ``Stalled`` (:meth:`LedgerRecord.record_failure`) and later applies skip it
    until the digest changes.

    Args:
        outputs: the previous server's new outputs when it had to make way for the new
            one and was started again (:class:`~reconciler.engine.base.ApplyError`).
        restore_failed: why that previous server could not start again; ``Ready`` is
            then ``False`` with reason ``RestoreFailed``.
        transient: the failure is not the spec's fault (``flow/transient.py``): reason
            ``TransientFailure``, not counted toward ``Stalled``.
        rollout: an aborted local canary (its steps and verdict are recorded first, as
            ``canary`` entries; the stable version's outputs keep the verdict).
    """
    rec = _record_of(ledger, dep)
    if outputs is not None:
        rec.outputs = outputs
    _rollout(rec, revision, rollout)
    rec.record_failure(
        revision,
        digest,
        message,
        stalled_after=stalled_after,
        platform=dep.platform,
        spec_file=dep.spec.file,
        transient=transient,
    )
    if restore_failed:
        rec.set_condition(
            READY, "False", RESTORE_FAILED, f"previous server could not restart: {restore_failed}"
        )
    _settled(rec)
    ledger.put(rec)


@_merging
def rolled_back(
    ledger: Ledger,
    dep: Deployment,
    result: ApplyResult,
    *,
    revision: str,
    digest: str,
    artifact: Artifact,
    desired_state: dict | None,
    head_digest: str,
    revert: list[dict],
) -> None:
    """Record a rollback to ``revision`` (a ``rollback`` entry) and hold the deployment.

    ``suspended`` becomes ``{"reason": "rollback", "revision", "headDigest", "since",
    "revert"}``: ``apply`` leaves the deployment alone while the spec at head still has
    inputs digest ``head_digest``. ``Ready`` is True with reason ``RollbackSucceeded``.
    """
    rec = _record_of(ledger, dep)
    if result.ran:
        _success(rec, dep, result, revision, artifact, ROLLBACK)
        _live_again(rec, dep, digest, desired_state)
    else:
        _unchanged(rec, dep, revision, digest, desired_state)
        rec.add_history(ROLLBACK, revision, SUCCEEDED, result.message)
    rec.set_condition(READY, "True", ROLLBACK_SUCCEEDED, f"rolled back to {revision[:12]}")
    rec.suspended = {
        "reason": "rollback",
        "revision": revision,
        "headDigest": head_digest,
        "since": rec.history[-1]["time"] if rec.history else "",
        "revert": revert,
    }
    _settled(rec)
    ledger.put(rec)


@_merging
def restored(ledger: Ledger, record: LedgerRecord, result: ApplyResult) -> None:
    """Record that the recorded deployment was restored as it was (a local router started
    again for the recorded server: :meth:`~reconciler.engine.local.LocalEngine.restore_router`).

    The new ``outputs`` and a succeeded ``apply`` history entry at the applied revision
    (with ``restored: true``; the message says what was restored); the revisions,
    digests and artifact stay: what is live is still what the last apply made live.
    ``Ready`` is ``True`` unless an apply
    attempt after that one failed (it stays ``False``: that spec is still not live).
    """
    rec = ledger.get(record.name, record.environment) or record
    rec.outputs = dict(result.outputs)
    rec.add_history(
        APPLY,
        rec.lastAppliedRevision,
        SUCCEEDED,
        result.message,
        artifact=(rec.artifact or {}).get("bento_tag", ""),
        restored=True,
    )
    ready = rec.condition(READY) or {}
    if ready.get("status") != "False" or rec.lastAttemptedDigest == rec.lastAppliedDigest:
        rec.set_condition(READY, "True", APPLY_SUCCEEDED, result.message)
    ledger.put(rec)


@_merging
def pending(
    ledger: Ledger,
    key: tuple[str, str],
    *,
    action: str,
    revision: str,
    artifact: str = "",
    platform: str = "",
) -> dict:
    """Record an action about to start (intent first): ``record.pending``.

    Written before the engine starts or stops a server, so a run killed in between
    leaves a visible trace: ``status`` shows it, and the next run stops the
    deployment's unrecorded servers and records the outcome, which clears it.

    Args:
        key: ``(name, environment)``; a record is created when there is none.
        action: ``apply`` or ``destroy``.
        revision: the Git revision the run is at.
        artifact: the Bento tag being started (``""`` for a destroy).
        platform: the deployment's platform, kept on a record created here.

    Returns:
        The previous ``pending`` value (``{}`` when the last run finished).

    Raises:
        LedgerError: the record is corrupt, or the state directory cannot be written
            (nothing was started or stopped).
    """
    name, env = key
    rec = ledger.get(name, env) or LedgerRecord(name, env)
    before = dict(rec.pending)
    rec.platform = rec.platform or platform
    rec.pending = {
        "action": action,
        "time": now_iso(),
        "actor": actor(),
        "revision": revision,
        "artifact": artifact,
    }
    ledger.put(rec)
    return before


@_merging
def canary_progress(ledger: Ledger, key: tuple[str, str], check: dict) -> None:
    """Record a local canary's latest check while it runs: ``pending.canary`` (``step``,
    ``weight``, ``result``, ``failed``, ``time``, and ``checks``: how many so far), so
    ``status`` shows a canary in progress; the apply's outcome (:func:`applied`,
    :func:`failed`) clears it and records every step. Nothing is written when no apply
    is pending (the record was settled meanwhile)."""
    name, env = key
    rec = ledger.get(name, env)
    if rec is None or not rec.pending:
        return
    done = int((rec.pending.get("canary") or {}).get("checks", 0)) + 1
    rec.pending = {
        **rec.pending,
        "canary": {
            "step": check.get("step"),
            "weight": check.get("weight"),
            "result": check.get("result"),
            "failed": list(check.get("failed") or []),
            "time": now_iso(),
            "checks": done,
        },
    }
    ledger.put(rec)


def _settled(rec: LedgerRecord) -> None:
    rec.pending = {}


@_merging
def destroyed(ledger: Ledger, record: LedgerRecord, *, revision: str, reason: str) -> None:
    """Mark a torn-down deployment destroyed, keeping its record and history.

    (:meth:`LedgerRecord.record_destroyed`: a ``destroy`` entry at ``revision`` saying
    ``reason``.) A record that is already destroyed is left as it is.
    """
    rec = ledger.get(record.name, record.environment) or record
    if not rec.destroyed or rec.pending:
        if not rec.destroyed:
            rec.record_destroyed(revision, reason)
        _settled(rec)
        ledger.put(rec)


@_merging
def destroy_failed(ledger: Ledger, record: LedgerRecord, *, revision: str, message: str) -> None:
    """Add a failed ``destroy`` entry; the record stays live.

    Raises:
        LedgerError: the record is corrupt (the caller reports it with the teardown).
    """
    rec = ledger.get(record.name, record.environment)
    if rec is not None and not rec.destroyed:
        rec.add_history(DESTROY, revision, FAILED, message[:2000])
        _settled(rec)
        ledger.put(rec)


def _job_record(ledger: Ledger, dep: Deployment) -> LedgerRecord:
    return ledger.get(dep.name, dep.env) or LedgerRecord(
        name=dep.name, environment=dep.env, platform=dep.platform, specFile=dep.spec.file
    )


@_merging
def drift_result(ledger: Ledger, dep: Deployment, drift: dict, result: str, message: str) -> None:
    """Record a drift run: the record's ``drift`` field and a ``monitor`` history entry.

    Args:
        drift: the run's summary (``{"status", ...}``); a failed run keeps the last
            successful one under ``previous``.
        result: the history result (``ok``, ``drifted``, ``failed``...).
        message: one line for the history.
    """
    record = _job_record(ledger, dep)
    if result == FAILED and record.drift and record.drift.get("status") != FAILED:
        drift = {**drift, "previous": record.drift}
    record.drift = drift
    record.add_history(MONITOR, record.lastAppliedRevision, result, message)
    ledger.put(record)


@_merging
def quality_result(
    ledger: Ledger, dep: Deployment, quality: dict, result: str, message: str
) -> None:
    """Record a quality run: the record's ``quality`` field and a ``quality`` history entry.

    Args:
        quality: the run's summary (``{"status", "metrics", "estimated", "kpi", ...}``);
            a failed run keeps the last successful one under ``previous``.
        result: the history result (``ok``, ``quality alert``, ``insufficient labels``,
            ``inconclusive``, ``failed``).
        message: one line for the history.
    """
    record = _job_record(ledger, dep)
    if result == FAILED and record.quality and record.quality.get("status") != FAILED:
        quality = {**quality, "previous": record.quality}
    record.quality = quality
    record.add_history(QUALITY, record.lastAppliedRevision, result, message)
    ledger.put(record)


@_merging
def labels_result(ledger: Ledger, dep: Deployment, result: str, message: str, **extra) -> None:
    """Record a ``labels ingest`` as a ``labels`` history entry (``result`` ``ok``,
    ``rejected rows`` or ``failed``; ``extra``: counts and the stored files)."""
    record = _job_record(ledger, dep)
    record.add_history(LABELS, record.lastAppliedRevision, result, message, **extra)
    ledger.put(record)


@_merging
def retraining_result(
    ledger: Ledger,
    dep: Deployment,
    result: str,
    message: str,
    *,
    completed: bool = False,
    **extra: object,
) -> dict:
    """Record a retraining run as a ``retrain`` history entry; returns that entry.

    Args:
        result: the run's status (``proposed``, ``rejected``, ``unchanged``, ``skipped``,
            ``failed``).
        message: one line for the history.
        completed: the run completed (it counts for the cooldown): the entry also replaces
            :meth:`Ledger.last_retraining`, which outlives the capped history.
        extra: more fields of the entry (``reason``, ``metric``, ``branch``...).
    """
    record = _job_record(ledger, dep)
    record.add_history(RETRAIN, record.lastAppliedRevision, result, message, **extra)
    ledger.put(record)
    entry = record.history[-1]
    if completed:
        ledger.put_last_retraining(dep.name, dep.env, entry)
    return entry


def model_planned(ledger: Ledger, dep: Deployment, source: dict, *, revision: str) -> bool:
    """Pin the remote model a plan showed for ``dep`` (:meth:`Ledger.put_pin`).

    Args:
        source: :meth:`reconciler.build.fetch.ModelSource.to_dict` (``uri``, ``kind``,
            ``resolved``, ``version``, ``sha256``).
        revision: the Git revision planned.

    Returns:
        whether the pin was written (``False``: the state is not writable here, e.g. a
        pull request's job without write access to it; apply then deploys what it
        resolves).
    """
    pin = {**source, "revision": revision, "time": now_iso()}
    try:
        ledger.put_pin(dep.name, dep.env, pin)
    except (StateWriteError, StateStoreError):
        return False
    return True

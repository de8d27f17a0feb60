"""``modelops apply``: validate, police, then build and apply each deployment.

One failing deployment does not stop the others (exit 3 names each failure); the run
holds the state lock. Ledger bookkeeping: ``docs/state.md``.
"""

from __future__ import annotations

from reconciler.core import git as g
from reconciler.core.config import Config
from reconciler.engine.render import render
from reconciler.flow.destroy import PRUNED, destroy_record
from reconciler.flow.digests import inputs_digest
from reconciler.flow.gates import (
    check_dirty,
    envs_of,
    gate,
    orphans,
    policy_gate,
    prune_plan,
    require_pulumi,
)
from reconciler.flow.run import Outcome, RunReport, sort_report
from reconciler.flow.stages import (
    Engines,
    build_artifact,
    state_dict,
)
from reconciler.gitops.changes import (
    detect_changes,
)
from reconciler.spec.model import Deployment
from reconciler.spec.repo import load_files
from reconciler.state.ledger import Ledger, LedgerRecord
from reconciler.state.lock import StateLock


def apply(
    config: Config,
    env: str,
    targets: list[str] | None = None,
    *,
    base: str | None = None,
    prune: bool = False,
    allow_destroy_protected: bool = False,
    allow_mass_delete: bool = False,
    allow_dirty: bool = True,
    lock_timeout_s: float = 60.0,
) -> RunReport:
    """Converge ``env``: validate, police, then build and apply each deployment.

    Local targets go to the local engine (``bentoml serve`` on loopback); every other
    target goes to the Pulumi Automation API engine, which needs the ``pulumi`` CLI.
    The whole run holds the state-directory lock (:class:`~reconciler.state.lock.StateLock`).

    Args:
        config: repository configuration.
        env: the environment.
        targets: spec files/dirs/names; ``None`` = every spec with an overlay for ``env``.
        base: only the specs changed or affected since this revision (apply on merge);
            specs deleted since then are the deletion candidates.
        prune: destroy deployments whose spec is gone (otherwise they are ``orphaned``).
        allow_destroy_protected: with ``prune``, also in a protected environment.
        allow_mass_delete: with ``prune``, allow deleting more than
            ``config.max_delete_share`` of the environment's deployments.
        allow_dirty: apply uncommitted changes, recording ``<sha>-dirty``; when False,
            uncommitted changes to specs, policies or model files stop the run.
        lock_timeout_s: seconds to wait for another apply holding the lock.

    Returns:
        A :class:`RunReport`; ``exit_code`` is 1 when the gates blocked (nothing was
        built), 3 when at least one deployment failed or is stalled (the others were
        still applied).

    Raises:
        ModelopsError: (exit 2) a cloud target without the ``pulumi`` CLI; unknown
            environment or target; corrupt ledger; dirty tree (see ``allow_dirty``); a
            mass delete without ``allow_mass_delete``; the lock is held. Raised before
            anything is applied.
    """

    envs = envs_of(config, env)
    report = RunReport("apply", env, g.head_revision(config.root).removesuffix("-dirty"), envs=envs)
    with StateLock(config.state_dir, timeout_s=lock_timeout_s):
        if base is not None:
            changes = detect_changes(config, base, None)
            report.changes, report.base = changes, changes.base
            report.diagnostics.extend(changes.diagnostics)
            files = [config.root / s.path for s in changes.planned]
            loaded = load_files(config, files, envs)
            report.diagnostics.extend(loaded.diagnostics)
            deployments = [] if loaded.errors else loaded.deployments
            if deployments and not policy_gate(config, deployments, report):
                deployments = []
            gone = {s.name for s in changes.deleted}
            candidates = [
                r for r in Ledger(config.state_dir).all() if r.environment == env and r.name in gone
            ]
        else:
            deployments = gate(config, targets, env, report)
            candidates = []
            if not report.blocked:
                candidates = orphans(config, envs, {d.key for d in deployments}, targets)
        if report.blocked:
            return report
        check_dirty(config, deployments, allow_dirty, report)
        require_pulumi({d.key: d.platform for d in deployments}, env)
        destroy_list = prune_plan(
            config, env, candidates, prune, allow_destroy_protected, allow_mass_delete, report
        )
        engines = Engines(config)
        ledger = Ledger(config.state_dir)
        for dep in deployments:
            report.outcomes.append(apply_one(dep, config, ledger, engines, report.revision))
        for record in destroy_list:
            report.outcomes.append(destroy_record(record, engines, ledger, report.revision, PRUNED))
    sort_report(report)
    report.offline = False
    return report


def apply_one(
    dep: Deployment, config: Config, ledger: Ledger, engines: Engines, revision: str
) -> Outcome:
    """Build and apply one deployment and record it; never raises for its own failure."""
    outcome = Outcome(dep.key, dep.name, dep.env, dep.platform, "failed", revision=revision)
    digest = inputs_digest(dep, config)
    record = ledger.get(dep.name, dep.env)
    if record is not None and record.suspended:
        if record.suspended.get("headDigest") == digest:
            outcome.status = "held"
            outcome.message = (
                f"rolled back to {record.suspended.get('revision', '')[:12]}; left alone until "
                "its spec or inputs change in Git (revert: "
                f"{', '.join(c['sha'][:12] for c in record.suspended.get('revert', [])) or '-'})"
            )
            return outcome
    if record is not None and record.stalled and record.lastAttemptedDigest == digest:
        outcome.status = "stalled"
        outcome.message = f"stalled, not retried: {record.stalled_reason}"
        return outcome
    before = record.to_dict() if record is not None else None
    history_len = len(record.history) if record is not None else 0
    try:
        artifact = build_artifact(dep, config, revision)
        outcome.artifact = artifact
        outcome.build = {"status": "reused" if artifact.reused else "built"}
        engine = engines.for_platform(dep.platform)
        result = engine.apply(dep, artifact, revision)
    except Exception as exc:  # noqa: BLE001 - one failing deployment does not stop the others
        message = getattr(exc, "message", None) or f"{type(exc).__name__}: {exc}"
        outcome.message = message
        smoke = getattr(exc, "smoke", None)
        if smoke is not None and hasattr(smoke, "to_dict"):
            outcome.smoke = smoke
        _record_failure(dep, config, ledger, revision, digest, message, record)
        return outcome
    changed = bool(getattr(result, "changed", True))
    outcome.status = "applied" if changed else "unchanged"
    outcome.outputs = dict(getattr(result, "outputs", {}) or {})
    outcome.message = getattr(result, "message", "") or outcome.status
    smoke = getattr(result, "smoke", None)
    if smoke is not None:
        outcome.smoke = smoke
    plan_value = getattr(result, "plan", None)
    if plan_value is not None and hasattr(plan_value, "to_dict"):
        outcome.plan = plan_value
    state = None
    try:
        state = state_dict(render(dep, artifact, config))
    except Exception:  # noqa: BLE001 - the apply succeeded; the offline plan is a nicety
        state = None
    rec = ledger.get(dep.name, dep.env) or LedgerRecord(dep.name, dep.env)
    engine_recorded = len(rec.history) > history_len
    if changed and not engine_recorded:
        rec.record_success(
            revision,
            digest,
            message=outcome.message,
            artifact=artifact.to_dict(),
            outputs=outcome.outputs,
            platform=dep.platform,
            spec_file=dep.spec.file,
        )
    # The pipeline's digest goes to lastAttemptedDigest; inputsDigest stays the engine's
    # own (the local engine compares it to decide that a re-apply is a no-op).
    rec.lastAttemptedDigest = digest
    rec.failures = 0
    rec.conditions = [
        c for c in rec.conditions if not (c.get("type") == "Stalled" and c.get("status") != "True")
    ]
    if rec.stalled:
        rec.conditions = [c for c in rec.conditions if c.get("type") != "Stalled"]
    rec.suspended = {}
    rec.destroyed = {}  # applied again after a destroy: live, the history goes on
    rec.specFile = dep.spec.file
    rec.platform = dep.platform
    if state is not None:
        rec.desiredState = state
    if rec.to_dict() != before:
        ledger.put(rec)
    return outcome


def _record_failure(dep, config, ledger, revision, digest, message, before) -> None:
    """Record a failed attempt once, with the pipeline's digest and failure count.

    ``before`` is the record as it was before the engine ran (``None`` if there was
    none). An engine that records failures itself (the local and Pulumi engines do, with
    their own digests) is undone first, so each attempt is counted exactly once and the
    consecutive-failure count follows the pipeline's inputs digest.
    """
    rec = ledger.get(dep.name, dep.env) or LedgerRecord(dep.name, dep.env)
    if before is not None and len(rec.history) > len(before.history):
        rec.history = rec.history[: len(before.history)]
        rec.failures = before.failures
        rec.lastAttemptedDigest = before.lastAttemptedDigest
        rec.conditions = [c for c in before.conditions]
    elif before is None and rec.history:  # the engine created the record for this attempt
        rec = LedgerRecord(dep.name, dep.env)
    rec.record_failure(
        revision,
        digest,
        message,
        stalled_after=config.stalled_after,
        platform=dep.platform,
        spec_file=dep.spec.file,
    )
    ledger.put(rec)

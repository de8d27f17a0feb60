"""``modelops apply``: validate, police, then build and apply each deployment.

One failing deployment does not stop the others (exit 3 names each failure); the run
holds the state lock. Ledger bookkeeping: ``docs/state.md``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from reconciler.build.artifact import Artifact
from reconciler.core import git as g
from reconciler.core.config import Config
from reconciler.core.diagnostics import ModelopsError
from reconciler.core.procs import fault_point
from reconciler.core.progress import step
from reconciler.engine.base import ApplyError, ApplyResult, Engine
from reconciler.engine.local import LocalEngine
from reconciler.engine.render import render, stable_image_of
from reconciler.flow.costs import policy_costs
from reconciler.flow.destroy import PRUNED, destroy_record
from reconciler.flow.digests import inputs_digest
from reconciler.flow.gates import (
    check_dirty,
    envs_of,
    gate,
    guard_settings_gate,
    orphans,
    policy_gate,
    prune_plan,
    pulumi_gate,
)
from reconciler.flow.heal import check_live, heal_files, mark_healed
from reconciler.flow.run import Outcome, RunReport, sort_report
from reconciler.flow.sources import check_planned_model
from reconciler.flow.stages import (
    Engines,
    build_artifact,
    error_message,
    state_dict,
)
from reconciler.flow.transient import is_transient, with_retries
from reconciler.gitops.changes import RevisionFiles, detect_changes
from reconciler.monitor.data import MonitorInputError
from reconciler.monitor.quality import model_classes, realized_metric
from reconciler.spec.model import Deployment
from reconciler.spec.repo import load_files
from reconciler.state import status
from reconciler.state.ledger import Ledger
from reconciler.state.lock import StateLock
from reconciler.state.reasons import APPLY


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
        base: only the specs changed or affected since this revision (apply on merge),
            and every other deployment of ``env`` whose live state no longer matches its
            ledger record (self-heal: :func:`~reconciler.flow.heal.check_live`; its
            outcome's ``change`` has status ``diverged`` and the reason); specs deleted
            since then, and deployments whose ``env`` overlay was removed, are the
            deletion candidates; the guard settings are the stricter of the base's and
            the working tree's (:func:`~reconciler.flow.gates.guard_settings_gate`).
            Without ``base`` every deployment is converged anyway (the local engine
            restarts a server that is not healthy, the Pulumi engine refreshes first).
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
            mass delete without ``allow_mass_delete``; the lock is held; a target spec
            file outside the specs directory. Raised before anything is applied.
    """
    envs = envs_of(config, env)
    # a name resolves inside the specs directory; only a path can lie outside it
    specs = config.specs_dir.resolve()
    paths = [Path(t) if Path(t).is_absolute() else config.root / t for t in targets or []]
    outside = [p for p in paths if p.exists() and not p.resolve().is_relative_to(specs)]
    if outside:
        raise ModelopsError(
            f"apply deploys the specs under {config.rel(config.specs_dir)}/, and "
            f"{', '.join(config.rel(f) for f in outside)} is outside it: no spec in the tree "
            "would declare what it deployed (the next run calls it orphaned). Move the file "
            f"into {config.rel(config.specs_dir)}/, or use `modelops plan` or `validate` "
            "to try it; nothing was applied"
        )
    report = RunReport("apply", env, g.head_revision(config.root).removesuffix("-dirty"), envs=envs)
    healing: dict[str, str] = {}
    with StateLock.of(config, timeout_s=lock_timeout_s):
        engines = Engines(config)
        ledger = Ledger.of(config)
        if base is not None:
            changes = detect_changes(config, base, None)
            report.changes, report.base = changes, changes.base
            report.diagnostics.extend(changes.diagnostics)
            files = [config.root / s.path for s in changes.planned]
            gone = {s.name for s in changes.deleted} | {s.name for s in changes.removed(env)}
            # self-heal: every other deployment whose live state left its record
            check = check_live(
                config,
                env,
                ledger,
                engines,
                skip={f"{n}-{env}" for n in gone | {s.name for s in changes.planned}},
            )
            heal, healing = heal_files(config, env, check)
            report.notes.extend(check.notes)
            files += [f for f in heal if f not in files]
            loaded = load_files(config, files, envs)
            report.diagnostics.extend(loaded.diagnostics)
            deployments = [] if loaded.errors else loaded.deployments
            costs = policy_costs(deployments, config, report) if deployments else None
            if deployments and not policy_gate(config, deployments, report, costs):
                deployments = []
            repo = g.require_repo(config.root, "--base")
            config = guard_settings_gate(
                report,
                config,
                RevisionFiles(repo, config.root, repo.commit(changes.base)),
                RevisionFiles(repo, config.root, None),
                allow=True,  # merged: the pull request's plan was blocked until reviewed
            )
            candidates = [
                r for r in Ledger.of(config).all() if r.environment == env and r.name in gone
            ]
        else:
            deployments = gate(
                config,
                targets,
                env,
                report,
                prepare=lambda deps: policy_costs(deps, config, report),
            )
            candidates = []
            if not report.blocked:
                candidates = orphans(config, envs, {d.key for d in deployments}, targets)
        if report.blocked:
            return report
        check_dirty(config, deployments, allow_dirty, report)
        pulumi_gate({d.key: d.platform for d in deployments}, env)
        destroy_list = prune_plan(
            config, env, candidates, prune, allow_destroy_protected, allow_mass_delete, report
        )
        for dep in deployments:
            outcome = apply_one(dep, config, ledger, engines, report.revision)
            if dep.key in healing:
                mark_healed(outcome, healing[dep.key], dep.spec.file)
            report.outcomes.append(outcome)
        for record in destroy_list:
            report.outcomes.append(destroy_record(record, engines, ledger, report.revision, PRUNED))
    sort_report(report)
    report.offline = False
    return report


@dataclass
class Hold:
    """A rollback's hold on the deployment it re-applies (see :func:`apply_one`).

    Attributes:
        head_digest: the inputs digest of the spec at head; ``apply`` leaves the
            deployment alone while the head still has it.
        revert: the commits to revert in Git (``{"sha", "summary"}``).
    """

    head_digest: str
    revert: list[dict] = field(default_factory=list)


def apply_one(
    dep: Deployment,
    config: Config,
    ledger: Ledger,
    engines: Engines,
    revision: str,
    *,
    hold: Hold | None = None,
) -> Outcome:
    """Build and apply one deployment and record it; never raises for its own failure.

    First, a local deployment whose recorded server runs and whose router died gets its
    router back (:func:`_restore_recorded`: the endpoint serves what the ledger records
    before anything from the spec in the tree is tried). A deployment held by a rollback
    (same inputs digest as when it was rolled back) is ``held``, a stalled one with the
    same digest ``stalled``: neither is built. The engine's result goes to the status
    writer: ``applied`` (the engine ran),
    ``unchanged`` (it found nothing to do) or ``failed``. With ``hold`` (a rollback)
    the success is recorded as a rollback that holds the deployment, and the outcome
    is ``applied``.

    Raises:
        LedgerError: the deployment's record is corrupt.
    """
    record = ledger.get(dep.name, dep.env)
    behind = record is not None and record.applied_digest != inputs_digest(dep, config)
    restored = _restore_recorded(record, engines, ledger, server=behind)
    outcome = _apply_one(dep, config, ledger, engines, revision, hold)
    if restored:
        outcome.message = f"{restored}; then: {outcome.message}"
        if outcome.status == "unchanged":
            outcome.status = "applied"  # the router was started again
    return outcome


def _apply_one(
    dep: Deployment,
    config: Config,
    ledger: Ledger,
    engines: Engines,
    revision: str,
    hold: Hold | None,
) -> Outcome:
    """:func:`apply_one` after the recorded deployment was restored (when it could be)."""
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
    try:
        with step("build", dep.key):
            check_planned_model(dep, config, ledger)  # a remote model only as the plan showed
            artifact = build_artifact(dep, config, revision)
    except Exception as exc:  # noqa: BLE001 - one failing deployment does not stop the others
        outcome.message = _record_failure(ledger, dep, config, revision, digest, exc)
        return outcome
    fault_point("build")
    outcome.artifact = artifact
    outcome.build = {"status": "reused" if artifact.reused else "built"}
    try:
        engine = engines.for_platform(dep.platform)
        result = converge(dep, artifact, config, ledger, engine, revision, hold=hold)
    except Exception as exc:  # noqa: BLE001 - recorded by converge; the others go on
        outcome.message = error_message(exc)
        outcome.smoke = exc.smoke if isinstance(exc, ApplyError) else None
        return outcome
    outcome.status = "applied" if result.changed or hold is not None else "unchanged"
    outcome.outputs = dict(result.outputs)
    outcome.message = result.message or ("applied" if result.changed else "unchanged")
    outcome.smoke = result.smoke
    outcome.plan = result.plan
    return outcome


def _restore_recorded(record, engines: Engines, ledger: Ledger, *, server: bool) -> str:
    """Restore the recorded deployment first when only its local router died and the
    recorded server still runs (:meth:`LocalEngine.restore_router`), or, with ``server``
    (the spec in the tree differs from what is live), when the recorded server is gone
    too (:meth:`LocalEngine.restore_server`: the recorded Bento started again; when they
    are the same, the apply below restarts it anyway). The endpoint serves again as the
    ledger recorded it, whatever the spec in the tree then does (a held or stalled
    deployment, or an update that fails its SLO, leaves it serving). Recorded by
    :func:`reconciler.state.status.restored`; returns its message (``""``: nothing was
    restored, or it could not be: the apply below tries anyway)."""
    if record is None or record.destroyed or record.platform != "local" or not record.outputs:
        return ""
    engine = engines.for_platform("local")
    if not isinstance(engine, LocalEngine):
        return ""
    try:
        result = engine.restore_router(record)
        if result is None and server:
            result = engine.restore_server(record)
    except ApplyError:
        return ""
    if result is None:
        return ""
    status.restored(ledger, record, result)
    return result.message


def _sleep(seconds: float) -> None:
    """The wait between retries of a transient failure (a seam for tests)."""
    time.sleep(seconds)


def _realized_reader(config: Config):
    """The local canary's ``realized_quality`` reader: the monitoring job's join of the
    new version's captured predictions and the stored labels
    (:func:`reconciler.monitor.quality.realized_metric`), for the metric the spec names.
    The classifier's classes are read once per deployment; a capture or label store that
    cannot be read (:class:`MonitorInputError`) gives ``None``: not measurable at that
    check, never a pass of its own (the promotion then says the metric was not judged)."""
    classes: dict[str, list[str] | None] = {}

    def read(dep: Deployment, version: str, since: datetime) -> dict | None:
        metric = str(dep.get("spec.target.rollout.analysis.metrics.realized_quality.metric"))
        try:
            if dep.key not in classes and dep.get("spec.model.task") != "regression":
                classes[dep.key] = model_classes(dep, config)
            return realized_metric(
                dep, config, metric, version, since, classes=classes.get(dep.key)
            )
        except MonitorInputError:
            return None

    return read


def converge(
    dep: Deployment,
    artifact: Artifact,
    config: Config,
    ledger: Ledger,
    engine: Engine,
    revision: str,
    *,
    hold: Hold | None = None,
) -> ApplyResult:
    """Let ``engine`` converge ``dep`` to ``artifact`` and record what it returned.

    The engine gets the deployment's ledger record; its result goes to the status
    writer: ``applied`` (the engine ran), ``unchanged`` (it found nothing to do), or,
    with ``hold``, ``rolled_back``; with the rendered DesiredState for later offline
    plans and the inputs digest (:func:`~reconciler.flow.digests.inputs_digest`).

    Raises:
        ApplyError | ModelopsError | Exception: the engine's error, after the failed
            attempt was recorded (:func:`reconciler.state.status.failed`).
        LedgerError: the deployment's record is corrupt.
    """
    digest = inputs_digest(dep, config)
    record = ledger.get(dep.name, dep.env)
    # intent first: a run killed from here on leaves a pending record, and the next run
    # stops the servers no record names (docs/state.md, "Intent before action")
    status.pending(
        ledger,
        (dep.name, dep.env),
        action=APPLY,
        revision=revision,
        artifact=artifact.bento_tag if artifact is not None else "",
        platform=dep.platform,
    )
    if isinstance(engine, LocalEngine):  # a canary's checks are recorded as they are made
        engine.on_canary_check = lambda d, check: status.canary_progress(
            ledger, (d.name, d.env), check
        )
        engine.realized_quality = _realized_reader(config)
    try:
        # throttling, a dropped connection, a stack locked by another update: retried
        # with backoff here, and recorded as transient (not counted) if it persists
        with step("apply", dep.key, f"({dep.platform})"):
            result = with_retries(
                lambda: engine.apply(dep, artifact, revision, record), sleep=_sleep
            )
    except Exception as exc:
        _record_failure(ledger, dep, config, revision, digest, exc)
        raise
    fault_point("record")
    stable = stable_image_of(record.desiredState if record is not None else None)
    try:
        state = state_dict(render(dep, artifact, config, stable_image=stable))
    except Exception:  # noqa: BLE001 - the apply succeeded; the offline plan is a nicety
        state = None
    if hold is not None:
        status.rolled_back(
            ledger,
            dep,
            result,
            revision=revision,
            digest=digest,
            artifact=artifact,
            desired_state=state,
            head_digest=hold.head_digest,
            revert=hold.revert,
        )
    elif result.ran:
        status.applied(
            ledger,
            dep,
            result,
            revision=revision,
            digest=digest,
            artifact=artifact,
            desired_state=state,
        )
    else:
        status.unchanged(ledger, dep, revision=revision, digest=digest, desired_state=state)
    return result


def _record_failure(
    ledger: Ledger, dep: Deployment, config: Config, revision: str, digest: str, exc: Exception
) -> str:
    """Record a failed attempt (build or engine) once; returns its message."""
    message = error_message(exc)
    failure = exc if isinstance(exc, ApplyError) else ApplyError(message)
    status.failed(
        ledger,
        dep,
        revision=revision,
        digest=digest,
        message=message,
        stalled_after=config.stalled_after,
        outputs=failure.outputs,
        restore_failed=failure.restore_failed,
        transient=is_transient(exc),
        rollout=failure.rollout,
    )
    return message

"""``modelops plan``, ``apply``, ``destroy`` and ``status``.

Exit codes: ``plan`` 0, or 1 when anything blocks the merge; ``apply`` 0, 1 when a
spec or policy blocks (nothing applied), 3 when a deployment failed; ``destroy`` 0, or
3 when a teardown failed; ``status`` 0. All: 2 for usage or configuration errors.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated

import typer

from reconciler.commands.options import (
    EnvOption,
    LockTimeout,
    TargetsArg,
    TextOrJson,
    console,
    err,
    get_config,
    out,
    showing_progress,
)
from reconciler.core.diagnostics import ModelopsError
from reconciler.engine.local import LocalEngine
from reconciler.engine.metrics import MetricsUnavailable, server_metrics
from reconciler.flow import apply as apply_flow
from reconciler.flow import destroy as destroy_flow
from reconciler.flow import plan as plan_flow
from reconciler.flow.heal import NOT_APPLIED, head_digests, sync_reason
from reconciler.flow.run import RunReport
from reconciler.gitops.review import load_reviews
from reconciler.report import ledger, plan_text, run
from reconciler.report.plan import plan_writer_for
from reconciler.spec.loader import load_spec
from reconciler.spec.repo import discover
from reconciler.state.backend import open_backend
from reconciler.state.ledger import Ledger, LedgerRecord
from reconciler.state.lock import read_lock

PlanFormat = Annotated[
    str, typer.Option("--format", "-f", help="text, json or markdown (the PR comment).")
]


def _annotate(report: RunReport) -> None:
    """Inside GitHub Actions, also emit findings as workflow annotations (on stderr)."""
    if os.environ.get("GITHUB_ACTIONS") == "true":
        err(run.annotations(report))


def _findings(report: RunReport) -> None:
    """Spec findings (stderr), policy findings (stdout), then what blocks (stderr)."""
    err(plan_text.spec_findings(report))
    out(plan_text.policy_findings(report))
    err(plan_text.blockers(report))


def plan_cmd(
    env: Annotated[
        str | None,
        typer.Option("--env", "-e", help="Environment; default: every environment."),
    ] = None,
    targets: TargetsArg = None,
    fmt: PlanFormat = "text",
    base: Annotated[
        str | None,
        typer.Option(
            "--base", help="Plan only what changed since this Git revision (a PR's base)."
        ),
    ] = None,
    head: Annotated[
        str | None, typer.Option("--head", help="Head revision (default: the working tree).")
    ] = None,
    all_specs: Annotated[
        bool, typer.Option("--all", help="With --base: plan every spec, changed or not.")
    ] = False,
    build: Annotated[
        bool, typer.Option("--build", help="Build Bentos for real image tags.")
    ] = False,
    smoke: Annotated[
        bool,
        typer.Option("--smoke", help="Build, serve locally and run the smoke and SLO check."),
    ] = False,
    allow_mass_delete: Annotated[
        bool,
        typer.Option("--allow-mass-delete", help="Do not block a change deleting most specs."),
    ] = False,
    allow_guard_change: Annotated[
        bool,
        typer.Option(
            "--allow-guard-change",
            help="With --base: a security reviewer approved loosening a guard setting "
            "(max_delete_share, protected_environments, stalled_after, guard_reviewers) "
            "in modelops.yaml.",
        ),
    ] = False,
    reviews: Annotated[
        Path | None,
        typer.Option(
            "--reviews",
            help="With --base: the pull request's reviews (GitHub's JSON list); an "
            "approval of the planned commit by one of guard_reviewers approves a guard "
            "change.",
        ),
    ] = None,
) -> None:
    """Show what `apply` would create, update, replace or delete (changes nothing).

    With --base, only specs changed or affected since the merge base are planned, each
    against its state at the base; --format markdown is the pull-request comment.
    Exit 1 when anything blocks the merge.
    """
    write = plan_writer_for(fmt)  # unknown format: exit 2 before any work
    if head and not base:
        raise ModelopsError("--head needs --base (the revision to compare with)")
    if all_specs and not base:
        raise ModelopsError("--all needs --base (without --base every spec is planned anyway)")
    if reviews is not None and not base:
        raise ModelopsError("--reviews needs --base (reviews approve a pull request's change)")
    pr_reviews = load_reviews(reviews) if reviews is not None else None
    with showing_progress():  # --build / --smoke: on a terminal only
        report = plan_flow.plan(
            get_config(),
            env,
            None if base else targets,
            build=build,
            smoke=smoke,
            base=base,
            head=head,
            all_specs=all_specs,
            allow_mass_delete=allow_mass_delete,
            allow_guard_change=allow_guard_change,
            reviews=pr_reviews,
        )
    _annotate(report)
    if fmt == "text":
        err(plan_text.spec_findings(report))
    out(write(report))
    if fmt == "text":
        err(plan_text.blockers(report))
    raise typer.Exit(report.exit_code)


def apply_cmd(
    env: EnvOption,
    targets: TargetsArg = None,
    fmt: TextOrJson = "text",
    base: Annotated[
        str | None,
        typer.Option("--base", help="Apply only what changed since this revision (on merge)."),
    ] = None,
    prune: Annotated[
        bool, typer.Option("--prune", help="Destroy deployments whose spec was deleted.")
    ] = False,
    allow_destroy_protected: Annotated[
        bool,
        typer.Option(
            "--allow-destroy-protected", help="With --prune: also in a protected environment."
        ),
    ] = False,
    allow_mass_delete: Annotated[
        bool,
        typer.Option(
            "--allow-mass-delete",
            help="With --prune: allow destroying more than max_delete_share of ENV at once.",
        ),
    ] = False,
    allow_dirty: Annotated[
        bool,
        typer.Option("--allow-dirty", help="Apply uncommitted changes (recorded as <sha>-dirty)."),
    ] = False,
    lock_timeout: LockTimeout = 60.0,
) -> None:
    """Validate, police, build and apply every spec with an overlay for ENV.

    Exit 1 when a spec or policy blocks (nothing applied), 3 when a deployment failed
    (the others were applied), 2 for usage errors (lock held, dirty tree, mass delete).
    """
    if base and targets:
        raise ModelopsError("give either --base or spec targets, not both")
    with showing_progress():  # build, start, smoke, load test: on a terminal only
        report = apply_flow.apply(
            get_config(),
            env,
            targets,
            base=base,
            prune=prune,
            allow_destroy_protected=allow_destroy_protected,
            allow_mass_delete=allow_mass_delete,
            allow_dirty=allow_dirty,
            lock_timeout_s=lock_timeout,
        )
    _annotate(report)
    if fmt == "json":
        console.print(json.dumps(report.to_dict(), indent=2), markup=False)
    else:
        _findings(report)
        if report.outcomes:
            console.print(run.outcome_table(report))
        elif not report.blocked:
            console.print(f"nothing to apply in {env}", markup=False)
        for note in report.notes:
            console.print(f"({note})", markup=False)
        err(run.failures(report))
    raise typer.Exit(report.exit_code)


def destroy_cmd(
    env: EnvOption,
    names: Annotated[
        list[str] | None, typer.Argument(help="Deployment names; default: all in ENV.")
    ] = None,
    yes: Annotated[
        bool, typer.Option("--yes", help="Required to destroy everything in ENV.")
    ] = False,
    lock_timeout: LockTimeout = 60.0,
    allow_destroy_protected: Annotated[
        bool,
        typer.Option(
            "--allow-destroy-protected",
            help="Required in a protected environment (modelops.yaml protected_environments).",
        ),
    ] = False,
) -> None:
    """Tear down deployments in ENV; their ledger history is kept (`modelops history`)."""
    config = get_config()
    if env not in config.environments:
        raise ModelopsError(
            f"unknown environment {env!r}; known environments: {', '.join(config.environments)}"
        )
    if not names and not yes:
        raise ModelopsError(f"destroying every deployment in {env} needs --yes (or name them)")
    if env in config.protected_environments and not allow_destroy_protected:
        raise ModelopsError(
            f"{env} is a protected environment (protected_environments in modelops.yaml); "
            "destroying there also needs --allow-destroy-protected"
        )
    with showing_progress():  # stopping servers, Pulumi destroy: on a terminal only
        report = destroy_flow.destroy(config, env, list(names or []), lock_timeout_s=lock_timeout)
    console.print(run.outcome_table(report))
    raise typer.Exit(report.exit_code)


def _local_service(record):
    """A healthy local server's request figures since start, or why they are unknown."""
    try:
        url = record.outputs.get("backend_url") or record.outputs.get("url", "")
        return server_metrics(int(record.outputs.get("pid") or 0), url)
    except MetricsUnavailable as exc:
        return f"unavailable: {exc}"


def _model_version(record) -> str:
    """The model version the record's Bento serves: ``model_version`` of
    ``<bento_path>/src/modelops.json`` (written by the build); ``""`` when that Bento is
    not on this machine or the file is unreadable."""
    bento_path = (record.artifact or {}).get("bento_path")
    if not bento_path:
        return ""
    try:
        config = json.loads((Path(bento_path) / "src" / "modelops.json").read_text("utf-8"))
    except (OSError, ValueError):
        return ""
    return str(config.get("model_version") or "") if isinstance(config, dict) else ""


def _platform(data: dict, env: str) -> str:
    """``target.platform`` of ``env``'s overlay, else of the base spec (``""``: none)."""
    body = data.get("spec") if isinstance(data.get("spec"), dict) else {}
    for section in ((body.get("environments") or {}).get(env), body):
        target = section.get("target") if isinstance(section, dict) else None
        if isinstance(target, dict) and isinstance(target.get("platform"), str):
            return target["platform"]
    return ""


def _declared(config) -> dict[str, LedgerRecord] | None:
    """Every deployment the specs in the tree declare, by ``<name>-<env>``, as an unsaved
    record (name, environment, platform, spec file; spec files parsed only, no
    validation); None when a spec file cannot be parsed (then nothing can be called
    removed from Git, nor listed as never applied)."""
    declared: dict[str, LedgerRecord] = {}
    for path in discover(config):
        try:
            spec = load_spec(path, config.root)
        except Exception:  # noqa: BLE001 - unparsable: validate reports it; status must not guess
            return None
        for env in spec.environments:
            declared.setdefault(
                f"{spec.name}-{env}",
                LedgerRecord(spec.name, env, _platform(spec.data, env), spec.file),
            )
    return declared


def _holder_running(config) -> str:
    """The live holder of the state lock (``describe()``), or ``""`` when none runs (not
    locked, or the holder is gone). A holder on another host counts as running: modelops
    cannot tell, and calling its work interrupted could make someone unlock under it."""
    holder = read_lock(open_backend(config))
    if holder is None or holder.alive() is False:
        return ""
    return holder.describe()


def status_cmd(
    env: Annotated[str | None, typer.Option("--env", "-e", help="Only this environment.")] = None,
    fmt: TextOrJson = "text",
) -> None:
    """List every live deployment × environment in the ledger: revision, health, drift;
    for a local server also p50/p99 latency, request rate and 5xx share since it started.

    A deployment a spec declares that was never applied (no record, or only the job
    history of a monitoring run) is listed as `NotApplied` (`modelops reconcile` or
    `apply` applies it); one whose spec in the tree differs from what its last
    successful apply recorded says `OutOfSync: HEAD differs from the applied revision
    <rev>` (`modelops reconcile` or `apply --base` converges it). Destroyed deployments
    are not listed (the text output names them in one line; their history stays:
    `modelops history NAME --env ENV`).
    """
    config = get_config()
    if env is not None and env not in config.environments:
        raise ModelopsError(
            f"unknown environment {env!r}; known environments: {', '.join(config.environments)}"
        )
    local = None
    rows = []
    destroyed = []
    running: str | None = None  # the live lock holder, read once a record is pending
    declared = _declared(config)
    records = Ledger.of(config).all(include_destroyed=True)
    recorded = {r.key for r in records}
    for key, spec_record in (declared or {}).items():
        if key not in recorded and (env is None or spec_record.environment == env):
            records.append(spec_record)  # shown, never saved: nothing was applied
    records.sort(key=lambda r: (r.name, r.environment))
    sync_notes: list[str] = []
    digests = head_digests(config, env, records, sync_notes) if declared is not None else {}
    for record in records:
        if env and record.environment != env:
            continue
        if record.destroyed:
            destroyed.append(record.key)
            continue
        service = None
        if record.key not in recorded:
            health = (
                f"{NOT_APPLIED} ({record.specFile}; `modelops reconcile --env "
                f"{record.environment}` or `modelops apply --env {record.environment}` "
                "applies it)"
            )
        elif record.never_attempted:
            # a monitor run or a labels ingest records its job for a deployment that was
            # never applied: listed (its history is real), never shown as a server
            health = "NotApplied: never applied in this environment (only job history)"
        elif record.platform == "local":
            if local is None:
                local = LocalEngine(config)
            health = local.health(record)
            if health == "Healthy":
                service = _local_service(record)
            canary = record.outputs.get("rollout")
            if isinstance(canary, dict) and canary.get("verdict"):
                health += (
                    f"; last canary {canary['verdict']} at {canary.get('time', '?')}: "
                    f"{canary.get('reason', '')}"
                )
            strays = local.unrecorded(record.key, record)
            for kind, group in (
                ("server", [s for s in strays if not s.get("router")]),
                ("router", [s for s in strays if s.get("router")]),
            ):
                if group:
                    pids = ", ".join(str(s["manager"] or s["pids"][0]) for s in group)
                    health += (
                        f"; {len(group)} unrecorded {kind}(s) of this deployment running "
                        f"(pid {pids}): the next apply or destroy stops them"
                    )
        else:
            ready = record.condition("Ready") or {}
            health = f"Ready={ready.get('status', 'Unknown')} {ready.get('reason', '')}".strip()
        if record.key in digests and (behind := sync_reason(record, digests[record.key][0])):
            health += f"; {behind}"
        if declared is not None and record.key not in declared:
            # its spec was deleted or its environment overlay removed: still live until
            # pruned (the same orphans apply reports)
            health += (
                "; orphaned: no spec in the tree declares it (spec deleted or environment "
                f"overlay removed); `modelops apply --env {record.environment} --prune` "
                "destroys it"
            )
        if record.pending:
            p = record.pending
            if running is None:
                running = _holder_running(config)
            state = (
                f"is running now (the state lock is held by {running})"
                if running
                else "did not finish (interrupted: no live run holds the state lock)"
            )
            health += (
                f"; {p.get('action', '?')} begun at {p.get('time', '?')} by "
                f"{p.get('actor', '?')} {state}"
            )
            canary = p.get("canary")
            if isinstance(canary, dict):
                health += (
                    f"; canary at {canary.get('weight', '?')}%: check {canary.get('checks', '?')}"
                    f" {canary.get('result', '?')} at {canary.get('time', '?')}"
                    + (f" ({'; '.join(canary['failed'])})" if canary.get("failed") else "")
                )
        rows.append(
            ledger.status_row(record, health, service, model_version=_model_version(record))
        )
    holder = read_lock(open_backend(config))
    if fmt == "json":
        console.print(json.dumps(rows, indent=2), markup=False)
        return
    console.print(ledger.status_table(rows) if rows else "no deployments recorded")
    out(ledger.status_footer(destroyed, holder))
    for note in sync_notes:
        out(f"({note})\n")

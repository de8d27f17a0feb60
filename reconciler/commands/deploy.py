"""``modelops plan``, ``apply``, ``destroy`` and ``status``."""

from __future__ import annotations

import json
import os
from typing import Annotated

import typer
from rich.table import Table

from reconciler.cli import EnvOption, TargetsArg, app, console, err_console, get_config
from reconciler.core.diagnostics import ModelopsError
from reconciler.flow import apply as apply_flow
from reconciler.flow import destroy as destroy_flow
from reconciler.flow import plan as plan_flow
from reconciler.flow.run import RunReport
from reconciler.state.ledger import Ledger

PlanFormat = Annotated[
    str, typer.Option("--format", "-f", help="text, json or markdown (the PR comment).")
]
LockTimeout = Annotated[
    float,
    typer.Option(
        "--lock-timeout",
        min=0,
        help="Seconds to wait when another run holds the state-directory lock.",
    ),
]


def _annotate(report: RunReport) -> None:
    """Inside GitHub Actions, also emit findings as workflow annotations (on stderr)."""
    if os.environ.get("GITHUB_ACTIONS") != "true":
        return
    from reconciler.report.findings import render_diagnostics

    diags = list(report.diagnostics)
    if report.policy is not None:
        diags += report.policy.diagnostics()
    if getattr(report, "policy_head", None) is not None:  # plan: the change's own policies
        seen = {str(d) for d in diags}
        diags += [d for d in report.policy_head.diagnostics() if str(d) not in seen]
    out = render_diagnostics("github", diags, tool="modelops")
    if out:
        err_console.print(out.rstrip(), markup=False)


def _print_findings(report: RunReport) -> None:
    """Findings, then what blocks (``apply``: the same as a plan's, without a second
    policy set)."""
    _print_plan_findings(report)
    _print_plan_blockers(report)


def _print_plan_findings(report: RunReport) -> None:
    """Spec findings (stderr) and policy findings (stdout), before the plan."""
    for diag in report.diagnostics:
        err_console.print(str(diag), markup=False)
    from reconciler.report import render_policy_report

    if report.policy is not None and (report.policy.blocking or report.policy.findings()):
        if report.policy_head is not None:
            console.print("Policy check with the merge base's policy set:", markup=False)
        console.print(render_policy_report("text", report.policy).rstrip(), markup=False)
    head = report.policy_head
    if head is not None and (head.blocking or head.findings()):
        console.print(
            "Policy check with this change's own policy set (what apply uses after the merge):",
            markup=False,
        )
        console.print(render_policy_report("text", head).rstrip(), markup=False)


def _print_plan_blockers(report: RunReport) -> None:
    """What blocks the plan, after it (stderr): guards, spec errors, policy failures."""
    for guard in report.guards:
        err_console.print(f"error: {guard}", markup=False)
    if report.spec_errors:
        err_console.print(
            f"{len(report.spec_errors)} spec error(s): nothing was built or applied.", markup=False
        )
    elif report.policy is not None and report.policy.blocking:
        err_console.print("blocking policy results: nothing was built or applied.", markup=False)
    elif report.policy_head is not None and report.policy_head.blocking:
        err_console.print(
            "blocking policy results with this change's own policy set (apply would refuse "
            "after the merge): nothing was built or applied.",
            markup=False,
        )


def _print_policy_changes(report: RunReport) -> None:
    from reconciler.report.pr_comment import plain_line, policy_change_blocks

    blocks = policy_change_blocks(report)
    if not blocks:
        return
    diff = report.policy_changes
    title = (
        "Policy changes (needs security review: this change modifies what is enforced):"
        if diff.changes_enforcement
        else "Policy changes (what is enforced stays the same):"
    )
    console.print(f"\n{title}", markup=False)
    if diff.evaluated_at_base:
        console.print(
            f"  specs were checked against the policy set of the merge base {report.base[:12]}"
            " (and against this change's own)",
            markup=False,
        )
    for heading, lines in blocks:
        console.print(f"  {heading}:", markup=False)
        for line in lines:
            console.print(f"    - {plain_line(line)}", markup=False)


def _emit_plan(report: RunReport, fmt: str) -> None:
    """Print the plan in ``fmt`` (text, json, markdown).

    Every format shows the whole plan even when something blocks (a guard, a spec error,
    a policy failure); in text, what blocks is printed after the plan, on stderr. The
    exit code is the caller's (``report.exit_code``).
    """
    from reconciler.report.pr_comment import pr_comment_data, render_pr_comment

    _annotate(report)
    if fmt == "json":
        console.print(json.dumps(pr_comment_data(report), indent=2), markup=False)
        return
    if fmt == "markdown":
        console.print(render_pr_comment(report), markup=False, end="")
        return
    if fmt != "text":
        raise ModelopsError(f"unknown format {fmt!r}; valid formats: text, json, markdown")
    _print_plan_findings(report)
    if report.changes is not None:
        ch = report.changes
        head = ch.head[:12] if ch.head else "the working tree"
        console.print(
            f"Plan for {', '.join(report.envs)}: merge base {ch.base[:12]} (of "
            f"{ch.requested_base}) -> {head}; {len(ch.files)} file(s) changed, "
            f"{len(ch.specs)} spec(s) to plan",
            markup=False,
        )
        for s in ch.specs:
            where = s.path or s.old_path
            console.print(f"  {s.status:9} {where}: {'; '.join(s.reasons)}", markup=False)
    elif report.outcomes or not report.blocked:
        console.print(f"Plan for {', '.join(report.envs)} against the ledger:", markup=False)
    _print_policy_changes(report)
    if not report.outcomes and not report.blocked:
        console.print("No deployment to plan.", markup=False)
    from reconciler.report.pr_comment import (
        plain_line,
        plan_totals,
        policy_summary,
        spec_diff_lines,
    )

    for outcome, plan in zip(report.outcomes, report.plans, strict=False):
        console.print("", markup=False)
        spec_lines = spec_diff_lines(outcome)
        if plan is not None and plan.empty and spec_lines:
            console.print(
                f"{outcome.key}: no infrastructure resource changes; the spec changed:",
                markup=False,
            )
        elif plan is not None:
            from reconciler.engine.plan import render_plan_text

            console.print(render_plan_text([plan]).rstrip(), markup=False)
        else:
            console.print(f"{outcome.key} ({outcome.platform}): {outcome.message}", markup=False)
        if outcome.status in ("delete", "orphaned"):
            console.print(f"  {outcome.message}", markup=False)
        for line in spec_lines:
            console.print(f"  spec: {plain_line(line)}", markup=False)
        model = outcome.model or {}
        old, new = model.get("old"), model.get("new")
        if old and new and old == new:
            console.print(
                f"  model: unchanged ({new['framework']} {new['uri']} {new['sha256'][:12]})",
                markup=False,
            )
        elif new and not old:
            console.print(
                f"  model: {new['framework']} {new['uri']} {new['sha256'][:12]} (new here)",
                markup=False,
            )
        elif old and not new:
            console.print(f"  model: {old['framework']} {old['uri']} (removed)", markup=False)
        elif old or new:
            for k in ("framework", "uri", "sha256", "version"):
                a = str((old or {}).get(k, "") or "-")[:24]
                b = str((new or {}).get(k, "") or "-")[:24]
                if a != b:
                    console.print(f"  model {k}: {a} -> {b}", markup=False)
        policy = policy_summary(report, outcome.key)
        if policy:
            where = " (base policy set)" if report.policy_head is not None else ""
            console.print(f"  policy{where}: {policy}", markup=False)
        mine = policy_summary(report, outcome.key, own=True)
        if mine:
            console.print(f"  policy (this change's policy set): {mine}", markup=False)
        if outcome.status != "delete":
            build = outcome.build.get("message") or "not run (--build)"
            if outcome.smoke is not None:
                ok = "passed" if outcome.smoke.passed else "FAILED"
                smoke = f"{ok} {'; '.join(outcome.smoke.failures)}".strip()
            else:
                smoke = outcome.build.get("smoke") or "not run (--smoke)"
            console.print(f"  build: {build}; smoke: {smoke}", markup=False)
    if report.outcomes or report.policy_changes is not None:
        if report.exit_code:
            verdict = "blocks the merge"
        elif report.needs_security_review:
            verdict = "nothing blocks the merge; needs security review (policy changes)"
        else:
            verdict = "nothing blocks the merge"
        policy = f"; policy: {policy_summary(report)}" if report.policy else ""
        if report.policy_head is not None:
            policy = f"; policy (base policy set): {policy_summary(report)}"
        bentos = sum(1 for o in report.outcomes if (o.spec_diff or {}).get("rebuild"))
        rebuilt = f"; new Bentos: {bentos}" if bentos else ""
        console.print(
            f"\nSummary: {len(report.outcomes)} deployment(s): {plan_totals(report) or '-'}"
            f"{rebuilt}{policy}; {verdict}.",
            markup=False,
        )
    if report.outcomes or not report.blocked:
        for note in report.notes:
            console.print(f"({note})", markup=False)
    _print_plan_blockers(report)


@app.command("plan")
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
) -> None:
    """Show what `apply` would create, update, replace or delete (changes nothing).

    With --base, only specs changed or affected since the merge base are planned, each
    against its state at the base; --format markdown is the pull-request comment.
    Exit 1 when anything blocks the merge.
    """
    if head and not base:
        raise ModelopsError("--head needs --base (the revision to compare with)")
    if all_specs and not base:
        raise ModelopsError("--all needs --base (without --base every spec is planned anyway)")
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
    )
    _emit_plan(report, fmt)
    raise typer.Exit(report.exit_code)


def _outcome_table(report: RunReport) -> Table:
    table = Table(title=f"{report.action} --env {report.env}", title_justify="left")
    for col in ("deployment", "platform", "status", "detail"):
        table.add_column(col, overflow="fold")
    for o in report.outcomes:
        detail = o.message
        if o.outputs.get("url"):
            detail = f"{detail} ({o.outputs['url']})"
        style = {
            "failed": "red",
            "stalled": "red",
            "applied": "green",
            "destroyed": "yellow",
            "orphaned": "yellow",
            "held": "yellow",
        }.get(o.status, "")
        table.add_row(o.key, o.platform, f"[{style}]{o.status}[/]" if style else o.status, detail)
    return table


@app.command("apply")
def apply_cmd(
    env: EnvOption,
    targets: TargetsArg = None,
    fmt: Annotated[str, typer.Option("--format", "-f", help="text or json.")] = "text",
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
        _print_findings(report)
        if report.outcomes:
            console.print(_outcome_table(report))
        elif not report.blocked:
            console.print(f"nothing to apply in {env}", markup=False)
        for note in report.notes:
            console.print(f"({note})", markup=False)
        for o in report.failures:
            err_console.print(f"error: {o.key}: {o.message}", markup=False)
    raise typer.Exit(report.exit_code)


@app.command("destroy")
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
    report = destroy_flow.destroy(config, env, list(names or []), lock_timeout_s=lock_timeout)
    console.print(_outcome_table(report))
    raise typer.Exit(report.exit_code)


@app.command("status")
def status_cmd(
    env: Annotated[str | None, typer.Option("--env", "-e", help="Only this environment.")] = None,
    fmt: Annotated[str, typer.Option("--format", "-f", help="text or json.")] = "text",
) -> None:
    """List every live deployment × environment in the ledger: revision, health, drift.

    Destroyed deployments are not listed (the text output names them in one line; their
    history stays: `modelops history NAME --env ENV`).
    """
    from reconciler.state.lock import read_lock

    config = get_config()
    if fmt not in ("text", "json"):
        raise ModelopsError(f"unknown format {fmt!r}; valid formats: text, json")
    if env is not None and env not in config.environments:
        raise ModelopsError(
            f"unknown environment {env!r}; known environments: {', '.join(config.environments)}"
        )
    local = None
    rows = []
    destroyed = []
    for record in Ledger(config.state_dir).all(include_destroyed=True):
        if env and record.environment != env:
            continue
        if record.destroyed:
            destroyed.append(record.key)
            continue
        if record.platform == "local":
            if local is None:
                from reconciler.engine.local import LocalEngine

                local = LocalEngine(config)
            health = local.health(record)
        else:
            ready = record.condition("Ready") or {}
            health = f"Ready={ready.get('status', 'Unknown')} {ready.get('reason', '')}".strip()
        drift = record.drift or {}
        stalled = record.stalled_reason or ("no" if not record.stalled else "yes")
        if record.suspended:
            stalled = f"held: rolled back to {record.suspended.get('revision', '')[:12]}"
        rows.append(
            {
                "deployment": record.key,
                "platform": record.platform,
                "revision": (record.lastAppliedRevision or "-")[:12],
                "health": health,
                "stalled": stalled,
                "failures": record.failures,
                "drift": drift.get("status") or ("drifted" if drift.get("drifted") else "ok")
                if drift
                else "-",
                "url": record.outputs.get("url", ""),
            }
        )
    holder = read_lock(config.state_dir)
    if fmt == "json":
        console.print(json.dumps(rows, indent=2), markup=False)
        return
    table = Table(title="modelops status", title_justify="left")
    cols = ("deployment", "platform", "revision", "health", "stalled", "drift", "url")
    for col in cols:
        table.add_column(col, overflow="fold")
    for row in rows:
        table.add_row(*(str(row[c]) for c in cols))
    console.print(table if rows else "no deployments recorded")
    if destroyed:
        console.print(
            f"destroyed (not live; history kept, see `modelops history NAME --env ENV`): "
            f"{', '.join(destroyed)}",
            markup=False,
        )
    if holder is not None:
        alive = holder.alive()
        state = "stale: run `modelops unlock`" if alive is False else "an apply is running"
        console.print(f"state directory locked by {holder.describe()} ({state})", markup=False)

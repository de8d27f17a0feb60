"""``modelops plan``, ``apply``, ``destroy`` and ``status``."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.table import Table

from reconciler import pipeline
from reconciler.cli import EnvOption, TargetsArg, app, console, err_console, get_config
from reconciler.diagnostics import ModelopsError
from reconciler.gitops.ledger import Ledger

PlanFormat = Annotated[str, typer.Option("--format", "-f", help="text, json or markdown.")]


def _print_findings(report: pipeline.RunReport) -> None:
    for diag in report.diagnostics:
        err_console.print(str(diag), markup=False)
    if report.policy is not None:
        from reconciler.report import render_policy_report

        console.print(render_policy_report("text", report.policy).rstrip(), markup=False)
    if report.spec_errors:
        err_console.print(
            f"{len(report.spec_errors)} spec error(s): nothing was built or applied.", markup=False
        )
    elif report.policy is not None and report.policy.blocking:
        err_console.print("blocking policy results: nothing was built or applied.", markup=False)


def _emit_plan(report: pipeline.RunReport, fmt: str) -> None:
    from reconciler.engine.plan import render_plan_json, render_plan_markdown, render_plan_text

    if fmt == "json":
        data = report.to_dict()
        data["plans"] = json.loads(render_plan_json(report.plans))
        console.print(json.dumps(data, indent=2), markup=False)
        return
    if fmt == "markdown":
        console.print(render_plan_markdown(report.plans), markup=False)
        return
    if fmt != "text":
        raise ModelopsError(f"unknown format {fmt!r}; valid formats: text, json, markdown")
    _print_findings(report)
    if report.blocked:
        return
    where = "offline (rendered under Pulumi mocks, diffed against the ledger)"
    console.print(f"Plan for environment {report.env!r}, computed {where}:", markup=False)
    console.print(render_plan_text(report.plans).rstrip(), markup=False)


@app.command("plan")
def plan_cmd(
    env: EnvOption,
    targets: TargetsArg = None,
    fmt: PlanFormat = "text",
    build: Annotated[
        bool, typer.Option("--build", help="Build Bentos for real image tags.")
    ] = False,
) -> None:
    """Show what `apply` would create, update, replace or delete in ENV (changes nothing)."""
    report = pipeline.plan(get_config(), env, targets, build=build)
    _emit_plan(report, fmt)
    raise typer.Exit(report.exit_code)


def _outcome_table(report: pipeline.RunReport) -> Table:
    table = Table(title=f"{report.action} --env {report.env}", title_justify="left")
    for col in ("deployment", "platform", "status", "detail"):
        table.add_column(col, overflow="fold")
    for o in report.outcomes:
        detail = o.message
        if o.outputs.get("url"):
            detail = f"{detail} ({o.outputs['url']})"
        style = {"failed": "red", "applied": "green", "destroyed": "yellow"}.get(o.status, "")
        table.add_row(o.key, o.platform, f"[{style}]{o.status}[/]" if style else o.status, detail)
    return table


@app.command("apply")
def apply_cmd(
    env: EnvOption,
    targets: TargetsArg = None,
    fmt: Annotated[str, typer.Option("--format", "-f", help="text or json.")] = "text",
) -> None:
    """Validate, police, build and apply every spec with an overlay for ENV."""
    report = pipeline.apply(get_config(), env, targets)
    if fmt == "json":
        console.print(json.dumps(report.to_dict(), indent=2), markup=False)
    else:
        _print_findings(report)
        if report.outcomes:
            console.print(_outcome_table(report))
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
) -> None:
    """Tear down deployments in ENV and remove their ledger records."""
    if not names and not yes:
        raise ModelopsError(f"destroying every deployment in {env} needs --yes (or name them)")
    report = pipeline.destroy(get_config(), env, list(names or []))
    console.print(_outcome_table(report))
    raise typer.Exit(report.exit_code)


@app.command("status")
def status_cmd(
    env: Annotated[str | None, typer.Option("--env", "-e", help="Only this environment.")] = None,
    fmt: Annotated[str, typer.Option("--format", "-f", help="text or json.")] = "text",
) -> None:
    """List every deployment × environment in the ledger with revision, health and drift."""
    from reconciler.engine.local import LocalEngine

    config = get_config()
    local = LocalEngine(config)
    rows = []
    for record in Ledger(config.state_dir).all():
        if env and record.environment != env:
            continue
        if record.platform == "local":
            health = local.health(record)
        else:
            ready = record.condition("Ready") or {}
            health = f"Ready={ready.get('status', 'Unknown')} {ready.get('reason', '')}".strip()
        drift = record.drift or {}
        rows.append(
            {
                "deployment": record.key,
                "platform": record.platform,
                "revision": (record.lastAppliedRevision or "-")[:12],
                "health": health,
                "stalled": record.stalled,
                "drift": ("drifted" if drift.get("drifted") else "ok") if drift else "-",
                "url": record.outputs.get("url", ""),
            }
        )
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

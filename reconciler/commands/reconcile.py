"""``modelops reconcile``: converge what drifted from the ledger or was never applied,
once or on an interval.

Exit codes (of the last pass): 0 nothing diverged or everything converged, 1 a spec or
policy blocks (nothing converged), 3 a deployment failed to converge, is stalled or still
does not serve (never 0 while one is down or stalled); 2 for usage or
configuration errors (lock held, dirty tree, no ``pulumi`` CLI for a cloud target).
In a loop a pass that stops with exit 2 (another run holds the lock) is reported on
stderr and the next pass runs at the next interval.
"""

from __future__ import annotations

import json
from typing import Annotated

import typer

from reconciler.commands.options import (
    EnvOption,
    LockTimeout,
    TextOrJson,
    console,
    err,
    get_config,
    showing_progress,
)
from reconciler.core.clock import now_iso
from reconciler.core.diagnostics import ModelopsError
from reconciler.flow import reconcile as reconcile_flow
from reconciler.flow.run import RunReport
from reconciler.report import plan_text, run


def _show(report: RunReport, fmt: str, loop: bool) -> None:
    if fmt == "json":
        doc = report.to_dict()
        console.print(
            json.dumps(doc) if loop else json.dumps(doc, indent=2), markup=False, soft_wrap=True
        )
        return
    if loop:
        console.print(f"reconcile pass finished at {now_iso()}", markup=False)
    err(plan_text.spec_findings(report))
    err(plan_text.blockers(report))
    if report.outcomes:
        console.print(run.outcome_table(report))
    for note in report.notes:
        console.print(f"({note})", markup=False)
    err(run.failures(report))


def reconcile_cmd(
    env: EnvOption,
    interval: Annotated[
        float | None,
        typer.Option(
            "--interval",
            min=1,
            help="Run a pass every S seconds until SIGTERM/SIGINT (which stop it between "
            "passes); without it, one pass.",
            metavar="S",
        ),
    ] = None,
    once: Annotated[
        bool, typer.Option("--once", help="One pass, then exit (the default without --interval).")
    ] = False,
    fmt: TextOrJson = "text",
    allow_dirty: Annotated[
        bool,
        typer.Option(
            "--allow-dirty", help="Converge uncommitted changes (recorded as <sha>-dirty)."
        ),
    ] = False,
    lock_timeout: LockTimeout = 60.0,
) -> None:
    """Converge every deployment of ENV whose live state no longer matches its ledger
    record (a local server not running, a stack whose refresh shows drift, an interrupted
    or transiently failed apply), and apply every one a spec declares that was never
    applied, to the spec in the working tree. Nothing else is touched.
    """
    if once and interval is not None:
        raise ModelopsError("give either --once or --interval S, not both")
    config = get_config()

    def run_pass() -> RunReport:
        # build, start, smoke on a terminal; a wait for the state lock everywhere
        with showing_progress():
            return reconcile_flow.reconcile(
                config, env, allow_dirty=allow_dirty, lock_timeout_s=lock_timeout
            )

    if interval is None:
        report = run_pass()
        _show(report, fmt, loop=False)
        raise typer.Exit(report.exit_code)

    last = {"code": 0}

    def on_report(report: RunReport) -> None:
        last["code"] = report.exit_code
        _show(report, fmt, loop=True)

    def on_error(exc: Exception) -> None:
        if not isinstance(exc, ModelopsError):
            raise exc
        last["code"] = exc.exit_code
        err(f"error: reconcile pass at {now_iso()}: {exc.message}\n")

    stop = reconcile_flow.StopFlag()
    with stop.installed():
        reconcile_flow.reconcile_loop(
            run_pass, on_report, interval_s=interval, stop=stop, on_error=on_error
        )
    raise typer.Exit(last["code"])

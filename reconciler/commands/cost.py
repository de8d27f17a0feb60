"""``modelops cost``: the monthly cost of an environment, live and as the specs say."""

from __future__ import annotations

from typing import Annotated

import typer

from reconciler.commands.options import EnvOption, TargetsArg, err, get_config, out
from reconciler.core.diagnostics import EXIT_FINDINGS
from reconciler.flow.costs import cost_table
from reconciler.flow.gates import envs_of
from reconciler.report.cost_table import COST_WRITERS, cost_writer_for
from reconciler.report.findings import render_diagnostics
from reconciler.spec.repo import load_all


def _check_format(fmt: str) -> str:
    cost_writer_for(fmt)  # raises (exit 2) before any work for an unknown format
    return fmt


def cost_cmd(
    env: EnvOption,
    targets: TargetsArg = None,
    fmt: Annotated[
        str,
        typer.Option("--format", "-f", help=f"{', '.join(COST_WRITERS)}.", callback=_check_format),
    ] = "text",
) -> None:
    """Monthly cost estimate (USD per 730 h) of ENV by team and deployment: what is live
    (the ledger) beside what the specs say, with the price snapshot's date (docs/cost.md).

    Exit 1 when a spec is invalid or cannot be rendered or priced (the table shows the
    others), 2 on usage errors.
    """
    config = get_config()
    envs_of(config, env)  # an unknown environment is a usage error (exit 2)
    loaded = load_all(config, targets, env)
    valid = [d for d in loaded.deployments if d.env == env]
    table = cost_table(config, env, valid, loaded.diagnostics)
    errors = [d for d in table.diagnostics if d.severity == "error"]
    if table.diagnostics:
        err(render_diagnostics("text", table.diagnostics, tool="modelops-cost"))
    out(cost_writer_for(fmt)(table))
    if errors:
        raise typer.Exit(EXIT_FINDINGS)

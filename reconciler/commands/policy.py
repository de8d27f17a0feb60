"""``modelops policy check | test | report``: the security review workflow."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from reconciler.commands.options import (
    FORMAT_HELP,
    HelpCommand,
    HelpGroup,
    TargetsArg,
    TextOrJson,
    console,
    err_console,
    get_config,
    out,
)
from reconciler.core.diagnostics import EXIT_FINDINGS, EXIT_OK, ModelopsError
from reconciler.policy.check import check_policies
from reconciler.policy.library import load_library
from reconciler.policy.testing import run_policy_tests
from reconciler.report import policy_tests_text, render_policy_report
from reconciler.report.findings import writer_for
from reconciler.report.matrix import matrix_writer_for
from reconciler.spec.repo import load_all

policy_app = typer.Typer(
    help="Check deployments against the Rego policy library; test and review the policies.",
    no_args_is_help=True,
    cls=HelpGroup,
)

EnvFilter = Annotated[
    str | None, typer.Option("--env", "-e", help="Check only this environment (default: all).")
]
TimeoutOption = Annotated[
    float,
    typer.Option("--timeout", min=0.1, help="Time-out per policy evaluation, in seconds."),
]


def _emit(text: str, output: Path | None) -> None:
    if output is not None:
        try:
            output.write_text(text, encoding="utf-8")
        except OSError as exc:
            raise ModelopsError(f"cannot write {output}: {exc.strerror}") from None
        return
    if text:
        console.print(text, markup=False, end="" if text.endswith("\n") else "\n")


def _check(targets, env, timeout):
    config = get_config()
    loaded = load_all(config, targets, env)
    report = check_policies(config, loaded.deployments, timeout_s=timeout)
    # An invalid spec is not checked; say so rather than dropping it silently.
    report.spec_diagnostics = list(loaded.diagnostics)
    return report


@policy_app.command("check", cls=HelpCommand)
def check(
    targets: TargetsArg = None,
    env: EnvFilter = None,
    fmt: Annotated[str, typer.Option("--format", "-f", help=FORMAT_HELP)] = "text",
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write the report to this file.")
    ] = None,
    timeout: TimeoutOption = 5.0,
) -> None:
    """Check deployments against every policy; exit 1 on a mandatory failure or policy error.

    Advisory and waived findings are reported and do not block. Invalid specs, broken
    policies and bad waivers block (the check fails closed).
    """
    writer_for(fmt)  # unknown format: exit 2 before any work
    report = _check(targets, env, timeout)
    _emit(render_policy_report(fmt, report), output)
    raise typer.Exit(EXIT_FINDINGS if report.blocking else EXIT_OK)


@policy_app.command("test", cls=HelpCommand)
def test(
    fmt: TextOrJson = "text",
    timeout: TimeoutOption = 5.0,
) -> None:
    """Run the YAML fixture cases in policies/tests/; exit 1 if any disagrees.

    Also fails when a policy has no case that makes it fire or none where it stays
    silent, when a policy does not compile (reported once, at its file and line), when
    the library has problems, or when no case ran.
    """
    config = get_config(repository=False)  # a policy library may live on its own
    library = load_library(config.policies_dir, config.organization, config.root)
    run = run_policy_tests(library, config.policies_dir / "tests", config.root, timeout)
    if fmt == "json":
        _emit(json.dumps(run.to_dict(), indent=2) + "\n", None)
    else:
        for d in run.diagnostics:
            err_console.print(str(d), markup=False)
        out(policy_tests_text.summary(run))
    raise typer.Exit(EXIT_OK if run.ok else EXIT_FINDINGS)


@policy_app.command("report", cls=HelpCommand)
def report_cmd(
    targets: TargetsArg = None,
    env: EnvFilter = None,
    fmt: Annotated[str, typer.Option("--format", "-f", help="text, markdown or json.")] = "text",
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write the report to this file.")
    ] = None,
    timeout: TimeoutOption = 5.0,
) -> None:
    """Print the matrix of policies × deployments for a security review (always exit 0).

    Cells: pass, FAIL, ADVISORY, WAIVED, ERROR, or - (disabled there); below it, the
    waivers that expire within 30 days and any library or waiver problems.
    """
    write = matrix_writer_for(fmt)  # unknown format: exit 2 before any work
    report = _check(targets, env, timeout)
    _emit(write(report), output)

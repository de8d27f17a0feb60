"""``modelops validate`` and ``modelops schema``."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from reconciler.commands.options import FORMAT_HELP, TargetsArg, console, get_config
from reconciler.core.diagnostics import EXIT_FINDINGS, EXIT_OK, ModelopsError
from reconciler.report.findings import render_diagnostics
from reconciler.spec.repo import load_all
from reconciler.spec.validate import schema


def validate(
    targets: TargetsArg = None,
    env: Annotated[
        str | None, typer.Option("--env", "-e", help="Check only this environment's overlay.")
    ] = None,
    fmt: Annotated[str, typer.Option("--format", "-f", help=FORMAT_HELP)] = "text",
) -> None:
    """Check specs against the schema and the semantic rules; exit 1 on any error.

    Exit 0 when no spec has an error (warnings are printed); 2 for usage errors (no
    specs directory, unknown format).
    """
    config = get_config(repository=False)
    if not targets and not config.specs_dir.is_dir():
        raise ModelopsError(
            f"no specs directory {config.rel(config.specs_dir)}/ under {config.root} "
            "(pass spec paths, set `specs:` in modelops.yaml, or use --root)"
        )
    result = load_all(config, targets, env)
    out = render_diagnostics(fmt, result.diagnostics, tool="modelops-validate")
    if out:
        console.print(out, markup=False, end="" if out.endswith("\n") else "\n")
    if fmt == "text":
        n_specs, n_deps = len(result.specs), len(result.deployments)
        warnings = len(result.diagnostics) - len(result.errors)
        status = f"{len(result.errors)} error(s)" if result.errors else "ok"
        if warnings:
            status += f", {warnings} warning(s)"
        console.print(f"{n_specs} spec(s), {n_deps} deployment(s) checked: {status}", markup=False)
    raise typer.Exit(EXIT_FINDINGS if result.errors else EXIT_OK)


def schema_cmd() -> None:
    """Print the ModelDeployment JSON Schema (for editors: yaml-language-server)."""
    console.print(json.dumps(schema(), indent=2), markup=False)

"""``modelops render``: the DesiredState of each deployment, computed offline.

Writes one DesiredState per deployment × environment (JSON or YAML) and, for
Kubernetes targets, one plain manifest per resource, ready for ``kubectl apply -f`` or
for an existing Argo CD or Flux setup. Only valid deployments are rendered: any spec
diagnostic stops the command with exit 1 before anything is written.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from reconciler.commands.options import EnvOption, TargetsArg, console, err_console, get_config
from reconciler.core.diagnostics import EXIT_FINDINGS, EXIT_OK, ModelopsError
from reconciler.engine.render import RenderError
from reconciler.flow.stages import render_live
from reconciler.report.desired_state import RENDER_FORMATS, dump, write_state
from reconciler.report.findings import render_diagnostics
from reconciler.spec.repo import load_all


def render_cmd(
    env: EnvOption,
    targets: TargetsArg = None,
    out: Annotated[
        Path | None,
        typer.Option("--out", "-o", help="Directory to write into (default: print to stdout)."),
    ] = None,
    fmt: Annotated[
        str, typer.Option("--format", "-f", help="DesiredState format: json or yaml.")
    ] = "json",
) -> None:
    """Render each deployment's DesiredState offline (Pulumi mocks); manifests for Kubernetes.

    Exit 1 when a spec is invalid or cannot be rendered (nothing is written then),
    2 on usage errors.
    """
    if fmt not in RENDER_FORMATS:
        raise ModelopsError(f"unknown format {fmt!r}; valid formats: {', '.join(RENDER_FORMATS)}")
    config = get_config()
    result = load_all(config, targets, env)
    if result.errors:
        err_console.print(
            render_diagnostics("text", result.diagnostics, tool="modelops-render").rstrip(),
            markup=False,
        )
        err_console.print(
            f"render: {len(result.errors)} error(s) in the specs; nothing rendered", markup=False
        )
        raise typer.Exit(EXIT_FINDINGS)
    states, failures = [], []
    for dep in result.deployments:
        try:
            states.append(render_live(dep, None, config))
        except RenderError as exc:
            failures.extend(exc.diagnostics)
    if failures:
        err_console.print(
            render_diagnostics("text", failures, tool="modelops-render").rstrip(), markup=False
        )
        err_console.print(f"render: {len(failures)} deployment(s) cannot be rendered", markup=False)
        raise typer.Exit(EXIT_FINDINGS)
    if not states:
        err_console.print(f"no deployments for environment {env!r}", markup=False)
        raise typer.Exit(EXIT_OK)
    if out is None:
        data = [s.to_dict() for s in states]
        console.print(dump(data, fmt).rstrip(), markup=False)
    else:
        out = out if out.is_absolute() else Path.cwd() / out
        for state in states:
            files = write_state(state, out, fmt)
            manifests = len(files) - 1
            extra = f" and {manifests} manifest(s)" if manifests else ""
            console.print(
                f"{state.deployment}: {len(state.resources)} resource(s) → "
                f"{files[0].parent}{'/' if extra else ''}{extra}",
                markup=False,
            )
    err_console.print(
        "rendered offline under Pulumi mocks (no cloud or cluster contacted); images not "
        "built are tagged 'unbuilt'",
        markup=False,
    )
    raise typer.Exit(EXIT_OK)

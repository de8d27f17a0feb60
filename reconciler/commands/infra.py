"""``modelops render``: the DesiredState of each deployment, computed offline.

Writes one DesiredState per deployment × environment (JSON or YAML) and, for
Kubernetes targets, one plain manifest per resource, ready for ``kubectl apply -f`` or
for an existing Argo CD or Flux setup. Only valid deployments are rendered: any spec
diagnostic stops the command with exit 1 before anything is written.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Annotated

import typer
import yaml

from reconciler.commands.options import EnvOption, TargetsArg, console, err_console, get_config
from reconciler.core.diagnostics import EXIT_FINDINGS, EXIT_OK, ModelopsError
from reconciler.engine.render import RenderError, render
from reconciler.report.findings import render_diagnostics
from reconciler.spec.repo import load_all

RENDER_FORMATS = ("json", "yaml")


def _dump(data, fmt: str) -> str:
    if fmt == "yaml":
        return yaml.safe_dump(data, sort_keys=False, default_flow_style=False)
    return json.dumps(data, indent=2) + "\n"


def manifest_filename(index: int, manifest: dict) -> str:
    """``NN-<kind>-<name>.yaml`` (kind lower-case): files sort in apply order."""
    kind = str(manifest.get("kind", "resource")).lower()
    name = re.sub(r"[^a-z0-9.-]", "-", str(manifest.get("metadata", {}).get("name", "x")))
    return f"{index:02d}-{kind}-{name}.yaml"


def write_state(state, out: Path, fmt: str) -> list[Path]:
    """Write ``state`` under ``out/<name>-<env>/``; returns the files written.

    ``desired-state.json`` (or ``.yaml``), and for Kubernetes targets
    ``manifests/NN-<kind>-<name>.yaml``, one resource per file. Files of an earlier
    render in ``manifests/`` are removed first, so a deleted resource does not linger.
    """
    target = out / state.deployment
    target.mkdir(parents=True, exist_ok=True)
    written = []
    path = target / f"desired-state.{fmt}"
    path.write_text(_dump(state.to_dict(), fmt), encoding="utf-8")
    written.append(path)
    manifests = state.manifests()
    mdir = target / "manifests"
    if mdir.is_dir():
        for old in mdir.glob("*.yaml"):
            old.unlink()
    if manifests:
        mdir.mkdir(exist_ok=True)
        for i, manifest in enumerate(manifests, start=1):
            mpath = mdir / manifest_filename(i, manifest)
            mpath.write_text(yaml.safe_dump(manifest, sort_keys=False), encoding="utf-8")
            written.append(mpath)
    return written


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
            states.append(render(dep, None, config))
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
        console.print(_dump(data, fmt).rstrip(), markup=False)
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

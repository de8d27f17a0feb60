"""``modelops build [TARGETS] --env ENV [--image] [--gc-keep N]``.

Runs the pipeline up to the build stage: validate, police, then build (or reuse) one
Bento per deployment of ENV and print the build report. Exit codes: 0 every build
succeeded; 1 a spec error or a blocking policy result (nothing is built); 2 a build
failed (the others still run; each failure is named with its file).
"""

from __future__ import annotations

import contextlib
import json
import time
from typing import Annotated

import typer

from reconciler.build.artifact import BuildError
from reconciler.build.bento import build
from reconciler.build.store import gc_bentos
from reconciler.commands.options import (
    EnvOption,
    TargetsArg,
    TextOrJson,
    console,
    err,
    err_console,
    get_config,
    out,
    progress,
)
from reconciler.core.diagnostics import EXIT_FINDINGS, EXIT_OK, EXIT_USAGE
from reconciler.core.git import head_revision
from reconciler.flow.stages import build_artifact
from reconciler.policy.check import check_policies
from reconciler.report import build_text
from reconciler.spec.repo import load_all
from reconciler.state.ledger import Ledger


def build_cmd(
    env: EnvOption,
    targets: TargetsArg = None,
    image: Annotated[
        bool,
        typer.Option(
            "--image",
            help="Also containerize (bentoml containerize) and push, when Docker answers.",
        ),
    ] = False,
    gc_keep: Annotated[
        int | None,
        typer.Option(
            "--gc-keep",
            min=0,
            help="After building, delete all but the N newest Bentos per deployment and "
            "environment (Bentos in the ledger and those of this run are kept).",
        ),
    ] = None,
    fmt: TextOrJson = "text",
) -> None:
    """Build (or reuse) the Bento of every deployment in ENV; print the build report.

    Exit 0 when every build succeeded; 1 on a spec error or a blocking policy result
    (nothing is built); 2 when a build failed (the others still run).
    """
    config = get_config()
    loaded = load_all(config, targets, env)
    for diag in loaded.diagnostics:
        err_console.print(str(diag), markup=False)
    if loaded.errors:
        err_console.print(f"{len(loaded.errors)} spec error(s): nothing was built.", markup=False)
        raise typer.Exit(EXIT_FINDINGS)
    policy = check_policies(config, loaded.deployments)
    if policy.blocking:
        for diag in policy.diagnostics:
            err_console.print(str(diag), markup=False)
        err_console.print("blocking policy results: nothing was built.", markup=False)
        raise typer.Exit(EXIT_FINDINGS)
    revision = head_revision(config.root)
    rows: list[dict] = []
    text = fmt == "text"
    for dep in sorted(loaded.deployments, key=lambda d: d.key):
        started = time.perf_counter()
        row: dict = {"deployment": dep.key}
        # a spinner on a terminal only; CI logs get the one result line per deployment
        with progress(f"building {dep.key}...") if text else contextlib.nullcontext():
            try:
                if dep.platform == "edge":  # an edge bundle, not a Bento (docs/edge.md)
                    artifact = build_artifact(dep, config, revision)
                else:
                    artifact = build(dep, config, revision=revision, image=image)
            except BuildError as exc:
                row.update(status="failed", error=exc.message)
            else:
                row.update(
                    status="reused" if artifact.reused else "built", artifact=artifact.to_dict()
                )
        row["seconds"] = round(time.perf_counter() - started, 2)
        rows.append(row)
        if text:
            out(build_text.row_text(row))
            err(build_text.row_failure(row))
    removed: list[str] = []
    if gc_keep is not None:
        current = [
            r["artifact"]["bento_tag"] for r in rows if r.get("artifact", {}).get("bento_tag")
        ]
        removed = gc_bentos(config, gc_keep, protect=[*current, *Ledger.of(config).bento_tags()])
    failed = [r for r in rows if r["status"] == "failed"]
    if fmt == "json":
        doc = {"env": env, "revision": revision, "builds": rows, "gc_removed": removed}
        console.print(json.dumps(doc, indent=2), markup=False)
    else:
        out(build_text.summary(rows, removed, env))
    raise typer.Exit(EXIT_USAGE if failed else EXIT_OK)

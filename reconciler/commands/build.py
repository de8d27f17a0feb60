"""``modelops build [TARGETS] --env ENV [--image] [--gc-keep N]``.

Runs the pipeline up to the build stage: validate, police, then build (or reuse) one
Bento per deployment of ENV and print the build report. Exit codes: 0 every build
succeeded; 1 a spec error or a blocking policy result (nothing is built); 2 a build
failed (the others still run; each failure is named with its file).
"""

from __future__ import annotations

import json
import time
from typing import Annotated

import typer

from reconciler.cli import EnvOption, TargetsArg, app, console, err_console, get_config
from reconciler.diagnostics import EXIT_FINDINGS, EXIT_OK, EXIT_USAGE, ModelopsError


@app.command("build")
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
            help="After building, delete all but the N newest Bentos per deployment "
            "(Bentos recorded in the ledger are kept).",
        ),
    ] = None,
    fmt: Annotated[str, typer.Option("--format", "-f", help="text or json.")] = "text",
) -> None:
    """Build (or reuse) the Bento of every deployment in ENV; print the build report."""
    from reconciler.build.bento import BuildError, build, gc_bentos
    from reconciler.gitops.git import head_revision
    from reconciler.policy import check_policies
    from reconciler.spec.repo import load_all

    if fmt not in ("text", "json"):
        raise ModelopsError(f"unknown format {fmt!r}; valid formats: text, json")
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
    for dep in sorted(loaded.deployments, key=lambda d: d.key):
        started = time.perf_counter()
        row: dict = {"deployment": dep.key}
        try:
            artifact = build(dep, config, revision=revision, image=image)
        except BuildError as exc:
            row.update(status="failed", error=exc.message)
        else:
            row.update(status="reused" if artifact.reused else "built", artifact=artifact.to_dict())
        row["seconds"] = round(time.perf_counter() - started, 2)
        rows.append(row)
    removed: list[str] = []
    if gc_keep is not None:
        removed = gc_bentos(config, gc_keep)
    failed = [r for r in rows if r["status"] == "failed"]
    if fmt == "json":
        out = {"env": env, "revision": revision, "builds": rows, "gc_removed": removed}
        console.print(json.dumps(out, indent=2), markup=False)
    else:
        _print_text(rows, removed, env)
    raise typer.Exit(EXIT_USAGE if failed else EXIT_OK)


def _print_text(rows: list[dict], removed: list[str], env: str) -> None:
    """One line per deployment (stays readable in narrow CI logs), then notes."""
    for row in rows:
        art = row.get("artifact") or {}
        if row["status"] == "failed":
            err_console.print(
                f"{row['deployment']}: failed ({row['seconds']} s): {row['error']}", markup=False
            )
            continue
        image = f"{art['image']} ({'built' if art.get('image_built') else 'not built'})"
        console.print(
            f"{row['deployment']}: {row['status']} {art['bento_tag']} "
            f"({row['seconds']} s); image {image}",
            markup=False,
        )
        if art.get("image_note") and not art.get("image_note", "").endswith("without --image)"):
            console.print(f"  {art['image_note']}", markup=False)
    built = sum(r["status"] == "built" for r in rows)
    reused = sum(r["status"] == "reused" for r in rows)
    failed = sum(r["status"] == "failed" for r in rows)
    console.print(
        f"build --env {env}: {built} built, {reused} reused (unchanged inputs), {failed} failed",
        markup=False,
    )
    if removed:
        console.print(f"garbage-collected {len(removed)} Bento(s): {', '.join(removed)}")

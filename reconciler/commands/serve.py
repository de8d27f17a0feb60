"""``modelops smoke NAME --env ENV``: boot the built Bento locally, smoke it, check the SLO."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from reconciler.build.bento import build
from reconciler.build.serve import start_server, stop_server
from reconciler.build.smoke import run_smoke
from reconciler.commands.options import (
    EnvOption,
    TextOrJson,
    console,
    err_console,
    get_config,
    out,
    showing_progress,
)
from reconciler.core.diagnostics import EXIT_FINDINGS, EXIT_OK, EXIT_USAGE, ModelopsError
from reconciler.core.progress import step
from reconciler.report import smoke_text
from reconciler.spec.repo import load_all


def smoke_cmd(
    name: Annotated[str, typer.Argument(help="Deployment name (metadata.name) or spec file.")],
    env: EnvOption,
    requests: Annotated[
        int | None,
        typer.Option(
            "--requests",
            "-n",
            min=0,
            help="Load-test requests (default spec.serving.smoke.load.requests, else 200; "
            "0 skips the load test).",
        ),
    ] = None,
    concurrency: Annotated[
        int | None,
        typer.Option(
            "--concurrency",
            "-c",
            min=1,
            max=256,
            help="Concurrent clients (default spec.serving.smoke.load.concurrency, else 8).",
        ),
    ] = None,
    timeout: Annotated[
        float, typer.Option("--timeout", min=1, help="Seconds to wait for the server (readyz).")
    ] = 60.0,
    fmt: TextOrJson = "text",
) -> None:
    """Build (or reuse) NAME's Bento, serve it on loopback, check smoke requests and the SLO.

    Exit 0 when every smoke case matched and p99 latency met spec.serving.slo; 1 when the
    check failed (findings); 2 for a bad spec name or usage; 3 when the server could not
    start. The server is always stopped at the end.
    """
    config = get_config()
    result = load_all(config, [name], env)
    if result.errors:
        for diag in result.errors:
            err_console.print(str(diag), markup=False)
        raise typer.Exit(EXIT_FINDINGS)
    deps = [d for d in result.deployments if d.env == env]
    if not deps:
        raise ModelopsError(
            f"no deployment {name!r} in environment {env!r}; `modelops validate` lists the "
            "specs, and a spec needs spec.environments.<env> to be deployed there",
            EXIT_USAGE,
        )
    edge = [d.key for d in deps if d.platform == "edge"]
    if edge:
        raise ModelopsError(
            f"{', '.join(edge)}: an edge deployment has no server to smoke-test; its build "
            "proves parity with the original model and checks the size and latency budget "
            f"instead: `modelops plan --env {env} --build {name}` (docs/edge.md)",
            EXIT_USAGE,
        )
    failed = False
    outputs = []
    for dep in deps:
        with showing_progress():  # build, start, smoke, load test: on a terminal only
            with step("build", dep.key):
                artifact = build(dep, config)  # BuildError (exit 2) names the file
            if fmt == "text":
                reuse = "reused" if artifact.reused else "built"
                console.print(f"{dep.key}: {reuse} {artifact.bento_tag}; starting server…")
            workers = dep.get("spec.serving.workers", 1)
            with step("start", dep.key, f"{artifact.bento_tag} (bentoml serve)"):
                handle = start_server(
                    artifact,
                    config,
                    timeout_s=timeout,
                    workers=workers if isinstance(workers, int) else 1,
                    log_name=f"{dep.key}-smoke",
                )
            try:
                smoke = run_smoke(
                    dep, config, handle.url, requests=requests, concurrency=concurrency
                )
            finally:
                stop_server(handle)
        failed = failed or not smoke.passed
        outputs.append({**smoke.to_dict(), "bento_tag": artifact.bento_tag})
        if fmt == "text":
            out(smoke_text.cases(smoke))
            table = smoke_text.load_table(smoke)
            if table is not None:
                console.print(table)
            out(smoke_text.summary(smoke))
    if fmt == "json":
        console.print(json.dumps(outputs, indent=2), markup=False)
    raise typer.Exit(EXIT_FINDINGS if failed else EXIT_OK)

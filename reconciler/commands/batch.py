"""``modelops batch``: batch inference for ``serving.mode: batch`` deployments."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from reconciler.commands.options import EnvOption, TextOrJson, console, get_config
from reconciler.core.diagnostics import ModelopsError
from reconciler.flow.batch import run_batch
from reconciler.spec.repo import load_all


def batch_cmd(
    name: Annotated[str, typer.Argument(help="Spec name (metadata.name) or file.")],
    env: EnvOption,
    input: Annotated[str | None, typer.Option("--input", help="Parquet/CSV to score.")] = None,
    output: Annotated[str | None, typer.Option("--output", help="Where to write.")] = None,
    fmt: TextOrJson = "text",
) -> None:
    """Score a file with the deployment's model (what the batch CronJob runs).

    Exit 0 when the file was scored; 1 when the spec is invalid; 2 for usage errors (no
    overlay for ENV, unreadable input).
    """
    config = get_config()
    result = load_all(config, [name], env)
    if result.errors:
        raise ModelopsError(f"{name}: the spec is invalid", 1, diagnostics=result.errors)
    if not result.deployments:
        raise ModelopsError(f"{name} has no overlay for environment {env!r}")
    res = run_batch(result.deployments[0], config, input=input, output=output)
    if fmt == "json":
        console.print(json.dumps(res.to_dict()), markup=False)
    else:
        console.print(
            f"scored {res.rows} row(s) from {config.rel(res.input)} into "
            f"{config.rel(res.output)} in {res.seconds:.2f} s",
            markup=False,
        )

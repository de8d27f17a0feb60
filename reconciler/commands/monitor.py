"""``modelops monitor run`` (the drift job), ``monitor shadow`` and ``modelops retrain``.

Exit codes: ``monitor run`` 0 no drift, 1 drift, 2 bad input (recorded as a failed run);
``monitor shadow`` 0 promote, 1 drop, 2 bad input or insufficient data (no verdict);
``retrain`` 0 proposed / rejected / unchanged / skipped (cooldown), 2 failed run.
These are the commands the schedules run (Kubernetes CronJob, EventBridge Scheduler).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from reconciler.commands.options import (
    EnvOption,
    HelpCommand,
    HelpGroup,
    TextOrJson,
    console,
    err_console,
    get_config,
    out,
    progress,
)
from reconciler.core.diagnostics import EXIT_FINDINGS, EXIT_OK, EXIT_USAGE, ModelopsError
from reconciler.flow import monitor as monitor_flow
from reconciler.monitor.drift import preload_evidently
from reconciler.monitor.reason import MAX_REASON_CHARS, check_reason
from reconciler.monitor.shadow import DROP, PROMOTE, run_shadow
from reconciler.report import drift_text, quality_text, shadow_text
from reconciler.spec.model import Deployment
from reconciler.spec.repo import load_all

monitor_app = typer.Typer(
    help="Monitoring: Evidently drift of captured traffic against the reference data.",
    no_args_is_help=True,
    cls=HelpGroup,
)
labels_app = typer.Typer(
    help="Labels (outcomes) joined to captured predictions by the quality job.",
    no_args_is_help=True,
    cls=HelpGroup,
)

NameArg = Annotated[str, typer.Argument(help="Deployment (spec) name or spec file.")]


def _deployment(name: str, env: str) -> Deployment:
    """The one resolved deployment ``name`` × ``env``; ModelopsError (exit 2) otherwise."""
    config = get_config()
    result = load_all(config, [name], env)
    errors = [d for d in result.errors]
    if errors:
        raise ModelopsError(
            f"the spec of {name} has {len(errors)} error(s); fix them (modelops validate)",
            diagnostics=errors,
        )
    deps = [d for d in result.deployments if d.env == env]
    if not deps:
        raise ModelopsError(f"{name} has no environment {env!r} (spec.environments)")
    if len(deps) > 1:
        raise ModelopsError(f"{name} matches {len(deps)} deployments; name one spec")
    return deps[0]


@monitor_app.command("run", cls=HelpCommand)
def monitor_run(
    name: NameArg,
    env: EnvOption,
    current: Annotated[
        Path | None,
        typer.Option("--current", help="Parquet/CSV of current data instead of the capture."),
    ] = None,
    sample_size: Annotated[
        int | None,
        typer.Option("--sample-size", help="Rows per side above which to sample (default 50k)."),
    ] = None,
    seed: Annotated[int, typer.Option("--seed", help="Sampling seed.")] = 0,
    retrain: Annotated[
        bool,
        typer.Option(
            "--retrain/--no-retrain",
            help="On drift, retrain when spec.monitoring.on_drift is retrain.",
        ),
    ] = True,
    fmt: TextOrJson = "text",
) -> None:
    """Run the drift job (and, with spec.monitoring.labels, the quality job) once.

    Exit 0 without drift or quality alert (also for insufficient data, or monitoring
    disabled); 1 on drift or a quality alert (then retrain or roll back as the spec
    says); 2 on bad input or when the action that followed failed (the results are still
    printed). A what-if run (--current) records nothing and acts on nothing.
    """
    preload_evidently()  # overlaps loading the specs and the data
    config = get_config()
    dep = _deployment(name, env)
    if dep.get("spec.monitoring.enabled", True) is False:
        console.print(f"{dep.key}: monitoring is disabled (spec.monitoring.enabled: false)")
        raise typer.Exit(EXIT_OK)
    what_if = current is not None
    labels = isinstance(dep.get("spec.monitoring.labels"), dict) and not what_if
    doc: dict = {}
    code = EXIT_OK
    drift_error = None
    try:
        with progress(f"drift {dep.key}: reading data, computing drift (Evidently)"):
            result = monitor_flow.monitor_run(
                dep,
                config,
                current=str(current) if current is not None else None,
                sample_size=sample_size,
                seed=seed,
            )
    except ModelopsError as exc:
        if not labels:
            raise
        drift_error = exc  # the quality job still runs; exit 2 at the end
        err_console.print(f"error: drift: {exc.message}", markup=False)
        doc = {"status": "failed", "message": exc.message}
        result = None
    if result is not None:
        if fmt == "text":
            console.print(drift_text.drift_table(result))
            out(drift_text.drift_summary(result, config))
        doc = result.to_dict()
        code = EXIT_FINDINGS if result.drifted else EXIT_OK
        if (
            result.drifted
            and retrain
            and not result.what_if
            and dep.get("spec.monitoring.on_drift") == "retrain"
        ):
            try:
                doc["retraining"] = _retrain(
                    dep, reason="drift", training_data=None, force=False, fmt=fmt
                )
            except ModelopsError as exc:  # the drift result stands; the failure is recorded
                failed = getattr(exc, "result", None)
                doc["retraining"] = failed.to_dict() if failed else {"status": "failed"}
                err_console.print(f"error: retraining failed: {exc.message}", markup=False)
                code = EXIT_USAGE
    if labels:
        with progress(f"quality {dep.key}: joining labels, computing metrics"):
            quality = monitor_flow.quality_run(
                dep,
                config,
                seed=seed,
                report_html=result.report_html if result is not None else None,
            )
        if fmt == "text":
            console.print(quality_text.quality_table(quality))
            out(quality_text.quality_summary(quality, config))
        doc["quality"] = quality.to_dict()
        if quality.alerted:
            code = max(code, EXIT_FINDINGS)
            if retrain or quality.action == "rollback":
                try:
                    with progress(f"{dep.key}: quality alert: {quality.action}"):
                        doc["quality"]["acted"] = monitor_flow.act_on_quality(dep, config, quality)
                    if fmt == "text":
                        out(quality_text.acted(dep.key, doc["quality"]["acted"]))
                except ModelopsError as exc:
                    failed = getattr(exc, "result", None)
                    doc["quality"]["acted"] = failed.to_dict() if failed else {"status": "failed"}
                    err_console.print(
                        f"error: {quality.action} after the quality alert failed: {exc.message}",
                        markup=False,
                    )
                    code = EXIT_USAGE
    if drift_error is not None:
        code = EXIT_USAGE
    if fmt == "json":
        console.print(json.dumps(doc, indent=2), markup=False)
    raise typer.Exit(code)


@monitor_app.command("shadow", cls=HelpCommand)
def monitor_shadow(
    name: NameArg,
    env: EnvOption,
    stable: Annotated[
        str | None,
        typer.Option(
            "--stable",
            help="Stable model_version (default: the other captured version with the most "
            "requests in the window).",
        ),
    ] = None,
    shadow: Annotated[
        str | None,
        typer.Option("--shadow", help="Shadow model_version (default: spec.model.version)."),
    ] = None,
    fmt: TextOrJson = "text",
) -> None:
    """Judge the shadow of a shadow rollout on the captured answers of both versions.

    Joins the two versions' captured records by request id over
    spec.monitoring.window_hours and prints agreement, probability differences, latency
    and the verdict. Exit 0 promote, 1 drop, 2 usage or input error, or insufficient data
    (fewer than 400 joined rows: no verdict, so never read as promote). Records nothing.
    """
    config = get_config()
    dep = _deployment(name, env)
    report = run_shadow(dep, config, stable=stable, shadow=shadow)
    if fmt == "json":
        console.print(json.dumps(report.to_dict(), indent=2), markup=False)
    else:
        out(shadow_text.shadow_summary(dep.key, report))
    codes = {PROMOTE: EXIT_OK, DROP: EXIT_FINDINGS}
    raise typer.Exit(codes.get(report.verdict, EXIT_USAGE))


@labels_app.command("ingest", cls=HelpCommand)
def labels_ingest(
    name: NameArg,
    env: EnvOption,
    file: Annotated[
        Path, typer.Argument(help="CSV, Parquet, JSON Lines or SageMaker ground truth.")
    ],
    fmt: TextOrJson = "text",
) -> None:
    """Check a file of labels (outcomes) against the captured predictions and store it.

    Exit 0 when every row was stored (duplicates of the same label count as stored), 1
    when rows were rejected (each counted under its reason and kept in the rejected
    file), 2 for usage errors, an unreadable file or missing columns.
    """
    config = get_config()
    dep = _deployment(name, env)
    result = monitor_flow.labels_ingest(dep, config, file)
    if fmt == "json":
        console.print(json.dumps(result.to_dict(), indent=2), markup=False)
    else:
        out(quality_text.ingest(result))
    raise typer.Exit(EXIT_FINDINGS if result.rejected_total else EXIT_OK)


def _retrain(dep, *, reason, training_data, force, fmt, base=False, remote=None) -> dict:
    config = get_config()
    with progress(f"retrain {dep.key}: running the retraining command"):
        res = monitor_flow.retrain(
            dep,
            config,
            reason=reason,
            training_data=training_data,
            force=force,
            base=base,
            remote=remote,
        )
    if fmt == "text":
        out(drift_text.retraining(dep.key, res, config))
    return res.to_dict()


def retrain_cmd(
    name: NameArg,
    env: EnvOption,
    reason: Annotated[
        str,
        typer.Option(
            "--reason",
            help="Why: manual, drift, schedule or one line of text, at most "
            f"{MAX_REASON_CHARS} characters (recorded in the ledger and the commit).",
        ),
    ] = "manual",
    training_data: Annotated[
        str | None,
        typer.Option("--training-data", help="Parquet/CSV passed as MODELOPS_TRAINING_DATA."),
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Ignore the cooldown.")] = False,
    base: Annotated[
        bool,
        typer.Option(
            "--base",
            help="Propose the model in the base spec.model (every environment) instead of "
            "the overlay of --env.",
        ),
    ] = False,
    remote: Annotated[
        str | None,
        typer.Option(
            "--remote",
            help="Git remote to push the proposal to (default: origin when there is one). "
            "With GITHUB_TOKEN a pull request is opened (GITHUB_REPOSITORY, GITHUB_API_URL); "
            "without, the compare URL is printed.",
        ),
    ] = None,
    fmt: TextOrJson = "text",
) -> None:
    """Run the spec's retraining command; propose a better model as a pull request.

    Exit 0 when proposed, rejected, unchanged or skipped (cooldown); 2 when the run
    failed (or for usage errors).
    """
    reason = check_reason(reason)  # exit 2 before the specs are loaded or anything runs
    dep = _deployment(name, env)
    try:
        doc = _retrain(
            dep,
            reason=reason,
            training_data=training_data,
            force=force,
            fmt=fmt,
            base=base,
            remote=remote,
        )
    except ModelopsError as exc:
        if fmt == "json":
            result = getattr(exc, "result", None)
            err_console.print(
                json.dumps(result.to_dict() if result else {"status": "failed"}), markup=False
            )
        raise
    if fmt == "json":
        console.print(json.dumps(doc, indent=2), markup=False)
    raise typer.Exit(EXIT_OK)

"""``modelops history``, ``rollback``, ``unlock`` and ``init``.

Exit codes: ``history``, ``unlock`` and ``init`` 0; ``rollback`` 0, 1 when current
policies block it (nothing applied), 3 when the re-apply failed. All: 2 for usage or
configuration errors (nothing recorded, lock held).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from reconciler.commands.options import (
    EnvOption,
    TextOrJson,
    console,
    err,
    err_console,
    get_config,
    out,
    showing_progress,
)
from reconciler.core.diagnostics import ModelopsError
from reconciler.flow.rollback import rollback
from reconciler.gitops.scaffold import init_repository
from reconciler.report import ledger, render_policy_report, run
from reconciler.state.backend import open_backend
from reconciler.state.ledger import Ledger
from reconciler.state.lock import break_lock


def history_cmd(
    name: Annotated[str, typer.Argument(help="Deployment name (metadata.name).")],
    env: EnvOption,
    limit: Annotated[int, typer.Option("--limit", "-n", min=1, help="Newest N entries.")] = 20,
    fmt: TextOrJson = "text",
) -> None:
    """Show past applies, rollbacks, destroys and failures of NAME in ENV (newest first).

    A destroyed deployment keeps its history; the last line says when it was destroyed.
    """
    config = get_config()
    record = Ledger.of(config).get(name, env)
    if record is None:
        raise ModelopsError(
            f"nothing recorded for {name} in {env}; `modelops status` lists what is deployed"
        )
    entries = list(reversed(record.history))[:limit]
    if fmt == "json":
        console.print(json.dumps(ledger.history_data(record, entries), indent=2), markup=False)
        return
    console.print(ledger.history_table(record, entries))
    out(ledger.history_footer(record))


def rollback_cmd(
    name: Annotated[str, typer.Argument(help="Deployment name (metadata.name).")],
    env: EnvOption,
    to: Annotated[
        str | None,
        typer.Option("--to", help="Git revision to go back to (default: the last good one)."),
    ] = None,
    lock_timeout: Annotated[
        float, typer.Option("--lock-timeout", min=0, help="Seconds to wait for the lock.")
    ] = 60.0,
    fmt: TextOrJson = "text",
) -> None:
    """Re-apply NAME in ENV as its spec was at revision --to, and say what to revert in Git.

    The deployment is then held: later applies leave it alone until its spec or inputs
    change in Git (revert the listed commits, or push a fix).
    """
    config = get_config()
    if to is None:
        record = Ledger.of(config).get(name, env)
        if record is None or not record.lastGoodRevision:
            raise ModelopsError(
                f"no last good revision recorded for {name} in {env}; give --to REV "
                f"(`modelops history {name} --env {env}` lists past revisions)"
            )
        to = record.lastGoodRevision.removesuffix("-dirty")
    with showing_progress():
        report = rollback(config, name, env, to, lock_timeout_s=lock_timeout)
    if fmt == "json":
        console.print(json.dumps(report.to_dict(), indent=2), markup=False)
        raise typer.Exit(report.exit_code)
    for diag in report.diagnostics:
        err_console.print(str(diag), markup=False)
    if report.policy is not None and report.policy.blocking:
        console.print(render_policy_report("text", report.policy).rstrip(), markup=False)
        err_console.print("rollback blocked by current policies: nothing applied", markup=False)
    out(run.rollback(report, name, env))
    err(run.failures(report))
    raise typer.Exit(report.exit_code)


def unlock_cmd(
    force: Annotated[
        bool,
        typer.Option("--force", help="Also remove a lock whose holder may still be running."),
    ] = False,
) -> None:
    """Remove the state-directory lock left by a killed run (after checking its holder).

    Exit 0 (also when nothing was locked); 2 when the holder may still be running
    (``--force`` removes it anyway).
    """
    config = get_config(repository=False)  # an operator may unlock the shared state anywhere
    holder = break_lock(open_backend(config), force=force)
    if holder is None:
        where = config.state_url or config.rel(config.state_dir)
        console.print(f"{where} is not locked", markup=False)
    else:
        console.print(f"removed the lock held by {holder.describe()}", markup=False)


def init_cmd(
    directory: Annotated[Path, typer.Argument(help="Where to create the spec repository.")] = Path(
        "."
    ),
    security_team: Annotated[
        str,
        typer.Option("--security-team", help="GitHub team owning policies/ in CODEOWNERS."),
    ] = "@YOUR-ORG/security",
    platform_team: Annotated[
        str,
        typer.Option("--platform-team", help="GitHub team owning the rest in CODEOWNERS."),
    ] = "@YOUR-ORG/ml-platform",
    example: Annotated[
        bool,
        typer.Option(
            "--example/--no-example",
            help="Write the example deployment (training script, model, spec, request).",
        ),
    ] = True,
) -> None:
    """Scaffold a spec repository: config, specs/, policy library, workflows, CODEOWNERS,
    an example deployment (examples/iris/, specs/iris-classifier.yaml) and `git init`
    when the directory is not in a Git repository yet."""
    result = init_repository(directory, security_team, platform_team, example=example)
    for rel in result.written:
        console.print(f"  wrote {rel}", markup=False)
    for rel in result.kept:
        console.print(f"  kept  {rel} (already there)", markup=False)
    if result.git_initialised:
        console.print("  ran   git init (branch main; nothing committed)", markup=False)
    left = [
        rel
        for rel in (*result.written, *result.kept)  # a re-run keeps what still needs it
        if rel.startswith(".github/")
        and (result.root / rel).is_file()
        and "YOUR-ORG" in (result.root / rel).read_text(errors="replace")
    ]
    hint = f"; replace YOUR-ORG in {', '.join(sorted(set(left)))}" if left else ""
    here = Path.cwd().resolve()
    into = "" if result.root.resolve() == here else f"`cd {_shown(result.root, here)}`, then "
    if example:
        steps = (
            "`modelops validate`, `modelops policy check`, `modelops apply --env dev`, "
            "`modelops plan --env prod` (the example in specs/ and examples/; README.md "
            "says more)"
        )
    else:  # no example: there is nothing to validate or apply yet
        steps = "write a spec in specs/ (docs/spec.md), then `modelops validate`"
    kept = f", {len(result.kept)} kept" if result.kept else ""
    console.print(
        f"{len(result.written)} file(s) written{kept} in {result.root}. Next: {into}{steps}{hint}.",
        markup=False,
    )


def _shown(root: Path, here: Path) -> str:
    """``root`` as a user would type it from ``here`` (relative when below it)."""
    resolved = root.resolve()
    return str(resolved.relative_to(here)) if resolved.is_relative_to(here) else str(resolved)

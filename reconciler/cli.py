"""The ``modelops`` command: the Typer app, its global options, and the entry point.

The commands live in :mod:`reconciler.commands` (one module per group of verbs, shared
options in :mod:`reconciler.commands.options`); this module registers them on
:data:`app`. Exit codes follow ``docs/commands.md``: 0 clean, 1 findings, 2 usage or
configuration error, 3 apply failed. No command ends with a traceback:
:class:`ModelopsError` prints its message; anything unexpected prints one line
(``MODELOPS_DEBUG=1`` shows the trace).
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from pathlib import Path
from typing import Annotated

import git
import typer
import typer.rich_utils

from reconciler.commands import (
    batch,
    build,
    cost,
    deploy,
    gitops,
    infra,
    logs,
    monitor,
    policy,
    reconcile,
    serve,
    spec,
)
from reconciler.commands.options import (
    HelpCommand,
    HelpGroup,
    console,
    err_console,
    help_width,
    set_global_options,
)
from reconciler.core.diagnostics import EXIT_USAGE, ModelopsError
from reconciler.core.version import installed

app = typer.Typer(
    name="modelops",
    help="Declarative GitOps for ML model deployments: validate, police, build, plan, apply.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=True,  # --install-completion / --show-completion (bash, zsh, fish, pwsh)
    cls=HelpGroup,
)


def version() -> str:
    """``<distribution> <version>`` of the installed modelops
    (:func:`reconciler.core.version.installed`); ``modelops (version unknown: not
    installed)`` when it runs from a source tree without an install."""
    found = installed()
    return f"{found[0]} {found[1]}" if found else "modelops (version unknown: not installed)"


def _print_version(value: bool) -> None:
    if value:
        console.print(version(), markup=False)
        raise typer.Exit()


@app.callback()
def _global(
    root: Annotated[
        Path | None, typer.Option("--root", help="Spec repository root (default: found from cwd).")
    ] = None,
    state_dir: Annotated[
        Path | None,
        typer.Option(
            "--state-dir", help="State directory (default .modelops/, or MODELOPS_STATE_DIR)."
        ),
    ] = None,
    _version: Annotated[
        bool,
        typer.Option(
            "--version",
            is_eager=True,
            callback=_print_version,
            help="Print the distribution name and version, then exit.",
        ),
    ] = False,
) -> None:
    """Declarative GitOps for ML model deployments."""
    set_global_options(root, state_dir)


# In the order `modelops --help` lists them (the groups come last).
app.command("batch", cls=HelpCommand)(batch.batch_cmd)
app.command("build", cls=HelpCommand)(build.build_cmd)
app.command("cost", cls=HelpCommand)(cost.cost_cmd)
app.command("plan", cls=HelpCommand)(deploy.plan_cmd)
app.command("apply", cls=HelpCommand)(deploy.apply_cmd)
app.command("reconcile", cls=HelpCommand)(reconcile.reconcile_cmd)
app.command("destroy", cls=HelpCommand)(deploy.destroy_cmd)
app.command("status", cls=HelpCommand)(deploy.status_cmd)
app.command("history", cls=HelpCommand)(gitops.history_cmd)
app.command("rollback", cls=HelpCommand)(gitops.rollback_cmd)
app.command("unlock", cls=HelpCommand)(gitops.unlock_cmd)
app.command("init", cls=HelpCommand)(gitops.init_cmd)
app.command("logs", cls=HelpCommand)(logs.logs_cmd)
app.command("render", cls=HelpCommand)(infra.render_cmd)
app.add_typer(monitor.monitor_app, name="monitor")
app.add_typer(monitor.labels_app, name="labels")
app.command("retrain", cls=HelpCommand)(monitor.retrain_cmd)
app.add_typer(policy.policy_app, name="policy")
app.command("smoke", cls=HelpCommand)(serve.smoke_cmd)
app.command("validate", cls=HelpCommand)(spec.validate)
app.command("schema", cls=HelpCommand)(spec.schema_cmd)


def _quiet_loop_finalizers(unraisable) -> None:
    """Drop the "Exception ignored in BaseEventLoop.__del__" noise at interpreter exit.

    Pulumi's mocks leave asyncio event loops for the garbage collector; when one is
    finalised after its self-pipe was closed, Python prints a traceback that says
    nothing about the user's run. Everything else goes to the default hook.
    """
    obj = getattr(unraisable, "object", None)
    if getattr(obj, "__qualname__", "") == "BaseEventLoop.__del__" and not os.environ.get(
        "MODELOPS_DEBUG"
    ):
        return
    sys.__unraisablehook__(unraisable)


class Terminated(BaseException):
    """SIGTERM, raised where the run is, as Ctrl-C raises :class:`KeyboardInterrupt`: a
    ``BaseException``, so ``except Exception`` does not swallow it and the cleanups that
    catch ``BaseException`` run (not a ``KeyboardInterrupt``, which Typer turns into a
    silent exit 130)."""


def _terminate(signum, frame) -> None:
    """SIGTERM (``timeout``, ``docker stop``, Kubernetes, systemd, a CI runner's cancel)
    stops a run the way Ctrl-C does: what unwinds on an interrupt (a server that was
    being started is stopped, the state lock is released, the ledger keeps the intent)
    unwinds on this too, where the default action ended the process on the spot and
    left a stale lock and an unrecorded server. ``reconcile --interval`` installs its
    own handler while it loops (it finishes the pass in progress)."""
    raise Terminated


def main(argv: list[str] | None = None) -> None:
    """Entry point of the console script; exits with the command's exit code (130 after
    Ctrl-C, 143 after SIGTERM)."""
    os.environ.setdefault("BENTOML_DO_NOT_TRACK", "True")
    main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _terminate) if main_thread else None
    try:
        _run(argv)
    finally:  # a caller that runs commands in process (tests) gets its handler back
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _run(argv: list[str] | None) -> None:
    if not os.environ.get("TERMINAL_WIDTH"):  # Typer's own override wins
        typer.rich_utils.MAX_WIDTH = help_width(sys.stdout)
    sys.unraisablehook = _quiet_loop_finalizers
    try:
        app(args=argv, standalone_mode=True)
    except ModelopsError as exc:
        for diag in exc.diagnostics:
            err_console.print(str(diag), markup=False)
        err_console.print(f"error: {exc.message}", markup=False)
        sys.exit(exc.exit_code)
    except Terminated:
        err_console.print("terminated (SIGTERM): the run was stopped")
        sys.exit(128 + signal.SIGTERM)
    except KeyboardInterrupt:
        err_console.print("interrupted")
        sys.exit(130)
    except OSError as exc:  # a path the user gave that is not a directory, not writable...
        if os.environ.get("MODELOPS_DEBUG"):
            raise
        where = f": {exc.filename}" if exc.filename else ""
        err_console.print(f"error: {exc.strerror or exc}{where}", markup=False)
        sys.exit(EXIT_USAGE)
    except git.GitCommandError as exc:
        if os.environ.get("MODELOPS_DEBUG"):
            raise
        detail = (exc.stderr or "").strip().removeprefix("stderr:").strip(" '\n") or str(exc)
        verb = exc.command[1] if len(exc.command) > 1 else ""
        err_console.print(f"error: git {verb}: {detail}", markup=False)
        sys.exit(EXIT_USAGE)
    except Exception as exc:  # noqa: BLE001 - the last line of defence against tracebacks
        if os.environ.get("MODELOPS_DEBUG"):
            raise
        err_console.print(
            f"internal error: {type(exc).__name__}: {exc} (set MODELOPS_DEBUG=1 for the traceback)",
            markup=False,
        )
        sys.exit(EXIT_USAGE)


if __name__ == "__main__":  # python -m reconciler.cli, as python -m reconciler
    main()

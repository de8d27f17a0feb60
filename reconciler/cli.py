"""The ``modelops`` command.

Command groups live in :mod:`reconciler.commands`; each module adds its commands to
:data:`app`. Global options (``--root``, ``--state-dir``) are read by :func:`get_config`.
Exit codes follow ``shared/DESIGN.md``: 0 clean, 1 findings, 2 usage or configuration
error, 3 apply failed. No command ends with a traceback: :class:`ModelopsError` prints
its message; anything unexpected prints one line (``MODELOPS_DEBUG=1`` shows the trace).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated

import git
import typer
from rich.console import Console

from reconciler.core.config import Config, load_config
from reconciler.core.diagnostics import EXIT_USAGE, ModelopsError

app = typer.Typer(
    name="modelops",
    help="Declarative GitOps for ML model deployments: validate, police, build, plan, apply.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
console = Console(highlight=False, soft_wrap=True)
err_console = Console(stderr=True, highlight=False, soft_wrap=True)

_state: dict = {"root": None, "state_dir": None, "config": None}

FORMAT_HELP = "Output format: text, json, markdown, sarif, junit or github."

EnvOption = Annotated[str, typer.Option("--env", "-e", help="Environment (dev, staging, prod...).")]
TargetsArg = Annotated[
    list[str] | None,
    typer.Argument(help="Spec files, directories or spec names; default: every spec."),
]


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
) -> None:
    """Declarative GitOps for ML model deployments."""
    _state["root"] = root
    _state["state_dir"] = state_dir
    _state["config"] = None


def get_config() -> Config:
    """The configuration for this invocation (read once per process)."""
    if _state["config"] is None:
        root = _state["root"]
        if root is not None and not Path(root).is_dir():
            raise ModelopsError(f"--root {root}: no such directory")
        _state["config"] = load_config(root, _state["state_dir"])
    return _state["config"]


def _load_commands() -> None:
    import importlib
    import pkgutil

    import reconciler.commands as pkg

    for info in sorted(pkgutil.iter_modules(pkg.__path__), key=lambda i: i.name):
        importlib.import_module(f"{pkg.__name__}.{info.name}")


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


def main(argv: list[str] | None = None) -> None:
    """Entry point of the console script; exits with the command's exit code."""
    os.environ.setdefault("BENTOML_DO_NOT_TRACK", "True")
    sys.unraisablehook = _quiet_loop_finalizers
    _load_commands()
    try:
        app(args=argv, standalone_mode=True)
    except ModelopsError as exc:
        for diag in exc.diagnostics:
            err_console.print(str(diag), markup=False)
        err_console.print(f"error: {exc.message}", markup=False)
        sys.exit(exc.exit_code)
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

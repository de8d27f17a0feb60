"""What every command shares: the two consoles, the global options and the options that
several commands take (``--env``, spec targets, ``--format`` help, ``--lock-timeout``).

The global options (``--root``, ``--state-dir``) are set by :func:`set_global_options`
(the app's callback in :mod:`reconciler.cli`) and read through :func:`get_config`.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from typer.core import TyperCommand, TyperGroup

from reconciler.core.config import CONFIG_FILE, Config, load_config
from reconciler.core.diagnostics import ModelopsError
from reconciler.core.progress import step
from reconciler.report.progress import rendering

#: Columns of output that goes to a file, a pipe or a CI log when ``COLUMNS`` is unset:
#: wide, so tables keep whole words (Rich would otherwise assume 80 columns).
WIDE_COLUMNS = 200
#: The narrowest ``--help`` is printed: every option name of every command fits whole
#: at this width (tests/commands/test_cli_basics.py checks each command's help).
MIN_HELP_COLUMNS = 100


def output_width(stream) -> int | None:
    """Columns for a console writing to ``stream``: ``None`` (Rich's own choice: the
    terminal's width, or ``COLUMNS`` when set) on a terminal or when ``COLUMNS`` is
    set; :data:`WIDE_COLUMNS` otherwise (CI logs, pipes, files)."""
    if os.environ.get("COLUMNS", "").isdigit():
        return None
    try:
        is_tty = stream.isatty()
    except (AttributeError, ValueError):  # a closed or replaced stream
        is_tty = False
    return None if is_tty else WIDE_COLUMNS


def help_width(stream) -> int:
    """Columns for ``--help``: the terminal's (or ``COLUMNS``) width, at least
    :data:`MIN_HELP_COLUMNS`, so no option name is cut; :data:`WIDE_COLUMNS` when the
    help goes to a pipe or a file without ``COLUMNS``."""
    width = output_width(stream)
    if width is None:
        width = Console(file=stream).width
    return max(width, MIN_HELP_COLUMNS)


console = Console(highlight=False, soft_wrap=True, width=output_width(sys.stdout))
err_console = Console(stderr=True, highlight=False, soft_wrap=True, width=output_width(sys.stderr))

_state: dict = {"root": None, "state_dir": None, "config": None}

FORMAT_HELP = "Output format: text, json, markdown, sarif, junit or github."

EnvOption = Annotated[str, typer.Option("--env", "-e", help="Environment (dev, staging, prod...).")]
TargetsArg = Annotated[
    list[str] | None,
    typer.Argument(help="Spec files, directories or spec names; default: every spec."),
]
TEXT_OR_JSON = ("text", "json")


def check_text_or_json(fmt: str) -> str:
    """The ``--format`` of a command that prints text or JSON.

    Raises:
        ModelopsError: (exit 2) any other value, before the command does any work.
    """
    if fmt not in TEXT_OR_JSON:
        raise ModelopsError(f"unknown format {fmt!r}; valid formats: {', '.join(TEXT_OR_JSON)}")
    return fmt


TextOrJson = Annotated[
    str, typer.Option("--format", "-f", help="text or json.", callback=check_text_or_json)
]
LockTimeout = Annotated[
    float,
    typer.Option(
        "--lock-timeout",
        min=0,
        help="Seconds to wait when another run holds the state-directory lock.",
    ),
]


def set_global_options(root: Path | None, state_dir: Path | None) -> None:
    """Record ``--root`` and ``--state-dir`` for :func:`get_config` (forgets the config read
    by an earlier invocation in the same process)."""
    _state["root"] = root
    _state["state_dir"] = state_dir
    _state["config"] = None


def get_config(*, repository: bool = True) -> Config:
    """The configuration for this invocation (read once per process).

    Args:
        repository: require a spec repository: ``modelops.yaml`` or the specs directory
            at the root (``validate`` of explicit files and ``policy test`` do not).
            Without one, ``apply`` said "nothing to apply" and exited 0, and ``status``
            created a state directory, wherever they were run.

    Raises:
        ModelopsError: (exit 2) ``--root`` is not a directory, ``modelops.yaml`` is
            invalid (:func:`~reconciler.core.config.load_config`), or the root is not a
            spec repository.
    """
    if _state["config"] is None:
        root = _state["root"]
        if root is not None and not Path(root).is_dir():
            raise ModelopsError(f"--root {root}: no such directory")
        _state["config"] = load_config(root, _state["state_dir"])
    config = _state["config"]
    if repository and not ((config.root / CONFIG_FILE).is_file() or config.specs_dir.is_dir()):
        raise ModelopsError(
            f"{config.root} is not a modelops spec repository: it has neither {CONFIG_FILE} "
            f"nor a {config.rel(config.specs_dir)}/ directory (run `modelops init`, cd into "
            "a spec repository, or pass --root); nothing was done"
        )
    return config


def out(text: str) -> None:
    """Write a writer's text on stdout as it is (nothing when empty).

    Written to the console's file directly: Rich would split, measure and wrap every line
    (5.9 s of a 21 s ``plan --all --format json`` over 300 specs, ``bench/bench_gitops.py``)
    and replace ``:name:`` emoji codes in spec values."""
    if text:
        console.file.write(text)
        console.file.flush()


def err(text: str) -> None:
    """Write a writer's text on stderr as it is (nothing when empty; see :func:`out`)."""
    if text:
        err_console.file.write(text)
        err_console.file.flush()


@contextlib.contextmanager
def progress(message: str) -> Iterator[None]:
    """A spinner showing ``message`` with its elapsed time on a terminal; nothing in CI or
    when output is piped. The block's own progress events (build, start, smoke...) are
    shown too: the one progress reporter (:func:`showing_progress`)."""
    with showing_progress(), step(message):
        yield


def showing_progress():
    """Render the progress events (:mod:`reconciler.core.progress`) of the block on stderr
    when stderr is a terminal (:func:`reconciler.report.progress.rendering`)."""
    return rendering(err_console)


class _FlagsWithoutType:
    """Help that shows no value type for a flag: Typer's rich help prints ``<bool>``
    beside ``--build`` (its plain help does not), as if the flag took a value. While the
    help is formatted, each flag's metavar is empty (Typer prints the metavar instead of
    the type when one is set); afterwards it is as before."""

    def format_help(self, ctx, formatter) -> None:
        flags = [
            p
            for p in self.get_params(ctx)
            if getattr(p, "is_flag", False) and getattr(p, "metavar", "") is None
        ]
        for param in flags:
            param.metavar = ""
        try:
            super().format_help(ctx, formatter)
        finally:
            for param in flags:
                param.metavar = None


class HelpCommand(_FlagsWithoutType, TyperCommand):
    """Every command's class (``app.command(..., cls=HelpCommand)``): flags without a type."""


class HelpGroup(_FlagsWithoutType, TyperGroup):
    """Every group's class (``typer.Typer(cls=HelpGroup)``): flags without a type."""

"""Running ``modelops``: in this process, or as a real process (no tests here).

:func:`invoke` calls the console script's entry point (:func:`reconciler.cli.main`) in
this process, with stdout and stderr captured by Typer's ``CliRunner`` isolation, and
returns the exit code a shell would see. :func:`run_cli` starts ``python -m reconciler``
as a child process, for the tests that need a real one (exit codes and output exactly as
a shell sees them, interpreter start and exit included). Both return an object with
``returncode``, ``stdout`` and ``stderr``.
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from typer.testing import CliRunner

from reconciler.cli import main


@dataclass
class CliResult:
    """What ``modelops`` did in-process: exit code, stdout and stderr (text)."""

    returncode: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        """stdout then stderr."""
        return self.stdout + self.stderr

    def __iter__(self):
        """``code, out, err = invoke(...)``."""
        return iter((self.returncode, self.stdout, self.stderr))


def invoke(root: Path | None, *args: str) -> CliResult:
    """``modelops [--root ROOT] ARGS`` in this process.

    The exit code is that of the ``SystemExit`` raised by ``main`` (0 when it returns;
    1 for an exit with a message, as a real process would end).
    """
    argv = (["--root", str(root)] if root is not None else []) + list(args)
    runner = CliRunner()
    hook = sys.unraisablehook  # main() installs its own for the rest of the process
    with runner.isolation() as (out, err, _):
        try:
            main(argv)
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        finally:
            sys.unraisablehook = hook
        sys.stdout.flush()
        sys.stderr.flush()
        stdout, stderr = out.getvalue(), err.getvalue()
    return CliResult(code, stdout.decode(), stderr.decode("utf-8", "backslashreplace"))


def run_cli(root: Path | None, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    """``python -m reconciler [--root ROOT] ARGS`` as a child process (text output)."""
    argv = (["--root", str(root)] if root is not None else []) + list(args)
    return subprocess.run(
        [sys.executable, "-m", "reconciler", *argv],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "BENTOML_DO_NOT_TRACK": "True"},
    )

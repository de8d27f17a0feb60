"""Helpers of the fault tests (no tests here): run ``modelops`` as a real process that a
test-only hook kills at a named stage, and count what a crash left behind.

``MODELOPS_FAULT_AT=<stage>`` makes the process SIGKILL itself when it reaches that
stage (:func:`reconciler.core.procs.fault_point`): deterministic, never a race with a
timer. :class:`Tally` keeps the figures the issue asks for and prints them.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from reconciler.build.serve import find_servers
from reconciler.core.procs import FAULT_ENV
from reconciler.state.ledger import Ledger
from support.cli import invoke


@contextlib.contextmanager
def tmpfs(where: Path, *options: str) -> Iterator[str]:
    """Mount a small real tmpfs at ``where`` (created; ``size=64k`` unless ``options`` give
    one) for the block; yields ``""`` when mounted, else why it could not be (no
    privilege to mount, e.g. an unprivileged container; ``where`` is then a plain
    directory). Unmounted afterwards."""
    where.mkdir(parents=True)
    opts = ",".join(("size=64k", *options) if not any("size=" in o for o in options) else options)
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", opts, "tmpfs", str(where)], check=False, capture_output=True
    )
    if done.returncode != 0:
        yield f"cannot mount a tmpfs here ({done.stderr.decode().strip()})"
        return
    try:
        yield ""
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


def fill(directory: Path) -> None:
    """Write zeros under ``directory`` until its file system has no space left (ENOSPC);
    a second file takes what a 4 KiB write could not."""
    for size in (4096, 64):
        with (
            contextlib.suppress(OSError),
            open(directory / f"fill-{uuid.uuid4().hex}", "wb") as fh,
        ):
            while True:
                fh.write(b"\0" * size)
                fh.flush()


def run(root: Path, *args: str, fault: str = "") -> subprocess.CompletedProcess:
    """``python -m reconciler --root ROOT ARGS``; killed at ``fault`` when given."""
    env = {**os.environ, "BENTOML_DO_NOT_TRACK": "True"}
    env.pop(FAULT_ENV, None)
    if fault:
        env[FAULT_ENV] = fault
    return subprocess.run(
        [sys.executable, "-m", "reconciler", "--root", str(root), *args],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
    )


@dataclass
class Tally:
    """Cases tried, and what must stay zero: crashes (a traceback or an exit code other
    than the kill's or the documented ones), fail-opens (a guard that let something
    through), orphaned processes (servers no ledger record names after a recovery
    run), data lost (a ledger record gone or unreadable, history shortened)."""

    cases: int = 0
    crashes: list[str] = field(default_factory=list)
    fail_opens: list[str] = field(default_factory=list)
    orphaned: list[str] = field(default_factory=list)
    data_lost: list[str] = field(default_factory=list)

    def killed(self, stage: str, proc: subprocess.CompletedProcess) -> None:
        """A run that had to die at ``stage`` by the hook's SIGKILL."""
        self.cases += 1
        if proc.returncode != -signal.SIGKILL:
            self.crashes.append(f"{stage}: exit {proc.returncode}: {proc.stderr[-500:]}")

    def kill(self, root: Path, stage: str, *args: str) -> None:
        """Run ``modelops ARGS`` killed at ``stage``, then ``unlock`` the stale lock it
        left (what an operator does after a crash: the lock names the dead pid)."""
        self.killed(stage, run(root, *args, fault=stage))
        self.clean(f"unlock after {stage}", invoke(root, "unlock"))

    def clean(self, what: str, proc) -> None:
        """A recovery run (a process, or an in-process :func:`~support.cli.invoke`): exit 0,
        no traceback."""
        if proc.returncode != 0 or "Traceback" in proc.stderr:
            self.crashes.append(f"{what}: exit {proc.returncode}: {proc.stderr[-800:]}")

    def converged(self, what: str, state_dir: Path, key: str, history_len: int) -> int:
        """After a recovery run: one server for ``key``, the one its record names, nothing
        pending, the history not shorter than ``history_len``; returns its length."""
        name, env = key.rsplit("-", 1)
        try:
            rec = Ledger(state_dir).get(name, env)
        except Exception as exc:  # noqa: BLE001 - counted, then the test fails
            self.data_lost.append(f"{what}: {exc}")
            return history_len
        servers = find_servers(state_dir, key)
        recorded = rec.outputs.get("server_id") if rec is not None else None
        strays = [s for sid, s in servers.items() if sid != recorded]
        self.orphaned += [f"{what}: unrecorded server {s['pids']}" for s in strays]
        if recorded not in servers:
            self.fail_opens.append(f"{what}: the recorded server is not running")
        if rec is None or rec.pending:
            self.fail_opens.append(f"{what}: record missing or still pending")
            return history_len
        if len(rec.history) < history_len:
            self.data_lost.append(f"{what}: history shrank to {len(rec.history)}")
        return len(rec.history)

    def report(self, title: str) -> str:
        """The figures, printed by the test (``pytest -s`` shows them)."""
        line = (
            f"{title}: cases tried {self.cases}, crashes {len(self.crashes)}, fail-opens "
            f"{len(self.fail_opens)}, orphaned processes {len(self.orphaned)}, data lost "
            f"{len(self.data_lost)}"
        )
        print(line)
        return line

    @property
    def problems(self) -> list[str]:
        """Everything that must be empty."""
        return self.crashes + self.fail_opens + self.orphaned + self.data_lost

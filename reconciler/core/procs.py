"""Process groups: start a command in a session of its own, stop the whole group.

A command started by :func:`start_group` leads a new session and process group (its
pgid is its pid), so whatever it starts (server workers, a training script's children)
is signalled with it. :func:`stop_group` sends SIGTERM to the group, waits a grace
period, then SIGKILLs what is left. Local serving (``reconciler.build.serve``) and
retraining (``reconciler.monitor.retrain``) share it. POSIX only.

A pid alone does not identify a process: it is reused once the process exits.
:func:`identity_of` reads what does (pid, start time, process group, command line) and
:func:`identity_mismatches` says which part of a recorded identity a live process does
not match; a recorded process is signalled only when nothing mismatches.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO

import psutil

STOP_GRACE_S = 10.0
"""Default seconds between SIGTERM and SIGKILL."""
KILL_WAIT_S = 5.0
"""Seconds to wait for the leader to exit after SIGKILL."""
_POLL_S = 0.05


def start_group(
    argv: Sequence[str],
    *,
    cwd: str | os.PathLike | None = None,
    env: Mapping[str, str] | None = None,
    stdout: int | IO | None = None,
    stderr: int | IO | None = subprocess.STDOUT,
    stdin: int | IO | None = subprocess.DEVNULL,
) -> subprocess.Popen:
    """Start ``argv`` (never through a shell) as the leader of a new session and group.

    Args:
        argv: the program and its arguments.
        cwd: working directory (default: this process's).
        env: the whole environment of the child (default: this process's).
        stdout: where its standard output goes (a file, ``subprocess.PIPE``...); default
            inherited.
        stderr: default ``subprocess.STDOUT`` (merged into ``stdout``).
        stdin: default ``subprocess.DEVNULL``.

    Returns:
        The :class:`subprocess.Popen`; ``proc.pid`` is also the process group id. File
        descriptors other than 0-2 are closed in the child.

    Raises:
        OSError: the program cannot be started (missing, not executable); nothing runs.
    """
    return subprocess.Popen(
        list(argv),
        cwd=None if cwd is None else str(Path(cwd)),
        env=None if env is None else dict(env),
        stdin=stdin,
        stdout=stdout,
        stderr=stderr,
        start_new_session=True,
        close_fds=True,
    )


def leads_group(pid: int) -> bool:
    """Whether process ``pid`` exists and leads its own process group (pgid == pid)."""
    try:
        return os.getpgid(pid) == pid
    except (ProcessLookupError, PermissionError):
        return False


def signal_group(pgid: int, sig: int) -> bool:
    """Send ``sig`` to every process of group ``pgid``.

    Returns:
        True when the signal was sent; False when no process is in the group (or none
        may be signalled by this user).
    """
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        return False
    return True


def wait_exited(
    procs: Sequence[psutil.Process], timeout: float
) -> tuple[list[psutil.Process], list[psutil.Process]]:
    """Wait up to ``timeout`` seconds for ``procs`` to exit; ``(gone, alive)``.

    Like :func:`psutil.wait_procs`, except that a zombie counts as exited: a process
    another one started (a server or router that an earlier ``apply`` in a still-running
    process started, such as ``reconcile --interval``) stays a zombie until that parent
    reaps it, and ``psutil.wait_procs`` waited the whole ``timeout`` for it. Our own
    children are reaped here (``Process.wait``). A pid now held by another process (its
    start time differs) counts as exited too.
    """
    deadline = time.monotonic() + max(0.0, timeout)
    alive = list(procs)
    while True:
        still = []
        for proc in alive:
            try:
                if proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE:
                    still.append(proc)
                    continue
                proc.wait(timeout=0)  # reaps it when it is our child
            except (psutil.NoSuchProcess, psutil.TimeoutExpired, ChildProcessError):
                pass
            except psutil.AccessDenied:
                still.append(proc)
        alive = still
        if not alive or time.monotonic() >= deadline:
            break
        time.sleep(_POLL_S)
    gone = [p for p in procs if p not in alive]
    return gone, alive


def reap_finished(children: dict[int, subprocess.Popen]) -> int:
    """Reap the processes of ``children`` (a registry of what this process started, by
    pid) that have exited, and drop them from it; returns how many. A process another
    run stopped stays a zombie child until it is reaped."""
    done = [pid for pid, child in list(children.items()) if child.poll() is not None]
    for pid in done:
        children.pop(pid, None)
    return len(done)


def group_alive(pgid: int) -> bool:
    """Whether any process is left in group ``pgid`` (a zombie not yet reaped counts)."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # processes exist, owned by someone else
        return True
    return True


def stop_group(
    proc: subprocess.Popen, *, grace_s: float = STOP_GRACE_S, kill_wait_s: float = KILL_WAIT_S
) -> int | None:
    """Stop the process group that ``proc`` leads (started by :func:`start_group`).

    SIGTERM to the group; wait up to ``grace_s`` seconds for the leader and every other
    member to exit; SIGKILL the group if anything is left; reap the leader. Safe to call
    when the group is already gone.

    Args:
        proc: the group leader.
        grace_s: seconds between SIGTERM and SIGKILL (>= 0).
        kill_wait_s: seconds to wait for the leader after SIGKILL.

    Returns:
        The leader's exit code (negative: the signal that ended it), or None if it still
        runs after SIGKILL and ``kill_wait_s`` (it cannot be stopped, e.g. stuck in the
        kernel).
    """
    pgid = proc.pid
    deadline = time.monotonic() + max(0.0, grace_s)
    if signal_group(pgid, signal.SIGTERM):
        try:
            proc.wait(timeout=max(0.0, grace_s))
        except subprocess.TimeoutExpired:
            pass
        while group_alive(pgid) and time.monotonic() < deadline:
            time.sleep(_POLL_S)  # the leader exited; its children may still be stopping
        if group_alive(pgid) or proc.poll() is None:
            signal_group(pgid, signal.SIGKILL)
    try:
        return proc.wait(timeout=kill_wait_s)
    except subprocess.TimeoutExpired:
        return None


FAULT_ENV = "MODELOPS_FAULT_AT"
"""Test-only hook: the stage at which :func:`fault_point` signals the own process."""


def fault_point(stage: str) -> None:
    """SIGKILL this process when ``MODELOPS_FAULT_AT`` names ``stage``, or SIGTERM it
    when the value is ``<stage>:term`` (fault tests only).

    The fault tests (``tests/faults/``) kill ``apply`` and ``destroy`` at each stage
    (``build``, ``start``, ``smoke``, ``update``, ``record``, ``destroy``)
    deterministically, never by timing; ``:term`` is how ``timeout``, ``docker stop`` or
    Kubernetes stop a run (the CLI unwinds as on Ctrl-C). Unset (always, outside those
    tests) it does nothing.
    """
    at, _, how = os.environ.get(FAULT_ENV, "").partition(":")
    if at == stage:
        os.kill(os.getpid(), signal.SIGTERM if how == "term" else signal.SIGKILL)


#: Start times are compared to this many seconds (psutil derives them from clock ticks
#: since boot: stable for a process, 0.01 s resolution).
START_TIME_TOLERANCE_S = 0.05


def identity_of(pid: int) -> dict | None:
    """The identity of live process ``pid``, or ``None`` when it is gone (or a zombie).

    Returns:
        ``{"pid": int, "started": float (seconds since the epoch, psutil's
        ``create_time``), "pgid": int, "cmdline": [str, ...]}``; ``cmdline`` is ``[]``
        when it cannot be read (another user's process).
    """
    if pid <= 0:
        return None
    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            return None
        started = proc.create_time()
        pgid = os.getpgid(pid)
    except (psutil.NoSuchProcess, psutil.AccessDenied, ProcessLookupError, PermissionError):
        return None
    try:
        cmdline = proc.cmdline()
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        cmdline = []
    return {"pid": pid, "started": started, "pgid": pgid, "cmdline": cmdline}


def identity_mismatches(
    pid: int, *, started: float = 0.0, pgid: int = 0, cmdline_has: Sequence[str] = ()
) -> list[str]:
    """What a live process ``pid`` does not match of a recorded identity.

    Args:
        pid: the recorded pid.
        started: the recorded start time (seconds since the epoch; 0: not recorded, not
            compared).
        pgid: the recorded process group (0: not compared).
        cmdline_has: strings that must each be one of the command line's arguments or
            inside one (e.g. the Bento tag).

    Returns:
        ``[]`` when the process runs and every recorded part matches; otherwise one short
        phrase per mismatch (``"process 12 is not running"``, ``"start time ... (recorded
        ...)"``, ``"process group ..."``, ``"command line lacks ..."``).
    """
    live = identity_of(pid)
    if live is None:
        return [f"process {pid} is not running"]
    out = []
    if started and abs(live["started"] - started) > START_TIME_TOLERANCE_S:
        out.append(
            f"process {pid} started at {live['started']:.2f}, recorded {started:.2f} "
            "(the pid was reused)"
        )
    if pgid and live["pgid"] != pgid:
        out.append(f"process {pid} is in process group {live['pgid']}, recorded {pgid}")
    for needle in cmdline_has:
        if needle and not any(needle in part for part in live["cmdline"]):
            out.append(f"the command line of process {pid} does not contain {needle!r}")
    return out

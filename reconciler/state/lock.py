"""The state-directory lock: two ``apply`` runs never interleave (``docs/state.md``).

``<state_dir>/lock`` is created atomically (``os.link``) with the holder's host, pid,
process start time, user, command and start time in it. A second run waits up to its
time-out, then fails naming the holder; a stale lock is reported, and only
``modelops unlock`` removes it.
"""

from __future__ import annotations

import json
import os
import random
import socket
import stat
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from reconciler.core.clock import now_iso
from reconciler.core.diagnostics import ModelopsError
from reconciler.state.ledger import StateWriteError, actor, wrong_json_type

LOCK_FILE = "lock"
#: Seconds before the second attempt while waiting for a held lock; each later wait doubles
#: (exponential backoff, capped at MAX_POLL_S) and is jittered down by up to half, so runs
#: that queue behind one holder do not retry in step (AWS's "exponential backoff and
#: jitter"; the same shape Terraform's S3 backend uses while its lock is held).
POLL_S = 0.2
#: The longest wait between two attempts, in seconds.
MAX_POLL_S = 5.0


def backoff_s(attempt: int, rand: random.Random | None = None) -> float:
    """Seconds to wait after the ``attempt``-th refused attempt (0-based).

    ``POLL_S * 2**attempt`` capped at :data:`MAX_POLL_S`, times a jitter factor in
    [0.5, 1.0) drawn from ``rand`` (the module's generator when None).
    """
    base = min(MAX_POLL_S, POLL_S * (2 ** min(attempt, 16)))
    return base * (0.5 + 0.5 * (rand or random).random())


class LockError(ModelopsError):
    """The lock is held (or stale); exit 2. ``holder`` is the :class:`LockInfo` or None."""

    def __init__(self, message: str, holder: LockInfo | None = None) -> None:
        super().__init__(message)
        self.holder = holder


def _proc_start(pid: int) -> str:
    """The start time of ``pid`` in clock ticks since boot (Linux ``/proc``), or ``""``."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return ""
    # field 22, counted after the command name, which is in parentheses and may hold spaces
    return stat.rsplit(")", 1)[1].split()[19]


@dataclass
class LockInfo:
    """Who holds the lock.

    Attributes:
        host: host name of the holder.
        pid: process id of the holder.
        started_at: ISO 8601 UTC time the lock was taken.
        command: what the holder runs (``modelops apply --env prod``).
        actor: ``$GITHUB_ACTOR`` or ``user@host``.
        proc_start: the holder's process start time in clock ticks (``""`` unknown).
    """

    host: str
    pid: int
    started_at: str
    command: str = ""
    actor: str = ""
    proc_start: str = ""

    def describe(self) -> str:
        """One line: ``pid 123 on host ci-1 (alice@ci-1), since 2026-…: modelops apply``."""
        who = f" ({self.actor})" if self.actor else ""
        what = f": {self.command}" if self.command else ""
        return f"pid {self.pid} on host {self.host}{who}, since {self.started_at}{what}"

    def alive(self) -> bool | None:
        """Whether the holder still runs: True/False on this host, ``None`` elsewhere."""
        if self.host != socket.gethostname():
            return None
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            pass  # exists, owned by someone else
        if self.proc_start and _proc_start(self.pid) not in ("", self.proc_start):
            return False  # the pid was recycled by another process
        return True


class LockPathError(ModelopsError):
    """The state directory or its lock path is not what modelops creates there (a lock path
    that is a directory, a symbolic link, a FIFO, a socket or a device; a state directory
    that is a file); exit 2. Nothing is read from it, written or removed."""


def _kind(mode: int) -> str:
    """What a file of ``mode`` (from ``lstat``) is, for a message."""
    for test, name in (
        (stat.S_ISDIR, "a directory"),
        (stat.S_ISLNK, "a symbolic link"),
        (stat.S_ISFIFO, "a FIFO (named pipe)"),
        (stat.S_ISSOCK, "a socket"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISREG, "a file"),
    ):
        if test(mode):
            return name
    return "not a regular file"  # pragma: no cover - every kind POSIX has is above


def check_lock_path(state_dir: Path) -> None:
    """Refuse a state directory, or a lock path in it, that modelops did not create.

    The lock is a regular file ``<state_dir>/lock`` that :class:`StateLock` creates and
    removes; anything else there (a directory, a symbolic link even to a lock file, a
    FIFO, whose read would block) would be read or replaced wrongly, so it stops the run
    with what would be valid, touching nothing. Checked with ``lstat`` (no link followed,
    nothing opened).

    Raises:
        LockPathError: (exit 2) naming the path, what it is, and what to do.
    """
    state_dir = Path(state_dir)
    try:
        mode = os.stat(state_dir).st_mode
    except (FileNotFoundError, NotADirectoryError):
        return  # created on the first lock
    except OSError as exc:
        raise StateWriteError(state_dir, exc) from None
    if not stat.S_ISDIR(mode):
        raise LockPathError(
            f"the state directory {state_dir} is {_kind(mode)}, not a directory; "
            "point --state-dir / MODELOPS_STATE_DIR / state_dir in modelops.yaml at a "
            "directory (created when missing). Nothing was touched"
        )
    path = state_dir / LOCK_FILE
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return
    except OSError as exc:
        raise StateWriteError(state_dir, exc) from None
    if stat.S_ISREG(mode):
        return
    what = _kind(mode)
    if stat.S_ISLNK(mode):
        what += f" (to {os.readlink(path)})"
    raise LockPathError(
        f"the lock path {path} is {what}, not a lock file: the lock is a regular file "
        "modelops creates and removes itself (holding the host, pid and command of the run "
        "that holds it). Nothing was touched; move it out of the state directory (e.g. "
        f"mv {path} {path}.bak) and run again"
    )


def read_lock(state_dir: Path) -> LockInfo | None:
    """The current holder, or ``None`` when the state directory is not locked.

    A lock file that cannot be read as one (not UTF-8, not JSON, not a mapping, a field of
    the wrong type) is reported as held by an unknown holder (pid 0) rather than ignored:
    ``modelops unlock --force`` removes it.

    Raises:
        LockPathError: (exit 2) the lock path is not a regular file
            (:func:`check_lock_path`).
    """
    check_lock_path(state_dir)
    path = Path(state_dir) / LOCK_FILE
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None
    unreadable = LockInfo("unknown", 0, "unknown", command=f"unreadable lock file {path}")
    try:
        data = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        return unreadable
    if not isinstance(data, dict):
        return unreadable
    fields = {k: data[k] for k in LockInfo.__dataclass_fields__ if k in data}
    if wrong_json_type(LockInfo, fields) or not {"host", "pid", "started_at"} <= set(fields):
        return unreadable
    return LockInfo(**fields)


class StateLock:
    """Exclusive lock on a state directory, as a context manager.

    Args:
        state_dir: the state directory (created if missing).
        command: what this process runs, recorded for whoever waits.
        timeout_s: seconds to wait for a held lock before failing; 0 fails at once.

    Raises (on ``__enter__``/:meth:`acquire`):
        LockError: the lock is still held after ``timeout_s`` (the message names the
            holder: host, pid, start time, command), or it is stale (its holder on this
            host is gone; the message says to run ``modelops unlock``).
    """

    def __init__(self, state_dir: Path, command: str = "", timeout_s: float = 60.0) -> None:
        self.state_dir = Path(state_dir)
        self.path = self.state_dir / LOCK_FILE
        self.command = command or " ".join(["modelops", *sys.argv[1:]])
        self.timeout_s = timeout_s
        self.info: LockInfo | None = None

    def _try(self) -> bool:
        info = LockInfo(
            socket.gethostname(),
            os.getpid(),
            now_iso(),
            self.command,
            actor(),
            _proc_start(os.getpid()),
        )
        try:
            return self._write(info)
        except OSError as exc:
            raise StateWriteError(self.state_dir, exc) from None

    def _write(self, info: LockInfo) -> bool:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".lock.", dir=self.state_dir)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                json.dump(asdict(info), fh)
                fh.flush()
                os.fsync(fh.fileno())
            try:
                os.link(tmp, self.path)
            except FileExistsError:
                return False
        finally:
            Path(tmp).unlink(missing_ok=True)
        self.info = info
        return True

    def acquire(self) -> LockInfo:
        """Take the lock, waiting up to ``timeout_s``; returns this holder's info.

        While another live run holds it, attempts are retried with exponential backoff and
        jitter (:func:`backoff_s`) until the deadline; a lock held by another run is a
        transient condition and never recorded against a deployment.

        Raises:
            LockError: the holder is gone (a stale lock), or still holds it at the deadline.
            LockPathError: (exit 2) the lock path or state directory is not what modelops
                creates (:func:`check_lock_path`); checked first, nothing touched.
        """
        check_lock_path(self.state_dir)
        deadline = time.monotonic() + self.timeout_s
        attempt = 0
        while True:
            if self._try():
                return self.info
            holder = read_lock(self.state_dir)
            if holder is None:
                continue  # released between our attempt and the read: try again now
            if holder.alive() is False:
                raise LockError(
                    f"the state directory {self.state_dir} is locked by a process that is "
                    f"gone ({holder.describe()}): a stale lock, probably from a killed run. "
                    "Check `modelops status` for a half-finished apply, then run "
                    "`modelops unlock`.",
                    holder,
                )
            if time.monotonic() >= deadline:
                waited = f" after waiting {self.timeout_s:g} s" if self.timeout_s else ""
                raise LockError(
                    f"the state directory {self.state_dir} is locked by {holder.describe()}"
                    f"{waited}; another apply is running. Wait for it, or raise "
                    "--lock-timeout.",
                    holder,
                )
            time.sleep(min(backoff_s(attempt), max(0.0, deadline - time.monotonic())))
            attempt += 1

    def release(self) -> None:
        """Remove the lock if this process still holds it (never someone else's)."""
        if self.info is None:
            return
        current = read_lock(self.state_dir)
        if current is not None and (current.pid, current.host, current.started_at) == (
            self.info.pid,
            self.info.host,
            self.info.started_at,
        ):
            self.path.unlink(missing_ok=True)
        self.info = None

    def __enter__(self) -> StateLock:
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def break_lock(state_dir: Path, force: bool = False) -> LockInfo | None:
    """Remove the lock (``modelops unlock``); returns the holder that was removed.

    Args:
        state_dir: the state directory.
        force: also remove a lock whose holder is still running on this host, or whose
            liveness cannot be checked (another host).

    Raises:
        LockError: the holder is alive (or on another host) and ``force`` is not set.
        LockPathError: (exit 2) the lock path is not a regular file (even with ``force``:
            modelops removes only what it created).
    """
    holder = read_lock(state_dir)
    if holder is None:
        return None
    alive = holder.alive()
    if alive is not False and not force:
        state = "is still running" if alive else "is on another host, so modelops cannot tell"
        if holder.pid == 0:
            state = "is not a lock modelops can read, so it cannot tell whether an apply runs"
        raise LockError(
            f"the lock is held by {holder.describe()}, which {state}; "
            "pass --force to remove it anyway",
            holder,
        )
    (Path(state_dir) / LOCK_FILE).unlink(missing_ok=True)
    return holder

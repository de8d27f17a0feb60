"""The state lock: two ``apply`` runs never interleave (``docs/state.md``).

The key ``lock`` of the state backend (:mod:`reconciler.state.backend`) is created only
if absent, with the holder's host, pid, process start time, user, command and start time
in it: ``<state_dir>/lock`` by ``os.link`` locally, ``s3://bucket/prefix/lock`` with
``If-None-Match: *`` on shared state. A second run waits up to its time-out, then fails
naming the holder; a stale lock is reported, and only ``modelops unlock`` removes it
(on S3 conditionally on the ETag read, so it never removes a lock taken meanwhile).
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import socket
import stat
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from reconciler.core.clock import now_iso
from reconciler.core.config import Config
from reconciler.core.diagnostics import ModelopsError
from reconciler.core.progress import step
from reconciler.state.backend import (
    ABSENT,
    LocalBackend,
    StateBackend,
    StateConflict,
    StateWriteError,
    open_backend,
)
from reconciler.state.ledger import actor, wrong_json_type

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


def _backend(state: Path | StateBackend) -> StateBackend:
    return LocalBackend(Path(state)) if isinstance(state, str | os.PathLike) else state


def _where(backend: StateBackend) -> str:
    """``the state directory DIR`` or ``the shared state s3://...``, for messages."""
    kind = "state directory" if isinstance(backend, LocalBackend) else "shared state"
    return f"the {kind} {backend.location}"


def read_lock(state: Path | StateBackend) -> LockInfo | None:
    """The current holder, or ``None`` when the state is not locked.

    Args:
        state: the state directory, or a state backend (shared ``s3://`` state).

    A lock file that cannot be read as one (not UTF-8, not JSON, not a mapping, a field of
    the wrong type) is reported as held by an unknown holder (pid 0) rather than ignored:
    ``modelops unlock --force`` removes it.

    Raises:
        LockPathError: (exit 2) the lock path is not a regular file
            (:func:`check_lock_path`).
    """
    return _read_lock(_backend(state))[0]


def _read_lock(backend: StateBackend) -> tuple[LockInfo | None, str]:
    """``(holder, version tag)``; ``(None, "")`` when not locked."""
    if isinstance(backend, LocalBackend):
        check_lock_path(backend.root)
    stored = backend.read(LOCK_FILE)
    if stored is None:
        return None, ""
    where = backend.describe(LOCK_FILE)
    unreadable = LockInfo("unknown", 0, "unknown", command=f"unreadable lock file {where}")
    try:
        data = json.loads(stored.data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        return unreadable, stored.etag
    if not isinstance(data, dict):
        return unreadable, stored.etag
    fields = {k: data[k] for k in LockInfo.__dataclass_fields__ if k in data}
    if wrong_json_type(LockInfo, fields) or not {"host", "pid", "started_at"} <= set(fields):
        return unreadable, stored.etag
    return LockInfo(**fields), stored.etag


class StateLock:
    """Exclusive lock on the state (a directory, or shared ``s3://`` state), as a context
    manager.

    Args:
        state_dir: the state directory (created if missing); the lock's place unless
            ``backend`` is given.
        command: what this process runs, recorded for whoever waits.
        timeout_s: seconds to wait for a held lock before failing; 0 fails at once.
        backend: where the lock is (default: ``LocalBackend(state_dir)``).
        break_stale: remove a stale lock (its holder on this host is gone: no process
            with its pid, or one started at another time) and take it, instead of failing;
            :attr:`broken` is then the holder removed. The self-heal (``reconcile``) sets
            it: its pass converges what the dead run left half-finished (the ledger holds
            that run's intent). A holder on another host is never judged stale.

    Raises (on ``__enter__``/:meth:`acquire`):
        LockError: the lock is still held after ``timeout_s`` (the message names the
            holder: host, pid, start time, command), or it is stale and ``break_stale``
            is not set (its holder on this host is gone; the message says to run
            ``modelops unlock``).
        StateWriteError | StateStoreError: the state cannot be written (exit 2).
    """

    def __init__(
        self,
        state_dir: Path,
        command: str = "",
        timeout_s: float = 60.0,
        backend: StateBackend | None = None,
        break_stale: bool = False,
    ) -> None:
        self.state_dir = Path(state_dir)
        self.backend = backend or LocalBackend(self.state_dir)
        self.path = self.state_dir / LOCK_FILE
        self.command = command or " ".join(["modelops", *sys.argv[1:]])
        self.timeout_s = timeout_s
        self.break_stale = break_stale
        self.broken: LockInfo | None = None
        self.info: LockInfo | None = None
        self.etag = ""

    @classmethod
    def of(
        cls, config: Config, command: str = "", timeout_s: float = 60.0, break_stale: bool = False
    ) -> StateLock:
        """The lock of a repository's state: ``config.state_url`` when set, else its state
        directory."""
        return cls(config.state_dir, command, timeout_s, open_backend(config), break_stale)

    def _try(self) -> bool:
        info = LockInfo(
            socket.gethostname(),
            os.getpid(),
            now_iso(),
            self.command,
            actor(),
            _proc_start(os.getpid()),
        )
        return self._write(info)

    def _write(self, info: LockInfo) -> bool:
        try:
            self.etag = self.backend.write(
                LOCK_FILE, json.dumps(asdict(info)).encode("utf-8"), expect=ABSENT
            )
        except StateConflict:
            return False
        self.info = info
        return True

    def acquire(self) -> LockInfo:
        """Take the lock, waiting up to ``timeout_s``; returns this holder's info.

        While another live run holds it, attempts are retried with exponential backoff and
        jitter (:func:`backoff_s`) until the deadline, inside a ``lock`` progress step
        naming the holder (:mod:`reconciler.core.progress`); a lock held by another run is
        a transient condition and never recorded against a deployment.

        Raises:
            LockError: the holder is gone (a stale lock), or still holds it at the deadline.
            LockPathError: (exit 2) the lock path or state directory is not what modelops
                creates (:func:`check_lock_path`); checked first, nothing touched.
        """
        if isinstance(self.backend, LocalBackend):  # s3:// state has no local lock path
            check_lock_path(self.backend.root)
        deadline = time.monotonic() + self.timeout_s
        attempt = 0
        where = _where(self.backend)
        with contextlib.ExitStack() as waiting:
            while True:
                if self._try():
                    return self.info
                holder, etag = _read_lock(self.backend)
                if holder is None:
                    continue  # released between our attempt and the read: try again now
                stale = holder.alive() is False
                if stale and self.break_stale and holder.pid:
                    try:  # conditional: never a lock another run took meanwhile
                        self.backend.delete(LOCK_FILE, expect=etag)
                        self.broken = holder
                    except StateConflict:
                        pass
                    continue
                if stale:
                    raise LockError(
                        f"{where} is locked by a process that is "
                        f"gone ({holder.describe()}): a stale lock, probably from a killed "
                        "run. Check `modelops status` for a half-finished apply, then run "
                        "`modelops unlock`.",
                        holder,
                    )
                if time.monotonic() >= deadline:
                    waited = f" after waiting {self.timeout_s:g} s" if self.timeout_s else ""
                    raise LockError(
                        f"{where} is locked by {holder.describe()}"
                        f"{waited}; another apply is running. Wait for it, or raise "
                        "--lock-timeout.",
                        holder,
                    )
                if attempt == 0:  # a terminal shows who holds the lock while this run waits
                    waiting.enter_context(
                        step("lock", detail=f"waiting for {where}, held by {holder.describe()}")
                    )
                time.sleep(min(backoff_s(attempt), max(0.0, deadline - time.monotonic())))
                attempt += 1

    def release(self) -> None:
        """Remove the lock if this process still holds it (never someone else's: on
        shared state the delete is conditional on the version this process wrote)."""
        if self.info is None:
            return
        current, etag = _read_lock(self.backend)
        if current is not None and (current.pid, current.host, current.started_at) == (
            self.info.pid,
            self.info.host,
            self.info.started_at,
        ):
            try:
                self.backend.delete(LOCK_FILE, expect=etag)
            except StateConflict:
                pass  # taken over meanwhile (unlock --force, then another run): not ours
        self.info = None

    def __enter__(self) -> StateLock:
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def break_lock(state: Path | StateBackend, force: bool = False) -> LockInfo | None:
    """Remove the lock (``modelops unlock``); returns the holder that was removed.

    Args:
        state: the state directory, or a state backend (shared ``s3://`` state).
        force: also remove a lock whose holder is still running on this host, or whose
            liveness cannot be checked (another host).

    Raises:
        LockError: the holder is alive (or on another host) and ``force`` is not set, or
            the lock changed while it was being removed (another run took it).
        LockPathError: (exit 2) the lock path is not a regular file (even with ``force``:
            modelops removes only what it created).
    """
    backend = _backend(state)
    holder, etag = _read_lock(backend)
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
    try:
        backend.delete(LOCK_FILE, expect=etag)
    except StateConflict:
        raise LockError(
            f"the lock {backend.describe(LOCK_FILE)} changed while it was being removed "
            f"(it was {holder.describe()}); another run took it. Nothing was removed: run "
            "`modelops unlock` again to see who holds it now.",
            read_lock(backend),
        ) from None
    return holder

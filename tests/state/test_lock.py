"""The state-directory lock, with two real processes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from support.cli import invoke

from reconciler.core.progress import reporting
from reconciler.state import lock as lock_module
from reconciler.state.lock import (
    MAX_POLL_S,
    POLL_S,
    LockError,
    StateLock,
    backoff_s,
    break_lock,
    read_lock,
)

# Holds the lock until it reads a line (or end of file) on stdin: never by a timer, so the
# tests do not depend on how fast the machine is.
HOLDER = """
import sys
from pathlib import Path
from reconciler.state.lock import StateLock
state = Path(sys.argv[1])
with StateLock(state, command="modelops apply --env test", timeout_s=0):
    print("locked", flush=True)
    sys.stdin.readline()
print("released", flush=True)
"""
HANG_GUARD_S = 120  # only reached when something is broken


def _holder(state: Path) -> subprocess.Popen:
    """A second process that holds the lock on ``state`` until :func:`_release`."""
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(state)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout.readline().strip() == "locked"
    return proc


def _release(proc: subprocess.Popen) -> None:
    proc.stdin.write("release\n")
    proc.stdin.flush()


class WatchedLock(StateLock):
    """A real :class:`StateLock` that also signals its first attempt refused while held."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.refused = threading.Event()

    def _try(self) -> bool:
        taken = super()._try()
        if not taken:
            self.refused.set()
        return taken


def test_second_process_fails_naming_the_holder(tmp_path):
    proc = _holder(tmp_path)
    try:
        with pytest.raises(LockError) as err:
            StateLock(tmp_path, timeout_s=0.3).acquire()
        message = err.value.message
        assert f"pid {proc.pid}" in message and "modelops apply --env test" in message
        assert "since 20" in message and "host" in message
        assert err.value.holder.pid == proc.pid
    finally:
        proc.kill()
        proc.wait()


def test_backoff_doubles_up_to_the_cap_with_jitter_below_the_base():
    class Fixed:
        def __init__(self, value: float) -> None:
            self.value = value

        def random(self) -> float:
            return self.value

    top = [backoff_s(n, Fixed(0.999999)) for n in range(12)]
    low = [backoff_s(n, Fixed(0.0)) for n in range(12)]
    assert top[0] == pytest.approx(POLL_S, rel=1e-5)
    assert top[1] == pytest.approx(2 * POLL_S, rel=1e-5)
    assert top[-1] == pytest.approx(MAX_POLL_S, rel=1e-5)
    assert all(b >= a for a, b in zip(top, top[1:], strict=False))
    assert all(lo == pytest.approx(t / 2, rel=1e-5) for lo, t in zip(low, top, strict=True))


def test_a_held_lock_is_retried_with_backoff_until_the_deadline(tmp_path, monkeypatch):
    # a real holder process; the waiter's clock is virtual so the test never sleeps
    proc = _holder(tmp_path)
    clock = [0.0]
    waits: list[float] = []

    def sleep(seconds: float) -> None:
        waits.append(seconds)
        clock[0] += seconds

    monkeypatch.setattr(lock_module.time, "monotonic", lambda: clock[0])
    monkeypatch.setattr(lock_module.time, "sleep", sleep)
    events = []
    try:
        with reporting(events.append), pytest.raises(LockError) as err:
            StateLock(tmp_path, timeout_s=30).acquire()
        assert "after waiting 30 s" in err.value.message
        # one progress step for the whole wait, naming the holder (a terminal shows it)
        assert [(e.kind, e.step) for e in events] == [("start", "lock"), ("end", "lock")]
        assert f"pid {proc.pid}" in events[0].detail and events[1].ok is False
        assert err.value.holder.pid == proc.pid
        # growing waits (backoff), never above the cap, ending exactly at the deadline
        assert len(waits) >= 5
        assert waits[3] > waits[0]
        assert max(waits) <= MAX_POLL_S
        assert sum(waits) == pytest.approx(30)
    finally:
        proc.kill()
        proc.wait()


def test_second_process_waits_until_the_first_releases(tmp_path):
    proc = _holder(tmp_path)
    lock = WatchedLock(tmp_path, timeout_s=HANG_GUARD_S)
    got: list[object] = []
    waiter = threading.Thread(target=lambda: got.append(lock.acquire()), daemon=True)
    try:
        waiter.start()
        # the waiter found the lock held and is waiting (the holder releases only when told)
        assert lock.refused.wait(HANG_GUARD_S)
        assert waiter.is_alive() and not got
        assert read_lock(tmp_path).pid == proc.pid
        _release(proc)
        waiter.join(HANG_GUARD_S)
        assert got, "the waiter did not get the lock after it was released"
        assert lock.info.pid == os.getpid()
        assert read_lock(tmp_path).pid == os.getpid()
        lock.release()
        assert read_lock(tmp_path) is None
        assert proc.stdout.readline().strip() == "released"
    finally:
        proc.kill()
        proc.wait(timeout=HANG_GUARD_S)


def test_killed_holder_leaves_a_stale_lock_that_unlock_breaks(tmp_path):
    proc = _holder(tmp_path)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert read_lock(tmp_path).pid == proc.pid  # the lock file survived the kill
    with pytest.raises(LockError, match="stale lock"):
        StateLock(tmp_path, timeout_s=5).acquire()  # fails at once, no waiting
    removed = break_lock(tmp_path)
    assert removed.pid == proc.pid
    with StateLock(tmp_path, timeout_s=0):
        pass


def test_the_self_heal_takes_over_a_stale_lock_and_never_a_live_one(tmp_path):
    proc = _holder(tmp_path)
    try:  # alive: waited for, never removed
        with pytest.raises(LockError, match="locked by"):
            StateLock(tmp_path, timeout_s=0, break_stale=True).acquire()
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    lock = StateLock(tmp_path, timeout_s=0, break_stale=True)
    with lock:  # gone: removed and taken, at once
        assert lock.broken.pid == proc.pid and read_lock(tmp_path).pid == os.getpid()
    assert read_lock(tmp_path) is None


def test_unlock_refuses_a_live_holder_without_force(tmp_path):
    proc = _holder(tmp_path)
    try:
        with pytest.raises(LockError, match="still running"):
            break_lock(tmp_path)
        assert break_lock(tmp_path, force=True).pid == proc.pid
    finally:
        proc.kill()
        proc.wait()


def test_release_never_removes_someone_elses_lock(tmp_path):
    lock = StateLock(tmp_path, timeout_s=0)
    lock.acquire()
    (tmp_path / "lock").unlink()  # e.g. `modelops unlock --force` by someone else
    proc = _holder(tmp_path)
    try:
        lock.release()
        assert read_lock(tmp_path).pid == proc.pid
    finally:
        proc.kill()
        proc.wait()


def test_cli_apply_while_locked_and_unlock(tmp_path):
    root = tmp_path / "repo"
    (root / "specs").mkdir(parents=True)
    (root / "modelops.yaml").write_text("state_dir: .modelops\n")
    state = root / ".modelops"
    proc = _holder(state)
    try:
        code, _out, err = invoke(root, "apply", "--env", "dev", "--lock-timeout", "0")
        assert code == 2, err
        assert f"locked by pid {proc.pid}" in err and "Traceback" not in err
        # a run that waits says so, even in a CI log (not a terminal), then why it stopped
        code, _out, err = invoke(root, "reconcile", "--env", "dev", "--lock-timeout", "0.3")
        assert code == 2, err
        lines = err.splitlines()
        assert lines[0].startswith("lock: waiting for ") and f"held by pid {proc.pid}" in lines[0]
        assert lines[1].startswith("lock: not taken after ") and "locked by pid" in err
        code, _out, err = invoke(root, "unlock")
        assert code == 2 and "still running" in err
    finally:
        proc.kill()
        proc.wait()
    code, out, _err = invoke(root, "status")
    assert "stale: run `modelops unlock`" in out
    code, out, _err = invoke(root, "unlock")
    assert code == 0 and f"pid {proc.pid}" in out
    assert invoke(root, "apply", "--env", "dev").returncode == 0


@pytest.mark.parametrize(
    "content",
    [
        b"\xff\xfe",
        b"",
        b"garbage",
        b"[]",
        b'{"pid": "x"}',
        b'{"host": "h", "pid": true, "started_at": "t"}',
    ],
)
def test_a_lock_file_modelops_cannot_read_is_held_by_unknown_and_unlock_force_removes_it(
    tmp_path, content
):
    """A lock that is not UTF-8, not JSON or of the wrong shape is never a crash: it reads as
    held by an unknown holder (pid 0), plain unlock says why it refuses, --force removes it."""
    (tmp_path / "lock").write_bytes(content)
    holder = read_lock(tmp_path)
    assert holder is not None and holder.pid == 0 and "unreadable lock file" in holder.command
    with pytest.raises(LockError) as info:
        break_lock(tmp_path)
    assert "not a lock modelops can read" in info.value.message
    assert break_lock(tmp_path, force=True) == holder
    assert not (tmp_path / "lock").exists()


def _fifo(path: Path) -> None:
    os.mkfifo(path)


def _symlink(path: Path) -> None:
    (path.parent / "elsewhere").write_text('{"host": "h", "pid": 1, "started_at": "t"}')
    path.symlink_to(path.parent / "elsewhere")


@pytest.mark.parametrize(
    ("make", "kind"),
    [
        (lambda p: p.mkdir(), "is a directory"),
        (_fifo, "is a FIFO"),  # a read would block for ever
        (_symlink, "is a symbolic link (to "),
        (lambda p: p.symlink_to(p.parent / "missing"), "is a symbolic link"),
    ],
)
def test_a_lock_path_that_is_not_a_file_stops_every_command_touching_nothing(tmp_path, make, kind):
    """apply, status, unlock and unlock --force: exit 2 naming the path, what it is and
    what would be valid; the path is left as it was (was: 'Is a directory', a blocked read,
    or a lock taken through the link)."""
    root = tmp_path / "repo"
    (root / "specs").mkdir(parents=True)
    (root / "modelops.yaml").write_text("state_dir: .modelops\n")
    (root / ".modelops").mkdir()
    lock = root / ".modelops" / "lock"
    make(lock)
    before = sorted(p.name for p in lock.parent.iterdir()), os.lstat(lock).st_mode
    for args in (("apply", "--env", "dev"), ("status",), ("unlock",), ("unlock", "--force")):
        code, _out, err = invoke(root, *args)
        assert code == 2, (args, err)
        assert f"the lock path {lock} {kind}" in err and "not a lock file" in err, err
        assert "regular file" in err and "Traceback" not in err
        assert (sorted(p.name for p in lock.parent.iterdir()), os.lstat(lock).st_mode) == before


def test_a_state_directory_that_is_a_file_is_refused_untouched(tmp_path):
    (tmp_path / "state").write_text("not a directory")
    with pytest.raises(lock_module.LockPathError, match="is a file, not a directory"):
        StateLock(tmp_path / "state", timeout_s=0).acquire()
    assert (tmp_path / "state").read_text() == "not a directory"

"""The state-directory lock, with two real processes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from support.cli import invoke

from reconciler.state.lock import LockError, StateLock, break_lock, read_lock

HOLDER = """
import sys, time
from pathlib import Path
from reconciler.state.lock import StateLock
state, hold_s = Path(sys.argv[1]), float(sys.argv[2])
with StateLock(state, command="modelops apply --env test", timeout_s=0):
    print("locked", flush=True)
    if hold_s < 0:
        sys.stdin.readline()  # hold until told
    else:
        time.sleep(hold_s)
    print(f"releasing {time.monotonic()}", flush=True)
print("released", flush=True)
"""


def _holder(state: Path, hold_s: float) -> subprocess.Popen:
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(state), str(hold_s)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout.readline().strip() == "locked"
    return proc


def test_second_process_fails_naming_the_holder(tmp_path):
    proc = _holder(tmp_path, 30)
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


def test_second_process_waits_until_the_first_releases(tmp_path):
    """The second process gets the lock only after the first released it. The holder
    releases when told (not after a sleep a slow machine could outlast) and says when
    (CLOCK_MONOTONIC is one clock for every process on Linux)."""
    proc = _holder(tmp_path, -1)
    try:
        with pytest.raises(LockError):
            StateLock(tmp_path, timeout_s=0).acquire()  # held: not free for the taking
        release = threading.Timer(0.5, lambda: (proc.stdin.write("go\n"), proc.stdin.flush()))
        release.start()
        with StateLock(tmp_path, timeout_s=20) as lock:
            acquired = time.monotonic()
            assert lock.info.pid == os.getpid()
            assert read_lock(tmp_path).pid == os.getpid()
        released = float(proc.stdout.readline().split()[1])
        assert released < acquired  # waited until the first one released
        assert read_lock(tmp_path) is None
    finally:
        proc.wait(timeout=20)


def test_killed_holder_leaves_a_stale_lock_that_unlock_breaks(tmp_path):
    proc = _holder(tmp_path, 60)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert read_lock(tmp_path).pid == proc.pid  # the lock file survived the kill
    with pytest.raises(LockError, match="stale lock"):
        StateLock(tmp_path, timeout_s=5).acquire()  # fails at once, no waiting
    removed = break_lock(tmp_path)
    assert removed.pid == proc.pid
    with StateLock(tmp_path, timeout_s=0):
        pass


def test_unlock_refuses_a_live_holder_without_force(tmp_path):
    proc = _holder(tmp_path, 30)
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
    proc = _holder(tmp_path, 30)
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
    proc = _holder(state, 60)
    try:
        code, _out, err = invoke(root, "apply", "--env", "dev", "--lock-timeout", "0")
        assert code == 2, err
        assert f"locked by pid {proc.pid}" in err and "Traceback" not in err
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

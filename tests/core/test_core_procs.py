"""Process groups (reconciler.core.procs): real processes, started and stopped."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import psutil
import pytest

from reconciler.core.procs import (
    group_alive,
    identity_mismatches,
    identity_of,
    leads_group,
    signal_group,
    start_group,
    stop_group,
    wait_exited,
)

# The processes below never exit by themselves (they wait for a signal), so what ends
# them is the signal under test, however slow the machine.
# A leader that starts a grandchild in the same group, then waits.
PARENT = (
    "import signal, subprocess, sys; "
    "subprocess.Popen([sys.executable, '-c', 'import signal; signal.pause()']); "
    "print('ready', flush=True); signal.pause()"
)
# A leader that starts a child, prints its pid, and never reaps it (as a long-running
# `reconcile --interval` does not reap a server until it looks at it again).
NO_REAP = (
    "import signal, subprocess, sys; "
    "c = subprocess.Popen([sys.executable, '-c', 'import signal; signal.pause()']); "
    "print(c.pid, flush=True); signal.pause()"
)
# A leader that ignores SIGTERM (only SIGKILL stops it).
STUBBORN = (
    "import signal; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
    "print('ready', flush=True)\n"
    "while True: signal.pause()"
)
HANG_GUARD_S = 120  # only reached when something is broken


def _started(code: str) -> subprocess.Popen:
    proc = start_group([sys.executable, "-c", code], stdout=subprocess.PIPE)
    assert proc.stdout.readline().strip() == b"ready"
    return proc


def test_started_in_its_own_group_and_stopped_with_its_children():
    proc = _started(PARENT)
    try:
        assert leads_group(proc.pid) and os.getpgid(proc.pid) != os.getpgid(0)
        assert group_alive(proc.pid)
        code = stop_group(proc, grace_s=HANG_GUARD_S)  # returns once the group is gone
        assert code == -15  # SIGTERM ended the leader
        assert not group_alive(proc.pid)  # the grandchild went with it
    finally:
        signal_group(proc.pid, 9)


def test_a_leader_that_ignores_sigterm_is_killed_after_the_grace():
    proc = _started(STUBBORN)
    try:
        started = time.monotonic()
        assert stop_group(proc, grace_s=0.5) == -9
        elapsed = time.monotonic() - started
        assert 0.4 < elapsed  # the grace was waited: a lower bound whatever the machine
        assert elapsed < HANG_GUARD_S  # hang guard only
        assert not group_alive(proc.pid)
    finally:
        signal_group(proc.pid, 9)


def test_stopping_a_group_that_is_gone_is_harmless():
    proc = start_group([sys.executable, "-c", "pass"])
    proc.wait(timeout=HANG_GUARD_S)
    assert stop_group(proc, grace_s=0.1) == 0
    assert not leads_group(proc.pid) and not signal_group(proc.pid, 15)


def test_a_zombie_another_process_has_not_reaped_counts_as_exited():
    proc = start_group([sys.executable, "-c", NO_REAP], stdout=subprocess.PIPE)
    try:
        orphan = psutil.Process(int(proc.stdout.readline()))
        live = psutil.Process(proc.pid)
        orphan.kill()
        while orphan.status() != psutil.STATUS_ZOMBIE:  # its parent never reaps it
            time.sleep(0.05)
        # psutil.wait_procs waits its whole timeout for a zombie that is not our child
        assert psutil.wait_procs([orphan], timeout=0)[1] == [orphan]
        # wait_exited does not: with no time at all, the zombie is gone, the parent alive
        assert wait_exited([orphan, live], 0) == ([orphan], [live])
        proc.kill()
        proc.wait(timeout=HANG_GUARD_S)
        assert wait_exited([live], 0) == ([live], [])  # our own child, reaped: gone
    finally:
        signal_group(proc.pid, 9)


def test_a_missing_program_raises_oserror():
    with pytest.raises(OSError):
        start_group(["/nonexistent/modelops-no-such-program"])


def test_identity_names_each_part_that_does_not_match():
    proc = _started(STUBBORN)
    try:
        live = identity_of(proc.pid)
        assert live["pid"] == proc.pid and live["pgid"] == proc.pid
        assert any("signal.SIG_IGN" in part for part in live["cmdline"])
        recorded = {"started": live["started"], "pgid": proc.pid}
        assert identity_mismatches(proc.pid, **recorded, cmdline_has=["SIG_IGN"]) == []
        # the same pid, as if reused: another start time, group and program
        wrong = identity_mismatches(
            proc.pid, started=live["started"] - 60, pgid=1, cmdline_has=["bentoml"]
        )
        assert len(wrong) == 3
        assert "the pid was reused" in wrong[0] and "process group" in wrong[1]
        assert "does not contain 'bentoml'" in wrong[2]
    finally:
        stop_group(proc, grace_s=0)
    assert identity_of(proc.pid) is None
    assert identity_mismatches(proc.pid) == [f"process {proc.pid} is not running"]


@pytest.mark.parametrize("module", ["reconciler.build.serve", "reconciler.engine.routing"])
def test_servers_and_routers_another_run_stopped_are_reaped(module):
    import importlib

    registry = importlib.import_module(module)
    running = start_group([sys.executable, "-c", "import signal; signal.pause()"])
    stopped = start_group([sys.executable, "-c", "pass"])
    registry._CHILDREN.update({running.pid: running, stopped.pid: stopped})
    try:
        while psutil.Process(stopped.pid).status() != psutil.STATUS_ZOMBIE:
            time.sleep(0.05)  # exited, not yet reaped: what a `destroy` elsewhere leaves
        # at least this one (an earlier test's stopped server may be reaped with it)
        assert registry.reap_exited() >= 1
        assert stopped.pid not in registry._CHILDREN and running.pid in registry._CHILDREN
        assert not psutil.pid_exists(stopped.pid) or (
            psutil.Process(stopped.pid).status() != psutil.STATUS_ZOMBIE
        )
    finally:
        registry._CHILDREN.pop(running.pid, None)
        stop_group(running, grace_s=HANG_GUARD_S)

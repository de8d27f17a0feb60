"""Waiting for something to happen in a test, instead of sleeping a fixed time.

A fixed ``time.sleep`` before an assertion fails when the machine is slow (the thing has
not happened yet) and wastes time when it is fast. These helpers poll until the thing
has happened; their time limit is only a hang guard, far beyond any plausible wait.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import psutil

#: Seconds after which a wait fails: only reached when something is broken.
HANG_GUARD_S = 120.0
_POLL_S = 0.02


def wait_for(condition: Callable[[], object], what: str, guard_s: float = HANG_GUARD_S) -> None:
    """Poll ``condition()`` until it is true.

    Raises:
        AssertionError: still false after ``guard_s`` seconds (``what`` says what was
            awaited).
    """
    deadline = time.monotonic() + guard_s
    while not condition():
        assert time.monotonic() < deadline, f"still waiting for {what} after {guard_s:g} s"
        time.sleep(_POLL_S)


def exited(pid: int) -> bool:
    """Whether process ``pid`` has exited: gone, or a zombie its parent has not reaped."""
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def wait_exited(pid: int, guard_s: float = HANG_GUARD_S) -> None:
    """Wait until process ``pid`` has exited (e.g. after a SIGKILL); see :func:`wait_for`."""
    wait_for(lambda: exited(pid), f"process {pid} to exit", guard_s)

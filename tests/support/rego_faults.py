"""Deterministic hangs and crashes of the policy engine's Rego workers.

A test that needs an evaluation which times out must not rely on a policy being slower
than a short time-out (and rego-cpp ends every evaluation, at the latest with "Maximum
statement count reached"), and a test that needs a crash must not rely on a timer firing
while the policy still runs. :func:`worker_fault` makes the outcome certain instead: the
worker that is sent an evaluation of the chosen policy is stopped (SIGSTOP) before it can
read it, so it never answers, whatever the time-out and however fast or loaded the
machine; or, for a crash, it is then killed by SIGSEGV (as a rego-cpp crash would be)
before it runs again. The workers, the pipe protocol and the engine's time-out and crash
handling stay real.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import signal
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from reconciler.policy.worker import RegoWorker

#: A per-evaluation time-out that no evaluation which must succeed can plausibly reach
#: (a compile or a query of the test policies takes milliseconds), even on a loaded machine.
UNREACHABLE_S = 5.0
#: Seconds a stopped worker is left stopped before it is killed: only reached when the
#: engine under test fails to time out (the test then fails on a crash, instead of hanging).
GUARD_S = 300.0
_PIPE_SAFE = 32_000  # bytes: a message this small fits the pipe while its reader is stopped


def _state(pid: int) -> str:
    """The process state letter from ``/proc`` (``S``, ``R``, ``T``...), ``""`` if gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return ""


class _Faulted:
    """Wraps one worker's pipe end: work that evaluates the policy is faulted."""

    def __init__(self, worker: RegoWorker, fault: _Fault) -> None:
        self.worker = worker
        self.fault = fault
        self.ids = {m.policy_id for m in worker.modules}
        conn = worker.connection
        self.send_real, self.recv_real = conn.send, conn.recv
        self.held: tuple | None = None  # the rest of a chunk, sent once the head is answered
        self.answers_due = 0
        conn.send, conn.recv = self.send, self.recv

    def involves(self, how: str, pid: str | None, doc) -> bool:
        if how == "all" and self.fault.policy_id not in self.ids:
            return False
        if how == "one" and pid != self.fault.policy_id:
            return False
        return self.fault.when(doc)

    def first_involved(self, items: list) -> int | None:
        for k, (how, work) in enumerate(items):
            if how == "all" and self.involves("all", None, work):
                return k
            if how == "each" and any(self.involves("one", pid, doc) for pid, doc, _ in work):
                return k
        return None

    def send(self, msg) -> None:
        if msg[0] == "chunk":
            items = msg[2]
            k = self.first_involved(items)
            if k is None:
                self.send_real(msg)
            elif k == 0:
                self.fault.apply(self.worker, self.send_real, msg)
            else:
                # The inputs before the faulted one are answered as usual; the rest is
                # sent (to a stopped worker) once they are, while the worker waits idle.
                self.send_real(("chunk", None, items[:k]))
                self.held, self.answers_due = ("chunk", None, items[k:]), k
        elif msg[0] in ("all", "one") and self.involves(msg[0], msg[1], msg[2]):
            self.fault.apply(self.worker, self.send_real, msg)
        else:
            self.send_real(msg)

    def recv(self):
        msg = self.recv_real()
        if self.held is not None and msg[0] not in ("compiling", "ready"):
            self.answers_due -= 1
            if self.answers_due == 0:
                held, self.held = self.held, None
                self.fault.apply(self.worker, self.send_real, held)
        return msg


class _Fault:
    def __init__(self, policy_id: str, kind: str, when: Callable[[object], bool]) -> None:
        if kind not in ("hang", "crash"):
            raise ValueError(f"fault must be hang or crash, not {kind!r}")
        self.policy_id, self.kind, self.when = policy_id, kind, when
        self.faulted: list[int] = []
        self.guards: list[threading.Timer] = []

    def apply(self, worker: RegoWorker, send: Callable, msg) -> None:
        """Stop the worker, then send it ``msg``; for a crash, SIGSEGV it and let it go on."""
        assert len(pickle.dumps(msg)) < _PIPE_SAFE, "message too large for a stopped worker"
        pid = worker._proc.pid
        os.kill(pid, signal.SIGSTOP)
        deadline = time.monotonic() + GUARD_S  # hang guard only
        while _state(pid) not in ("T", "t", "Z", ""):
            assert time.monotonic() < deadline, f"worker {pid} did not stop"
            time.sleep(0.001)
        self.faulted.append(pid)
        send(msg)  # into the pipe buffer: the stopped worker never reads it
        if self.kind == "crash":
            # Pending while stopped; fatal as soon as SIGCONT resumes it, before any of
            # its own code runs again: it dies without an answer.
            os.kill(pid, signal.SIGSEGV)
            os.kill(pid, signal.SIGCONT)
            return
        guard = threading.Timer(GUARD_S, lambda: worker._proc.is_alive() and worker._proc.kill())
        guard.daemon = True
        guard.start()
        self.guards.append(guard)


@contextlib.contextmanager
def worker_fault(
    policy_id: str, fault: str = "hang", when: Callable[[object], bool] | None = None
) -> Iterator[list[int]]:
    """While active, every Rego worker that is sent an evaluation of ``policy_id`` hangs
    for ever (``fault="hang"``) or crashes (``fault="crash"``) instead of answering.

    Applies to the workers started while it is active (``RegoWorker`` and those of
    ``PolicyEngine``). An evaluation involves the policy when it is a query of every
    policy of a worker that holds it, or a query of that policy alone, and ``when(input
    document)`` is true (default: always; the document is the one the worker is sent,
    already cut down to the paths the policies read). In a chunk of inputs, those before
    the first involved one are answered as usual.

    A hung worker is stopped (SIGSTOP) before it reads the work and stays stopped until
    the engine kills it (after its time-out), or until :data:`GUARD_S`. A crashed worker
    is stopped, sent the work, and killed by SIGSEGV before it resumes.

    Yields:
        The pids of the workers faulted so far (a list that grows).
    """
    spec = _Fault(policy_id, fault, when or (lambda doc: True))
    original = RegoWorker.__init__

    def init(self, *args, **kwargs) -> None:
        original(self, *args, **kwargs)
        _Faulted(self, spec)

    RegoWorker.__init__ = init
    try:
        yield spec.faulted
    finally:
        RegoWorker.__init__ = original
        for guard in spec.guards:
            guard.cancel()

"""Progress events of long steps (build, start, smoke, load test...): the one reporter.

The stages that do long work say when a step begins and ends (:func:`step`) or what
happens inside one (:func:`note`); they never print. The command that runs them
installs a sink for the duration (:func:`reporting`), and the report layer renders the
events (``reconciler.report.progress``: a spinner with elapsed time on a terminal,
nothing in CI or a pipe). Without a sink, events go nowhere (library use, tests).

The sink lives in a :class:`contextvars.ContextVar`: steps run in the thread of the
command (a thread started by a step does not inherit it, and its events are dropped).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from dataclasses import dataclass


@dataclass(frozen=True)
class ProgressEvent:
    """One progress event.

    Attributes:
        kind: ``"start"`` (a step began), ``"end"`` (it ended) or ``"note"`` (a line
            inside the current step, e.g. a Pulumi resource step).
        step: the step's name (``build``, ``start``, ``smoke``, ``load test``,
            ``apply``...); ``""`` for a note.
        subject: what the step works on (a deployment key ``<name>-<env>``), or ``""``.
        detail: ``start``: what is being done; ``end``: why it failed (``""`` when it
            succeeded); ``note``: the line.
        elapsed_s: ``end``: seconds the step took (monotonic clock); else ``None``.
        ok: ``end``: False when the step raised; else ``None``.
    """

    kind: str
    step: str = ""
    subject: str = ""
    detail: str = ""
    elapsed_s: float | None = None
    ok: bool | None = None


Sink = Callable[[ProgressEvent], None]

_SINK: ContextVar[Sink | None] = ContextVar("modelops_progress_sink", default=None)


def emit(event: ProgressEvent) -> None:
    """Hand ``event`` to the installed sink (nothing when none is installed)."""
    sink = _SINK.get()
    if sink is not None:
        sink(event)


@contextlib.contextmanager
def reporting(sink: Sink | None) -> Iterator[None]:
    """Send the events emitted inside the block to ``sink`` (``None``: drop them);
    the previous sink is restored afterwards."""
    token = _SINK.set(sink)
    try:
        yield
    finally:
        _SINK.reset(token)


@contextlib.contextmanager
def step(name: str, subject: str = "", detail: str = "") -> Iterator[None]:
    """Emit ``start`` for the step ``name`` on ``subject``, run the block, then ``end``
    with the elapsed seconds and ``ok`` False when the block raised (the exception
    propagates unchanged)."""
    emit(ProgressEvent("start", name, subject, detail))
    started = time.monotonic()
    try:
        yield
    except BaseException as exc:
        emit(ProgressEvent("end", name, subject, str(exc), time.monotonic() - started, False))
        raise
    emit(ProgressEvent("end", name, subject, "", time.monotonic() - started, True))


def note(line: str, subject: str = "") -> None:
    """Emit one line of what happens inside the current step."""
    emit(ProgressEvent("note", "", subject, line))

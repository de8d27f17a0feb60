"""Render progress events (:mod:`reconciler.core.progress`) on a terminal.

On a terminal (``console.is_terminal``), each running step is a line with a spinner,
``<subject>: <step> <detail>`` and its elapsed time, refreshed live; a step of a
deployment that ends leaves one line (``✓ <subject>: <step> (1.2 s)``, or ``✗`` and the
first line of why it failed) and its live line goes (a step without a subject, a
command's own spinner, leaves nothing). Everywhere else (CI logs, pipes, files) nothing is
printed: the command's own output (outcome table, findings) says what happened, and a
log is not filled with spinner frames. One exception: waiting for the state lock (the
``lock`` step, emitted only when another run holds it) is a plain line when it starts and
one when it ends, so a CI job that waits for another run's apply does not look hung
(Terraform prints "Acquiring state lock" the same way).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from rich.console import Console
from rich.progress import Progress, SpinnerColumn, TaskID, TextColumn, TimeElapsedColumn
from rich.text import Text

from reconciler.core.progress import ProgressEvent, reporting


def _label(event: ProgressEvent) -> str:
    head = f"{event.subject}: {event.step}" if event.subject else event.step
    return f"{head} {event.detail}".rstrip() if event.detail else head


class ProgressRenderer:
    """A progress sink that draws on ``console`` (a terminal; see :func:`rendering`).

    Args:
        console: the console to draw on (the command's stderr console).

    Attributes:
        progress: the Rich progress display (started by :meth:`start`).
    """

    def __init__(self, console: Console) -> None:
        self.console = console
        self.progress = Progress(
            SpinnerColumn(),
            TextColumn("{task.description}", markup=False),
            TimeElapsedColumn(),
            console=console,
            transient=True,
        )
        self._tasks: dict[tuple[str, str], list[TaskID]] = {}

    def start(self) -> None:
        self.progress.start()

    def stop(self) -> None:
        self.progress.stop()

    def __call__(self, event: ProgressEvent) -> None:
        """Consume one event (a :data:`~reconciler.core.progress.Sink`)."""
        key = (event.subject, event.step)
        if event.kind == "start":
            task = self.progress.add_task(_label(event), total=None)
            self._tasks.setdefault(key, []).append(task)
        elif event.kind == "end":
            stack = self._tasks.get(key)
            if stack:
                self.progress.remove_task(stack.pop())
            if not event.subject:  # a command's own spinner: its output says the rest
                return
            head = f"{event.subject}: {event.step}"
            took = f" ({event.elapsed_s:.1f} s)" if event.elapsed_s is not None else ""
            if event.ok:
                line = Text.assemble(("✓ ", "green"), head, took)
            else:
                why = event.detail.strip().splitlines()[0] if event.detail.strip() else ""
                line = Text.assemble(("✗ ", "red"), head, took, f": {why}" if why else "")
            self.progress.console.print(line)
        elif event.detail:
            self.progress.console.print(Text(f"  {event.detail}"))


#: The step whose start and end are written on a console that is not a terminal.
WAIT_STEP = "lock"


def plain_waits(console: Console):
    """A sink for a console that is not a terminal: the ``lock`` step's start and end as
    plain lines (``lock: waiting for .modelops/lock, held by pid 12 ...``, then
    ``lock: taken after 9.8 s``); every other event is dropped."""

    def sink(event: ProgressEvent) -> None:
        if event.step != WAIT_STEP:
            return
        if event.kind == "start":
            console.print(f"{WAIT_STEP}: {event.detail}", markup=False, highlight=False)
        elif event.kind == "end":
            took = f"{event.elapsed_s:.1f} s" if event.elapsed_s is not None else ""
            done = f"taken after {took}" if event.ok else f"not taken after {took}"
            console.print(f"{WAIT_STEP}: {done}", markup=False, highlight=False)

    return sink


@contextlib.contextmanager
def rendering(console: Console) -> Iterator[None]:
    """Render the progress events emitted inside the block on ``console`` when it is a
    terminal; when it is not (CI, a pipe, a file), only a wait for the state lock is
    written (:func:`plain_waits`) and nothing is drawn."""
    if not console.is_terminal:
        with reporting(plain_waits(console)):
            yield
        return
    renderer = ProgressRenderer(console)
    renderer.start()
    try:
        with reporting(renderer):
            yield
    finally:
        renderer.stop()

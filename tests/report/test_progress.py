"""The one progress reporter: events from the stages (core/progress.py), drawn by
report/progress.py on a terminal only.

The terminal is Rich's own (``force_terminal=True`` on a StringIO); a console that is
not a terminal (CI, a pipe) stands for CI. The events of a real smoke and load test are
rendered in tests/build/test_smoke.py; the quiet non-TTY ``apply`` in
tests/commands/test_local_engine_cli.py.
"""

from __future__ import annotations

import io
import re

import pytest
from rich.console import Console

from reconciler.core import progress
from reconciler.core.progress import ProgressEvent, note, reporting, step
from reconciler.report.progress import rendering


def terminal() -> tuple[Console, io.StringIO]:
    buf = io.StringIO()
    return Console(file=buf, force_terminal=True, width=100, color_system=None), buf


def test_step_emits_start_and_end_with_elapsed_time_and_outcome():
    events: list[ProgressEvent] = []
    with reporting(events.append):
        with step("build", "fraud-staging", "digest abc"):
            note("+ create kubernetes:apps/v1:Deployment x", "fraud-staging")
        with pytest.raises(RuntimeError, match="port taken"), step("start", "fraud-staging"):
            raise RuntimeError("port taken\nsecond line")
    kinds = [(e.kind, e.step) for e in events]
    assert kinds == [("start", "build"), ("note", ""), ("end", "build"), ("start", "start"),
                     ("end", "start")]  # fmt: skip
    assert events[2].ok is True and events[2].elapsed_s >= 0
    assert events[4].ok is False and events[4].detail.startswith("port taken")


def test_without_a_sink_events_go_nowhere_and_the_sink_is_restored():
    seen: list[ProgressEvent] = []
    with step("build", "x"):  # no sink: nothing to call, nothing raised
        pass
    with reporting(seen.append):
        with reporting(None):
            progress.emit(ProgressEvent("note", detail="dropped"))
        progress.emit(ProgressEvent("note", detail="kept"))
    assert [e.detail for e in seen] == ["kept"]


def test_terminal_shows_each_finished_step_with_its_time_and_why_one_failed():
    console, buf = terminal()
    with rendering(console):
        with step("build", "fraud-detector-staging"):
            pass
        note("+ create aws:sagemaker/model:Model fraud")
        with pytest.raises(OSError), step("start", "fraud-detector-staging", "bento:abc"):
            raise OSError("port 8080 on 127.0.0.1 is already in use\nmore")
        with step("checking specs"):  # a command's own spinner leaves no line
            pass
    text = buf.getvalue()
    assert "✓ fraud-detector-staging: build (0.0 s)" in text
    assert "  + create aws:sagemaker/model:Model fraud" in text
    assert "✗ fraud-detector-staging: start (0.0 s): port 8080 on 127.0.0.1 is already in use" in (
        text
    )
    assert "more" not in text  # the first line of why, not the whole message
    assert "✓ checking specs" not in text


def test_a_console_that_is_not_a_terminal_gets_nothing_but_a_wait_for_the_lock():
    buf = io.StringIO()
    console = Console(file=buf, width=100)
    assert not console.is_terminal
    with rendering(console):
        with step("build", "fraud-detector-staging"):
            note("a line")
        with pytest.raises(ValueError), step("smoke", "fraud-detector-staging"):
            raise ValueError("bad")
    assert buf.getvalue() == ""
    with rendering(console):
        with step("lock", detail="waiting for .modelops/lock, held by pid 12: modelops apply"):
            pass
    lines = buf.getvalue().splitlines()
    assert lines[0] == "lock: waiting for .modelops/lock, held by pid 12: modelops apply"
    assert re.fullmatch(r"lock: taken after \d+\.\d s", lines[1]) and len(lines) == 2

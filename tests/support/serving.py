"""Servers of real Bentos in tests: the shared one, finding them, one that never gets ready.

:func:`serve_fraud` builds and serves the fraud-detector example for the read-only HTTP
tests (the session fixture ``served_fraud`` in conftest.py: one build and one
``bentoml serve`` per test session and xdist worker). :func:`servers_under` lists the
live processes of a state directory's BentoML home (what a test must leave behind:
none). A test that needs a server which does not become ready must not rely on the
machine being too slow to start one within a short timeout: on a quiet machine BentoML
is ready in about a second. :func:`model_never_loads` makes readiness impossible instead.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import httpx
import psutil
import yaml

from reconciler.build.artifact import Artifact
from reconciler.build.bento import build
from reconciler.build.serve import MARKER_ENV, STATE_ENV, start_server, stop_server
from reconciler.core.config import Config, load_config
from reconciler.runtime.router_ids import ROUTER_ID_ENV
from reconciler.spec.repo import load_all
from support.repo import make_repo

T = TypeVar("T")


@dataclass(frozen=True)
class Served:
    """A served Bento: base URL, the repository it was built from, its config and artifact."""

    url: str
    root: Path
    config: Config
    artifact: Artifact


@contextlib.contextmanager
def serve_fraud(root: Path) -> Iterator[Served]:
    """Build and serve the fraud-detector staging Bento from a copy of the examples at
    ``root`` (no policies); the server is stopped on exit.

    The spec is changed so that every read-only HTTP test can use this one server:
    capture at sample rate 1.0 into ``<root>/capture-out`` (JSON Lines) with
    ``mean_radius`` a sensitive field (hashed), and BentoML's batching wait at 2000 ms
    (it sheds requests that wait longer than ``max_latency_ms``; 20 ms is too tight on a
    loaded 2-core machine, and shedding is not what these tests check). The Bento is built
    with revision ``rev-123``; ``MODELOPS_REPO_ROOT`` is the repository while it starts.
    The server runs with one worker (``start_server``'s default).
    """
    make_repo(root, policies=False)
    spec_path = root / "specs/fraud-detector.yaml"
    doc = yaml.safe_load(spec_path.read_text())
    doc["spec"]["monitoring"]["capture"].update(
        sample_rate=1.0, sink="capture-out", redact="hash", format="jsonl"
    )
    doc["spec"]["data"]["sensitive_fields"] = ["mean_radius"]
    doc["spec"]["serving"]["batching"]["max_latency_ms"] = 2000
    spec_path.write_text(yaml.safe_dump(doc, sort_keys=False))
    config = load_config(root)
    loaded = load_all(config, ["fraud-detector"], "staging")
    assert not loaded.errors, loaded.errors
    artifact = build(loaded.deployments[0], config, revision="rev-123")
    old = {k: os.environ.get(k) for k in ("MODELOPS_REPO_ROOT", "MODELOPS_SPEC_REVISION")}
    os.environ["MODELOPS_REPO_ROOT"] = str(root)
    os.environ.pop("MODELOPS_SPEC_REVISION", None)
    try:
        handle = start_server(artifact, config, timeout_s=90)
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    try:
        yield Served(handle.url, root, config, artifact)
    finally:
        stop_server(handle)


def servers_under(state_dir: Path) -> list[psutil.Process]:
    """Live server processes of ``state_dir``: ``bentoml serve`` and its workers, started by
    :func:`~reconciler.build.serve.start_server` (they carry its ``MODELOPS_SERVER_ID``
    marker) with a BentoML home of ``state_dir`` (the shared one, or a server's own under
    ``<state_dir>/servers/``: :func:`~reconciler.build.serve.server_home`).

    Other processes that inherited that BENTOML_HOME are not servers: a build sets it in
    the test process while it runs, and GitPython's persistent ``git cat-file`` processes
    started meanwhile keep it for the life of the process.

    The local engine's routers (``reconciler.runtime.router``, carrying
    ``MODELOPS_ROUTER_ID`` and the state directory) count too: a test leaves none behind.
    """
    homes = (str(state_dir / "bentoml"), str(state_dir / "servers") + os.sep)
    found = []
    for proc in psutil.process_iter():
        try:
            if proc.status() == psutil.STATUS_ZOMBIE or proc.pid == os.getpid():
                continue
            env = proc.environ()
            home = env.get("BENTOML_HOME", "")
            if (home == homes[0] or home.startswith(homes[1])) and env.get(MARKER_ENV):
                found.append(proc)
            elif env.get(ROUTER_ID_ENV) and env.get(STATE_ENV) == str(state_dir):
                found.append(proc)
        except (psutil.NoSuchProcess, psutil.AccessDenied, OSError):
            continue
    return found


def settled(probe: Callable[[], T], expected: T, timeout_s: float = 30.0) -> T:
    """``probe()`` once it returns ``expected``, or its last value after ``timeout_s``.

    For states that follow an action after a delay the machine decides (a process killed
    with SIGKILL is gone a moment later): the test waits for the state, not for a fixed
    time that a slow machine could outlast.
    """
    deadline = time.monotonic() + timeout_s
    value = probe()
    while value != expected and time.monotonic() < deadline:
        time.sleep(0.05)
        value = probe()
    return value


@contextlib.contextmanager
def model_never_loads(config: Config, artifact: Artifact) -> Iterator[list[Path]]:
    """While active, the Bento's service blocks for ever when it loads its model.

    Every copy of the model file in the state directory's BentoML home (the model store,
    and the Bento's own copy when there is one) is replaced by a named pipe (FIFO) that
    nothing writes to. The service's worker opens the model file in ``__init__`` to check
    its SHA-256, and ``open()`` of a FIFO without a writer blocks until one appears: the
    worker never starts, so ``GET /readyz`` never answers 200, whatever the timeout and
    however fast the machine. The real files are put back on exit.

    Yields:
        The paths that were replaced (at least one, else ``AssertionError``).
    """
    cfg = json.loads((Path(artifact.bento_path) / "src" / "modelops.json").read_text())
    name = cfg["model_file"]
    home = config.state_dir / "bentoml"
    found = [p for p in home.rglob(name) if p.is_file()]
    assert found, f"no {name} under {home}"
    saved = []
    for path in found:
        keep = path.with_name(path.name + ".saved")
        shutil.move(path, keep)
        os.mkfifo(path)
        saved.append((path, keep))
    try:
        yield [p for p, _ in saved]
    finally:
        for path, keep in saved:
            path.unlink(missing_ok=True)
            shutil.move(keep, path)


def server_ids(config) -> set[str]:
    """Ids of the live Bento servers of the state directory (routers not counted)."""
    ids = set()
    for proc in servers_under(config.state_dir):
        try:
            ids.add(proc.environ().get("MODELOPS_SERVER_ID", ""))
        except psutil.NoSuchProcess:
            continue
    return ids - {""}


class SteadyClient:
    """One client sending ``/predict`` to a URL in a loop, in a thread, counting answers.

    Each request carries ``rows`` (``{"instances": rows}``; default one row of thirty
    1.0s, the fraud example's width); ``period_s`` is the pause after each answer (each
    request costs the router and the server CPU: a client that runs through a whole
    apply, Bento start included, sends hundreds). It runs until :meth:`stop`, which lets
    it send ``after`` more requests first (so requests are sent after the event the test
    waited for, whatever the machine's speed). Every request that raised or did not
    answer 200 is a failure.
    """

    def __init__(
        self, url: str, rows: list[list[float]] | None = None, period_s: float = 0.02
    ) -> None:
        self.url, self.ok, self.failures = url, 0, []
        self.body = {"instances": rows if rows is not None else [[1.0] * 30]}
        self.period_s = period_s
        self._stop_at: int | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        with httpx.Client(timeout=60, trust_env=False) as client:
            while self._stop_at is None or self.ok < self._stop_at:
                try:
                    resp = client.post(f"{self.url}/predict", json=self.body)
                    if resp.status_code == 200:
                        self.ok += 1
                    else:
                        self.failures.append(f"HTTP {resp.status_code}: {resp.text[:200]}")
                except httpx.HTTPError as exc:
                    self.failures.append(f"{type(exc).__name__}: {exc}")
                time.sleep(self.period_s)  # a steady client, not a load test

    def stop(self, after: int = 5) -> None:
        self._stop_at = self.ok + after
        self._thread.join(timeout=120)
        assert not self._thread.is_alive(), "the client hung"

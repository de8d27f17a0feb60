"""Servers of real Bentos in tests: finding them, and a server that never becomes ready.

:func:`servers_under` lists the live processes of a state directory's BentoML home
(what a test must leave behind: none). A test that needs a server which does not become
ready must not rely on the machine being too slow to start one within a short timeout: on
a quiet machine BentoML is ready in about a second. :func:`model_never_loads` makes
readiness impossible instead.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import psutil

from reconciler.build.artifact import Artifact
from reconciler.core.config import Config


def servers_under(state_dir: Path) -> list[psutil.Process]:
    """Live processes whose BENTOML_HOME is inside ``state_dir`` (ours, for this test)."""
    home = str(state_dir / "bentoml")
    found = []
    for proc in psutil.process_iter():
        try:
            if proc.status() == psutil.STATUS_ZOMBIE:
                continue
            if proc.environ().get("BENTOML_HOME") == home and proc.pid != os.getpid():
                found.append(proc)
        except (psutil.NoSuchProcess, psutil.AccessDenied, OSError):
            continue
    return found


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

"""Shared fixtures: a real spec repository in a temp dir, built from the bundled examples."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

PROJECT = Path(__file__).resolve().parents[1]

os.environ.setdefault("BENTOML_DO_NOT_TRACK", "True")


@pytest.fixture
def spec_repo(tmp_path: Path) -> Path:
    """A copy of the project's specs/, examples/ and policies/ in a temp dir (no .git).

    Tests edit files here freely; the state directory is ``<repo>/.modelops``.
    """
    root = tmp_path / "repo"
    root.mkdir()
    for name in ("specs", "examples", "policies"):
        src = PROJECT / name
        if src.exists():
            shutil.copytree(src, root / name, ignore=shutil.ignore_patterns("__pycache__"))
    (root / "modelops.yaml").write_text("state_dir: .modelops\n")
    return root

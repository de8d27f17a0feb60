"""The wheel carries what a spec repository needs, and ``modelops init`` works from it.

Builds the real wheel once (``pip wheel --no-deps`` from a copy of the source, so the
work tree stays clean; pip fetches the build backend from the package index), unpacks it
as site-packages would hold it and runs ``python -m reconciler`` with only that directory
on ``PYTHONPATH``, from a directory outside the checkout.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
SOURCE = ("pyproject.toml", "setup.py", "MANIFEST.in", "README.md", "reconciler", "stacks")
LIBRARY = REPO / "policies"


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    src = tmp_path_factory.mktemp("src")
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for name in (*SOURCE, "policies"):
        path = REPO / name
        if path.is_dir():
            shutil.copytree(path, src / name, ignore=ignore)
        else:
            shutil.copy2(path, src / name)
    out = tmp_path_factory.mktemp("dist")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(out), str(src)],
        check=True,
        timeout=300,
    )
    (whl,) = out.glob("*.whl")
    return whl


def test_the_wheel_holds_the_policy_library_schema_and_templates(wheel):
    assert wheel.name.startswith("modelops_gitops-")  # `modelops` on PyPI is someone else's
    names = set(zipfile.ZipFile(wheel).namelist())
    library = {
        p.relative_to(LIBRARY).as_posix()
        for p in LIBRARY.rglob("*")
        if p.is_file() and "__pycache__" not in p.parts
    }
    assert {n for n in library if n.endswith(".rego")} and any(
        n.startswith("tests/") for n in library
    )
    missing = {f"reconciler/library/policies/{n}" for n in library} - names
    assert not missing
    packaged = {
        p.relative_to(REPO).as_posix()
        for p in (REPO / "reconciler").rglob("*")
        if p.is_file() and p.suffix not in (".py", ".pyc") and "__pycache__" not in p.parts
    }
    assert "reconciler/spec/modeldeployment.schema.json" in packaged
    assert not packaged - names  # every data file of the package (templates, prices...)
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    assert "modelops = reconciler.cli:main" in zipfile.ZipFile(wheel).read(entry_points).decode()


def test_init_from_the_installed_wheel_copies_the_policy_library(wheel, tmp_path):
    site = tmp_path / "site-packages"
    zipfile.ZipFile(wheel).extractall(site)
    env = {**os.environ, "PYTHONPATH": str(site), "COLUMNS": "200"}
    env.pop("MODELOPS_STATE_DIR", None)

    def modelops(*args: str, cwd: Path) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "reconciler", *args],
            cwd=cwd,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )

    where = subprocess.run(
        [sys.executable, "-c", "import reconciler; print(reconciler.__file__)"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert Path(where.stdout.strip()).is_relative_to(site)  # not the checkout
    proc = modelops("init", "demo", "--no-example", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    demo = tmp_path / "demo"
    assert (demo / "policies" / "organization.yaml").is_file()
    assert (demo / "policies" / "waivers.yaml").is_file()
    assert sorted(p.name for p in (demo / "policies").glob("*.rego")) == sorted(
        p.name for p in LIBRARY.glob("*.rego")
    )

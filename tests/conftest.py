"""Shared fixtures: real spec repositories in temp dirs, built from the bundled examples.

The builder is :func:`support.repo.make_repo`; the CLI helpers are in ``support.cli``;
the served Bento shared by the read-only HTTP tests is in ``support.serving``.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest
from support.repo import Repo, make_repo, relax
from support.serving import Served, serve_fraud, servers_under

# fixtures of every test: fake_s3 (moto, a fake), fake_github (a fake), mlflow_registry (real)
pytest_plugins = ("support.s3", "support.fake_github", "support.registry")

os.environ.setdefault("BENTOML_DO_NOT_TRACK", "True")
# validate's model-load verdicts (reconciler/spec/modelcheck.py), cached by file digest in
# one temp directory per test run: the xdist controller sets it before it starts the
# workers, which inherit it (writes are atomic renames), so each example model is loaded
# once per run rather than once per test
os.environ.setdefault("MODELOPS_CACHE_DIR", tempfile.mkdtemp(prefix="modelops-cache-"))


@pytest.fixture
def spec_repo(tmp_path: Path) -> Path:
    """A copy of the project's specs/, examples/ and policies/ in a temp dir (no .git).

    Tests edit files here freely; the state directory is ``<repo>/.modelops``.
    """
    return make_repo(tmp_path / "repo").root


@pytest.fixture
def git_repo(tmp_path: Path) -> Repo:
    """A real Git repository: the fraud-detector spec (load test and SLO relaxed, see
    :data:`support.repo.RELAXED`), examples/ and policies/, committed on ``main``."""
    return make_repo(tmp_path / "repo", specs=["fraud-detector"], edit=relax, git=True)


@pytest.fixture(scope="session")
def served_fraud(tmp_path_factory) -> Served:
    """The fraud-detector staging Bento, built and served once per test session (per
    xdist worker) for the tests that only send it requests (see
    :func:`support.serving.serve_fraud`).

    Tests that kill a server, change its configuration or need another build start their
    own. No process of its state directory outlives it.
    """
    root = tmp_path_factory.mktemp("served") / "repo"
    with serve_fraud(root) as served:
        yield served
    assert not servers_under(served.config.state_dir)


#: The test files whose tests use ``served_fraud``. Under ``--dist loadfile`` they go to one
#: xdist worker together (:func:`pytest_xdist_make_scheduler`), so the session's Bento is
#: built and served once per run, not once per worker that drew one of them (four builds
#: and four servers, about 25 s of CPU on a 2-core machine). A file that uses the fixture
#: and is missing here fails the collection (:func:`pytest_collection_modifyitems`).
SERVED_FRAUD_FILES = frozenset(
    {
        "tests/build/test_smoke.py",
        "tests/faults/test_fault_served.py",
        "tests/monitor/test_quality.py",
        "tests/runtime/test_service.py",
        "tests/runtime/test_signals.py",
    }
)


def _test_file(nodeid: str) -> str:
    """``tests/x/test_y.py`` of a node id (``tests/x/test_y.py::test_z[param]``)."""
    return nodeid.split("::", 1)[0]


def pytest_collection_modifyitems(config, items) -> None:
    """Files with a ``slow`` test first, the rest after, each file's tests kept together.

    ``make test`` runs xdist with ``--dist loadfile --no-loadscope-reorder``, which hands
    files to the workers in this order: the long files (Bento builds, real servers, the
    fault chains) start while every worker is free, and the short ones fill the end, so
    no worker is left alone with a long file while the others idle (xdist's default order,
    most tests first, put the one-test fault files last).

    Raises:
        pytest.UsageError: a test uses ``served_fraud`` from a file not in
            :data:`SERVED_FRAUD_FILES`.
    """
    strays = sorted(
        {
            _test_file(item.nodeid)
            for item in items
            if "served_fraud" in getattr(item, "fixturenames", ())
            and _test_file(item.nodeid) not in SERVED_FRAUD_FILES
        }
    )
    if strays:
        raise pytest.UsageError(
            f"{', '.join(strays)} use served_fraud: add them to SERVED_FRAUD_FILES "
            "in tests/conftest.py"
        )
    slow = {item.path for item in items if item.get_closest_marker("slow")}
    items.sort(key=lambda item: item.path not in slow)


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config, log):
    """``--dist loadfile`` with the files of :data:`SERVED_FRAUD_FILES` as one unit of work
    (xdist's scheduler otherwise: each file one unit, handed out in collection order)."""
    if config.getoption("dist") != "loadfile":
        return None
    from xdist.scheduler import LoadFileScheduling  # only under xdist

    class ServedTogether(LoadFileScheduling):
        def _split_scope(self, nodeid: str) -> str:
            path = super()._split_scope(nodeid)
            return "served_fraud" if path in SERVED_FRAUD_FILES else path

    return ServedTogether(config, log)

"""Spec repositories in temp directories: the one builder the tests use (no tests here).

:func:`make_repo` copies the project's specs/, examples/ and policies/ (all of them, or
the ones named) and writes a ``modelops.yaml`` (``state_dir: .modelops``); with
``git=True`` the directory is a real Git repository with everything committed on
``main``. :func:`small_repo` builds the synthetic repository of the change-detection
tests (three small specs, not the examples) with the same :class:`Repo`.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterable
from pathlib import Path

import git

PROJECT = Path(__file__).resolve().parents[2]
"""The project's root (specs/, examples/, policies/ are copied from here)."""

#: Smoke, SLO and worker settings that a busy 2-core test machine meets: tests that pass
#: ``edit=relax`` are about the GitOps bookkeeping, not about latency (bench_serving.py
#: measures that). One BentoML worker instead of the spec's two: each worker process
#: imports BentoML and loads the model (about the manager's CPU), and no test of a relaxed
#: spec counts workers.
RELAXED = (
    ("load: {requests: 200, concurrency: 8}", "load: {requests: 20, concurrency: 2}"),
    ("max_latency_ms: 20}", "max_latency_ms: 500}"),
    ("p99_latency_ms: 200}", "p99_latency_ms: 5000}"),
    ("workers: 2\n", "workers: 1\n"),
)


def relax(text: str) -> str:
    """The fraud spec's text with the load test, SLO and workers of :data:`RELAXED`."""
    for old, new in RELAXED:
        assert old in text, f"the fraud spec no longer has {old!r}: update RELAXED"
        text = text.replace(old, new, 1)
    return text


class Repo:
    """A spec repository at ``root``; with ``git=True`` also a real Git repository.

    ``git`` is the :class:`git.Repo` (``None`` without Git); :meth:`commit` and
    :meth:`mv` / :meth:`rm` need it.
    """

    def __init__(self, root: Path, git_init: bool = False) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        self.git: git.Repo | None = None
        if git_init:
            self.git = git.Repo.init(root, initial_branch="main")
            with self.git.config_writer() as cw:
                cw.set_value("user", "name", "Test")
                cw.set_value("user", "email", "test@example.com")
                cw.set_value("commit", "gpgsign", "false")

    def write(self, rel: str, text: str | bytes) -> Path:
        path = self.root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(text, bytes):
            path.write_bytes(text)
        else:
            path.write_text(text)
        return path

    def commit(self, message: str) -> str:
        """Stage everything (``git add -A``) and commit; returns the new commit's sha."""
        self.git.git.add("-A")
        self.git.index.commit(message)
        return self.git.head.commit.hexsha

    def mv(self, src: str, dst: str) -> None:
        (self.root / dst).parent.mkdir(parents=True, exist_ok=True)
        self.git.git.mv(src, dst)

    def rm(self, rel: str) -> None:
        self.git.git.rm("-q", rel)


def make_repo(
    root: Path,
    *,
    specs: Iterable[str] | None = None,
    examples: Iterable[str] | None = None,
    policies: bool = True,
    edit: Callable[[str], str] | None = None,
    git: bool = False,
) -> Repo:
    """A copy of the project's spec repository at ``root`` (created).

    Args:
        specs: names of the specs/*.yaml to copy (``None``: all; ``()``: an empty specs/).
        examples: entries of examples/ to copy (``None``: all of examples/).
        policies: copy policies/ too.
        edit: applied to each copied spec's text (e.g. :func:`relax`).
        git: ``git init`` on ``main``, a ``.gitignore`` of ``.modelops/``, and one commit.
    """
    repo = Repo(root, git_init=git)
    ignore = shutil.ignore_patterns("__pycache__")
    if examples is None:
        shutil.copytree(PROJECT / "examples", root / "examples", ignore=ignore)
    else:
        for name in examples:
            src = PROJECT / "examples" / name
            if src.is_dir():
                shutil.copytree(src, root / "examples" / name, ignore=ignore)
            else:
                (root / "examples").mkdir(exist_ok=True)
                shutil.copy(src, root / "examples" / name)
    if policies:
        shutil.copytree(PROJECT / "policies", root / "policies", ignore=ignore)
    (root / "specs").mkdir()
    names = sorted(p.stem for p in (PROJECT / "specs").glob("*.yaml")) if specs is None else specs
    for name in names:
        text = (PROJECT / "specs" / f"{name}.yaml").read_text()
        (root / "specs" / f"{name}.yaml").write_text(edit(text) if edit else text)
    repo.write("modelops.yaml", "state_dir: .modelops\n")
    if git:
        repo.write(".gitignore", ".modelops/\n")
        repo.commit("example specs")
    return repo


def small_spec(name: str, model: str = "models/a.joblib", extra: str = "", envs: str = "") -> str:
    """A minimal spec text (enough for change detection; not necessarily valid)."""
    return (
        "apiVersion: modelops/v1alpha1\nkind: ModelDeployment\n"
        f"metadata:\n  name: {name}\n"
        f"spec:\n  model:\n    framework: sklearn\n    uri: {model}\n"
        "  serving:\n    smoke:\n      request: requests/req.json\n"
        f"{extra}"
        f"  environments:\n    staging: {{}}\n{envs}"
    )


def small_repo(tmp_path: Path) -> Repo:
    """Three small specs, two model files, a request, a policy, committed on main."""
    repo = Repo(tmp_path / "repo", git_init=True)
    repo.write("modelops.yaml", "state_dir: .modelops\n")
    repo.write(".gitignore", ".modelops/\n")
    repo.write("models/a.joblib", b"model-a-v1")
    repo.write("models/b.joblib", b"model-b-v1")
    repo.write("requests/req.json", '{"instances": [[1, 2]]}\n')
    repo.write("policies/p.rego", "package p\n")
    repo.write("policies/waivers.yaml", "waivers: []\n")
    repo.write("specs/alpha.yaml", small_spec("alpha"))
    repo.write("specs/beta.yaml", small_spec("beta", "models/b.joblib"))
    repo.write(
        "specs/gamma.yaml",
        small_spec(
            "gamma", "s3://bucket/m.joblib", envs="    prod:\n      model: {uri: models/b.joblib}\n"
        ),
    )
    repo.commit("initial specs")
    return repo


def replace_in_file(path: Path, old: str, new: str) -> None:
    """Replace the first ``old`` in the file at ``path`` by ``new``; ``old`` must be there."""
    text = path.read_text()
    assert old in text, f"{old!r} not in {path}"
    path.write_text(text.replace(old, new, 1))


def two_commit_remote(tmp_path: Path) -> tuple[Path, str]:
    """A real bare repository ``<tmp_path>/remote.git`` with two commits of ``spec.yaml``
    (``v: 1``, then ``v: 2``); returns it and the first commit's SHA (the applied
    revision a job must check out, not the head)."""
    work = git.Repo.init(tmp_path / "work", initial_branch="main")
    (tmp_path / "work/spec.yaml").write_text("v: 1\n")
    work.git.add(A=True)
    work.git.commit(m="one", author="t <t@example.com>")
    applied = work.head.commit.hexsha
    (tmp_path / "work/spec.yaml").write_text("v: 2\n")
    work.git.commit(a=True, m="two", author="t <t@example.com>")
    bare = tmp_path / "remote.git"
    work.git.clone("--bare", str(tmp_path / "work"), str(bare))
    return bare, applied

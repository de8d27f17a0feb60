"""Small Git queries the pipeline needs, all through GitPython.

Paths handed in and out of this module are relative to the spec repository's root
(``config.root``), which may be a sub-directory of the Git work tree; :func:`prefix`
maps between the two.
"""

from __future__ import annotations

import functools
import io
import os
import tarfile
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import git

from reconciler.core.diagnostics import ModelopsError


def open_repo(root: Path) -> git.Repo | None:
    """The Git repository at ``root`` (or above it), or ``None`` when there is none."""
    try:
        return git.Repo(root, search_parent_directories=True)
    except (git.InvalidGitRepositoryError, git.NoSuchPathError):
        return None


@functools.lru_cache(maxsize=64)
def origin_url(root: str) -> str:
    """The credential-free URL of remote ``origin`` of the repository at ``root`` (``""``
    without one), read once per process: opening the repository and its remotes cost
    about 5 ms, once per rendered deployment before (``bench/bench_gitops.py``)."""
    repo = open_repo(Path(root))
    if repo is None or "origin" not in [r.name for r in repo.remotes]:
        return ""
    url = repo.remotes.origin.url
    parts = urlsplit(url)
    if parts.scheme in ("http", "https") and (parts.username or parts.password):
        host = parts.hostname or ""
        url = urlunsplit(parts._replace(netloc=f"{host}:{parts.port}" if parts.port else host))
    return url


def spec_repository(root: Path) -> str:
    """The spec repository's clone URL for in-cluster jobs, without credentials.

    ``$GITHUB_SERVER_URL/$GITHUB_REPOSITORY.git`` in GitHub Actions, else the Git remote
    ``origin`` of ``root`` (user and password removed), else ``""``.
    """
    if os.environ.get("GITHUB_SERVER_URL") and os.environ.get("GITHUB_REPOSITORY"):
        return f"{os.environ['GITHUB_SERVER_URL']}/{os.environ['GITHUB_REPOSITORY']}.git"
    return origin_url(str(root))


def require_repo(root: Path, why: str) -> git.Repo:
    """The Git repository at ``root``.

    Args:
        root: the spec repository root.
        why: what needs Git (``"--base"``), for the message.

    Raises:
        ModelopsError: (exit 2) ``root`` is not inside a Git work tree.
    """
    repo = open_repo(root)
    if repo is None or repo.bare:
        raise ModelopsError(f"{why} needs a Git repository, and {root} is not inside one")
    return repo


def prefix(repo: git.Repo, root: Path) -> str:
    """``root`` relative to the work tree, with a trailing ``/`` (``""`` at the top)."""
    rel = Path(root).resolve().relative_to(Path(repo.working_tree_dir).resolve())
    return "" if str(rel) == "." else f"{rel.as_posix()}/"


def is_shallow(repo: git.Repo) -> bool:
    """True when the clone is shallow (``actions/checkout`` with its default fetch-depth 1)."""
    return (Path(repo.git_dir) / "shallow").exists()


def _has_object(repo: git.Repo, hexsha: str) -> bool:
    """Whether the object database holds ``hexsha`` (loose or packed: ``git cat-file -e``)."""
    try:
        repo.git.cat_file("-e", hexsha)
    except git.GitCommandError:
        return False
    return True


def resolve_revision(repo: git.Repo, rev: str) -> git.Commit:
    """The commit named by ``rev`` (SHA, branch, tag, ``HEAD~1``, ``origin/main``...).

    Raises:
        ModelopsError: (exit 2) the revision does not exist, or names a commit the clone
            does not hold (``HEAD~1`` in a shallow clone); when the clone is shallow the
            message says so and how to fetch the history (a shallow clone is the usual
            reason a PR's base is missing in CI).
    """
    try:
        commit = repo.commit(rev)
    except (git.BadName, git.BadObject, ValueError, IndexError, git.GitCommandError):
        commit = None
    if commit is not None and (not is_shallow(repo) or _has_object(repo, commit.hexsha)):
        return commit
    if commit is not None and is_shallow(repo):
        # "HEAD~1" resolves through the parent SHA written in HEAD's commit object, even
        # when this shallow clone does not hold that parent
        raise ModelopsError(
            f"revision {rev!r} names commit {commit.hexsha[:12]}, which this clone does not "
            "hold: it is shallow, and a relative revision needs the history behind it. "
            "Fetch more history first (`git fetch --deepen=50` or `git fetch --unshallow`, "
            "or `fetch-depth: 0` in actions/checkout), then run again."
        )
    if is_shallow(repo):
        raise ModelopsError(
            f"revision {rev!r} is not in this clone, which is shallow: it holds only the "
            "newest commit(s). Fetch the history first (`git fetch --unshallow`, or "
            "`fetch-depth: 0` in actions/checkout), then run again."
        )
    raise ModelopsError(
        f"revision {rev!r} does not exist in {repo.working_tree_dir}; give a commit SHA, "
        "branch or tag (`git log --oneline` lists them)"
    )


def head_commit(repo: git.Repo) -> git.Commit | None:
    """The commit at HEAD, or ``None`` before the first commit."""
    try:
        return repo.head.commit
    except ValueError:
        return None


def head_revision(root: Path) -> str:
    """The full SHA of HEAD at ``root``; ``""`` outside a repository or before the first commit.

    A working tree with uncommitted changes to tracked files gets the suffix ``-dirty``
    (as ``git describe --dirty`` does), so the ledger never claims a revision that does
    not contain what was applied.
    """
    repo = open_repo(root)
    if repo is None:
        return ""
    commit = head_commit(repo)
    if commit is None:
        return ""
    return f"{commit.hexsha}-dirty" if repo.is_dirty(untracked_files=False) else commit.hexsha


def last_change_revision(root: Path, paths: list[str]) -> str:
    """The SHA of the newest commit (from HEAD) that changed any of ``paths``.

    Args:
        root: the spec repository root.
        paths: root-relative paths (a spec file and the files it names).

    Returns:
        The full SHA, with ``-dirty`` when one of ``paths`` has uncommitted changes;
        ``""`` outside a repository, before the first commit, or when no commit touched
        them.
    """
    repo = open_repo(root)
    if repo is None or head_commit(repo) is None:
        return ""
    pre = prefix(repo, root)
    try:
        commits = list(repo.iter_commits("HEAD", paths=[pre + p for p in paths], max_count=1))
    except (git.GitCommandError, ValueError):
        return ""
    if not commits:
        return ""
    dirty = set(dirty_paths(repo, root)) & set(paths)
    return f"{commits[0].hexsha}-dirty" if dirty else commits[0].hexsha


def dirty_paths(repo: git.Repo, root: Path, untracked_under: list[str] = ()) -> list[str]:
    """Uncommitted changes that a run would pick up from the working tree.

    Args:
        repo: the repository.
        root: the spec repository root; returned paths are relative to it.
        untracked_under: root-relative directory prefixes (``specs/``) in which untracked
            files also count (a new spec file that was never committed).

    Returns:
        Sorted root-relative paths of tracked files modified, staged, added or deleted
        against HEAD, plus untracked files under ``untracked_under``.
    """
    pre = prefix(repo, root)
    paths: set[str] = set()
    if head_commit(repo) is not None:
        for d in repo.index.diff(None):  # work tree vs index
            paths.update(p for p in (d.a_path, d.b_path) if p)
        for d in repo.index.diff("HEAD"):  # index vs HEAD
            paths.update(p for p in (d.a_path, d.b_path) if p)
    if untracked_under:
        wanted = tuple(pre + u for u in untracked_under)
        paths.update(p for p in repo.untracked_files if p.startswith(wanted))
    return sorted(p[len(pre) :] for p in paths if p.startswith(pre))


def read_blob(commit: git.Commit, path: str) -> bytes | None:
    """The bytes of ``path`` (work-tree relative) at ``commit``, or ``None`` if absent."""
    try:
        obj = commit.tree / path
    except KeyError:
        return None
    if obj.type != "blob":
        return None
    return obj.data_stream.read()


def list_files(commit: git.Commit, directory: str) -> list[str]:
    """Work-tree relative paths of every file under ``directory`` at ``commit`` (sorted)."""
    try:
        tree = commit.tree / directory.rstrip("/") if directory.strip("/") else commit.tree
    except KeyError:
        return []
    if tree.type != "tree":
        return []
    return sorted(item.path for item in tree.traverse() if item.type == "blob")


def export_tree(repo: git.Repo, commit: git.Commit, dest: Path, paths: list[str] | None = None):
    """Write the files of ``commit`` (optionally only ``paths``) under ``dest``.

    Uses ``git archive`` (so LFS pointers come out as stored) and extracts with the
    tarfile ``data`` filter, which refuses absolute paths and links leaving ``dest``.

    Args:
        repo: the repository.
        commit: the revision to write out.
        dest: target directory (created).
        paths: work-tree relative files or directories; ``None`` writes the whole tree.
            Paths absent at ``commit`` are skipped.
    """
    dest.mkdir(parents=True, exist_ok=True)
    if paths is not None:
        present = []
        for p in paths:
            try:
                commit.tree / p.rstrip("/")
                present.append(p.rstrip("/"))
            except KeyError:
                continue
        if not present:
            return
        paths = present
    buf = io.BytesIO()
    args = {"path": paths} if paths is not None else {}
    repo.archive(buf, commit.hexsha, format="tar", **args)
    buf.seek(0)
    with tarfile.open(fileobj=buf) as tar:
        tar.extractall(dest, filter="data")

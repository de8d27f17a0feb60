"""``render --commit BRANCH``: the rendered tree as one commit on an environment branch
(the rendered-manifests pattern: Argo CD or Flux sync the branch, never the specs).

:func:`commit_tree` makes the files of a directory the whole tree of ``BRANCH`` in one new
commit on top of it, without touching the working tree, the index or HEAD: a temporary
index, ``git write-tree``, ``git commit-tree``, then ``git update-ref`` from the old tip
to the new commit (atomic; a branch that moved meanwhile is left alone). Anything that
fails before that leaves the branch as it was.

The branch must exist and be related to the repository: it shares history with HEAD
(``git branch rendered/prod main`` creates one), or its tip is an earlier rendered commit
(its message carries ``Modelops-Rendered-From: <sha>`` of a commit of this repository).
Rationale: ``docs/gitops.md``.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
from pathlib import Path

import git

from reconciler.core.diagnostics import ModelopsError
from reconciler.core.git import head_commit, require_repo

TRAILER = "Modelops-Rendered-From"
FALLBACK_IDENTITY = {
    "GIT_AUTHOR_NAME": "modelops",
    "GIT_AUTHOR_EMAIL": "modelops@localhost",
    "GIT_COMMITTER_NAME": "modelops",
    "GIT_COMMITTER_EMAIL": "modelops@localhost",
}


class RenderBranchError(ModelopsError):
    """The branch cannot take the rendered tree (exit 2); nothing was written."""


def _source_of(commit: git.Commit) -> str:
    for line in str(commit.message).splitlines():
        key, _, value = line.partition(":")
        if key.strip() == TRAILER:
            return value.strip()
    return ""


def check_branch(repo: git.Repo, branch: str) -> git.Commit:
    """The tip of ``branch`` once it is fit to receive a rendered tree.

    Raises:
        RenderBranchError: not a valid branch name; the branch does not exist; it is
            checked out in this working tree; its history is unrelated to HEAD and its tip
            is not a rendered commit of this repository.
    """
    try:
        if branch.startswith("-"):
            raise git.GitCommandError("check-ref-format", 1)
        repo.git.check_ref_format("--branch", branch)
    except git.GitCommandError:
        raise RenderBranchError(f"--commit {branch!r} is not a valid branch name") from None
    ref = f"refs/heads/{branch}"
    try:
        tip = repo.commit(ref)
    except (git.BadName, ValueError):
        raise RenderBranchError(
            f"branch {branch!r} does not exist; create it once from this repository's "
            f"history (`git branch {branch} main`, then push it), and render again"
        ) from None
    if not repo.head.is_detached and repo.head.ref.path == ref:
        raise RenderBranchError(
            f"branch {branch!r} is checked out here; render --commit writes another branch "
            "(the environment's rendered branch) while the specs stay checked out"
        )
    head = head_commit(repo)
    related = head is not None and bool(repo.merge_base(head, tip))
    if not related:
        source = _source_of(tip)
        try:
            related = bool(source) and repo.commit(source) is not None
        except (git.BadName, ValueError):
            related = False
    if not related:
        raise RenderBranchError(
            f"branch {branch!r} has history unrelated to this repository (no common commit "
            f"with HEAD, and its tip {tip.hexsha[:12]} is not a commit of `modelops render "
            f"--commit`); pick the environment's rendered branch, or recreate it with "
            f"`git branch -f {branch} main`"
        )
    return tip


def _identity(repo: git.Repo) -> dict[str, str]:
    """Author and committer from Git's configuration, else ``modelops`` (a CI runner often
    has none configured)."""
    reader = repo.config_reader()
    if reader.get_value("user", "name", "") and reader.get_value("user", "email", ""):
        return {}
    return {k: v for k, v in FALLBACK_IDENTITY.items() if k not in os.environ}


def commit_tree(root: Path, branch: str, tree_dir: Path, message: str) -> str | None:
    """Commit every file under ``tree_dir`` as the whole tree of ``branch``.

    Args:
        root: the spec repository (any directory inside its work tree).
        branch: the environment branch (``rendered/prod``); see :func:`check_branch`.
        tree_dir: the rendered tree.
        message: the commit message; :data:`TRAILER` with HEAD's SHA is appended.

    Returns:
        The new commit's SHA, or ``None`` when the tree equals the branch's tip tree
        (nothing committed).

    Raises:
        ModelopsError: (exit 2) ``root`` is not in a Git repository.
        RenderBranchError: as :func:`check_branch`, or the branch moved while committing.
    """
    repo = require_repo(root, "render --commit")
    tip = check_branch(repo, branch)
    head = head_commit(repo)
    with tempfile.TemporaryDirectory(prefix="modelops-render-") as tmp:
        env = {
            **os.environ,
            **_identity(repo),
            "GIT_DIR": str(repo.git_dir),
            "GIT_WORK_TREE": str(tree_dir),
            "GIT_INDEX_FILE": str(Path(tmp) / "index"),
        }
        # -f: every rendered file, whatever a .gitignore or core.excludesFile says.
        proc = subprocess.run(
            ["git", "add", "-A", "-f", "--", "."],
            cwd=tree_dir,
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        if proc.returncode != 0:
            raise RenderBranchError(f"git add of the rendered tree failed: {proc.stderr}")
        tree = subprocess.run(
            ["git", "write-tree"],
            cwd=tree_dir,
            env=env,
            capture_output=True,
            text=True,
            check=False,
        ).stdout.strip()
        if not tree:
            raise RenderBranchError("git write-tree of the rendered tree failed")
        if tree == tip.tree.hexsha:
            return None
        full = f"{message.rstrip()}\n\n{TRAILER}: {head.hexsha if head else ''}\n"
        proc = subprocess.run(
            ["git", "commit-tree", tree, "-p", tip.hexsha, "-F", "-"],
            cwd=tree_dir,
            env=env,
            input=full,
            capture_output=True,
            text=True,
            check=False,
        )
        new = proc.stdout.strip()
        if proc.returncode != 0 or not new:
            raise RenderBranchError(f"git commit-tree failed: {proc.stderr.strip()}")
    try:
        repo.git.update_ref(f"refs/heads/{branch}", new, tip.hexsha)
    except git.GitCommandError as exc:
        raise RenderBranchError(
            f"branch {branch!r} moved while rendering (expected {tip.hexsha[:12]}); "
            f"nothing was written: render again ({exc.stderr.strip()})"
        ) from None
    return new

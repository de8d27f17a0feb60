"""Small Git queries the pipeline needs (GitPython)."""

from __future__ import annotations

from pathlib import Path

import git


def open_repo(root: Path) -> git.Repo | None:
    """The Git repository at ``root`` (or above it), or ``None`` when there is none."""
    try:
        return git.Repo(root, search_parent_directories=True)
    except (git.InvalidGitRepositoryError, git.NoSuchPathError):
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
    try:
        sha = repo.head.commit.hexsha
    except ValueError:  # no commits yet
        return ""
    return f"{sha}-dirty" if repo.is_dirty(untracked_files=False) else sha

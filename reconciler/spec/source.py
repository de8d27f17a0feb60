"""Specs from the working tree or from a Git revision: loaded, validated, resolved.

A :class:`SpecSource` is a tree of spec files on disk with the configuration that
points at it: the working tree itself, or the files of a Git revision written out to a
temporary directory (:func:`revision_source`). ``plan --base`` reads the merge base (and
a head that is not checked out) through it, ``rollback`` the revision it goes back to.
"""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import git

from reconciler.core import git as g
from reconciler.core.config import Config
from reconciler.core.diagnostics import Diagnostic
from reconciler.core.yaml import YamlLoadError
from reconciler.spec.loader import load_spec
from reconciler.spec.model import Deployment, Spec
from reconciler.spec.resolve import resolve
from reconciler.spec.validate import spec_diagnostics


def rebased(config: Config, root: Path, *, keep_policies: bool = False) -> Config:
    """``config`` with its repository paths moved under ``root`` (same state directory).

    With ``keep_policies`` the policies directory and the organisation file stay where
    ``config`` has them (a rollback is policed with the current policies).
    """

    def move(path: Path | None) -> Path | None:
        if path is None:
            return None
        try:
            return root / Path(path).resolve().relative_to(config.root)
        except ValueError:
            return path

    # the scheduled jobs clone the repository by its URL, which a tree written out from
    # a revision (no .git, no origin) cannot tell: keep the working tree's, so a base
    # revision's jobs render as the head's do (a plan showed every CronJob changed)
    jobs = dict(config.jobs or {})
    if not jobs.get("repository"):
        jobs["repository"] = g.spec_repository(config.root)
    return replace(
        config,
        root=root,
        jobs=jobs,
        specs_dir=move(config.specs_dir),
        policies_dir=config.policies_dir if keep_policies else move(config.policies_dir),
        organization=config.organization if keep_policies else move(config.organization),
    )


@dataclass
class SpecSource:
    """A tree of spec files on disk and the configuration rooted at it.

    Attributes:
        config: the configuration whose ``root`` (and specs directory) is this tree;
            the state directory is always the real one.
        revision: the Git commit SHA the files were written out from; ``""`` for the
            working tree.
    """

    config: Config
    revision: str = ""

    def load(self, rel: str) -> tuple[Spec | None, list[Diagnostic]]:
        """The spec file ``rel`` (root-relative) as written, or ``(None, [why])``.

        A file that does not exist in this tree is ``(None, [])``.
        """
        path = self.config.root / rel
        if not path.is_file():
            return None, []
        try:
            return load_spec(path, self.config.root), []
        except YamlLoadError as exc:
            return None, [exc.diagnostic]

    def deployment(self, rel: str, env: str) -> tuple[Deployment | None, list[Diagnostic]]:
        """Load, validate and resolve the spec file ``rel`` for ``env``.

        Returns:
            ``(deployment, diagnostics)``: the spec findings (YAML, schema, semantic) and,
            when the spec as written has no error, those of the resolved deployment;
            the deployment is ``None`` when there is an error, or the spec has no
            overlay for ``env`` (then without an error).
        """
        spec, diags = self.load(rel)
        if spec is None:
            return None, diags
        diags = spec_diagnostics(spec, self.config)
        if any(d.severity == "error" for d in diags):
            return None, diags
        dep, more = resolve(spec, env, self.config)
        return dep, diags + more

    def deployments(self, rels: list[str], envs: list[str]) -> dict:
        """``{(name, env): Deployment}`` of the spec files ``rels`` (best effort).

        Files that are missing or are not YAML are skipped, and so is an environment a
        spec does not resolve for; nothing is reported.
        """
        out = {}
        for rel in rels:
            spec, _diags = self.load(rel)
            if spec is None:
                continue
            for env in envs:
                dep, _diags = resolve(spec, env, self.config)
                if dep is not None:
                    out[(dep.name, env)] = dep
        return out


@contextlib.contextmanager
def revision_source(
    config: Config,
    repo: git.Repo,
    commit: git.Commit,
    paths: list[str] | None = None,
    *,
    keep_policies: bool = False,
) -> Iterator[SpecSource]:
    """The files of ``commit`` written out to a temporary directory, as a source.

    Args:
        config: the configuration of the working tree.
        repo: its repository.
        commit: the revision.
        paths: the files and directories to write out, relative to ``config.root``
            (absent ones are skipped); ``None`` writes the whole tree under the root.
        keep_policies: see :func:`rebased`.

    Yields:
        A :class:`SpecSource`; the directory is removed on exit.
    """
    pre = g.prefix(repo, config.root)
    wanted = [pre + p for p in paths] if paths is not None else ([pre] if pre else None)
    with tempfile.TemporaryDirectory(prefix="modelops-rev-") as tmp:
        g.export_tree(repo, commit, Path(tmp), wanted)
        root = Path(tmp) / pre if pre else Path(tmp)
        yield SpecSource(rebased(config, root, keep_policies=keep_policies), commit.hexsha)

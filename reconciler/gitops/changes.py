"""Change detection between two Git revisions: which specs a pull request plans.

:func:`detect_changes` lists the spec files added, modified, deleted or renamed between
the merge base of ``base`` and ``head`` (GitHub's three-dot diff), plus every spec
*affected* by a change to a file it depends on (model file, smoke requests, the policy
set, :data:`DEFAULT_SHARED_INPUTS`). Specs are matched across revisions by
``metadata.name``. Rationale: ``docs/gitops.md``.
"""

from __future__ import annotations

import posixpath
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from reconciler.core import git as g
from reconciler.core.config import Config
from reconciler.core.diagnostics import Diagnostic, ModelopsError, Position
from reconciler.spec.files import quick_cache_dir, quick_load, spec_dependencies, spec_name
from reconciler.spec.repo import SPEC_SUFFIXES

#: Repository paths (files, or directories ending in ``/``) that every spec depends on
#: besides the policy library and the organisation settings: the service template,
#: when a spec repository vendors modelops' build templates.
DEFAULT_SHARED_INPUTS: tuple[str, ...] = ("reconciler/build/templates/",)


def shared_inputs(config: Config, extra: Iterable[str] = DEFAULT_SHARED_INPUTS) -> list[str]:
    """Root-relative paths every spec depends on: ``policies/``, the organisation file,
    and ``extra`` (directories end in ``/``)."""
    out = []
    for path in (config.policies_dir, config.organization):
        if path is None:
            continue
        rel = config.rel(path)
        if rel.startswith("/"):
            continue
        out.append(rel + "/" if Path(path).is_dir() or path == config.policies_dir else rel)
    out.extend(extra)
    return out


def _matches(path: str, patterns: Iterable[str]) -> bool:
    return any(path.startswith(p) if p.endswith("/") else path == p for p in patterns)


@dataclass
class FileChange:
    """One changed file between two revisions.

    Attributes:
        status: ``added``, ``modified``, ``deleted``, ``renamed`` or ``type-changed``.
        path: root-relative path at head (``""`` when deleted).
        old_path: root-relative path at base (``""`` when added).
    """

    status: str
    path: str
    old_path: str = ""


@dataclass
class SpecChange:
    """One spec (deployment identity ``name``) to plan because of a change.

    Attributes:
        name: ``metadata.name`` at head, or at base when deleted (``""`` if unreadable).
        status: ``added``, ``modified``, ``renamed`` (file moved, same name; maybe
            edited), ``deleted``, ``affected`` (file unchanged, a dependency changed) or
            ``unchanged`` (planned only because of ``--all``).
        path: root-relative spec path at head (``""`` when deleted).
        old_path: root-relative spec path at base (``""`` when added).
        reasons: why it is planned, one short sentence each.
        removed_envs: environments whose overlay (``spec.environments.<env>``) the base
            has and the head does not: those deployments are deleted although the spec
            file remains (planned as deletes, counted by the mass-delete guard).
    """

    name: str
    status: str
    path: str = ""
    old_path: str = ""
    reasons: list[str] = field(default_factory=list)
    removed_envs: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        """JSON-ready mapping."""
        return asdict(self)


@dataclass
class ChangeSet:
    """What changed between two revisions, for the specs of one repository.

    Attributes:
        base: full SHA of the merge base the diff starts from.
        requested_base: the ``--base`` argument as given.
        head: full SHA of the head revision, or ``""`` for the working tree.
        files: every changed file under the spec repository root.
        specs: specs to plan, sorted by path (deleted ones by old path).
        diagnostics: warnings about the change itself (a deployment renamed by an edit
            of ``metadata.name``; a deleted spec whose name cannot be read at base).
        shallow: the clone is shallow (for messages).
    """

    base: str
    requested_base: str
    head: str
    files: list[FileChange] = field(default_factory=list)
    specs: list[SpecChange] = field(default_factory=list)
    diagnostics: list[Diagnostic] = field(default_factory=list)

    @property
    def planned(self) -> list[SpecChange]:
        """Changes that exist at head (everything but ``deleted``)."""
        return [s for s in self.specs if s.status != "deleted"]

    @property
    def deleted(self) -> list[SpecChange]:
        """Specs deleted at head (their deployments are planned for deletion)."""
        return [s for s in self.specs if s.status == "deleted"]

    def removed(self, env: str) -> list[SpecChange]:
        """Specs whose ``env`` overlay was removed while the spec file stayed (the
        deployment ``<name>-<env>`` is deleted; whole deleted specs: :attr:`deleted`)."""
        return [s for s in self.specs if s.status != "deleted" and env in s.removed_envs]

    def to_dict(self) -> dict:
        """JSON-ready mapping."""
        return {
            "base": self.base,
            "requested_base": self.requested_base,
            "head": self.head or "working tree",
            "files": [asdict(f) for f in self.files],
            "specs": [s.to_dict() for s in self.specs],
            "diagnostics": [d.to_dict() for d in self.diagnostics],
        }


class RevisionFiles:
    """Read files of one revision of the spec repository: a commit or the working tree.

    Args:
        repo: the repository.
        root: the spec repository root (may be below the work tree's top).
        commit: the revision; ``None`` reads the working tree.
    """

    def __init__(self, repo, root: Path, commit=None) -> None:
        self.repo = repo
        self.root = Path(root)
        self.commit = commit
        self.pre = g.prefix(repo, root)

    def read(self, path: str) -> bytes | None:
        """Bytes of root-relative ``path``, or ``None`` when absent."""
        if self.commit is None:
            try:
                return (self.root / path).read_bytes()
            except OSError:
                return None
        return g.read_blob(self.commit, self.pre + path)

    def spec_files(self, specs_rel: str) -> list[str]:
        """Root-relative spec files (``*.yaml``, ``*.yml``) under ``specs_rel``."""
        if self.commit is None:
            base = self.root / specs_rel
            if not base.is_dir():
                return []
            return sorted(
                p.relative_to(self.root).as_posix()
                for p in base.rglob("*")
                if p.suffix in SPEC_SUFFIXES and p.is_file()
            )
        files = g.list_files(self.commit, self.pre + specs_rel)
        return [f[len(self.pre) :] for f in files if f.endswith(SPEC_SUFFIXES)]


_STATUS = {"A": "added", "D": "deleted", "M": "modified", "R": "renamed", "T": "type-changed"}


def _diff_files(repo, base, head, pre: str, untracked_specs: list[str]) -> list[FileChange]:
    diffs = base.diff(head) if head is not None else base.diff(None)
    out: list[FileChange] = []
    for d in diffs:
        status = _STATUS.get(d.change_type, "modified")
        a = d.a_path if d.a_path and d.a_path.startswith(pre) else None
        b = d.b_path if d.b_path and d.b_path.startswith(pre) else None
        if a is None and b is None:
            continue
        a_rel = a[len(pre) :] if a else ""
        b_rel = b[len(pre) :] if b else ""
        if status == "deleted":
            out.append(FileChange("deleted", "", a_rel))
        elif status == "added":
            out.append(FileChange("added", b_rel, ""))
        elif status == "renamed" and (not a or not b):
            # moved across the root boundary: a plain add or delete from our point of view
            out.append(FileChange("added", b_rel, "") if b else FileChange("deleted", "", a_rel))
        else:
            out.append(FileChange(status, b_rel, a_rel))
    known = {f.path for f in out}
    out.extend(FileChange("added", p, "") for p in untracked_specs if p not in known)
    return sorted(out, key=lambda f: f.path or f.old_path)


def detect_changes(
    config: Config,
    base: str,
    head: str | None = None,
    *,
    shared: Iterable[str] = DEFAULT_SHARED_INPUTS,
    all_specs: bool = False,
) -> ChangeSet:
    """Find the specs to plan between ``base`` and ``head``.

    Args:
        config: repository configuration (``root``, ``specs_dir``, ``policies_dir``,
            ``organization``).
        base: the pull request's base revision (``origin/main``, a SHA...). The diff
            starts at the merge base of ``base`` and ``head``.
        head: the head revision; ``None`` compares with the working tree (tracked files,
            plus untracked spec files under ``specs/``).
        shared: extra root-relative paths every spec depends on (see
            :data:`DEFAULT_SHARED_INPUTS`).
        all_specs: also list every other spec at head as ``unchanged`` (``--all``).

    Returns:
        A :class:`ChangeSet`.

    Raises:
        ModelopsError: (exit 2) not a Git repository; a revision that does not exist (the
            message says when the clone is shallow and how to fetch the history); two
            revisions without a common ancestor.
    """
    repo = g.require_repo(config.root, "--base")
    base_commit = g.resolve_revision(repo, base)
    head_commit = g.resolve_revision(repo, head) if head else None
    tip = head_commit if head_commit is not None else g.head_commit(repo)
    if tip is None:
        raise ModelopsError("the repository has no commits yet; commit the specs first")
    bases = repo.merge_base(base_commit, tip)
    if not bases:
        hint = " (the clone is shallow; fetch the history)" if g.is_shallow(repo) else ""
        raise ModelopsError(
            f"revisions {base!r} and {head or 'HEAD'!r} have no common ancestor{hint}"
        )
    merge_base = bases[0]
    pre = g.prefix(repo, config.root)
    specs_rel = config.rel(config.specs_dir).rstrip("/") + "/"
    untracked = []
    if head_commit is None:
        untracked = [
            p[len(pre) :]
            for p in repo.untracked_files
            if p.startswith(pre + specs_rel) and p.endswith(SPEC_SUFFIXES)
        ]
    files = _diff_files(repo, merge_base, head_commit, pre, untracked)
    old = RevisionFiles(repo, config.root, merge_base)
    new = RevisionFiles(repo, config.root, head_commit)
    changes = ChangeSet(merge_base.hexsha, base, head_commit.hexsha if head_commit else "")
    changes.files = files
    quick = quick_cache_dir(config)  # parsed specs on disk: a new process parses none again

    def is_spec(path: str) -> bool:
        return bool(path) and path.startswith(specs_rel) and path.endswith(SPEC_SUFFIXES)

    changed_paths = {p for f in files for p in (f.path, f.old_path) if p}
    other = {p for p in changed_paths if not is_spec(p)}
    shared_list = shared_inputs(config, shared)
    shared_hit = sorted(p for p in other if _matches(p, shared_list))
    dep_changes = other - set(shared_hit)

    def reasons_for(data: dict | None, old_data: dict | None = None) -> list[str]:
        deps = spec_dependencies(data or {}) | spec_dependencies(old_data or {})
        out = [f"input {p} changed" for p in sorted(deps & dep_changes)]
        if shared_hit:
            out.append(f"shared input changed: {', '.join(shared_hit[:5])}")
        return out

    # 1. spec files that changed, matched by metadata.name across the two revisions.
    added: dict[str, tuple[str, dict | None]] = {}  # name -> (path, data)
    deleted: dict[str, tuple[str, dict | None]] = {}
    result: list[SpecChange] = []
    for f in files:
        if not (is_spec(f.path) or is_spec(f.old_path)):
            continue
        new_data = quick_load(new.read(f.path), quick) if is_spec(f.path) else None
        old_data = quick_load(old.read(f.old_path), quick) if is_spec(f.old_path) else None
        new_name, old_name = spec_name(new_data), spec_name(old_data)
        if not is_spec(f.path):  # deleted, or moved out of specs/
            deleted.setdefault(old_name or f"<unreadable {f.old_path}>", (f.old_path, old_data))
            if not old_name:
                changes.diagnostics.append(
                    Diagnostic(
                        Position(f.old_path),
                        "metadata.name",
                        f"deleted spec has no readable metadata.name at {merge_base.hexsha[:12]}"
                        "; its deployments cannot be planned for deletion by name "
                        "(`modelops status` lists what is deployed)",
                        severity="warning",
                        code="change",
                    )
                )
            continue
        if not is_spec(f.old_path):  # added, or moved into specs/
            added.setdefault(new_name or f"<unnamed {f.path}>", (f.path, new_data))
            continue
        if old_name and new_name and old_name != new_name:
            deleted.setdefault(old_name, (f.old_path, old_data))
            added.setdefault(new_name, (f.path, new_data))
            changes.diagnostics.append(_rename_warning(f.path, f.old_path, old_name, new_name))
            continue
        moved = f.path != f.old_path
        status = "renamed" if moved else "modified"
        why = [f"spec renamed from {f.old_path}" if moved else "spec file changed"]
        result.append(
            _with_removals(
                SpecChange(
                    new_name, status, f.path, f.old_path, why + reasons_for(new_data, old_data)
                ),
                old_data,
                new_data,
            )
        )
    for name in sorted(set(added) & set(deleted)):  # Git saw delete + add: same deployment
        (path, data), (old_path, old_data) = added.pop(name), deleted.pop(name)
        why = [f"spec moved from {old_path} and edited"]
        result.append(
            _with_removals(
                SpecChange(name, "renamed", path, old_path, why + reasons_for(data, old_data)),
                old_data,
                data,
            )
        )
    for name, (path, data) in added.items():
        result.append(SpecChange(name, "added", path, "", ["new spec", *reasons_for(data)]))
    for name, (old_path, _data) in deleted.items():
        result.append(SpecChange(name, "deleted", "", old_path, ["spec deleted"]))

    # 2. specs whose file did not change but whose inputs did.
    touched = {s.path for s in result if s.path}
    if shared_hit or dep_changes or all_specs:
        needles = {posixpath.basename(p).encode() for p in dep_changes}
        for path in new.spec_files(specs_rel):
            if path in touched:
                continue
            raw = new.read(path)
            if shared_hit or all_specs or (raw and any(n in raw for n in needles)):
                data = quick_load(raw, quick)
                why = reasons_for(data)
                if why:
                    result.append(SpecChange(spec_name(data), "affected", path, path, why))
                elif all_specs:
                    result.append(SpecChange(spec_name(data), "unchanged", path, path, []))
    changes.specs = sorted(result, key=lambda s: (s.path or s.old_path, s.status))
    return changes


def overlay_envs(data: dict | None) -> list[str]:
    """The environments a quick-loaded spec has overlays for (``spec.environments`` keys)."""
    spec = (data or {}).get("spec") if isinstance(data, dict) else None
    overlays = spec.get("environments") if isinstance(spec, dict) else None
    return [str(k) for k in overlays] if isinstance(overlays, dict) else []


def _with_removals(change: SpecChange, old_data: dict | None, new_data: dict | None):
    """``change`` with :attr:`SpecChange.removed_envs` set and a reason per removal.

    A head that cannot be read (``new_data`` ``None``) removes nothing here: it is an
    invalid spec, reported by validation, and its deployments are not planned away.
    """
    if new_data is None:
        return change
    kept = set(overlay_envs(new_data))
    change.removed_envs = [e for e in overlay_envs(old_data) if e not in kept]
    change.reasons += [
        f"environment overlay {e} removed: deployment {change.name}-{e} is deleted"
        for e in change.removed_envs
    ]
    return change


def _rename_warning(path: str, old_path: str, old_name: str, new_name: str) -> Diagnostic:
    where = f"{old_path} → {path}" if old_path != path else path
    return Diagnostic(
        Position(path),
        "metadata.name",
        f"metadata.name changed from {old_name!r} to {new_name!r} ({where}): this plans "
        f"deployment {new_name!r} as new and {old_name!r} as deleted (destroyed only by "
        f"`modelops apply --prune`). To keep the running deployment, keep "
        f"metadata.name {old_name!r}.",
        severity="warning",
        code="rename",
    )


#: Up to this many names, :func:`name_conflicts` searches each file's bytes for them and
#: parses only the candidates; beyond it (a full plan of every spec) the searches cost
#: more than reading each file's name (``quick_load`` keeps parsed specs by digest).
NAME_SEARCH_LIMIT = 16


def name_conflicts(
    new: RevisionFiles,
    specs_rel: str,
    names: dict[str, str],
    positions: dict[str, Position] | None = None,
) -> list[Diagnostic]:
    """Specs at head that claim a name another spec file also claims.

    Only the names being planned are checked, by a byte search for each name in every
    spec file followed by a parse of the candidates, so a pull request touching one spec
    of a thousand does not parse the other 999 (beyond :data:`NAME_SEARCH_LIMIT` names,
    each file's name is read instead).

    Args:
        new: the head revision's files.
        specs_rel: root-relative specs directory (``specs/``).
        names: ``{name: spec path}`` of the specs being planned.
        positions: ``{name: Position}`` of each planned spec's ``metadata.name`` (for the
            line and column); the file alone otherwise.

    Returns:
        One error per planned spec whose name is also used by another file, naming both.
    """
    out = []
    wanted = {n.encode(): n for n in names if n}
    if not wanted:
        return out
    search = len(wanted) <= NAME_SEARCH_LIMIT
    for path in new.spec_files(specs_rel):
        raw = new.read(path) or b""
        if search and not any(b in raw and names[n] != path for b, n in wanted.items()):
            continue
        other = spec_name(quick_load(raw))
        if other and other in names and names[other] != path:
            out.append(
                Diagnostic(
                    (positions or {}).get(other, Position(names[other])),
                    "metadata.name",
                    f"name {other!r} is already used by {path}; names must be unique in the "
                    "repository (the name is the deployment's identity: ledger key and stack)",
                    code="duplicate-name",
                )
            )
    return out

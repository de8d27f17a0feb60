"""Change detection between two Git revisions (GitPython).

``modelops plan --base REV [--head REV]`` plans only the specs a pull request touches:

* spec files added, modified, deleted or renamed between the merge base of ``base`` and
  ``head`` (as GitHub's three-dot pull-request diff does) and ``head``;
* every spec *affected* by a change to something it depends on: its model file
  (``spec.model.uri`` when it is a repository path, in the base spec or any environment
  overlay), its smoke request files, the policy library (``policies/**``, which holds the
  waivers), the organisation settings file, and the shared inputs listed in
  :data:`DEFAULT_SHARED_INPUTS` (the service template when the spec repository vendors
  one).

Specs are matched across revisions by ``metadata.name``, not by path, because the name
is the deployment's identity (ledger key, Pulumi stack). So a file that Git sees as
deleted and added (a rename with heavy edits) is still one modified deployment, and a
file whose ``metadata.name`` changed is the deletion of one deployment and the creation
of another, reported with a warning: that is the case that would silently destroy a
running deployment.

Dependencies of a spec whose file did not change are the same at both revisions (the
same bytes), so one pass over the head revision finds every affected spec; the specs
that did change have their dependencies read at both revisions to explain why they are
in the plan.

Two comparisons of what a change does, for the plan: :func:`field_changes` (the
resolved-spec fields of one deployment, old → new; :func:`touches_build` says which the
build digest covers) and :func:`diff_policy_sets` (policies added, removed and changed,
organisation settings and waivers, between the policy sets of two revisions).
"""

from __future__ import annotations

import json
import posixpath
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import yaml

from reconciler.core import git as g
from reconciler.core.config import CONFIG_FILE, Config
from reconciler.core.diagnostics import Diagnostic, ModelopsError, Position
from reconciler.runtime.uris import repo_relative
from reconciler.spec.repo import SPEC_SUFFIXES

#: Repository paths (files, or directories ending in ``/``) that every spec depends on
#: besides the policy library and the organisation settings: the service template,
#: when a spec repository vendors modelops' build templates.
DEFAULT_SHARED_INPUTS: tuple[str, ...] = ("reconciler/build/templates/",)

_SMOKE_FIELDS = ("request",)


def _section_deps(section: dict) -> set[str]:
    out: set[str] = set()
    if not isinstance(section, dict):
        return out
    model = section.get("model")
    if isinstance(model, dict):
        if p := repo_relative(model.get("uri")):
            out.add(p)
    serving = section.get("serving")
    smoke = serving.get("smoke") if isinstance(serving, dict) else None
    if isinstance(smoke, dict):
        if p := repo_relative(smoke.get("request")):
            out.add(p)
        for item in smoke.get("requests") or []:
            if isinstance(item, dict) and (p := repo_relative(item.get("request"))):
                out.add(p)
    return out


def spec_dependencies(data: dict) -> set[str]:
    """Repository files one spec depends on, besides itself and the shared inputs.

    Args:
        data: the spec document as parsed (plain dicts).

    Returns:
        Root-relative POSIX paths: the model file and smoke request files named in the
        base ``spec`` and in every ``spec.environments.<env>`` overlay. URIs
        (``s3://``, ``bentoml:``...) and paths leaving the repository are not files of
        the repository and are left out (validation reports the latter).
    """
    if not isinstance(data, dict):
        return set()
    body = data.get("spec")
    if not isinstance(body, dict):
        return set()
    deps = _section_deps(body)
    envs = body.get("environments")
    if isinstance(envs, dict):
        for overlay in envs.values():
            deps |= _section_deps(overlay or {})
    return deps


def quick_load(raw: bytes | None) -> dict | None:
    """Parse a spec with PyYAML's C safe loader (no positions), or ``None`` if unreadable.

    Used only to find names and dependencies fast; full validation with positions
    happens later, in the load stage, for the specs that are planned.
    """
    if raw is None:
        return None
    try:
        data = yaml.load(raw, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    except (yaml.YAMLError, UnicodeDecodeError):
        return None
    return data if isinstance(data, dict) else None


def spec_name(data: dict | None) -> str:
    """``metadata.name`` of a quickly loaded spec, or ``""``."""
    meta = data.get("metadata") if isinstance(data, dict) else None
    name = meta.get("name") if isinstance(meta, dict) else None
    return name if isinstance(name, str) else ""


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
    """

    name: str
    status: str
    path: str = ""
    old_path: str = ""
    reasons: list[str] = field(default_factory=list)

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
        new_data = quick_load(new.read(f.path)) if is_spec(f.path) else None
        old_data = quick_load(old.read(f.old_path)) if is_spec(f.old_path) else None
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
            SpecChange(new_name, status, f.path, f.old_path, why + reasons_for(new_data, old_data))
        )
    for name in sorted(set(added) & set(deleted)):  # Git saw delete + add: same deployment
        (path, data), (old_path, old_data) = added.pop(name), deleted.pop(name)
        why = [f"spec moved from {old_path} and edited"]
        result.append(
            SpecChange(name, "renamed", path, old_path, why + reasons_for(data, old_data))
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
                data = quick_load(raw)
                why = reasons_for(data)
                if why:
                    result.append(SpecChange(spec_name(data), "affected", path, path, why))
                elif all_specs:
                    result.append(SpecChange(spec_name(data), "unchanged", path, path, []))
    changes.specs = sorted(result, key=lambda s: (s.path or s.old_path, s.status))
    return changes


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


def name_conflicts(
    new: RevisionFiles,
    specs_rel: str,
    names: dict[str, str],
    positions: dict[str, Position] | None = None,
) -> list[Diagnostic]:
    """Specs at head that claim a name another spec file also claims.

    Only the names being planned are checked, by a byte search for each name in every
    spec file followed by a parse of the candidates, so a pull request touching one spec
    of a thousand does not parse the other 999.

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
    for path in new.spec_files(specs_rel):
        raw = new.read(path) or b""
        hits = [n for b, n in wanted.items() if b in raw and names[n] != path]
        if not hits:
            continue
        other = spec_name(quick_load(raw))
        if other in hits:
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


# -- what a pull request changes in a resolved spec -------------------------------------

#: Resolved-spec fields that the build digest covers (``reconciler.build.bento``
#: ``build_inputs``: the deployment name, ``spec.model``, ``spec.serving`` without
#: ``smoke`` and ``slo``, the capture settings, ``spec.data.sensitive_fields``). Used only
#: when the build inputs themselves cannot be computed (a missing model file, say).
BUILD_SPEC_FIELDS: tuple[str, ...] = (
    "metadata.name",
    "spec.model",
    "spec.serving",
    "spec.monitoring.enabled",
    "spec.monitoring.capture",
    "spec.data.sensitive_fields",
)
#: ``spec.serving`` fields that check the service but do not change it (not built in).
BUILD_EXCLUDED_FIELDS: tuple[str, ...] = ("spec.serving.smoke", "spec.serving.slo")


def _under(path: str, prefix: str) -> bool:
    return path == prefix or path.startswith(prefix + ".")


def touches_build(path: str) -> bool:
    """Whether a dotted resolved-spec ``path`` is one the build digest covers.

    From :data:`BUILD_SPEC_FIELDS` minus :data:`BUILD_EXCLUDED_FIELDS` (which mirror
    ``reconciler.build.bento.build_inputs``).
    """
    if any(_under(path, p) for p in BUILD_EXCLUDED_FIELDS):
        return False
    return any(_under(path, p) for p in BUILD_SPEC_FIELDS)


def _flatten(value, prefix: str, out: dict) -> None:
    if isinstance(value, dict) and value:
        for key, item in value.items():
            _flatten(item, f"{prefix}.{key}" if prefix else str(key), out)
    else:
        out[prefix] = value


def field_changes(old: dict | None, new: dict | None) -> list[tuple[str, object, object]]:
    """The fields that differ between two documents, as ``(dotted path, old, new)``.

    Mappings are walked key by key; a list of scalars is one value (overlays replace
    lists whole, so a list is what a spec author changes); a list of mappings is walked
    item by item (``spec.secrets.0.from``). A field present on one side only has
    ``None`` on the other. A value whose type changed (``1`` → ``"1"``) is a change.
    Sorted by path.

    Args:
        old: the resolved document at the base (``Deployment.data``), or ``None``.
        new: the resolved document at the head, or ``None``.
    """
    a: dict = {}
    b: dict = {}
    _flatten(_walk_lists(old or {}), "", a)
    _flatten(_walk_lists(new or {}), "", b)

    def grown(path: str, side: dict) -> bool:  # {} on one side, keys below it on the other
        return path not in side and any(k.startswith(path + ".") for k in side)

    out = []
    for path in sorted(set(a) | set(b)):
        va, vb = a.get(path), b.get(path)
        if (va == {} and grown(path, b)) or (vb == {} and grown(path, a)):
            continue
        if va != vb or type(va) is not type(vb):
            out.append((path, va, vb))
    return out


def _walk_lists(value):
    """Lists of mappings become ``{"0": ..., "1": ...}`` so they are walked item by item."""
    if isinstance(value, dict):
        return {k: _walk_lists(v) for k, v in value.items()}
    if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
        return {str(i): _walk_lists(v) for i, v in enumerate(value)}
    return value


# -- what a pull request changes in the policy set --------------------------------------

WAIVERS_FILE = "waivers.yaml"


@dataclass
class PolicySetPaths:
    """Where the policy set lives at one revision (root-relative POSIX paths).

    Attributes:
        policies: the policies directory (``policies``; ``""`` for the root): its
            ``*.rego`` files and ``waivers.yaml`` are evaluated.
        organization: the organisation settings file (``policies/organization.yaml``).
    """

    policies: str
    organization: str

    def evaluated(self, path: str) -> bool:
        """Whether root-relative ``path`` is a file the policy check reads."""
        if path == self.organization:
            return True
        parent, name = posixpath.split(path)
        return parent == self.policies and (name.endswith(".rego") or name == WAIVERS_FILE)

    def contains(self, path: str) -> bool:
        """Whether ``path`` is under the policies directory or is the organisation file."""
        return (
            path == self.organization or not self.policies or path.startswith(self.policies + "/")
        )


def policy_set_paths(config: Config, files: RevisionFiles | None = None) -> PolicySetPaths | None:
    """The policy set's paths as ``modelops.yaml`` says at a revision.

    Args:
        config: the configuration in use (its paths are the fallback).
        files: the revision to read ``modelops.yaml`` from; ``None`` uses ``config``.

    Returns:
        The paths, or ``None`` when the policies directory or the organisation file is
        outside the repository (then it cannot be read from Git). Keys missing from the
        revision's ``modelops.yaml`` take the same defaults as
        :func:`reconciler.core.config.load_config` (``policies``,
        ``<policies>/organization.yaml``); an unreadable file falls back to ``config``.
    """
    pol = config.rel(config.policies_dir)
    org = config.rel(config.organization) if config.organization else pol + "/organization.yaml"
    raw = files.read(CONFIG_FILE) if files is not None else None
    if files is not None:
        doc = quick_load(raw) if raw and raw.strip() else {}
        if doc is not None:  # an unreadable modelops.yaml: keep the configuration's paths
            pol = doc.get("policies") or "policies"
            org = doc.get("organization") or f"{pol}/organization.yaml"
    pol, org = repo_relative(str(pol)), repo_relative(str(org))
    if pol is None or org is None:
        return None
    return PolicySetPaths("" if pol == "." else pol.rstrip("/"), org)


@dataclass
class PolicySetDiff:
    """What a pull request changes in the policy set (for security reviewers).

    Compared between the merge base and the head: the policies (``*.rego`` with their
    ``# METADATA``), the waivers and the organisation settings. Each list holds
    JSON-ready mappings.

    Attributes:
        files: changed files the policy check reads (root-relative).
        other_files: other changed files under the policies directory (fixture cases,
            README); they do not change what is enforced.
        paths: ``{"base": {...}, "head": {...}}`` when ``modelops.yaml`` moved the
            policies directory or the organisation file, else ``{}``.
        added, removed: ``{"id", "file", "title", "severity", "enforcement",
            "enforcement_by_environment", "waivable"}`` per policy.
        changed: ``{"id", "file", "fields": [{"field", "old", "new"}], "rego_changed"}``
            per policy present on both sides; fields are ``enforcement`` (the default,
            for every environment without an override), ``enforcement in <env>`` (the
            effective value in each environment that has an override on either side),
            ``severity``,
            ``waivable``, ``title``, ``controls``, ``remediation``, ``description``,
            ``file``, ``comments``; ``rego_changed`` is True when the Rego code (from the
            ``package`` line on) differs.
        organization: ``{"key", "old", "new"}`` per changed setting (dotted key under
            the Rego ``data`` document; ``None`` for a side where it is absent); a list
            on both sides also has ``added`` and ``removed`` (its items that came and
            went; both empty when only the order changed).
        waivers_added, waivers_removed: the waiver entries as written.
        waivers_changed: ``{"policy", "deployment", "environment", "fields": [{"field",
            "old", "new"}]}``.
        problems: what could not be read (one sentence each).
        effects: filled by the plan: ``{"deployment", "policy", "base", "head"}`` where
            the results with the base's and the head's policy set differ.
        evaluated_at_base: True when the plan evaluated the head's specs against the
            base's policy set.
    """

    files: list[str] = field(default_factory=list)
    other_files: list[str] = field(default_factory=list)
    paths: dict = field(default_factory=dict)
    added: list[dict] = field(default_factory=list)
    removed: list[dict] = field(default_factory=list)
    changed: list[dict] = field(default_factory=list)
    organization: list[dict] = field(default_factory=list)
    waivers_added: list[dict] = field(default_factory=list)
    waivers_removed: list[dict] = field(default_factory=list)
    waivers_changed: list[dict] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    effects: list[dict] = field(default_factory=list)
    evaluated_at_base: bool = False

    @property
    def changes_enforcement(self) -> bool:
        """True when what is enforced may differ: a policy, waiver or setting changed.

        Edits that change nothing the check reads (comments and formatting in YAML) and
        changes to fixture cases do not count; a changed Rego comment does (the source
        differs, and a reviewer should look).
        """
        return bool(
            self.paths
            or self.added
            or self.removed
            or self.changed
            or self.organization
            or self.waivers_added
            or self.waivers_removed
            or self.waivers_changed
            or self.problems
        )

    @property
    def empty(self) -> bool:
        """True when no file of the policy set or under the policies directory changed."""
        return not (self.files or self.other_files or self.changes_enforcement)

    def to_dict(self) -> dict:
        """JSON-ready mapping (``changes_enforcement`` included)."""
        out = asdict(self)
        out["changes_enforcement"] = self.changes_enforcement
        return out


def _policy_summary(policy) -> dict:
    return {
        "id": policy.id,
        "file": policy.file,
        "title": policy.title,
        "severity": policy.severity,
        "enforcement": policy.enforcement,
        "enforcement_by_environment": dict(policy.enforcement_by_environment),
        "waivable": policy.waivable,
    }


def _rego_code(policy) -> str:
    """The module from its ``package`` line on (the metadata block is compared by field)."""
    return "\n".join(policy.source.splitlines()[max(policy.line - 1, 0) :])


def _policy_fields(old, new, envs: Iterable[str]) -> list[dict]:
    out = []

    def add(name: str, a, b) -> None:
        if a != b:
            out.append({"field": name, "old": a, "new": b})

    add("enforcement", old.enforcement, new.enforcement)
    # Per environment: the effective value wherever either side has an override (where
    # neither has one, the default's change above says it all).
    overridden = [*old.enforcement_by_environment, *new.enforcement_by_environment]
    for env in dict.fromkeys([*(e for e in envs if e in overridden), *overridden]):
        add(f"enforcement in {env}", old.enforcement_for(env), new.enforcement_for(env))
    for name in ("severity", "waivable", "title", "controls", "remediation", "description"):
        add(name, getattr(old, name), getattr(new, name))
    add("file", old.file, new.file)
    return out


def _policy_key(policy) -> str:
    return policy.id or f"(no id) {policy.file}"


def _diff_policies(diff: PolicySetDiff, base_lib, head_lib, envs: list[str]) -> None:
    base = {_policy_key(p): p for p in base_lib.policies}
    head = {_policy_key(p): p for p in head_lib.policies}
    diff.added = [_policy_summary(head[k]) for k in sorted(set(head) - set(base))]
    diff.removed = [_policy_summary(base[k]) for k in sorted(set(base) - set(head))]
    for key in sorted(set(base) & set(head)):
        old, new = base[key], head[key]
        if old.source == new.source and old.file == new.file:
            continue
        fields = _policy_fields(old, new, envs)
        rego = _rego_code(old) != _rego_code(new)
        if not fields and not rego:
            fields = [{"field": "comments", "old": None, "new": None}]
        diff.changed.append(
            {"id": new.id, "file": new.file, "fields": fields, "rego_changed": rego}
        )


def _diff_organization(diff: PolicySetDiff, base_data: dict, head_data: dict) -> None:
    for key, old, new in field_changes(base_data or {}, head_data or {}):
        entry = {"key": key, "old": old, "new": new}
        if isinstance(old, list) and isinstance(new, list):
            # a list of registries, regions, patterns: which items came and went
            before = [json.dumps(v, sort_keys=True) for v in old]
            after = [json.dumps(v, sort_keys=True) for v in new]
            entry["added"] = [v for v, j in zip(new, after, strict=True) if j not in before]
            entry["removed"] = [v for v, j in zip(old, before, strict=True) if j not in after]
        diff.organization.append(entry)


def read_waiver_entries(path: Path) -> tuple[list[dict], str]:
    """The entries of a ``waivers.yaml`` as written, and a problem sentence or ``""``.

    A missing file has no entries. Entries that are not mappings are kept as
    ``{"entry": value}`` so that they still show up in a comparison.
    """
    try:
        raw = path.read_bytes()
    except OSError:
        return [], ""
    try:
        doc = yaml.safe_load(raw)
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        return [], f"{path.name} is not valid YAML ({type(exc).__name__})"
    if doc is None:
        return [], ""
    if not isinstance(doc, dict) or not isinstance(doc.get("waivers") or [], list):
        return [], f"{path.name} is not a mapping with a `waivers` list"
    out = []
    for entry in doc.get("waivers") or []:
        entry = entry if isinstance(entry, dict) else {"entry": entry}
        out.append({str(k): (str(v) if v is not None else None) for k, v in entry.items()})
    return out, ""


def _waiver_key(entry: dict) -> tuple[str, str, str]:
    return (
        str(entry.get("policy") or ""),
        str(entry.get("deployment") or ""),
        str(entry.get("environment") or "*"),
    )


def _keyed(entries: list[dict]) -> dict:
    out: dict = {}
    for entry in entries:
        key = _waiver_key(entry)
        n = 1
        while (key, n) in out:
            n += 1
        out[(key, n)] = entry
    return out


def _diff_waivers(diff: PolicySetDiff, base: list[dict], head: list[dict]) -> None:
    a, b = _keyed(base), _keyed(head)
    diff.waivers_added = [b[k] for k in b if k not in a]
    diff.waivers_removed = [a[k] for k in a if k not in b]
    for k in (k for k in b if k in a):
        old, new = a[k], b[k]
        fields = [
            {"field": f, "old": old.get(f), "new": new.get(f)}
            for f in sorted(set(old) | set(new))
            if old.get(f) != new.get(f)
        ]
        if fields:
            policy, deployment, env = k[0]
            diff.waivers_changed.append(
                {
                    "policy": policy,
                    "deployment": deployment,
                    "environment": None if env == "*" else env,
                    "fields": fields,
                }
            )


def diff_policy_sets(
    base_root: Path,
    base_paths: PolicySetPaths,
    head_root: Path,
    head_paths: PolicySetPaths,
    environments: Iterable[str],
    changed: Iterable[FileChange] = (),
) -> PolicySetDiff:
    """Compare the policy set of two revisions written out to disk.

    Args:
        base_root: the spec repository root of the base revision (on disk).
        base_paths: where the policy set is at the base (:func:`policy_set_paths`).
        head_root: the spec repository root of the head revision (on disk).
        head_paths: where the policy set is at the head.
        environments: the environments of the configuration (enforcement is compared
            per environment).
        changed: the changed files of the pull request (``ChangeSet.files``), sorted
            into :attr:`PolicySetDiff.files` and :attr:`PolicySetDiff.other_files`.

    Returns:
        A :class:`PolicySetDiff`. Metadata is read by
        :func:`reconciler.policy.library.load_library`, so a policy with a metadata
        problem still shows (keyed by its file when it has no id).
    """
    from reconciler.policy.library import load_library

    diff = PolicySetDiff()
    for f in changed:
        for p in dict.fromkeys(x for x in (f.path, f.old_path) if x):
            if base_paths.evaluated(p) or head_paths.evaluated(p):
                diff.files.append(p)
            elif base_paths.contains(p) or head_paths.contains(p):
                diff.other_files.append(p)
    diff.files = sorted(set(diff.files))
    diff.other_files = sorted(set(diff.other_files))
    if base_paths != head_paths:
        diff.paths = {"base": asdict(base_paths), "head": asdict(head_paths)}
    envs = list(environments)
    libs = []
    for root, paths in ((base_root, base_paths), (head_root, head_paths)):
        libs.append(load_library(root / paths.policies, root / paths.organization, root))
    _diff_policies(diff, libs[0], libs[1], envs)
    _diff_organization(diff, libs[0].data, libs[1].data)
    entries = []
    for side, root, paths in (("base", base_root, base_paths), ("head", head_root, head_paths)):
        items, problem = read_waiver_entries(root / paths.policies / WAIVERS_FILE)
        if problem:
            diff.problems.append(f"{side}: {problem}")
        entries.append(items)
    _diff_waivers(diff, entries[0], entries[1])
    return diff

"""What a pull request changes in the policy set: policies, waivers, organisation settings.

:func:`policy_set_paths` says where the policy set is at a revision (``modelops.yaml``);
:func:`diff_policy_sets` compares the policy sets of two revisions written out to disk
(:class:`PolicySetDiff`, for security reviewers).
"""

from __future__ import annotations

import json
import posixpath
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from reconciler.core.config import CONFIG_FILE, Config
from reconciler.core.yaml import YamlLoadError, load_yaml
from reconciler.gitops.changes import FileChange, RevisionFiles
from reconciler.gitops.fields import field_changes
from reconciler.policy.library import load_library
from reconciler.runtime.uris import repo_relative
from reconciler.spec.files import quick_load

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
    if not raw.strip():
        return [], ""
    try:
        doc, _ = load_yaml(raw, path.name)
    except YamlLoadError as exc:  # the one reader: duplicate keys, alias bombs, YAML 1.1
        return [], f"{path.name} is not valid YAML: {exc.diagnostic}"
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

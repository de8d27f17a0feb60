"""Waivers: reviewed, time-boxed exceptions to a policy for one deployment.

``policies/waivers.yaml`` entries (policy, deployment, environment, reason, approver,
ticket, expires); a waived violation is reported as ``waived``, and a waiver that is
expired, incomplete, self-approved or unused is a finding that waives nothing.
Format and rules: ``docs/policy.md``.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from reconciler.core.config import load_config
from reconciler.core.diagnostics import Diagnostic, ModelopsError, Position
from reconciler.core.document import get_path
from reconciler.core.yaml import YamlLoadError, display_path, load_yaml
from reconciler.spec.loader import load_spec

MAX_WAIVER_DAYS = 90  # the longest a waiver may run ahead of today (issue 3)
EXPIRING_SOON_DAYS = 30  # `policy report` lists waivers expiring within this many days
_FIELDS = {"policy", "deployment", "environment", "reason", "approver", "ticket", "expires"}


@dataclass
class Waiver:
    """One waiver entry.

    Attributes:
        policy: policy id; ``deployment``: spec name; ``environment``: ``None`` = every one.
        reason, approver, ticket: review trail (all three required).
        expires: last day the waiver applies (inclusive), or ``None`` when malformed.
        position: where the entry starts in waivers.yaml.
        valid: ``False`` when a problem was found; an invalid waiver waives nothing.
        used: set when it matched at least one violation in this run.
    """

    policy: str
    deployment: str
    environment: str | None
    reason: str
    approver: str
    ticket: str
    expires: dt.date | None
    position: Position
    valid: bool = True
    used: bool = False

    def matches(self, policy_id: str, deployment: str, env: str) -> bool:
        """Whether this waiver is for ``policy_id`` on ``deployment`` in ``env``."""
        return (
            self.policy == policy_id
            and self.deployment == deployment
            and (self.environment is None or self.environment == env)
        )

    def to_dict(self) -> dict:
        """JSON-ready mapping (dates as ISO strings)."""
        return {
            "policy": self.policy,
            "deployment": self.deployment,
            "environment": self.environment,
            "reason": self.reason,
            "approver": self.approver,
            "ticket": self.ticket,
            "expires": self.expires.isoformat() if self.expires else None,
            "file": self.position.file,
            "line": self.position.line,
        }


@dataclass
class WaiverSet:
    """The waivers of one file and the problems found in it."""

    waivers: list[Waiver] = field(default_factory=list)
    diagnostics: list[Diagnostic] = field(default_factory=list)

    def find(self, policy_id: str, deployment: str, env: str) -> Waiver | None:
        """The first valid waiver matching the violation, or ``None``."""
        for waiver in self.waivers:
            if waiver.valid and waiver.matches(policy_id, deployment, env):
                return waiver
        return None


def _date(value) -> dt.date | None:
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    if isinstance(value, str):
        try:
            return dt.date.fromisoformat(value.strip())
        except ValueError:
            return None
    return None


_ADDRESS = re.compile(r"<([^<>]+)>\s*$")

OwnerLookup = Callable[[str], list[tuple[str, str]]]
"""``(deployment name) -> [(metadata.owner, spec file), ...]`` of the specs with that name."""


def _identity(value: str) -> str:
    """An approver or owner as compared for self-approval: the address of
    ``Name <address>`` (else the whole value), trimmed and lower-cased."""
    match = _ADDRESS.search(value)
    return (match.group(1) if match else value).strip().lower()


def spec_owners(specs_dir: Path, root: Path) -> OwnerLookup:
    """An :data:`OwnerLookup` over the spec files under ``specs_dir`` (``*.yaml``/``*.yml``).

    A byte search picks the candidate files for a name, so only they are parsed; answers
    are cached per name. Files that do not parse are skipped (``modelops validate``
    reports them). Specs without a string ``metadata.owner`` contribute nothing.
    """

    cache: dict[str, list[tuple[str, str]]] = {}

    def lookup(name: str) -> list[tuple[str, str]]:
        if name in cache:
            return cache[name]
        found: list[tuple[str, str]] = []
        if name and specs_dir.is_dir():
            needle = name.encode()
            for path in sorted(specs_dir.rglob("*")):
                if path.suffix not in (".yaml", ".yml") or not path.is_file():
                    continue
                try:
                    if needle not in path.read_bytes():
                        continue
                    spec = load_spec(path, root)
                except (OSError, YamlLoadError):
                    continue
                owner = get_path(spec.data, "metadata.owner")
                if spec.name == name and isinstance(owner, str) and owner.strip():
                    found.append((owner.strip(), spec.file))
        cache[name] = found
        return found

    return lookup


def _repository_owners(root: Path) -> OwnerLookup:
    """:func:`spec_owners` of the specs directory that ``modelops.yaml`` at ``root``
    names (``specs:``, default ``specs/``)."""

    try:
        config = load_config(root)
        specs_dir = config.specs_dir if config.root == Path(root).resolve() else None
    except ModelopsError:
        specs_dir = None
    return spec_owners(specs_dir or Path(root) / "specs", root)


def load_waivers(
    path: Path,
    root: Path,
    policies: dict[str, bool],
    today: dt.date,
    owners: OwnerLookup | None = None,
) -> WaiverSet:
    """Read and check ``waivers.yaml``.

    Args:
        path: the waivers file; a missing file means no waivers (not an error).
        root: repository root, for display paths.
        policies: policy id → waivable, for the ids known to the library.
        today: the date expiry is measured against (UTC today in the CLI).
        owners: the owners of a deployment name, for the self-approval check; default
            :func:`spec_owners` of the repository's specs directory (``modelops.yaml``
            at ``root``, ``specs:``).

    Returns:
        A :class:`WaiverSet`; every problem is a diagnostic (code ``waiver``, severity
        error) at the entry's file and line, and marks the waiver invalid. Problems: an
        unknown field; a missing, unknown or non-waivable policy; a missing deployment,
        reason, approver or ticket; an approver who owns the deployment
        (``metadata.owner``, compared case-insensitively, ``Name <address>`` by its
        address); a missing, malformed, past or more than :data:`MAX_WAIVER_DAYS` days
        ahead expiry.
    """

    if owners is None:
        owners = _repository_owners(root)

    result = WaiverSet()
    if not path.is_file():
        return result
    shown = display_path(path, root)
    raw = path.read_bytes()
    try:
        doc, positions = load_yaml(raw, shown)
    except YamlLoadError as exc:
        result.diagnostics.append(exc.diagnostic)
        return result
    if doc is None:
        return result
    if not isinstance(doc, dict) or not isinstance(doc.get("waivers", []), list):
        result.diagnostics.append(
            Diagnostic(
                Position(shown, 1, 1),
                "waivers",
                "expected a mapping with a `waivers` list",
                code="waiver",
            )
        )
        return result
    for i, entry in enumerate(doc.get("waivers") or []):
        pos = positions.get(("waivers", i), Position(shown, 1, 1))
        problems: list[tuple[str, str]] = []
        if not isinstance(entry, dict):
            result.diagnostics.append(
                Diagnostic(
                    pos,
                    f"waivers.{i}",
                    "a waiver must be a mapping with policy, "
                    "deployment, reason, approver, ticket and expires",
                    code="waiver",
                )
            )
            continue

        def text(key: str, entry: dict = entry) -> str:
            value = entry.get(key)
            return value.strip() if isinstance(value, str) else ""

        unknown = sorted(set(entry) - _FIELDS)
        if unknown:
            problems.append(
                (
                    unknown[0],
                    f"unknown field(s) {', '.join(map(str, unknown))}; "
                    f"valid: {', '.join(sorted(_FIELDS))}",
                )
            )
        env = entry.get("environment")
        waiver = Waiver(
            policy=text("policy"),
            deployment=text("deployment"),
            environment=str(env) if env is not None else None,
            reason=text("reason"),
            approver=text("approver"),
            ticket=text("ticket"),
            expires=_date(entry.get("expires")),
            position=pos,
        )
        if not waiver.policy:
            problems.append(("policy", "policy id is missing"))
        elif waiver.policy not in policies:
            problems.append(("policy", f"unknown policy id {waiver.policy!r}"))
        elif not policies[waiver.policy]:
            problems.append(("policy", f"policy {waiver.policy} is not waivable; fix the spec"))
        if not waiver.deployment:
            problems.append(("deployment", "deployment (the spec's metadata.name) is missing"))
        if not waiver.reason:
            problems.append(("reason", "reason is missing; say why the exception is acceptable"))
        if not waiver.approver:
            problems.append(("approver", "approver is missing; name who accepted the risk"))
        elif waiver.deployment:
            for owner, spec_file in owners(waiver.deployment):
                if _identity(owner) == _identity(waiver.approver):
                    problems.append(
                        (
                            "approver",
                            f"approver {waiver.approver} owns {waiver.deployment} "
                            f"(metadata.owner in {spec_file}); a waiver is approved by "
                            "someone other than the deployment's owner (no self-approval)",
                        )
                    )
                    break
        if not waiver.ticket:
            problems.append(
                (
                    "ticket",
                    "ticket is missing; link the review that accepted the risk (e.g. SEC-1234)",
                )
            )
        if waiver.expires is None:
            problems.append(
                (
                    "expires",
                    f"expires {entry.get('expires')!r} is missing or not a date; write YYYY-MM-DD",
                )
            )
        elif waiver.expires < today:
            problems.append(
                (
                    "expires",
                    f"waiver expired on {waiver.expires.isoformat()}; "
                    "renew it (new review) or fix the spec",
                )
            )
        elif waiver.expires > today + dt.timedelta(days=MAX_WAIVER_DAYS):
            problems.append(
                (
                    "expires",
                    f"expires {waiver.expires.isoformat()} is more than "
                    f"{MAX_WAIVER_DAYS} days ahead; waivers are time-boxed",
                )
            )
        for key, message in problems:
            waiver.valid = False
            result.diagnostics.append(
                Diagnostic(
                    positions.get(("waivers", i, key), pos),
                    f"waivers.{i}.{key}",
                    message,
                    code="waiver",
                )
            )
        result.waivers.append(waiver)
    return result


def unused_waiver_diagnostics(
    waivers: WaiverSet, checked: set[tuple[str, str]]
) -> list[Diagnostic]:
    """Findings for valid waivers that matched nothing although their scope was checked.

    Args:
        waivers: the waivers, after matching (``used`` set).
        checked: the (deployment name, environment) pairs evaluated in this run; a waiver
            for a deployment or environment not checked is not judged here (see
            :func:`unknown_scope_diagnostics` for scopes that do not exist at all).
    """
    out = []
    for i, waiver in enumerate(waivers.waivers):
        if not waiver.valid or waiver.used:
            continue
        in_scope = any(
            name == waiver.deployment and (waiver.environment in (None, env))
            for name, env in checked
        )
        if in_scope:
            scope = waiver.deployment + (f" in {waiver.environment}" if waiver.environment else "")
            out.append(
                Diagnostic(
                    waiver.position,
                    f"waivers.{i}",
                    f"waiver for {waiver.policy} on {scope} matches no violation; remove it",
                    code="waiver",
                )
            )
    return out


def unknown_scope_diagnostics(
    waivers: WaiverSet,
    checked_names: set[str],
    environments: list[str],
    deployment_exists,
) -> list[Diagnostic]:
    """Findings for waivers whose environment or deployment does not exist at all.

    Such a waiver can never match, whatever is checked, so it is a finding even when its
    scope was not part of this run.

    Args:
        waivers: the loaded waivers.
        checked_names: deployment names evaluated in this run (known to exist).
        environments: the repository's environments (``modelops.yaml``).
        deployment_exists: ``(name) -> bool`` for the other names.
    """
    out = []
    for i, waiver in enumerate(waivers.waivers):
        if not waiver.valid or waiver.used:
            continue
        if waiver.environment not in (None, *environments):
            out.append(
                Diagnostic(
                    waiver.position,
                    f"waivers.{i}.environment",
                    f"waiver names environment {waiver.environment!r}, which does not exist; "
                    f"known environments: {', '.join(environments)}",
                    code="waiver",
                )
            )
        elif waiver.deployment not in checked_names and not deployment_exists(waiver.deployment):
            out.append(
                Diagnostic(
                    waiver.position,
                    f"waivers.{i}.deployment",
                    f"waiver names deployment {waiver.deployment!r}, which no spec defines "
                    "(give a spec's metadata.name; wildcards are not supported)",
                    code="waiver",
                )
            )
    return out

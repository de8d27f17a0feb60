"""The policy library: Rego files with OPA ``# METADATA`` blocks, and the organisation data.

The metadata block (title, ``custom.id``, ``severity``, ``enforcement``...) is parsed
here (regopy has no ``rego.metadata``); a policy with a missing or unknown value is a
policy error, never skipped. The keys read: ``docs/policy.md``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from reconciler.core.diagnostics import Diagnostic, Position
from reconciler.core.yaml import YamlLoadError, display_path, load_yaml
from reconciler.policy.worker import PolicyModule

SEVERITIES = ("low", "medium", "high", "critical")
ENFORCEMENTS = ("mandatory", "advisory", "disabled")
ID_PATTERN = re.compile(r"^[A-Z][A-Z0-9]*-[0-9]{3}$")
_PACKAGE = re.compile(r"^package\s+([A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*)\s*$")
# SARIF ``security-severity`` (GitHub code scanning maps 9.0+ critical, 7.0+ high,
# 4.0+ medium, else low: docs.github.com, "SARIF support for code scanning").
SECURITY_SEVERITY = {"critical": "9.5", "high": "8.0", "medium": "5.5", "low": "3.0"}


@dataclass
class Policy:
    """One policy: a Rego module and its metadata.

    Attributes:
        id: ``custom.id`` (``MDL-001``); ``""`` when missing (then ``problems`` says so).
        title, description, remediation: text from the metadata block.
        severity: ``low`` | ``medium`` | ``high`` | ``critical``.
        enforcement: the default ``mandatory`` | ``advisory`` | ``disabled``.
        enforcement_by_environment: environment → enforcement, overriding the default.
        controls: compliance references (``PCI-DSS 1.3.1``, ``SOC 2 CC6.1``...).
        waivable: ``False`` when waivers may never apply.
        package: the Rego package; the rule evaluated is ``data.<package>.deny``.
        file: display path of the ``.rego`` file; ``line``: line of the ``package`` line.
        source: the module text.
        problems: diagnostics about the metadata (empty when the policy is usable).
    """

    id: str
    title: str
    file: str
    line: int
    source: str
    package: str = ""
    description: str = ""
    severity: str = ""
    enforcement: str = ""
    enforcement_by_environment: dict[str, str] = field(default_factory=dict)
    controls: list[str] = field(default_factory=list)
    remediation: str = ""
    waivable: bool = True
    problems: list[Diagnostic] = field(default_factory=list)

    def enforcement_for(self, env: str) -> str:
        """The effective enforcement in ``env`` (per-environment override or default)."""
        return self.enforcement_by_environment.get(env, self.enforcement)

    @property
    def position(self) -> Position:
        """Where the policy is declared (its ``package`` line)."""
        return Position(self.file, self.line, 1)

    @property
    def security_severity(self) -> str:
        """SARIF ``security-severity`` score (0.0-10.0) for :attr:`severity`."""
        return SECURITY_SEVERITY.get(self.severity, "5.5")

    def module(self) -> PolicyModule:
        """The module as the worker compiles it."""
        return PolicyModule(self.id, self.file, self.source, self.package)

    def to_dict(self) -> dict:
        """JSON-ready metadata (no source text)."""
        return {
            "id": self.id,
            "title": self.title,
            "description": self.description,
            "severity": self.severity,
            "enforcement": self.enforcement,
            "enforcement_by_environment": dict(self.enforcement_by_environment),
            "controls": list(self.controls),
            "remediation": self.remediation,
            "waivable": self.waivable,
            "file": self.file,
            "line": self.line,
        }


@dataclass
class PolicyLibrary:
    """Every policy of a policies directory, plus the organisation data they read.

    Attributes:
        policies: in file order; include the ones with metadata problems.
        data: the organisation settings (the Rego ``data`` document), JSON-ready.
        diagnostics: problems with the library itself (metadata, duplicated ids, the
            organisation file); each is a policy error that fails the check.
    """

    policies: list[Policy] = field(default_factory=list)
    data: dict = field(default_factory=dict)
    diagnostics: list[Diagnostic] = field(default_factory=list)

    @property
    def usable(self) -> list[Policy]:
        """Policies whose metadata is complete and whose id is unique."""
        return [p for p in self.policies if not p.problems]

    def get(self, policy_id: str) -> Policy | None:
        """The policy with this id, or ``None``."""
        return next((p for p in self.policies if p.id == policy_id), None)


def _metadata_block(lines: list[str]) -> tuple[str | None, int, int]:
    """Find the ``# METADATA`` block before ``package``: (yaml text, first line, package line)."""
    pkg_line = next((i for i, line in enumerate(lines) if _PACKAGE.match(line.strip())), -1)
    if pkg_line < 0:
        return None, 0, 0
    start = None
    for i in range(pkg_line - 1, -1, -1):
        stripped = lines[i].strip()
        if not stripped.startswith("#"):
            break
        if stripped == "# METADATA":
            start = i
            break
    if start is None:
        return None, 0, pkg_line + 1
    body = []
    for line in lines[start + 1 : pkg_line]:
        text = line.strip()[1:]
        body.append(text[1:] if text.startswith(" ") else text)
    return "\n".join(body), start + 1, pkg_line + 1


def parse_policy(source: str, file: str) -> Policy:
    """Parse one ``.rego`` file's package and metadata block.

    Args:
        source: the module text.
        file: display path (``policies/no_public_sensitive_data.rego``).

    Returns:
        A :class:`Policy`; anything missing or invalid is in ``policy.problems`` as a
        diagnostic at the file and line concerned (code ``policy-metadata``).
    """
    # Lines as rego-cpp sees them: only "\n" ends one (a "\r" before it is dropped).
    # str.splitlines() also splits at \f, \v, \x1c-\x1e, \x85, U+2028 and U+2029, so a
    # comment holding one of those could show a package line rego-cpp never reads.
    lines = [line.removesuffix("\r") for line in source.split("\n")]
    text, meta_line, pkg_line = _metadata_block(lines)
    policy = Policy(id="", title="", file=file, line=pkg_line or 1, source=source)

    def problem(message: str, line: int | None = None) -> None:
        policy.problems.append(
            Diagnostic(
                Position(file, line or meta_line or pkg_line or 1, 1),
                "",
                message,
                code="policy-metadata",
            )
        )

    if not pkg_line:
        problem("no `package` line; a policy is one Rego module with a package", 1)
        return policy
    policy.package = _PACKAGE.match(lines[pkg_line - 1].strip()).group(1)
    if text is None:
        problem(
            "no `# METADATA` block right before `package`; every policy needs one with "
            "title and custom.id, custom.severity and custom.enforcement",
            pkg_line,
        )
        return policy
    try:
        # the one YAML reader: a duplicated key here could turn a mandatory policy advisory
        meta = load_yaml(text, file)[0] if text.strip() else {}
    except YamlLoadError as exc:
        where = exc.diagnostic.position
        # the block's line n is the file's line meta_line + n, after its "# " prefix
        line = meta_line + where.line if where.line else meta_line
        body_line = lines[line - 1] if 0 < line <= len(lines) else ""
        prefix = len(body_line) - len(body_line.lstrip()) + (2 if "# " in body_line else 1)
        policy.problems.append(
            Diagnostic(
                Position(file, line, (where.col or 1) + prefix),
                exc.diagnostic.field,
                "the METADATA block: "
                # "first defined at line n" counts block lines: make it the file's line
                + re.sub(
                    r"at line (\d+)",
                    lambda m: f"at line {meta_line + int(m.group(1))}",
                    exc.diagnostic.message,
                ),
                code="policy-metadata",
            )
        )
        return policy
    if not isinstance(meta, dict):
        problem("the METADATA block must be a YAML mapping (title, description, custom)")
        return policy
    custom = meta.get("custom") or {}
    if not isinstance(custom, dict):
        problem("METADATA custom must be a mapping (id, severity, enforcement, ...)")
        custom = {}
    policy.title = str(meta.get("title") or "")
    policy.description = str(meta.get("description") or "").strip()
    policy.remediation = str(custom.get("remediation") or "").strip()
    pid = custom.get("id")
    if not isinstance(pid, str) or not ID_PATTERN.match(pid):
        problem(f"custom.id {pid!r} is missing or malformed; expected an id like MDL-001")
    else:
        policy.id = pid
    if not policy.title:
        problem("title is missing; give the policy a one-line title")
    sev = custom.get("severity")
    if sev not in SEVERITIES:
        problem(f"custom.severity {sev!r} is missing or invalid; valid: {', '.join(SEVERITIES)}")
    else:
        policy.severity = sev
    enf = custom.get("enforcement")
    if enf not in ENFORCEMENTS:
        problem(
            f"custom.enforcement {enf!r} is missing or invalid; valid: {', '.join(ENFORCEMENTS)}"
        )
    else:
        policy.enforcement = enf
    by_env = custom.get("enforcement_by_environment") or {}
    if not isinstance(by_env, dict) or any(v not in ENFORCEMENTS for v in by_env.values()):
        problem(
            "custom.enforcement_by_environment must map environment names to "
            f"{', '.join(ENFORCEMENTS)}"
        )
    else:
        policy.enforcement_by_environment = {str(k): v for k, v in by_env.items()}
    controls = custom.get("controls") or []
    if not isinstance(controls, list) or not all(isinstance(c, str) for c in controls):
        problem("custom.controls must be a list of strings (e.g. 'PCI-DSS 1.3.1')")
    else:
        policy.controls = list(controls)
    waivable = custom.get("waivable", True)
    if not isinstance(waivable, bool):
        problem(f"custom.waivable must be true or false, not {waivable!r}")
    else:
        policy.waivable = waivable
    return policy


def load_library(policies_dir: Path, organization: Path | None, root: Path) -> PolicyLibrary:
    """Load every ``*.rego`` file directly in ``policies_dir`` and the organisation file.

    Args:
        policies_dir: the policies directory (``policies/``); ``tests/`` below it holds
            YAML fixture cases, not Rego.
        organization: the organisation settings file (YAML mapping with an
            ``organization`` key); read as the Rego ``data`` document.
        root: the repository root, for display paths.

    Returns:
        A :class:`PolicyLibrary`. Problems (no policies, a metadata error, a duplicated
        id, a missing or invalid organisation file, a Rego ``*_test.rego`` file) are in
        ``diagnostics``; they are errors that fail the check.
    """

    lib = PolicyLibrary()
    files = sorted(policies_dir.glob("*.rego")) if policies_dir.is_dir() else []
    if not files:
        lib.diagnostics.append(
            Diagnostic(
                Position(display_path(policies_dir, root)),
                "",
                "no policies (*.rego) found; an empty policy set would pass everything",
                code="policy-library",
            )
        )
    seen: dict[str, Policy] = {}
    for path in files:
        shown = display_path(path, root)
        if path.name.endswith("_test.rego"):
            lib.diagnostics.append(
                Diagnostic(
                    Position(shown, 1, 1),
                    "",
                    "Rego test files are not run (regopy crashes on `with`); write a "
                    "YAML fixture case in policies/tests/ instead",
                    code="policy-library",
                )
            )
            continue
        try:
            source = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            lib.diagnostics.append(
                Diagnostic(Position(shown), "", f"cannot read policy: {exc}", code="policy-library")
            )
            continue
        policy = parse_policy(source, shown)
        if policy.id and policy.id in seen:
            first = seen[policy.id]
            policy.problems.append(
                Diagnostic(
                    policy.position,
                    "",
                    f"duplicated policy id {policy.id} (also in {first.file}:{first.line});"
                    " every policy needs its own id",
                    code="policy-metadata",
                )
            )
            if not first.problems:
                first.problems.append(
                    Diagnostic(
                        first.position,
                        "",
                        f"duplicated policy id {policy.id} (also in {policy.file})",
                        code="policy-metadata",
                    )
                )
        elif policy.id:
            seen[policy.id] = policy
        if policy.package and any(
            p.package == policy.package for p in lib.policies if p is not policy
        ):
            policy.problems.append(
                Diagnostic(
                    policy.position,
                    "",
                    f"package {policy.package} is used by another policy; use one "
                    "package per policy",
                    code="policy-metadata",
                )
            )
        lib.policies.append(policy)
    lib.policies.sort(key=lambda p: (p.id or "~", p.file))
    for policy in lib.policies:
        lib.diagnostics.extend(policy.problems)
    if organization is None or not organization.is_file():
        shown = display_path(organization, root) if organization else "policies/organization.yaml"
        lib.diagnostics.append(
            Diagnostic(
                Position(shown),
                "",
                "organisation settings file not found; policies read allowed "
                "registries, regions and ceilings from it (config: organization)",
                code="policy-library",
            )
        )
    else:
        shown = display_path(organization, root)
        try:
            doc, _ = load_yaml(organization.read_bytes(), shown)
        except YamlLoadError as exc:
            lib.diagnostics.append(exc.diagnostic)
            doc = None
        if doc is not None and not (
            isinstance(doc, dict) and isinstance(doc.get("organization"), dict)
        ):
            lib.diagnostics.append(
                Diagnostic(
                    Position(shown, 1, 1),
                    "",
                    "expected a mapping with an `organization` mapping (the settings "
                    "policies read as data.organization)",
                    code="policy-library",
                )
            )
        elif doc is not None:
            lib.data = doc
    return lib

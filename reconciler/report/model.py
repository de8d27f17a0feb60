"""The one value every report writer takes: a :class:`FindingSet` (results in, text out).

Like Conftest's ``output`` package, each format is one module with a ``write(findings)``
function, and :mod:`reconciler.report.findings` holds the table from format name to
writer. Spec diagnostics (``modelops validate``) and policy reports (``modelops policy
check``) are both turned into a :class:`FindingSet` first, so every format serves both.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from reconciler.core.diagnostics import Diagnostic

BLOCKING_STATUSES = ("fail", "error")


@dataclass
class Finding:
    """One result to report.

    Attributes:
        rule_id: stable id (policy id such as ``MDL-001``, or a check code such as
            ``schema``); SARIF ``ruleId``.
        message: one line for the user (what is wrong, what would be valid).
        status: ``fail`` | ``error`` | ``warn`` | ``waived`` | ``pass``.
        file, line, col: where (line/col 0 when unknown); ``field``: dotted path.
        deployment, env: the deployment key and environment (``""`` for spec findings).
        title: the rule's title.
        waiver: the waiver's fields (``approver``, ``expires``, ``reason``, ``ticket``)
            for ``waived`` results.
    """

    rule_id: str
    message: str
    status: str
    file: str
    line: int = 0
    col: int = 0
    field: str = ""
    deployment: str = ""
    env: str = ""
    title: str = ""
    waiver: dict | None = None

    @property
    def blocking(self) -> bool:
        """``fail`` and ``error`` block."""
        return self.status in BLOCKING_STATUSES

    @property
    def level(self) -> str:
        """SARIF/GitHub level: ``error`` (blocking), ``warning`` (warn) or ``note`` (waived)."""
        if self.blocking:
            return "error"
        return "note" if self.status in ("waived", "pass") else "warning"

    @property
    def location(self) -> str:
        """``file:line:col`` (or just ``file`` when the line is unknown)."""
        return f"{self.file}:{self.line}:{self.col}" if self.line else self.file

    def to_dict(self) -> dict:
        """JSON-ready mapping (the keys of ``Diagnostic.to_dict`` plus policy fields)."""
        out = {
            "file": self.file,
            "line": self.line,
            "col": self.col,
            "field": self.field,
            "message": self.message,
            "severity": "error" if self.blocking else "warning",
            "code": self.rule_id,
            "status": self.status,
        }
        if self.deployment:
            out.update(deployment=self.deployment, environment=self.env, title=self.title)
        if self.waiver:
            out["waiver"] = self.waiver
        return out


@dataclass
class Rule:
    """What a rule is, for formats that describe rules (SARIF, markdown).

    Attributes:
        id, title, description, remediation: text.
        severity: ``low`` | ``medium`` | ``high`` | ``critical`` (``""`` for spec checks).
        security_severity: SARIF ``security-severity`` score as a string (``"8.0"``).
        controls: compliance references; ``file``/``line``: where the rule is defined.
    """

    id: str
    title: str = ""
    description: str = ""
    remediation: str = ""
    severity: str = ""
    security_severity: str = ""
    controls: list[str] = field(default_factory=list)
    file: str = ""
    line: int = 0


@dataclass
class FindingSet:
    """Everything one command reports.

    Attributes:
        tool: the reporting tool's name (``modelops-policy``).
        findings: every result, passes included (writers choose what to show).
        rules: rule id → :class:`Rule`.
        extra: additional JSON members (the policy report's full document).
        title: heading for human formats.
    """

    tool: str
    findings: list[Finding] = field(default_factory=list)
    rules: dict[str, Rule] = field(default_factory=dict)
    extra: dict = field(default_factory=dict)
    title: str = "modelops"

    @property
    def blocking(self) -> bool:
        """Any blocking finding."""
        return any(f.blocking for f in self.findings)

    @property
    def problems(self) -> list[Finding]:
        """Findings other than passes."""
        return [f for f in self.findings if f.status != "pass"]

    @property
    def problems_once(self) -> list[Finding]:
        """:attr:`problems`, with an engine error that is the same on many deployments
        (same rule, same message, no field: a policy that does not compile, a policy
        quarantined after a crash) shown once, as "<first deployment> and N more".

        For line-per-finding formats (text, GitHub annotations), where a library of one
        broken policy would otherwise print a line per deployment. Counts, verdicts and
        the other formats keep every finding.
        """
        out: list[Finding] = []
        seen: dict[tuple[str, str], int] = {}
        extra: dict[int, int] = {}
        for f in self.problems:
            if f.status == "error" and f.deployment and not f.field:
                key = (f.rule_id, f.message)
                if key in seen:
                    extra[seen[key]] = extra.get(seen[key], 0) + 1
                    continue
                seen[key] = len(out)
            out.append(f)
        for index, more in extra.items():
            first = out[index]
            out[index] = replace(first, deployment=f"{first.deployment} and {more} more")
        return out

    def counts(self) -> dict[str, int]:
        """Findings per status."""
        out = dict.fromkeys(("fail", "error", "warn", "waived", "pass"), 0)
        for f in self.findings:
            out[f.status] = out.get(f.status, 0) + 1
        return out


def from_diagnostics(diags: list[Diagnostic], tool: str) -> FindingSet:
    """Spec diagnostics as findings: ``error`` → status ``fail``, ``warning`` → ``warn``."""
    fs = FindingSet(tool=tool, title=tool)
    for d in diags:
        fs.findings.append(
            Finding(
                rule_id=d.code,
                message=d.message,
                status="fail" if d.severity == "error" else "warn",
                file=d.position.file,
                line=d.position.line,
                col=d.position.col,
                field=d.field,
            )
        )
        fs.rules.setdefault(d.code, Rule(id=d.code, title=d.code))
    return fs


def from_policy_report(report, tool: str = "modelops-policy") -> FindingSet:
    """A :class:`~reconciler.policy.PolicyReport` as findings.

    Library and waiver problems and spec errors become ``error`` findings (rule ids
    ``policy-library``, ``policy-metadata``, ``policy-compile``, ``waiver``, or the
    diagnostic's code); spec warnings become ``warn`` (advisory) findings, as ``validate``
    reports them; every result becomes one finding.
    """
    fs = FindingSet(tool=tool, title="modelops policy check", extra=report.to_dict())
    for p in report.policies:
        if p.id:
            fs.rules[p.id] = Rule(
                id=p.id,
                title=p.title,
                description=p.description,
                remediation=p.remediation,
                severity=p.severity,
                security_severity=p.security_severity,
                controls=list(p.controls),
                file=p.file,
                line=p.line,
            )
    problems = [*report.spec_diagnostics, *report.library_diagnostics, *report.waiver_diagnostics]
    for d in problems:
        # a spec warning (validate's severity "warning") is advisory here as in validate:
        # it neither blocks nor shows as an error in any writer (SARIF note, GitHub warning)
        error = d.severity == "error"
        fs.rules.setdefault(
            d.code,
            Rule(
                id=d.code,
                title=d.code,
                severity="high" if error else "low",
                security_severity="7.0" if error else "2.0",
            ),
        )
        fs.findings.append(
            Finding(
                rule_id=d.code,
                message=d.message,
                status="error" if error else "warn",
                file=d.position.file,
                line=d.position.line,
                col=d.position.col,
                field=d.field,
            )
        )
    for r in report.results:
        fs.findings.append(
            Finding(
                rule_id=r.policy_id,
                message=r.message,
                status=r.status,
                file=r.position.file,
                line=r.position.line,
                col=r.position.col,
                field=r.path,
                deployment=r.deployment,
                env=r.env,
                title=r.title,
                waiver=r.waiver.to_dict() if r.waiver else None,
            )
        )
    return fs

"""``check_policies``: every deployment against the policy library, with waivers.

The Rego ``input`` is ``Deployment.policy_input()`` (the resolved document, overlay
merged in, plus ``environment``); ``data`` is the organisation settings file. Each
policy's ``deny`` set yields ``{"msg", "path"}`` objects; ``path`` is a dotted path in the
resolved document and maps back to the spec's file, line and column (into the
environment overlay when the value came from there) through ``Deployment.locate``.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from reconciler.core.diagnostics import Diagnostic, Position
from reconciler.core.yaml import YamlLoadError
from reconciler.policy.encoding import input_error_path
from reconciler.policy.engine import DEFAULT_TIMEOUT_S, PolicyEngine, violations
from reconciler.policy.library import Policy, PolicyLibrary, load_library
from reconciler.policy.waivers import (
    EXPIRING_SOON_DAYS,
    Waiver,
    WaiverSet,
    load_waivers,
    unknown_scope_diagnostics,
    unused_waiver_diagnostics,
)
from reconciler.spec.loader import load_spec

STATUSES = ("fail", "error", "warn", "waived", "pass")


@dataclass(slots=True)  # one per policy per deployment: thousands in a large run
class PolicyResult:
    """One policy's verdict on one deployment (one result per violation; one ``pass``).

    Attributes:
        deployment: deployment key ``<name>-<env>``; ``name``: the spec name.
        env: environment.
        policy_id, title, severity: from the policy's metadata.
        enforcement: effective enforcement in ``env`` (``mandatory`` | ``advisory``).
        status: ``fail`` (mandatory violation), ``warn`` (advisory violation), ``waived``,
            ``error`` (the policy could not be evaluated: fails closed) or ``pass``.
        message: the rule's ``msg`` (or the error's cause); ``""`` for a pass.
        path: dotted path in the resolved spec (``spec.exposure.public``).
        position: file, line, column of ``path`` in the spec (overlay-aware).
        waiver: the waiver applied, or ``None``.
    """

    deployment: str
    name: str
    env: str
    policy_id: str
    title: str
    severity: str
    enforcement: str
    status: str
    message: str
    path: str
    position: Position
    waiver: Waiver | None = None

    @property
    def blocking(self) -> bool:
        """``fail`` and ``error`` block; ``warn``, ``waived`` and ``pass`` do not."""
        return self.status in ("fail", "error")

    def to_dict(self) -> dict:
        """JSON-ready mapping."""
        return {
            "deployment": self.deployment,
            "name": self.name,
            "environment": self.env,
            "policy": self.policy_id,
            "title": self.title,
            "severity": self.severity,
            "enforcement": self.enforcement,
            "status": self.status,
            "message": self.message,
            "path": self.path,
            "file": self.position.file,
            "line": self.position.line,
            "col": self.position.col,
            "waiver": self.waiver.to_dict() if self.waiver else None,
        }


@dataclass
class PolicyReport:
    """The outcome of one policy check.

    Attributes:
        results: per deployment × policy, violations and passes, in deployment order.
        policies: the policies of the library (metadata, for reports).
        library_diagnostics: problems with the policies or the organisation file.
        waiver_diagnostics: problems with waivers (expired, unapproved, unused...).
        waivers: every waiver read (valid or not).
        deployments: keys of the deployments checked, in order.
        spec_diagnostics: spec errors that kept a deployment from being checked (set by
            the caller, e.g. ``modelops policy check``); they block too.
        today: the date waivers were judged against.
    """

    results: list[PolicyResult] = field(default_factory=list)
    policies: list[Policy] = field(default_factory=list)
    library_diagnostics: list[Diagnostic] = field(default_factory=list)
    waiver_diagnostics: list[Diagnostic] = field(default_factory=list)
    waivers: list[Waiver] = field(default_factory=list)
    deployments: list[str] = field(default_factory=list)
    spec_diagnostics: list[Diagnostic] = field(default_factory=list)
    today: dt.date = field(default_factory=lambda: dt.datetime.now(dt.UTC).date())

    @property
    def blocking(self) -> bool:
        """Any mandatory failure, policy error, library or waiver problem, or spec error."""
        return (
            any(r.blocking for r in self.results)
            or bool(self.library_diagnostics)
            or bool(self.waiver_diagnostics)
            or any(d.severity == "error" for d in self.spec_diagnostics)
        )

    def counts(self) -> dict[str, int]:
        """Number of results per status (``fail``, ``error``, ``warn``, ``waived``, ``pass``)."""
        out = dict.fromkeys(STATUSES, 0)
        for r in self.results:
            out[r.status] += 1
        return out

    def findings(self) -> list[PolicyResult]:
        """Results other than ``pass``."""
        return [r for r in self.results if r.status != "pass"]

    def expiring_waivers(self, days: int = EXPIRING_SOON_DAYS) -> list[Waiver]:
        """Valid waivers whose expiry is within ``days`` days of :attr:`today`."""
        limit = self.today + dt.timedelta(days=days)
        return [w for w in self.waivers if w.valid and w.expires and w.expires <= limit]

    def diagnostics(self) -> list[Diagnostic]:
        """Findings as diagnostics: fail/error as ``error``, warn/waived as ``warning``.

        Library and waiver problems come first (severity error); the code of a result's
        diagnostic is its policy id.
        """
        out = [*self.spec_diagnostics, *self.library_diagnostics, *self.waiver_diagnostics]
        for r in self.findings():
            message = f"[{r.policy_id}] {r.title}: {r.message} ({r.deployment})"
            if r.status == "waived" and r.waiver:
                message += (
                    f" (waived until {r.waiver.expires.isoformat()} by {r.waiver.approver}"
                    f"{', ' + r.waiver.ticket if r.waiver.ticket else ''})"
                )
            elif r.status == "warn":
                message += " (advisory)"
            elif r.status == "error":
                message = f"[{r.policy_id}] policy error on {r.deployment}: {r.message}"
            out.append(
                Diagnostic(
                    r.position,
                    r.path,
                    message,
                    severity="error" if r.blocking else "warning",
                    code=r.policy_id,
                )
            )
        return out

    def to_dict(self) -> dict:
        """JSON-ready mapping: summary, policies, results, waivers and problems."""
        return {
            "blocking": self.blocking,
            "summary": self.counts(),
            "deployments": list(self.deployments),
            "policies": [p.to_dict() for p in self.policies],
            "results": [r.to_dict() for r in self.results],
            "spec_problems": [d.to_dict() for d in self.spec_diagnostics],
            "library_problems": [d.to_dict() for d in self.library_diagnostics],
            "waiver_problems": [d.to_dict() for d in self.waiver_diagnostics],
            "waivers": [w.to_dict() for w in self.waivers],
            "expiring_waivers": [w.to_dict() for w in self.expiring_waivers()],
        }


def evaluate_deployments(
    library: PolicyLibrary,
    waivers: WaiverSet,
    deployments: list,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    today: dt.date | None = None,
    reuse: bool = True,
    extra: dict[str, dict] | None = None,
) -> PolicyReport:
    """Evaluate ``deployments`` against a loaded library (see :func:`check_policies`).

    Args:
        library: the loaded policies and organisation data.
        waivers: the loaded waivers.
        deployments: ``list[Deployment]``.
        timeout_s: time-out per evaluation, seconds.
        today: the date waivers are judged against (default: UTC today).
        reuse: reuse a policy's answer across deployments that agree on what it reads
            (:class:`~reconciler.policy.engine.PolicyEngine`); False for benchmarks.
        extra: per deployment key, keys added to its ``input`` (the plan's cost estimate
            as ``cost``: ``docs/cost.md``); they never replace a key of the spec.
    """
    report = PolicyReport(
        policies=list(library.policies),
        library_diagnostics=list(library.diagnostics),
        waiver_diagnostics=list(waivers.diagnostics),
        waivers=list(waivers.waivers),
        today=today or dt.datetime.now(dt.UTC).date(),
    )
    usable = [p for p in library.usable if p.id]
    live = [p for p in usable if any(p.enforcement_for(d.env) != "disabled" for d in deployments)]
    if not deployments:
        return report
    with PolicyEngine(live, library.data, timeout_s, reuse=reuse) as engine:
        for pid in engine.compile_errors:
            line, col = engine.compile_position(pid)
            policy = engine.policies[pid]
            report.library_diagnostics.append(
                Diagnostic(
                    Position(policy.file, line, col),
                    "",
                    f"[{pid}] policy does not compile: {engine.compile_errors[pid]}",
                    code="policy-compile",
                )
            )
        extra = extra or {}
        all_outcomes = engine.evaluate_many(
            [({**extra.get(d.key, {}), **d.policy_input(fresh=False)}, d.key) for d in deployments]
        )
        for dep, outcomes in zip(deployments, all_outcomes, strict=True):
            subject = _Subject(dep)
            report.deployments.append(subject.key)
            for policy in live:
                enforcement = policy.enforcement_for(dep.env)
                if enforcement == "disabled":
                    continue
                report.results.extend(
                    _results(policy, enforcement, subject, outcomes[policy.id], waivers)
                )
    checked = {(d.name, d.env) for d in deployments}
    report.waiver_diagnostics.extend(unused_waiver_diagnostics(waivers, checked))
    return report


def _spec_defines(config, name: str) -> bool:
    """Whether any spec file under ``config.specs_dir`` has ``metadata.name == name``.

    A byte search picks the candidate files, so only they are parsed (a waiver check
    must not parse a thousand specs).
    """

    specs_dir = getattr(config, "specs_dir", None)
    if not name or specs_dir is None or not specs_dir.is_dir():
        return False
    needle = name.encode()
    for path in sorted(specs_dir.rglob("*")):
        if path.suffix not in (".yaml", ".yml") or not path.is_file():
            continue
        if needle in path.read_bytes():
            try:
                if load_spec(path, config.root).name == name:
                    return True
            except YamlLoadError:
                continue
    return False


class _Subject:
    """A deployment's name, key, environment and spec-level position, read once (a result
    is made for every policy on every deployment)."""

    def __init__(self, dep) -> None:
        self.dep = dep
        self.name = dep.name
        self.env = dep.env
        self.key = f"{self.name}-{self.env}"
        self.whole = dep.spec.locate(())


def _results(policy: Policy, enforcement: str, subject: _Subject, outcome, waivers: WaiverSet):
    dep = subject.dep

    def result(status: str, message: str, path: str, waiver=None) -> PolicyResult:
        return PolicyResult(
            deployment=subject.key,
            name=subject.name,
            env=subject.env,
            policy_id=policy.id,
            title=policy.title,
            severity=policy.severity,
            enforcement=enforcement,
            status=status,
            message=message,
            path=path,
            position=dep.locate(path) if path else subject.whole,
            waiver=waiver,
        )

    kind, value = outcome
    if kind != "ok":
        # An input the engine refused names its field: point there (overlay-aware).
        return [result("error", str(value), input_error_path(str(value)) or "")]
    items, cause = violations(value)
    if cause:
        return [result("error", f"malformed policy output: {cause}", "")]
    if not items:
        return [result("pass", "", "")]
    out = []
    for item in items:
        waiver = waivers.find(policy.id, subject.name, subject.env) if policy.waivable else None
        if waiver is not None:
            waiver.used = True
            out.append(result("waived", item["msg"], item["path"], waiver))
        else:
            status = "fail" if enforcement == "mandatory" else "warn"
            out.append(result(status, item["msg"], item["path"]))
    return out


def check_policies(
    config,
    deployments: list,
    *,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    today: dt.date | None = None,
    extra: dict[str, dict] | None = None,
) -> PolicyReport:
    """Check deployments against the repository's policy library and waivers.

    Args:
        config: :class:`~reconciler.core.config.Config` (``policies_dir``, ``organization``,
            ``root``); waivers are read from ``<policies_dir>/waivers.yaml``.
        deployments: ``list[Deployment]`` (resolved specs).
        timeout_s: time-out per evaluation in seconds (default 5 s).
        today: the date waivers are judged against (default: UTC today).
        extra: per deployment key, keys added to its ``input`` (:func:`evaluate_deployments`).

    Returns:
        A :class:`PolicyReport`. ``report.blocking`` is true on any mandatory failure,
        policy error (compile error, crash, time-out, undefined or malformed output),
        library problem or waiver problem: the check fails closed.

    Raises:
        Nothing for bad policies or waivers (they are findings); ``OSError`` only if the
        worker process cannot be started.
    """
    today = today or dt.datetime.now(dt.UTC).date()
    library = load_library(config.policies_dir, config.organization, config.root)
    known = {p.id: p.waivable for p in library.policies if p.id}
    waivers = load_waivers(config.policies_dir / "waivers.yaml", config.root, known, today)
    report = evaluate_deployments(library, waivers, deployments, timeout_s, today, extra=extra)
    report.waiver_diagnostics.extend(
        unknown_scope_diagnostics(
            waivers,
            {d.name for d in deployments},
            list(config.environments),
            lambda name: _spec_defines(config, name),
        )
    )
    return report

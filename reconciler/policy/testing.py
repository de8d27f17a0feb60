"""Policy tests as YAML fixture cases (``policies/tests/*.yaml``), not Rego ``with`` tests.

A case gives an input (a base deep-merged with overrides) and exactly the policies that
must fire; every policy needs a case that fires it and one where it stays silent.
File format: ``docs/policy.md``.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path

from reconciler.core.diagnostics import Diagnostic, Position
from reconciler.core.document import parse_path
from reconciler.core.yaml import YamlLoadError, display_path, load_yaml
from reconciler.policy.engine import DEFAULT_TIMEOUT_S, PolicyEngine, violations
from reconciler.policy.library import PolicyLibrary
from reconciler.spec.resolve import deep_merge

_CASE_FIELDS = {"name", "base", "environment", "input", "remove", "expect"}


@dataclass
class CaseResult:
    """One fixture case's outcome.

    Attributes:
        name: the case's name; ``position``: where it is in its file.
        expected, fired: policy ids expected to fire / that fired.
        errors: policy id → why it could not be evaluated on this case (not compile
            errors: those belong to the policy, see ``not_compiled``).
        not_compiled: ids of the policies that do not compile, so were not evaluated on
            this case (their compile errors are in ``TestRun.diagnostics``, once each).
    """

    name: str
    position: Position
    expected: list[str]
    fired: list[str]
    errors: dict[str, str] = field(default_factory=dict)
    not_compiled: list[str] = field(default_factory=list)

    @property
    def agrees_on_compiled(self) -> bool:
        """The policies that fired are the expected ones, leaving out the policies that
        do not compile (they could not fire)."""
        skip = set(self.not_compiled)
        return sorted(set(self.expected) - skip) == sorted(set(self.fired) - skip)

    @property
    def passed(self) -> bool:
        """Exactly the expected policies fired, none errored and every policy compiled."""
        return (
            not self.errors
            and not self.not_compiled
            and sorted(self.expected) == sorted(self.fired)
        )

    def to_dict(self) -> dict:
        """JSON-ready mapping."""
        return {
            "name": self.name,
            "file": self.position.file,
            "line": self.position.line,
            "passed": self.passed,
            "expected": sorted(self.expected),
            "fired": sorted(self.fired),
            "errors": dict(self.errors),
            "not_compiled": sorted(self.not_compiled),
        }


@dataclass
class TestRun:
    """Every case's result plus the problems found with the test suite.

    Attributes:
        cases: results in file order.
        diagnostics: problems (bad fixture files, policies that do not compile (one
            each, code ``policy-compile``), policies without a firing or a passing case,
            library problems, a failing case, zero cases).
        coverage: policy id → ``{"fires": n, "passes": n}`` (cases in which it fired /
            stayed silent).
        not_compiled: policy id → its compile error (``line L col C: message``).
    """

    cases: list[CaseResult] = field(default_factory=list)
    diagnostics: list[Diagnostic] = field(default_factory=list)
    coverage: dict[str, dict[str, int]] = field(default_factory=dict)
    not_compiled: dict[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """No problem and at least one case ran."""
        return not self.diagnostics and bool(self.cases)

    def to_dict(self) -> dict:
        """JSON-ready mapping."""
        return {
            "ok": self.ok,
            "cases": [c.to_dict() for c in self.cases],
            "coverage": self.coverage,
            "not_compiled": dict(self.not_compiled),
            "problems": [d.to_dict() for d in self.diagnostics],
        }


def _delete(doc: dict, dotted: str) -> bool:
    key = parse_path(dotted)
    node = doc
    for part in key[:-1]:
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and isinstance(part, int) and part < len(node):
            node = node[part]
        else:
            return False
    if isinstance(node, dict) and key and key[-1] in node:
        del node[key[-1]]
        return True
    return False


def _load_cases(tests_dir: Path, root: Path, diags: list[Diagnostic]):

    bases: dict[str, dict] = {}
    cases: list[tuple[dict, Position]] = []
    files = sorted(tests_dir.glob("*.yaml")) if tests_dir.is_dir() else []
    for path in files:
        shown = display_path(path, root)
        try:
            doc, positions = load_yaml(path.read_bytes(), shown)
        except YamlLoadError as exc:
            diags.append(exc.diagnostic)
            continue
        if not isinstance(doc, dict) or not ({"bases", "cases"} & set(doc)):
            diags.append(
                Diagnostic(
                    Position(shown, 1, 1),
                    "",
                    "expected a mapping with `cases` (or `bases`)",
                    code="policy-test",
                )
            )
            continue
        for name, base in (doc.get("bases") or {}).items():
            if not isinstance(base, dict):
                diags.append(
                    Diagnostic(
                        positions.get(("bases", name), Position(shown)),
                        f"bases.{name}",
                        "a base must be a mapping",
                        code="policy-test",
                    )
                )
                continue
            bases[str(name)] = base
        raw_cases = doc.get("cases") or []
        if not isinstance(raw_cases, list):
            diags.append(
                Diagnostic(
                    positions.get(("cases",), Position(shown)),
                    "cases",
                    "cases must be a list",
                    code="policy-test",
                )
            )
            continue
        for i, case in enumerate(raw_cases):
            cases.append((case, positions.get(("cases", i), Position(shown, 1, 1))))
    return bases, cases


def run_policy_tests(
    library: PolicyLibrary,
    tests_dir: Path,
    root: Path,
    timeout_s: float = DEFAULT_TIMEOUT_S,
) -> TestRun:
    """Run every fixture case under ``tests_dir`` against ``library``.

    Args:
        library: the loaded policies and organisation data.
        tests_dir: ``policies/tests``.
        root: repository root, for display paths.
        timeout_s: time-out per evaluation, seconds.

    Returns:
        A :class:`TestRun`; ``run.ok`` is the verdict.
    """
    run = TestRun()
    run.diagnostics.extend(library.diagnostics)
    bases, raw = _load_cases(tests_dir, root, run.diagnostics)
    policies = [p for p in library.usable if p.id]
    run.coverage = {p.id: {"fires": 0, "passes": 0} for p in policies}
    prepared = []
    for case, pos in raw:
        if not isinstance(case, dict):
            run.diagnostics.append(
                Diagnostic(pos, "", "a case must be a mapping", code="policy-test")
            )
            continue
        name = str(case.get("name") or f"case at line {pos.line}")
        problems = []
        unknown = sorted(set(case) - _CASE_FIELDS)
        if unknown:
            problems.append(
                f"unknown field(s) {', '.join(unknown)}; valid: {', '.join(sorted(_CASE_FIELDS))}"
            )
        base_name = str(case.get("base", "kubernetes"))
        if base_name not in bases:
            problems.append(f"unknown base {base_name!r}; known: {', '.join(sorted(bases))}")
        expect = case.get("expect")
        if not isinstance(expect, list) or not all(isinstance(e, str) for e in expect):
            problems.append("expect must be a list of policy ids ([] when none may fire)")
            expect = []
        for pid in expect:
            if library.get(pid) is None:
                problems.append(f"expect names unknown policy {pid!r}")
        fragment = case.get("input", {})
        if not isinstance(fragment, dict):
            problems.append("input must be a mapping (a fragment of the resolved spec)")
        if problems:
            for message in problems:
                run.diagnostics.append(Diagnostic(pos, name, message, code="policy-test"))
            continue
        doc = deep_merge(copy.deepcopy(bases[base_name]), fragment)
        for dotted in case.get("remove") or []:
            if not _delete(doc, str(dotted)):
                run.diagnostics.append(
                    Diagnostic(
                        pos,
                        name,
                        f"remove: {dotted} is not in the merged input",
                        code="policy-test",
                    )
                )
        doc["environment"] = str(case.get("environment", "prod"))
        prepared.append((name, pos, expect, doc))
    if prepared and policies:
        with PolicyEngine(policies, library.data, timeout_s) as engine:
            # A compile error is the policy's, not the cases': report it once, where it is.
            for pid, cause in engine.compile_errors.items():
                run.not_compiled[pid] = cause
                line, col = engine.compile_position(pid)
                run.diagnostics.append(
                    Diagnostic(
                        Position(engine.policies[pid].file, line, col),
                        pid,
                        f"policy does not compile: {cause}; no case could evaluate it",
                        code="policy-compile",
                    )
                )
            answers = engine.evaluate_many(
                [(doc, f"case {name!r}") for name, _, _, doc in prepared]
            )
            for (name, pos, expect, _doc), outcomes in zip(prepared, answers, strict=True):
                result = CaseResult(name, pos, list(expect), [])
                for policy in policies:
                    if policy.id in run.not_compiled:
                        result.not_compiled.append(policy.id)
                        continue
                    kind, value = outcomes[policy.id]
                    items, cause = violations(value) if kind == "ok" else ([], str(value))
                    if cause:
                        result.errors[policy.id] = cause
                    elif items:
                        result.fired.append(policy.id)
                        run.coverage[policy.id]["fires"] += 1
                    else:
                        run.coverage[policy.id]["passes"] += 1
                run.cases.append(result)
    for result in run.cases:
        if not result.passed:
            # a policy that does not compile could not fire: not the case's disagreement
            missing = sorted(set(result.expected) - set(result.fired) - set(run.not_compiled))
            extra = sorted(set(result.fired) - set(result.expected))
            parts = []
            if missing:
                parts.append(f"expected to fire but did not: {', '.join(missing)}")
            if extra:
                parts.append(f"fired but not expected: {', '.join(extra)}")
            for pid, cause in sorted(result.errors.items()):
                parts.append(f"{pid} error: {cause}")
            if parts:  # else only a policy that does not compile, reported above
                run.diagnostics.append(
                    Diagnostic(result.position, result.name, "; ".join(parts), code="policy-test")
                )
    for policy in policies:
        if policy.id in run.not_compiled:
            continue  # its coverage is unknown; the compile error already fails the run
        cov = run.coverage[policy.id]
        if not cov["fires"]:
            run.diagnostics.append(
                Diagnostic(
                    policy.position,
                    policy.id,
                    "no fixture case makes this policy fire; add one "
                    "(a policy never seen to fire may be fail-open)",
                    code="policy-test",
                )
            )
        if not cov["passes"]:
            run.diagnostics.append(
                Diagnostic(
                    policy.position,
                    policy.id,
                    "no fixture case where this policy stays silent; add a compliant case",
                    code="policy-test",
                )
            )
    if not run.cases:
        run.diagnostics.append(
            Diagnostic(
                Position(str(tests_dir)), "", "zero policy test cases ran", code="policy-test"
            )
        )
    return run

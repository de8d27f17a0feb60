"""YAML fixture cases: ``modelops policy test`` and the runner's verdicts."""

from __future__ import annotations

import json
from pathlib import Path

from support.cli import invoke, run_cli

from reconciler.policy.library import load_library
from reconciler.policy.testing import run_policy_tests


def run(root: Path):
    pol = root / "policies"
    return run_policy_tests(load_library(pol, pol / "organization.yaml", root), pol / "tests", root)


def test_shipped_cases_pass_and_prove_every_policy(spec_repo):
    proc = run_cli(spec_repo, "policy", "test", "--format", "json")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["ok"] and len(doc["cases"]) >= 60 and len(doc["coverage"]) >= 20
    assert all(c["passed"] for c in doc["cases"])
    assert all(v["fires"] and v["passes"] for v in doc["coverage"].values())


def test_disagreeing_case_fails_with_its_line(spec_repo):
    path = spec_repo / "policies" / "tests" / "exposure.yaml"
    path.write_text(path.read_text().replace("expect: [MDL-001]\n", "expect: [MDL-002]\n", 1))
    proc = invoke(spec_repo, "policy", "test")
    assert proc.returncode == 1
    assert (
        "policies/tests/exposure.yaml:2:5: public endpoint for pii data: expected to fire "
        "but did not: MDL-002; fired but not expected: MDL-001" in proc.stderr
    )


def test_policy_without_firing_case_fails(spec_repo):
    tests = spec_repo / "policies" / "tests"
    for name in ("type_tricks.yaml", "workload.yaml"):
        text = (tests / name).read_text()
        keep = [c for c in text.split("\n  - name:") if "MDL-020" not in c]
        (tests / name).write_text("\n  - name:".join(keep))
    result = run(spec_repo)
    assert not result.ok
    assert any(
        d.field == "MDL-020" and "no fixture case makes this policy fire" in d.message
        for d in result.diagnostics
    )


def test_zero_cases_fails(spec_repo):
    for f in (spec_repo / "policies" / "tests").glob("*.yaml"):
        if f.name != "bases.yaml":
            f.unlink()
    proc = invoke(spec_repo, "policy", "test")
    assert proc.returncode == 1
    assert "zero policy test cases ran" in proc.stderr


def test_bad_case_fields_are_reported(spec_repo):
    for f in (spec_repo / "policies" / "tests").glob("*.yaml"):
        if f.name not in ("bases.yaml", "compliant.yaml"):
            f.unlink()
    (spec_repo / "policies" / "tests" / "bad.yaml").write_text(
        "cases:\n  - name: typo\n    expect: MDL-001\n    base: nowhere\n    inptu: {}\n"
    )
    result = run(spec_repo)
    messages = [d.message for d in result.diagnostics if d.field == "typo"]
    assert any("unknown field(s) inptu" in m for m in messages)
    assert any("unknown base 'nowhere'" in m for m in messages)
    assert any("expect must be a list" in m for m in messages)


def test_compile_error_is_reported_once_not_per_case(spec_repo):
    path = spec_repo / "policies" / "allowed_registries.rego"
    text = path.read_text()
    broken = 'deny contains {"msg": msg, , "path": concat('
    path.write_text(text.replace('deny contains {"msg": msg, "path": concat(', broken, 1))
    line = next(
        n
        for n, ln in enumerate(text.splitlines())
        if ln.startswith('deny contains {"msg": msg, "path": concat(')
    )
    proc = invoke(spec_repo, "policy", "test")
    assert proc.returncode == 1
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    compile_lines = [ln for ln in lines if "does not compile" in ln]
    assert len(compile_lines) == 1, lines
    assert compile_lines[0].startswith(f"policies/allowed_registries.rego:{line + 1}:")
    assert "MDL-005: policy does not compile: line" in compile_lines[0]
    # no per-case echo of it, and no "never fires" noise about the same policy
    assert lines == compile_lines, lines
    assert "1 policy(ies) do not compile (MDL-005)" in proc.stdout and "FAILED" in proc.stdout
    # the other cases still agree on the policies that compile: said, not "0/N passed"
    assert "case(s) agree on the 28 policies that compile" in proc.stdout, proc.stdout
    assert " 0/" not in proc.stdout.split("agree")[0][-12:]

    proc = invoke(spec_repo, "policy", "test", "--format", "json")
    assert proc.returncode == 1
    doc = json.loads(proc.stdout)
    assert not doc["ok"] and list(doc["not_compiled"]) == ["MDL-005"]
    assert proc.stdout.count("does not compile") == 1
    assert [p["code"] for p in doc["problems"]] == ["policy-compile"]
    assert all(c["not_compiled"] == ["MDL-005"] and not c["errors"] for c in doc["cases"])


def test_case_disagreement_is_still_reported_next_to_a_compile_error(spec_repo):
    pol = spec_repo / "policies"
    text = (pol / "allowed_registries.rego").read_text()
    (pol / "allowed_registries.rego").write_text(text.replace("deny contains", "deny contans", 1))
    path = pol / "tests" / "exposure.yaml"
    path.write_text(path.read_text().replace("expect: [MDL-001]\n", "expect: [MDL-002]\n", 1))
    result = run(spec_repo)
    assert not result.ok
    codes = [(d.code, d.field) for d in result.diagnostics]
    assert codes.count(("policy-compile", "MDL-005")) == 1
    case = next(d for d in result.diagnostics if d.field == "public endpoint for pii data")
    assert "expected to fire but did not: MDL-002; fired but not expected: MDL-001" in case.message
    assert "MDL-005" not in case.message

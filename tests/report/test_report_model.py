"""The findings model: a policy report and spec diagnostics become findings with rules.

The input (``support.report.sample_report``) is shared with the per-format test files.
"""

from __future__ import annotations

from support.report import sample_diagnostics, sample_report

from reconciler.report.model import from_diagnostics, from_policy_report


def test_policy_report_becomes_findings_with_rules():
    fs = from_policy_report(sample_report())
    assert fs.counts() == {"fail": 1, "error": 2, "warn": 1, "waived": 1, "pass": 2}
    assert fs.blocking
    assert fs.rules["MDL-001"].security_severity == "9.5"
    assert "waiver" in fs.rules  # the waiver problem's rule
    waived = next(f for f in fs.findings if f.status == "waived")
    assert waived.level == "note" and waived.waiver["approver"] == "sec@example.com"


def test_diagnostics_become_findings():
    fs = from_diagnostics(sample_diagnostics(), "modelops-validate")
    assert [f.status for f in fs.findings] == ["fail", "fail", "warn"]
    assert fs.findings[0].location == "specs/a.yaml:3:7"
    assert fs.findings[1].location == "specs/b.yaml"


def test_report_diagnostics_severities():
    diags = sample_report().diagnostics()
    by_code = {d.code: d for d in diags}
    assert by_code["MDL-001"].severity == "error"
    assert by_code["MDL-013"].severity == "error"
    assert by_code["MDL-024"].severity == "warning"
    assert by_code["MDL-011"].severity == "warning"
    assert "waived until 2026-12-10 by sec@example.com, SEC-1" in by_code["MDL-011"].message
    assert by_code["waiver"].severity == "error"
    assert "MDL-002" not in by_code

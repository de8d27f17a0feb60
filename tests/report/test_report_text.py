"""Text writer: compiler-style lines, unchanged for spec diagnostics."""

from __future__ import annotations

import pytest
from support.report import sample_diagnostics, sample_report

from reconciler.core.diagnostics import ModelopsError
from reconciler.report import render_diagnostics, render_policy_report


def test_spec_diagnostics_print_exactly_as_diagnostic_str():
    diags = sample_diagnostics()
    assert render_diagnostics("text", diags) == "".join(f"{d}\n" for d in diags)


def test_policy_text_has_status_id_deployment_and_summary():
    out = render_policy_report("text", sample_report())
    lines = out.splitlines()
    assert lines[0] == (
        "policies/waivers.yaml:9:5: waivers.1.expires: ERROR [waiver] waiver expired on 2026-11-01"
    )
    assert any(
        ln.startswith(
            "specs/fraud-detector.yaml:47:5: spec.exposure.public: FAIL "
            "[MDL-001] No public endpoint for sensitive data: a|b"
        )
        for ln in lines
    )
    assert any(
        "WAIVED [MDL-011]" in ln and "waived until 2026-12-10 by sec@example.com" in ln
        for ln in lines
    )
    assert "MDL-002" not in out  # passes are counted, not listed
    assert lines[-1].endswith("1 failed, 2 error(s), 1 advisory, 1 waived, 2 passed: BLOCKED")


def test_unknown_format_is_a_usage_error():
    with pytest.raises(ModelopsError) as info:
        render_diagnostics("yaml", [])
    assert info.value.exit_code == 2
    assert "valid formats: text, json, markdown, sarif, junit, github" in info.value.message


def test_control_characters_from_a_spec_cannot_start_a_line():
    """A spec value with a newline must not print a line of its own: in a CI log a line
    starting with ``::warning`` is a GitHub Actions workflow command."""
    report = sample_report()
    report.results[0].message = "registry docker.io/x\n::warning file=x::injected\r\x00"
    out = render_policy_report("text", report)
    assert not any(ln.startswith("::") for ln in out.splitlines())
    assert "docker.io/x\\n::warning file=x::injected\\r\\x00" in out

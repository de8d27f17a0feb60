"""GitHub workflow-command annotations with the runner's escaping rules."""

from __future__ import annotations

from dataclasses import replace

from support.report import sample_diagnostics, sample_report

from reconciler.core.diagnostics import Diagnostic, Position
from reconciler.report import render_diagnostics, render_policy_report
from reconciler.report.github import escape_data, escape_property


def test_escaping():
    assert escape_data("50% a\r\nb") == "50%25 a%0D%0Ab"
    assert escape_property("a:b,c%") == "a%3Ab%2Cc%25"


def test_policy_annotations_levels_and_escaping():
    lines = render_policy_report("github", sample_report()).splitlines()
    assert len(lines) == 5  # waiver problem, fail, warn, waived, error; no passes
    fail = next(ln for ln in lines if "MDL-001" in ln)
    assert fail.startswith(
        "::error file=specs/fraud-detector.yaml,line=47,col=5,"
        "title=modelops-policy%3A MDL-001 No public endpoint for sensitive data::"
    )
    assert '50%25 <x & "y">%0Asecond line (fraud-detector-prod)' in fail
    assert "\n" not in fail
    assert next(ln for ln in lines if "MDL-024" in ln).startswith("::warning ")
    assert next(ln for ln in lines if "MDL-011" in ln).startswith("::notice ")
    assert "waived until 2026-12-10" in next(ln for ln in lines if "MDL-011" in ln)


def test_file_without_line_has_no_line_property():
    lines = render_diagnostics("github", sample_diagnostics()).splitlines()
    assert lines[1] == "::error file=specs/b.yaml,title=modelops%3A yaml::file is empty"


def test_one_annotation_per_location_naming_every_environment():
    pos = Position("specs/fraud-detector.yaml", 57, 15)
    diags = [
        Diagnostic(pos, "spec.monitoring.schedule", f"never runs [env {env}]", code="cron")
        for env in ("prod", "staging")
    ] + [Diagnostic(Position("specs/fraud-detector.yaml", 64, 15), "f", "x [env prod]")]
    lines = render_diagnostics("github", diags).splitlines()
    assert len(lines) == 2
    assert lines[0].endswith("::spec.monitoring.schedule: never runs [env prod, staging]")
    report = sample_report()
    twin = replace(report.results[0], deployment="fraud-detector-staging", env="staging")
    report.results.append(twin)
    lines = render_policy_report("github", report).splitlines()
    fail = [ln for ln in lines if "MDL-001" in ln]
    assert len(fail) == 1 and fail[0].endswith("(fraud-detector-prod, fraud-detector-staging)")

"""Markdown PR comment: verdict, counts, escaped table, how to fix."""

from __future__ import annotations

from support.report import sample_diagnostics, sample_report

from reconciler.report import render_diagnostics, render_policy_report


def test_policy_markdown_comment():
    out = render_policy_report("markdown", sample_report())
    lines = out.splitlines()
    assert lines[0] == "### modelops policy check: ❌ blocking findings"
    assert "**1** failed · **2** errors · **1** advisory · **1** waived · **2** passed" in out
    rows = [ln for ln in lines if ln.startswith("| ")]
    assert rows[0] == "| Status | Rule | Deployment | Location | Message |"
    fail = next(r for r in rows if "MDL-001" in r)
    # pipes escaped, newline folded, so the row stays one table row; HTML escaped
    assert 'a\\|b, c: 50% &lt;x &amp; "y"&gt; second line' in fail
    assert fail.count(" | ") == 4
    assert "waived by sec@example.com until 2026-12-10, SEC-1" in next(
        r for r in rows if "MDL-011" in r
    )
    assert "<details><summary>How to fix</summary>" in out
    assert "`MDL-001`: Set spec.exposure.public to false" in out


def test_clean_markdown():
    out = render_diagnostics("markdown", [], tool="modelops-validate")
    assert out.startswith("### modelops-validate: ✅ no blocking findings")
    assert "| Status |" not in out


def test_diagnostics_markdown_rows():
    out = render_diagnostics("markdown", sample_diagnostics(), tool="modelops-validate")
    assert "| ❌ fail | `schema` | - | `specs/a.yaml:3:7` |" in out

"""JSON writer: machine-readable findings plus the full policy report document."""

from __future__ import annotations

import json

from support.report import TRICKY, sample_diagnostics, sample_report

from reconciler.report import render_diagnostics, render_policy_report


def test_diagnostics_json_keeps_the_validate_shape():
    doc = json.loads(render_diagnostics("json", sample_diagnostics(), tool="modelops-validate"))
    assert doc["tool"] == "modelops-validate"
    first = doc["findings"][0]
    assert {k: first[k] for k in ("file", "line", "col", "field", "severity", "code")} == {
        "file": "specs/a.yaml",
        "line": 3,
        "col": 7,
        "field": "spec.target.platform",
        "severity": "error",
        "code": "schema",
    }
    assert doc["findings"][2]["severity"] == "warning"


def test_policy_json_has_results_with_passes_and_waivers():
    doc = json.loads(render_policy_report("json", sample_report()))
    assert doc["blocking"] is True
    assert doc["summary"]["pass"] == 2
    statuses = [r["status"] for r in doc["results"]]
    assert statuses.count("pass") == 2 and "waived" in statuses
    fail = next(f for f in doc["findings"] if f["status"] == "fail")
    assert fail["message"] == TRICKY and fail["deployment"] == "fraud-detector-prod"
    assert doc["expiring_waivers"][0]["policy"] == "MDL-011"
    assert any(p["id"] == "MDL-001" for p in doc["policies"])

"""SARIF 2.1.0 for GitHub code scanning: rules, security-severity, regions, suppressions."""

from __future__ import annotations

import json

from support.report import sample_diagnostics, sample_report

from reconciler.report import render_diagnostics, render_policy_report


def test_policy_sarif_structure():
    doc = json.loads(render_policy_report("sarif", sample_report()))
    assert doc["version"] == "2.1.0" and doc["$schema"].endswith("sarif-2.1.0.json")
    (run,) = doc["runs"]
    rules = run["tool"]["driver"]["rules"]
    ids = [r["id"] for r in rules]
    assert ids == sorted(ids) and len(ids) == len(set(ids))
    mdl1 = rules[ids.index("MDL-001")]
    assert mdl1["properties"]["security-severity"] == "9.5"
    assert "PCI-DSS 1.3.1" in mdl1["properties"]["tags"]
    assert mdl1["help"]["text"].startswith("Set spec.exposure.public to false")
    results = run["results"]
    assert len(results) == 5  # no passes
    for r in results:
        assert rules[r["ruleIndex"]]["id"] == r["ruleId"]
        assert r["level"] in ("error", "warning", "note")
        loc = r["locations"][0]["physicalLocation"]
        assert loc["artifactLocation"]["uriBaseId"] == "%SRCROOT%"
        if "region" in loc:
            assert loc["region"]["startLine"] >= 1 and loc["region"]["startColumn"] >= 1
    fail = next(r for r in results if r["ruleId"] == "MDL-001")
    assert fail["level"] == "error"
    assert fail["locations"][0]["physicalLocation"]["region"] == {"startLine": 47, "startColumn": 5}
    waived = next(r for r in results if r["ruleId"] == "MDL-011")
    assert waived["suppressions"][0]["kind"] == "external"
    assert "sec@example.com" in waived["suppressions"][0]["justification"]
    # file-level finding (line unknown) has no region rather than line 0
    error = next(r for r in results if r["ruleId"] == "MDL-013")
    assert "region" not in error["locations"][0]["physicalLocation"]


def test_fingerprints_are_stable_across_runs():
    a = json.loads(render_policy_report("sarif", sample_report()))["runs"][0]["results"]
    b = json.loads(render_policy_report("sarif", sample_report()))["runs"][0]["results"]
    assert [r["partialFingerprints"] for r in a] == [r["partialFingerprints"] for r in b]


def test_diagnostics_sarif():
    doc = json.loads(render_diagnostics("sarif", sample_diagnostics(), tool="modelops-validate"))
    run = doc["runs"][0]
    assert run["tool"]["driver"]["name"] == "modelops-validate"
    assert [r["ruleId"] for r in run["results"]] == ["schema", "yaml", "spec"]

"""SARIF 2.1.0 for GitHub code scanning: rules, security-severity, regions, suppressions."""

from __future__ import annotations

import json
import re
from pathlib import Path
from urllib.parse import unquote

import pytest
from jsonschema import Draft4Validator, FormatChecker
from support.report import sample_diagnostics, sample_report

from reconciler import __version__
from reconciler.core.diagnostics import Diagnostic, Position
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


SCHEMA = json.loads((Path(__file__).parents[1] / "support/schemas/sarif-2.1.0.json").read_text())
# RFC 3986 URI-reference characters: unreserved, sub-delims, ":@/?#" and %XX escapes
_URI_REF = re.compile(r"^(?:[A-Za-z0-9\-._~!$&'()*+,;=:@/?#]|%[0-9A-Fa-f]{2})*$")


def _checker() -> FormatChecker:
    checker = FormatChecker()
    checker.checks("uri-reference")(lambda v: not isinstance(v, str) or bool(_URI_REF.match(v)))
    checker.checks("uri")(
        lambda v: (
            not isinstance(v, str)
            or bool(re.match(r"^[A-Za-z][A-Za-z0-9+.-]*:", v))
            and bool(_URI_REF.match(v))
        )
    )
    return checker


def _assert_uploadable(doc: dict) -> None:
    """The SARIF 2.1.0 schema, and what GitHub code scanning requires of an upload."""
    errors = sorted(Draft4Validator(SCHEMA, format_checker=_checker()).iter_errors(doc), key=str)
    assert not errors, [f"{list(e.absolute_path)}: {e.message}" for e in errors]
    (run,) = doc["runs"]
    driver = run["tool"]["driver"]
    assert driver["name"] and driver["version"] == __version__
    assert all(r["help"]["text"] for r in driver["rules"])  # shown by code scanning
    for result in run["results"]:
        uri = result["locations"][0]["physicalLocation"]["artifactLocation"]["uri"]
        assert _URI_REF.match(uri) and not uri.startswith("/") and "://" not in uri


def test_policy_and_diagnostics_sarif_pass_the_schema_and_upload_rules():
    _assert_uploadable(json.loads(render_policy_report("sarif", sample_report())))
    _assert_uploadable(json.loads(render_diagnostics("sarif", sample_diagnostics())))


@pytest.mark.parametrize(
    ("file", "uri"),
    [
        ("specs/fraud detector.yaml", "specs/fraud%20detector.yaml"),
        ("specs/modèle-ü.yaml", "specs/mod%C3%A8le-%C3%BC.yaml"),
        ("specs/100%.yaml", "specs/100%25.yaml"),
        ("specs/a#b?c.yaml", "specs/a%23b%3Fc.yaml"),
        ("c:weird/x.yaml", "c%3Aweird/x.yaml"),
        ("specs/日本.yaml", "specs/%E6%97%A5%E6%9C%AC.yaml"),
    ],
)
def test_artifact_uris_are_percent_encoded_relative_references(file, uri):
    diags = [Diagnostic(Position(file, 3, 1), "spec.x", "bad", code="schema")]
    doc = json.loads(render_diagnostics("sarif", diags, tool="modelops-validate"))
    _assert_uploadable(doc)
    loc = doc["runs"][0]["results"][0]["locations"][0]["physicalLocation"]
    assert loc["artifactLocation"]["uri"] == uri
    assert unquote(uri) == file


def test_every_rule_has_help_including_synthetic_ones():
    diags = [
        Diagnostic(Position("specs/a.yaml", 1, 1), "", "x", code=code)
        for code in ("schema", "yaml", "cron", "something-new")
    ]
    doc = json.loads(render_diagnostics("sarif", diags))
    helps = {r["id"]: r["help"]["text"] for r in doc["runs"][0]["tool"]["driver"]["rules"]}
    assert set(helps) == {"schema", "yaml", "cron", "something-new"}
    assert "JSON Schema" in helps["schema"] and "cron" in helps["cron"]
    assert helps["something-new"].startswith("A finding of modelops")

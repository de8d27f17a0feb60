"""JUnit XML: one suite per deployment, failures, errors, skipped waivers, escaping."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from support.report import TRICKY, sample_diagnostics, sample_report

from reconciler.report import render_diagnostics, render_policy_report


def test_policy_junit():
    root = ET.fromstring(render_policy_report("junit", sample_report()))
    assert root.tag == "testsuites"
    suites = {s.get("name"): s for s in root.findall("testsuite")}
    fd = suites["fraud-detector-prod"]
    assert (fd.get("tests"), fd.get("failures"), fd.get("errors"), fd.get("skipped")) == (
        "5",
        "1",
        "1",
        "2",
    )
    fail = fd.find("testcase[@name='MDL-001 No public endpoint for sensitive data']/failure")
    assert fail.get("message") == TRICKY  # ElementTree escaped and we parsed it back
    skipped = [c.find("skipped").get("message") for c in fd.findall("testcase[skipped]")]
    assert [m.split(" ", 1)[0] for m in skipped] == ["advisory:", "waived"]
    assert skipped[0] == "advisory: batching may wait 150 ms"  # shown, not a green test
    assert skipped[1].startswith("waived until 2026-12-10")
    assert suites["diabetes-progression-prod"].get("failures") == "0"
    assert root.get("tests") == "7"
    # the waiver problem has its own suite (no deployment) as an error
    assert suites["modelops-policy"].get("errors") == "1"


def test_diagnostics_junit_and_empty():
    root = ET.fromstring(render_diagnostics("junit", sample_diagnostics(), tool="validate"))
    assert root.get("failures") == "2" and root.get("tests") == "3"
    empty = ET.fromstring(render_diagnostics("junit", [], tool="validate"))
    assert empty.get("tests") == "1" and empty.get("failures") == "0"

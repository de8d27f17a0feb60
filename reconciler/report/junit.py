"""JUnit XML for CI dashboards: one test suite per deployment, one test case per rule.

``fail`` → ``<failure>``, ``error`` → ``<error>``, ``waived`` → ``<skipped>`` (with the
waiver), ``warn`` (advisory) → ``<skipped message="advisory: ...">``, so that JUnit
viewers (GitHub test reporters, Jenkins, GitLab) show it rather than count a green
test, ``pass`` → a passing case. Spec findings go in one suite named after the tool.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET

from reconciler.report.model import FindingSet


def write(fs: FindingSet) -> str:
    """Render ``<testsuites>`` (ElementTree does the XML escaping)."""
    suites: dict[str, list] = {}
    for f in fs.findings:
        suites.setdefault(f.deployment or fs.tool, []).append(f)
    root = ET.Element("testsuites", name=fs.tool)
    total = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
    if not suites:
        suites[fs.tool] = []
    for name, items in suites.items():
        suite = ET.SubElement(root, "testsuite", name=name)
        counts = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
        for f in items:
            case_name = (
                f"{f.rule_id} {f.title}".strip()
                if f.deployment
                else (f"{f.location}: {f.field}" if f.field else f.location)
            )
            case = ET.SubElement(suite, "testcase", name=case_name, classname=name)
            if f.line:
                case.set("file", f.file)
                case.set("line", str(f.line))
            counts["tests"] += 1
            text = (
                f"{f.location}: {f.field}: {f.message}" if f.field else f"{f.location}: {f.message}"
            )
            if f.status == "fail":
                counts["failures"] += 1
                ET.SubElement(case, "failure", message=f.message, type=f.rule_id).text = text
            elif f.status == "error":
                counts["errors"] += 1
                ET.SubElement(case, "error", message=f.message, type=f.rule_id).text = text
            elif f.status == "waived":
                counts["skipped"] += 1
                w = f.waiver or {}
                ET.SubElement(
                    case,
                    "skipped",
                    message=f"waived until {w.get('expires')} by {w.get('approver')}: {f.message}",
                )
            elif f.status == "warn":
                counts["skipped"] += 1
                ET.SubElement(case, "skipped", message=f"advisory: {f.message}").text = text
        if not items:
            ET.SubElement(suite, "testcase", name="all checks", classname=name)
            counts["tests"] += 1
        for key, value in counts.items():
            suite.set(key, str(value))
            total[key] += value
    for key, value in total.items():
        root.set(key, str(value))
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"

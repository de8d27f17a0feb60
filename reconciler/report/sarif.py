"""SARIF 2.1.0 for GitHub code scanning (``github/codeql-action/upload-sarif``).

Rule ids are the stable policy ids; each rule carries ``properties.security-severity``
(GitHub maps >= 9.0 critical, >= 7.0 high, >= 4.0 medium, else low) and
``properties.tags`` (``security`` plus the controls). Results carry file/line regions
relative to ``%SRCROOT%``. Waived results are kept, with an ``external`` suppression
naming the approver (SARIF 2.1.0 §3.35), so code scanning shows them as dismissed rather
than losing them. Passes are not results.
"""

from __future__ import annotations

import hashlib
import json

from reconciler.report.model import FindingSet

SARIF_SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"
INFORMATION_URI = "https://github.com/modelops/modelops"


def _rule(rule) -> dict:
    out = {
        "id": rule.id,
        "name": "".join(part.capitalize() for part in (rule.title or rule.id).split()) or rule.id,
        "shortDescription": {"text": rule.title or rule.id},
        "fullDescription": {"text": rule.description or rule.title or rule.id},
        "defaultConfiguration": {"level": "error"},
        "properties": {"tags": ["security", *rule.controls], "precision": "very-high"},
    }
    if rule.remediation:
        out["help"] = {"text": rule.remediation, "markdown": rule.remediation}
    if rule.security_severity:
        out["properties"]["security-severity"] = rule.security_severity
    if rule.severity:
        out["properties"]["problem.severity"] = (
            "error" if rule.severity in ("high", "critical") else "warning"
        )
    return out


def write(fs: FindingSet) -> str:
    """Render one SARIF run; every non-pass finding is a result."""
    rules = sorted(fs.rules.values(), key=lambda r: r.id)
    index = {r.id: i for i, r in enumerate(rules)}
    results = []
    for f in fs.problems:
        text = f"{f.field}: {f.message}" if f.field else f.message
        if f.deployment:
            text += f" ({f.deployment})"
        location = {"artifactLocation": {"uri": f.file, "uriBaseId": "%SRCROOT%"}}
        if f.line:
            location["region"] = {"startLine": f.line, "startColumn": max(f.col, 1)}
        fingerprint = hashlib.sha256(
            f"{f.rule_id}|{f.deployment}|{f.file}|{f.field}".encode()
        ).hexdigest()
        result = {
            "ruleId": f.rule_id,
            "ruleIndex": index[f.rule_id],
            "level": f.level,
            "message": {"text": text},
            "locations": [{"physicalLocation": location}],
            "partialFingerprints": {"modelopsFinding/v1": fingerprint},
            "properties": {"status": f.status, "deployment": f.deployment, "environment": f.env},
        }
        if f.waiver:
            result["suppressions"] = [
                {
                    "kind": "external",
                    "status": "accepted",
                    "justification": (
                        f"{f.waiver['reason']} (approved by {f.waiver['approver']}, "
                        f"expires {f.waiver['expires']}"
                        f"{', ' + f.waiver['ticket'] if f.waiver.get('ticket') else ''})"
                    ),
                }
            ]
        results.append(result)
    doc = {
        "$schema": SARIF_SCHEMA,
        "version": "2.1.0",
        "runs": [
            {
                "tool": {
                    "driver": {
                        "name": fs.tool,
                        "informationUri": INFORMATION_URI,
                        "rules": [_rule(r) for r in rules],
                    }
                },
                "results": results,
            }
        ],
    }
    return json.dumps(doc, indent=2) + "\n"

"""SARIF 2.1.0 for GitHub code scanning (``github/codeql-action/upload-sarif``).

Rule ids are the stable policy ids; each rule carries ``properties.security-severity``
(GitHub maps >= 9.0 critical, >= 7.0 high, >= 4.0 medium, else low) and
``properties.tags`` (``security`` plus the controls). Results carry file/line regions
relative to ``%SRCROOT%``, their URIs percent-encoded relative references (RFC 3986:
a space is ``%20``, non-ASCII is UTF-8 percent-encoded; SARIF 2.1.0 §3.4.3 requires
valid URIs). Every rule, including the synthetic ones of spec findings (``schema``,
``yaml``, ``cron``...), has ``help`` text (GitHub code scanning shows it and expects
it), and the driver carries the tool's version. Waived results are kept, with an
``external`` suppression naming the approver (SARIF 2.1.0 §3.35), so code scanning
shows them as dismissed rather than losing them. Passes are not results. The output
is checked against the SARIF 2.1.0 JSON schema in tests (``tests/support/``).
"""

from __future__ import annotations

import hashlib
import json
from urllib.parse import quote

from reconciler import __version__
from reconciler.report.model import FindingSet

SARIF_SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"
INFORMATION_URI = "https://github.com/modelops/modelops"
# help for the rules that are not policies: spec findings by their diagnostic code
SYNTHETIC_HELP = {
    "schema": "The spec does not match the ModelDeployment JSON Schema "
    "(reconciler/spec/modeldeployment.schema.json); the message names the field and what "
    "would be valid. `modelops schema` prints the schema.",
    "yaml": "The file is not YAML that every reader reads the same way (syntax, duplicate "
    "keys, aliases, YAML 1.1/1.2 differences); the message says how to write it.",
    "cron": "The schedule is not accepted by the target that runs it, or never runs; the "
    "message says what the target's cron dialect accepts (docs/spec.md, Schedules).",
}
DEFAULT_HELP = (
    "A finding of modelops about the repository's specs, policies or settings; the message "
    "names the field and what would be valid. Run `modelops validate` locally to see it."
)


def artifact_uri(path: str) -> str:
    """A repository path as a percent-encoded relative URI reference (``/`` kept).

    ``specs/my model.yaml`` → ``specs/my%20model.yaml``; ``ü`` → ``%C3%BC``; a ``:`` in
    the first segment is encoded so that it never reads as a scheme.
    """
    return quote(path.replace("\\", "/"), safe="/")


def _rule(rule) -> dict:
    out = {
        "id": rule.id,
        "name": "".join(part.capitalize() for part in (rule.title or rule.id).split()) or rule.id,
        "shortDescription": {"text": rule.title or rule.id},
        "fullDescription": {"text": rule.description or rule.title or rule.id},
        "defaultConfiguration": {"level": "error"},
        "properties": {"tags": ["security", *rule.controls], "precision": "very-high"},
    }
    text = rule.remediation or SYNTHETIC_HELP.get(rule.id) or rule.description or DEFAULT_HELP
    out["help"] = {"text": text, "markdown": text}
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
        location = {"artifactLocation": {"uri": artifact_uri(f.file), "uriBaseId": "%SRCROOT%"}}
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
                        "version": __version__,
                        "semanticVersion": __version__,
                        "informationUri": INFORMATION_URI,
                        "rules": [_rule(r) for r in rules],
                    }
                },
                "results": results,
            }
        ],
    }
    return json.dumps(doc, indent=2) + "\n"

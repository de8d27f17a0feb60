"""JSON: ``{"tool", "blocking", "summary", "findings": [...]}`` plus the report's document."""

from __future__ import annotations

import json

from reconciler.report.model import FindingSet


def write(fs: FindingSet) -> str:
    """Render as indented JSON; ``findings`` holds every non-pass finding's ``to_dict``.

    For a policy report the full report document (``PolicyReport.to_dict``: results with
    passes, policies, waivers) is merged in.
    """
    doc = {
        "tool": fs.tool,
        "blocking": fs.blocking,
        "summary": fs.counts(),
        "findings": [f.to_dict() for f in fs.problems],
    }
    for key, value in fs.extra.items():
        doc.setdefault(key, value)
    return json.dumps(doc, indent=2, default=str) + "\n"

"""The plan as JSON (``modelops plan --format json``, the PR workflow's artifact)."""

from __future__ import annotations

import json


def data(report) -> dict:
    """The same data as the PR comment: the run (``report.to_dict()``) plus
    ``"plans"``, each plan's ``to_dict()`` (``None`` where none was computed)."""
    doc = report.to_dict()
    doc["plans"] = [p.to_dict() if p is not None else None for p in report.plans]
    return doc


def write(report) -> str:
    """:func:`data` as JSON indented by 2, with a final newline."""
    return json.dumps(data(report), indent=2) + "\n"

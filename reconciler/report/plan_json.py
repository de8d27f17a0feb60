"""The plan as JSON (``modelops plan --format json``, the PR workflow's artifact)."""

from __future__ import annotations

import json

from reconciler.report.plan_cost import env_totals


def data(report) -> dict:
    """The same data as the PR comment: the run (``report.to_dict()``, whose outcomes
    carry each deployment's ``cost`` before and after) plus ``"plans"``, each plan's
    ``to_dict()`` (``None`` where none was computed), and ``"cost"``: the monthly
    estimate per environment (``plan_cost.env_totals``, USD per 730 h)."""
    doc = report.to_dict()
    doc["plans"] = [p.to_dict() if p is not None else None for p in report.plans]
    doc["cost"] = env_totals(doc["outcomes"])
    return doc


def write(report) -> str:
    """:func:`data` as JSON indented by 2, with a final newline."""
    return json.dumps(data(report), indent=2) + "\n"

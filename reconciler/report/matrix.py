"""The security-review matrix for ``modelops policy report``: policies × deployments.

Each cell is the worst status of that policy on that deployment (error > fail > warn >
waived > pass), ``-`` when the policy is disabled there. Below the matrix: the waivers
that expire within 30 days, and any library or waiver problems.
"""

from __future__ import annotations

import json

from reconciler.core.diagnostics import ModelopsError
from reconciler.report import escape
from reconciler.report.markdown import cell as md_cell

_RANK = {"error": 5, "fail": 4, "warn": 3, "waived": 2, "pass": 1}
_LABEL = {"error": "ERROR", "fail": "FAIL", "warn": "ADVISORY", "waived": "WAIVED", "pass": "pass"}


def matrix(report) -> dict[str, dict[str, str]]:
    """policy id → deployment key → worst status (``pass``, ``fail``, ...; absent = disabled)."""
    out: dict[str, dict[str, str]] = {}
    for r in report.results:
        row = out.setdefault(r.policy_id, {})
        if _RANK[r.status] > _RANK.get(row.get(r.deployment, ""), 0):
            row[r.deployment] = r.status
    return out


def _rows(report):
    grid = matrix(report)
    for p in report.policies:
        if p.id:
            yield p, [grid.get(p.id, {}).get(d, "") for d in report.deployments]


def _text(report) -> str:
    deps = report.deployments
    head = ["policy", "severity", *deps]
    rows = [
        [f"{p.id} {p.title}"[:60], p.severity, *[_LABEL.get(s, "-") for s in cells]]
        for p, cells in _rows(report)
    ]
    widths = [max(len(str(x)) for x in col) for col in zip(head, *rows, strict=True)]
    lines = [
        "  ".join(str(v).ljust(w) for v, w in zip(row, widths, strict=True)).rstrip()
        for row in [head, ["-" * w for w in widths], *rows]
    ]
    lines.append("")
    lines += _footer(report, lambda s: s)
    return "\n".join(lines) + "\n"


def _footer(report, esc) -> list[str]:
    out = []
    c = report.counts()
    out.append(
        f"{c['fail']} failed, {c['error']} error(s), {c['warn']} advisory, {c['waived']} waived, "
        f"{c['pass']} passed; verdict: {'BLOCKED' if report.blocking else 'passed'}"
    )
    expiring = report.expiring_waivers()
    out.append("")
    out.append(f"Waivers expiring within 30 days of {report.today.isoformat()}: {len(expiring)}")
    for w in expiring:
        scope = w.deployment + (f" ({w.environment})" if w.environment else "")
        out.append(
            esc(
                f"- {w.policy} on {scope}: expires {w.expires.isoformat()}, approved by "
                f"{w.approver}{', ' + w.ticket if w.ticket else ''}: {w.reason}"
            )
        )
    errors = [d for d in report.spec_diagnostics if d.severity == "error"]
    warnings = [d for d in report.spec_diagnostics if d.severity != "error"]
    if errors:
        out.append("")
        out.append(f"Specs that could not be checked (not in the matrix): {len(errors)}")
        out += [esc(f"- {d}") for d in errors]
    if warnings:
        out.append("")
        out.append(f"Spec warnings (checked; they do not block): {len(warnings)}")
        out += [esc(f"- {d}") for d in warnings]
    problems = [*report.library_diagnostics, *report.waiver_diagnostics]
    if problems:
        out.append("")
        out.append(f"Problems with the policy library or waivers: {len(problems)}")
        out += [esc(f"- {d}") for d in problems]
    return out


def _markdown(report) -> str:
    deps = report.deployments
    lines = ["### modelops policy report", ""]
    lines.append("| Policy | Severity | " + " | ".join(md_cell(d) for d in deps) + " |")
    lines.append("|---|---|" + "---|" * len(deps))
    icons = {"error": "💥", "fail": "❌", "warn": "⚠️", "waived": "🟡", "pass": "✅"}
    for p, cells in _rows(report):
        lines.append(
            f"| {escape.code(p.id, table=True)} {md_cell(p.title)} | {p.severity} | "
            + " | ".join(icons.get(s, "–") for s in cells)
            + " |"
        )
    lines.append("")
    lines.append("✅ pass · ❌ fail · ⚠️ advisory · 🟡 waived · 💥 error · – disabled")
    lines.append("")
    lines += _footer(report, md_cell)
    return "\n".join(lines) + "\n"


def _json(report) -> str:
    doc = {
        "deployments": report.deployments,
        "matrix": matrix(report),
        "expiring_waivers": [w.to_dict() for w in report.expiring_waivers()],
        "blocking": report.blocking,
        "summary": report.counts(),
    }
    return json.dumps(doc, indent=2) + "\n"


MATRIX_WRITERS = {"text": _text, "markdown": _markdown, "json": _json}


def matrix_writer_for(fmt: str):
    """The review-matrix writer for ``fmt`` (``text``, ``markdown`` or ``json``).

    Raises:
        ModelopsError: (exit 2) another format; the message lists the valid ones.
    """
    writer = MATRIX_WRITERS.get(fmt)
    if writer is None:
        raise ModelopsError(
            f"unknown format {fmt!r} for policy report; valid: {', '.join(MATRIX_WRITERS)}"
        )
    return writer

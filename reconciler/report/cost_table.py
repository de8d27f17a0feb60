"""``modelops cost``: the monthly cost table as text, JSON or CSV (one writer per format).

The table (:class:`reconciler.flow.costs.CostTable`) has one row per deployment (live from
the ledger, and what the specs say), a subtotal per team and the environment's total, in
USD per month of 730 hours, with the price snapshot's date.
"""

from __future__ import annotations

import csv
import io
import json

from reconciler.report import escape
from reconciler.report.findings import pick_writer


def _fig(r: dict | None) -> str:
    if r is None:
        return "-"
    if round(r["max"], 2) == round(r["expected"], 2):
        return f"{r['expected']:,.2f}"
    return f"{r['expected']:,.2f} (max {r['max']:,.2f})"


def _diff(r: dict) -> str:
    e, m = r["expected"], r["max"]
    text = f"{e:+,.2f}"
    return text if round(e, 2) == round(m, 2) else f"{text} (max {m:+,.2f})"


def write_text(table) -> str:
    """An aligned table: per team, its deployments and a subtotal; then the total."""
    head = ("team", "deployment", "platform", "live (ledger)", "specs", "specs - live")
    body = []
    for team, sub in table.teams.items():
        for r in [r for r in table.rows if r["team"] == team]:
            body.append(
                (
                    escape.one_line(team or "-"),
                    escape.one_line(r["deployment"]),
                    r["platform"],
                    _fig(r["live"]),
                    _fig(r["specs"]),
                    _diff(r["difference"]),
                )
            )
        body.append(
            (
                escape.one_line(team or "-"),
                f"(team total, {sub['deployments']})",
                "",
                _fig(sub["live"]),
                _fig(sub["specs"]),
                _diff(sub["difference"]),
            )
        )
    t = table.total
    body.append(
        (
            "",
            f"(total, {t['deployments']})",
            "",
            _fig(t["live"]),
            _fig(t["specs"]),
            _diff(t["difference"]),
        )
    )
    widths = [max(len(row[i]) for row in (head, *body)) for i in range(len(head))]
    lines = [
        f"Monthly cost in {table.env}, USD per 730 h (prices as of {table.prices_date}; "
        "expected at minimum scale, max at maximum):"
    ]
    for row in (head, *body):
        lines.append("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
    lines += [f"({note})" for note in table.notes]
    return "\n".join(lines) + "\n"


def write_json(table) -> str:
    """:meth:`CostTable.to_dict` as JSON indented by 2."""
    return json.dumps(table.to_dict(), indent=2) + "\n"


def write_csv(table) -> str:
    """One row per deployment (team, deployment, platform, live/specs expected and max,
    difference), USD per month; empty cells where a side does not exist."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(
        [
            "environment",
            "team",
            "deployment",
            "platform",
            "live_expected_usd",
            "live_max_usd",
            "specs_expected_usd",
            "specs_max_usd",
            "difference_expected_usd",
            "difference_max_usd",
            "prices_date",
        ]
    )
    for r in table.rows:
        live, specs = r["live"] or {}, r["specs"] or {}
        w.writerow(
            [
                table.env,
                r["team"],
                r["deployment"],
                r["platform"],
                live.get("expected", ""),
                live.get("max", ""),
                specs.get("expected", ""),
                specs.get("max", ""),
                r["difference"]["expected"],
                r["difference"]["max"],
                table.prices_date,
            ]
        )
    return buf.getvalue()


COST_WRITERS = {"text": write_text, "json": write_json, "csv": write_csv}


def cost_writer_for(fmt: str):
    """The writer for ``fmt``.

    Raises:
        ModelopsError: (exit 2) unknown format; the message lists the valid ones.
    """
    return pick_writer(COST_WRITERS, fmt)

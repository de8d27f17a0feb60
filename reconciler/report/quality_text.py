"""Writers for the quality job and ``modelops labels ingest`` (text).

The quality table (one row per metric: realized with its 95% interval, the CBPE
estimate, the reference and the change), the verdict line with the join rate and the
labels still missing, the KPI, the alerts; the outcome of the action a quality alert
started; and the counts of a label ingest.
"""

from __future__ import annotations

from rich.table import Table
from rich.text import Text

from reconciler.monitor.quality import format_rows


def quality_table(result) -> Table:
    """The window's metrics as a table titled ``quality <key>``."""
    table = Table(title=f"quality {result.name}-{result.env} ({result.task})")
    for col in ("metric", "realized", "95% interval", "estimated (CBPE)", "reference", "change"):
        table.add_column(col)
    for row in format_rows(result):
        table.add_row(*(Text(c) for c in row))
    return table


def quality_summary(result, config) -> str:
    """Notes, KPI, alerts and the verdict line, then the summary's path."""
    key = f"{result.name}-{result.env}"
    lines = [f"note: {n}" for n in result.notes]
    if result.kpi.get("value") is not None:
        k = result.kpi
        change = f", change {k['change']:+.4f} vs reference" if "change" in k else ""
        lines.append(
            f"KPI {k['name']}: {k['value']:.4f} {k.get('unit', '')} per prediction "
            f"[{k['low']:.4f}, {k['high']:.4f}]{change}"
        )
    lines.extend(f"ALERT: {a}" for a in result.alerts)
    lines.append(
        f"{key}: {result.verdict.upper() if result.alerted else result.verdict}: "
        f"{result.labelled}/{result.predictions} predictions labelled (join rate "
        f"{result.join_rate:.2%}; {result.pending:.2%} still within max_delay, "
        f"{result.overdue:.2%} overdue); drift kind: {result.drift_kind}"
    )
    lines.append(f"report: {config.rel(result.report_html)}")
    lines.append(f"summary: {config.rel(result.summary_json)}")
    return "".join(line + "\n" for line in lines)


def acted(key: str, outcome: dict) -> str:
    """What a quality alert started (retraining or rollback) and how it ended."""
    bits = [f"{key}: on_quality_drop {outcome.get('action')}: {outcome.get('status')}"]
    if outcome.get("branch"):
        bits.append(f"branch: {outcome['branch']}")
    if outcome.get("revision"):
        bits.append(f"revision: {outcome['revision']}")
    return "".join(b + "\n" for b in bits)


def ingest(result) -> str:
    """The counts of one label ingest, with up to 5 examples per rejection reason."""
    lines = [f"labels {result.name}-{result.env}: {result.message}"]
    for _reason, examples in sorted(result.examples.items()):
        lines.extend(f"  rejected: {e}" for e in examples)
    if result.stored:
        lines.append(f"stored: {result.stored}")
    if result.rejected_file:
        lines.append(f"rejected rows: {result.rejected_file}")
    return "".join(line + "\n" for line in lines)

"""Writer for ``modelops monitor shadow`` (text): the notes on what was read, then the
shadow report (agreement, probability differences, latency of both versions, estimated
quality) and its verdict line (``monitor/shadow.py``)."""

from __future__ import annotations


def shadow_summary(key: str, report) -> str:
    """``note:`` lines, the report of deployment ``key`` and a closing
    ``<key>: shadow <version>: PROMOTE | DROP | INSUFFICIENT DATA`` line."""
    lines = [f"note: {note}\n" for note in report.notes]
    lines.append(report.text())
    lines.append(f"{key}: shadow {report.shadow_version}: {report.verdict.upper()}\n")
    return "".join(lines)

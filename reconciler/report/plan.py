"""The table from format name to plan writer, and the lookup that uses it.

One module per format (``plan_text``, ``plan_json``, ``plan_markdown``: the PR comment),
each with ``write(report) -> str`` taking a plan run report, as the findings writers
(:mod:`reconciler.report.findings`) take a finding set.
"""

from __future__ import annotations

from reconciler.report import plan_json, plan_markdown, plan_text
from reconciler.report.findings import pick_writer

PLAN_WRITERS = {
    "text": plan_text.write,
    "json": plan_json.write,
    "markdown": plan_markdown.write,
}


def plan_writer_for(fmt: str):
    """The plan writer for ``fmt``.

    Raises:
        ModelopsError: (exit 2) unknown format; the message lists the valid ones.
    """
    return pick_writer(PLAN_WRITERS, fmt)

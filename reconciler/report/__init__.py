"""Reports: one writer per format (text, json, markdown, sarif, junit, github).

``render_diagnostics(fmt, diagnostics, tool)`` and ``render_policy_report(fmt, report)``
turn findings into text through the table in :mod:`reconciler.report.findings`; plans
have their own table (:mod:`reconciler.report.plan`). See ``docs/report.md``.
"""

from reconciler.report.findings import WRITERS, render_diagnostics, render_policy_report

__all__ = ["WRITERS", "render_diagnostics", "render_policy_report"]

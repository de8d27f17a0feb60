"""Markdown for pull-request comments: verdict, counts, one table row per finding.

Finding messages quote spec values, and waiver fields come from the waivers file, so
every such value is escaped where it is inserted (:mod:`reconciler.report.escape`):
running text and table cells by :func:`cell`, rule ids and locations as inline code
that no backtick in the value can close. No value can add HTML, break the table or the
``<details>`` block, or @mention anyone.
"""

from __future__ import annotations

from reconciler.report import escape
from reconciler.report.model import FindingSet

_ICON = {"fail": "❌ fail", "error": "💥 error", "warn": "⚠️ advisory", "waived": "🟡 waived"}


def cell(value: object) -> str:
    """Escape untrusted text for a Markdown table cell or one line of running text.

    :func:`escape.text`: whitespace folded to one line; ``\\ ` * [ ] |``
    backslash-escaped; ``& < >`` as HTML entities; @mentions neutralised with a
    zero-width joiner. It renders as the value itself.
    """
    return escape.text(value)


def _code_cell(value: object) -> str:
    """``value`` as inline code inside a table cell (``|`` escaped), ``-`` when empty."""
    return escape.code(value, table=True) or "-"


def write(fs: FindingSet) -> str:
    """Render a PR comment: heading with the verdict, a counts line, a findings table.

    Waived findings name approver, expiry and ticket; passes are only counted.
    """
    verdict = "❌ blocking findings" if fs.blocking else "✅ no blocking findings"
    out = [f"### {fs.title}: {verdict}", ""]
    c = fs.counts()
    out.append(
        f"**{c['fail']}** failed · **{c['error']}** errors · **{c['warn']}** advisory · "
        f"**{c['waived']}** waived · **{c['pass']}** passed"
    )
    out.append("")
    problems = fs.problems
    if problems:
        out.append("| Status | Rule | Deployment | Location | Message |")
        out.append("|---|---|---|---|---|")
        for f in problems:
            rule = _code_cell(f.rule_id) + (f" {cell(f.title)}" if f.title else "")
            message = cell(f"{f.field}: {f.message}" if f.field else f.message)
            if f.waiver:
                w = f.waiver
                message += " " + cell(
                    f"(waived by {w['approver']} until {w['expires']}"
                    f"{', ' + w['ticket'] if w.get('ticket') else ''}: {w['reason']})"
                )
            out.append(
                f"| {_ICON.get(f.status, f.status)} | {rule} | {cell(f.deployment or '-')} "
                f"| {_code_cell(f.location)} | {message} |"
            )
        out.append("")
    remediations = [
        (rid, rule.remediation)
        for rid, rule in sorted(fs.rules.items())
        if rule.remediation and any(f.rule_id == rid and f.blocking for f in problems)
    ]
    if remediations:
        out.append("<details><summary>How to fix</summary>")
        out.append("")
        for rid, text in remediations:
            out.append(f"- {escape.code(rid) or '-'}: {cell(text)}")
        out.append("")
        out.append("</details>")
        out.append("")
    return "\n".join(out)

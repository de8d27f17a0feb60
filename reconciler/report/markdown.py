"""Markdown for pull-request comments: verdict, counts, one table row per finding."""

from __future__ import annotations

from reconciler.report.model import FindingSet

_ICON = {"fail": "❌ fail", "error": "💥 error", "warn": "⚠️ advisory", "waived": "🟡 waived"}


def cell(value: object) -> str:
    """Escape a value for a Markdown table cell (pipes, newlines, backticks)."""
    text = str(value).replace("\\", "\\\\").replace("|", "\\|").replace("`", "'")
    return " ".join(text.split())


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
            rule = f"`{cell(f.rule_id)}`" + (f" {cell(f.title)}" if f.title else "")
            message = cell(f"{f.field}: {f.message}" if f.field else f.message)
            if f.waiver:
                w = f.waiver
                message += cell(
                    f" (waived by {w['approver']} until {w['expires']}"
                    f"{', ' + w['ticket'] if w.get('ticket') else ''}: {w['reason']})"
                )
            out.append(
                f"| {_ICON.get(f.status, f.status)} | {rule} | {cell(f.deployment or '-')} "
                f"| `{cell(f.location)}` | {message} |"
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
            out.append(f"- `{rid}`: {cell(text)}")
        out.append("")
        out.append("</details>")
        out.append("")
    return "\n".join(out)

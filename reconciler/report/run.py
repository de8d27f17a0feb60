"""Writers for the runs that change deployments (``apply``, ``destroy``, ``rollback``).

The outcome table (a Rich table, sized by the console that prints it), the lines of a
rollback, the failures, and a run's findings as GitHub workflow annotations. The plan
of a run has its own writers (:mod:`reconciler.report.plan`).
"""

from __future__ import annotations

from rich.table import Table
from rich.text import Text

from reconciler.report.findings import render_diagnostics

_STATUS_STYLE = {
    "failed": "red",
    "stalled": "red",
    "applied": "green",
    "destroyed": "yellow",
    "orphaned": "yellow",
    "held": "yellow",
}


def annotations(report) -> str:
    """The run's spec and policy findings as GitHub workflow commands (``::error ...``),
    the change's own policy set's included once; ``""`` when there is none."""
    diags = list(report.diagnostics)
    if report.policy is not None:
        diags += report.policy.diagnostics()
    if report.policy_head is not None:  # plan: the change's own policies
        seen = {str(d) for d in diags}
        diags += [d for d in report.policy_head.diagnostics() if str(d) not in seen]
    out = render_diagnostics("github", diags, tool="modelops")
    return out.rstrip() + "\n" if out else ""


def outcome_table(report) -> Table:
    """One row per outcome: deployment, platform, status (coloured), detail (+ URL); the
    values are shown as text, never read as Rich markup."""
    table = Table(title=f"{report.action} --env {report.env}", title_justify="left")
    for col in ("deployment", "platform", "status", "detail"):
        table.add_column(col, overflow="fold")
    for o in report.outcomes:
        detail = o.message
        if o.outputs.get("url"):
            detail = f"{detail} ({o.outputs['url']})"
        # engine messages are text, never Rich markup ("[Errno 2]", a stray "[/x]")
        status = Text(o.status, style=_STATUS_STYLE.get(o.status, ""))
        table.add_row(Text(o.key), Text(o.platform), status, Text(detail))
    return table


def failures(report) -> str:
    """``error: <key>: <message>`` for each failed or stalled outcome (for stderr)."""
    return "".join(f"error: {o.key}: {o.message}\n" for o in report.failures)


def rollback(report, name: str, env: str) -> str:
    """The outcome of a rollback and, when it succeeded, the commits to revert in Git so
    that the next merge does not undo it."""
    lines = [f"{o.key}: {o.status}: {o.message}" for o in report.outcomes]
    if report.outcomes and not report.failures:
        rev = report.revision[:12]
        if report.revert:
            shas = " ".join(c["sha"][:12] for c in report.revert)  # newest first, as listed
            lines.append(
                f"\nRolled back {name} in {env} to {rev}. Git still describes the newer "
                "version: so that the next merge does not undo this rollback, revert in Git:"
            )
            lines += [f"  {c['sha'][:12]}  {c['summary']}" for c in report.revert]
            lines.append(f"\n  git revert {shas}")
            lines.append(
                "\nUntil then, `modelops apply` leaves this deployment alone (status: held)."
            )
        else:
            lines.append(
                f"\nRolled back {name} in {env} to {rev}; Git at HEAD already matches it, "
                "nothing to revert."
            )
    return "".join(line + "\n" for line in lines)

"""Plain text: one ``file:line:col: field: message`` line per finding, like a compiler."""

from __future__ import annotations

from reconciler.report.escape import visible_controls
from reconciler.report.model import FindingSet

_TAG = {"fail": "FAIL", "error": "ERROR", "warn": "WARN", "waived": "WAIVED"}


def write(fs: FindingSet) -> str:
    """Render the non-pass findings, one per line (an engine error repeated on many
    deployments once: :attr:`~reconciler.report.model.FindingSet.problems_once`).

    Spec findings (no deployment) print exactly as ``Diagnostic.__str__`` does (a warning
    as ``file:line:col: warning: field: message``), with control characters shown as
    escapes (:func:`~reconciler.report.escape.visible_controls`: a value from a spec
    cannot start a line of its own, such as a GitHub ``::workflow-command``); policy
    findings add the status, policy id, title and deployment, and a summary line follows.
    """
    lines = []
    for f in fs.problems_once:
        where = f"{f.location}: warning" if f.status == "warn" and not fs.extra else f.location
        head = f"{where}: {f.field}: " if f.field else f"{where}: "
        if f.deployment:
            text = f"{_TAG[f.status]} [{f.rule_id}] {f.title}: {f.message} ({f.deployment})"
            if f.waiver:
                text += (
                    f" (waived until {f.waiver['expires']} by {f.waiver['approver']}"
                    f"{', ' + f.waiver['ticket'] if f.waiver.get('ticket') else ''})"
                )
        elif fs.extra:
            text = f"{_TAG[f.status]} [{f.rule_id}] {f.message}"
        else:
            text = f.message
        lines.append(visible_controls(head + text))
    if fs.extra:
        c = fs.counts()
        verdict = "BLOCKED" if fs.blocking else "passed"
        lines.append(
            f"{len(fs.extra.get('deployments', []))} deployment(s), {_policy_count(fs)} rule(s): "
            f"{c['fail']} failed, {c['error']} error(s), {c['warn']} advisory, "
            f"{c['waived']} waived, {c['pass']} passed: {verdict}"
        )
    return "".join(line + "\n" for line in lines)


def _policy_count(fs: FindingSet) -> int:
    """The number of policies checked: the policy library's rules, not the synthetic rules
    of spec, library or waiver problems (``fs.extra["policies"]`` when the set has it)."""
    policies = fs.extra.get("policies")
    return len(policies) if isinstance(policies, list) else len(fs.rules)

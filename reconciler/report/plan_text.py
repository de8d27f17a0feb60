"""The plan as text for a terminal or a CI log (``modelops plan``, the default format).

:func:`write` is what goes to stdout; :func:`spec_findings` (before it) and
:func:`blockers` (after it) go to stderr. ``apply`` prints the same findings and
blockers around its outcome table (:func:`policy_findings` is the stdout part).
"""

from __future__ import annotations

from collections.abc import Iterable

from reconciler.engine.plan import render_plan_text
from reconciler.report import escape
from reconciler.report.findings import render_policy_report
from reconciler.report.plan_cost import change_text, item_lines, totals_lines
from reconciler.report.plan_lines import (
    plain_line,
    plan_totals,
    policy_change_blocks,
    policy_summary,
    spec_diff_lines,
)


def _text(lines: Iterable[str]) -> str:
    return "".join(line + "\n" for line in lines)


def spec_findings(report) -> str:
    """The run's spec findings, one ``file:line:col: ...`` line each (for stderr)."""
    return _text(str(diag) for diag in report.diagnostics)


def policy_findings(report) -> str:
    """The policy findings (text findings writer), with the merge base's policy set and,
    when the change modifies it, with the change's own; ``""`` when nothing to show."""
    lines = []
    if report.policy is not None and (report.policy.blocking or report.policy.findings()):
        if report.policy_head is not None:
            lines.append("Policy check with the merge base's policy set:")
        lines.append(render_policy_report("text", report.policy).rstrip())
    head = report.policy_head
    if head is not None and (head.blocking or head.findings()):
        lines.append(
            "Policy check with this change's own policy set (what apply uses after the merge):"
        )
        lines.append(render_policy_report("text", head).rstrip())
    return _text(lines)


def blockers(report) -> str:
    """What blocks the run (for stderr, after the plan): guards, spec errors, policy
    failures; ``""`` when nothing blocks."""
    lines = [f"error: {guard}" for guard in report.guards]
    if report.spec_errors:
        lines.append(f"{len(report.spec_errors)} spec error(s): nothing was built or applied.")
    elif report.policy is not None and report.policy.blocking:
        lines.append("blocking policy results: nothing was built or applied.")
    elif report.policy_head is not None and report.policy_head.blocking:
        lines.append(
            "blocking policy results with this change's own policy set (apply would refuse "
            "after the merge): nothing was built or applied."
        )
    return _text(lines)


def _policy_changes(report) -> list[str]:
    blocks = policy_change_blocks(report)
    if not blocks:
        return []
    diff = report.policy_changes
    title = (
        "Policy changes (needs security review: this change modifies what is enforced):"
        if diff.changes_enforcement
        else "Policy changes (what is enforced stays the same):"
    )
    lines = [f"\n{title}"]
    if diff.evaluated_at_base:
        lines.append(
            f"  specs were checked against the policy set of the merge base {report.base[:12]}"
            " (and against this change's own)"
        )
    for heading, block in blocks:
        lines.append(f"  {heading}:")
        lines += [f"    - {plain_line(line)}" for line in block]
    return lines


def _model_lines(model: dict) -> list[str]:
    old, new = model.get("old"), model.get("new")
    if old and new and old == new:
        pinned = f" = {new['resolved']}" if new.get("resolved") else ""
        return [
            f"  model: unchanged ({new['framework']} {new['uri']}{pinned} {new['sha256'][:12]})"
        ]
    if new and not old:
        pinned = f" = {new['resolved']}" if new.get("resolved") else ""
        return [f"  model: {new['framework']} {new['uri']}{pinned} {new['sha256'][:12]} (new here)"]
    if old and not new:
        return [f"  model: {old['framework']} {old['uri']} (removed)"]
    lines = []
    if old or new:
        for k in ("framework", "uri", "resolved", "sha256", "version"):
            width = 80 if k == "resolved" else 24  # resolved: models:/<name>/<version>
            a = str((old or {}).get(k, "") or "-")[:width]
            b = str((new or {}).get(k, "") or "-")[:width]
            if a != b:
                lines.append(f"  model {k}: {a} -> {b}")
    return lines


def _deployment(report, outcome: dict, plan) -> list[str]:
    """The plan of one deployment: resources (or why none), spec, model, policy, build."""
    lines = [""]
    spec_lines = spec_diff_lines(outcome["spec_diff"])
    if plan is not None and plan.empty and spec_lines:
        lines.append(f"{outcome['key']}: no infrastructure resource changes; the spec changed:")
    elif plan is not None:
        lines.append(render_plan_text([plan]).rstrip())
    else:
        lines.append(f"{outcome['key']} ({outcome['platform']}): {outcome['message']}")
    if outcome["status"] in ("delete", "orphaned"):
        lines.append(f"  {outcome['message']}")
    if outcome["status"] == "blocked":
        lines.append("  BLOCKED by policy: apply would not make these changes")
    if outcome.get("cost"):
        lines.append(f"  cost: {escape.one_line(change_text(outcome['cost']))}")
        lines += [f"    - {escape.one_line(line)}" for line in item_lines(outcome["cost"])]
    lines += [f"  spec: {plain_line(line)}" for line in spec_lines]
    experiment = outcome.get("experiment") or {}
    if experiment:
        verdict = experiment.get("summary") or experiment.get("verdict", "")
        lines.append(f"  A/B experiment (last verdict): {escape.one_line(str(verdict))}")
    lines += _model_lines(outcome["model"] or {})
    policy = policy_summary(report, outcome["key"])
    if policy:
        where = " (base policy set)" if report.policy_head is not None else ""
        lines.append(f"  policy{where}: {policy}")
    mine = policy_summary(report, outcome["key"], own=True)
    if mine:
        lines.append(f"  policy (this change's policy set): {mine}")
    if outcome["status"] != "delete":
        build = outcome["build"].get("message") or "not run (--build)"
        if outcome["smoke"]:
            ok = "passed" if outcome["smoke"].get("passed") else "FAILED"
            smoke = f"{ok} {'; '.join(outcome['smoke'].get('failures', []))}".strip()
        else:
            smoke = outcome["build"].get("smoke") or "not run (--smoke)"
        lines.append(f"  build: {build}; smoke: {smoke}")
    return lines


def write(report) -> str:
    """The plan of a run as text (stdout): policy findings, what was compared, the policy
    changes, each deployment's plan, a summary line with the verdict, and the notes.

    ``report`` is a plan run report (``RunReport`` of :mod:`reconciler.flow`). Every
    deployment is shown even when something blocks; what blocks is :func:`blockers`
    (stderr).
    """
    outcomes = [o.to_dict() for o in report.outcomes]
    lines = []
    if report.changes is not None:
        ch = report.changes
        head = ch.head[:12] if ch.head else "the working tree"
        lines.append(
            f"Plan for {', '.join(report.envs)}: merge base {ch.base[:12]} (of "
            f"{ch.requested_base}) -> {head}; {len(ch.files)} file(s) changed, "
            f"{len(ch.specs)} spec(s) to plan"
        )
        for s in ch.specs:
            where = s.path or s.old_path
            lines.append(f"  {s.status:9} {where}: {'; '.join(s.reasons)}")
    elif outcomes or not report.blocked:
        lines.append(f"Plan for {', '.join(report.envs)} against the ledger:")
    lines += _policy_changes(report)
    for c in report.guard_changes:
        how = "loosened" if c["loosens"] else "tightened"
        lines.append(
            f"Guard setting changed (needs security review): {c['setting']}: "
            f"{c['base']!r} → {c['head']!r} ({how})"
        )
    if not outcomes and not report.blocked:
        lines.append("No deployment to plan.")
    for outcome, plan in zip(outcomes, report.plans, strict=False):
        lines += _deployment(report, outcome, plan)
    if outcomes or report.policy_changes is not None:
        if report.exit_code:
            verdict = "blocks the merge"
        elif report.needs_security_review:
            why = "policy changes" if report.policy_changes is not None else "guard settings"
            verdict = f"nothing blocks the merge; needs security review ({why})"
        else:
            verdict = "nothing blocks the merge"
        policy = f"; policy: {policy_summary(report)}" if report.policy else ""
        if report.policy_head is not None:
            policy = f"; policy (base policy set): {policy_summary(report)}"
        totals = totals_lines(outcomes)
        if totals:
            lines.append("\nMonthly cost estimate (730 h), per environment:")
            lines += [f"  {escape.one_line(line)}" for line in totals]
        bentos = sum(1 for o in outcomes if (o["spec_diff"] or {}).get("rebuild"))
        rebuilt = f"; new Bentos: {bentos}" if bentos else ""
        lines.append(
            f"\nSummary: {len(outcomes)} deployment(s): {plan_totals(report) or '-'}"
            f"{rebuilt}{policy}; {verdict}."
        )
    if outcomes or not report.blocked:
        lines += [f"({note})" for note in report.notes]
    return policy_findings(report) + _text(lines)

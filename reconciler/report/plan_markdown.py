"""The plan as the one pull-request comment: ``modelops plan --format markdown``.

Top to bottom: verdict and what was compared, a summary line, what blocks the merge,
the policy changes, then one section per deployment (blocked first). The comment stays
under :data:`DEFAULT_LIMIT` (GitHub rejects more than 65,536 characters) and every
untrusted value is escaped where it is inserted (:mod:`reconciler.report.escape`).
The reading order, the cutting rules and the escaping are in ``docs/report.md``.
"""

from __future__ import annotations

import json

from reconciler.engine.plan import render_plan_text
from reconciler.report import escape
from reconciler.report.plan_cost import change_text, item_lines, totals_lines
from reconciler.report.plan_lines import (
    at_base,
    counts_text,
    md_code,
    md_line,
    plan_totals,
    policy_change_blocks,
    policy_counts,
    spec_diff_lines,
)

GITHUB_COMMENT_LIMIT = 65_536
#: Margin for the workflow's own additions (links, the update marker).
DEFAULT_LIMIT = GITHUB_COMMENT_LIMIT - 1_536
MARKER = "<!-- modelops-plan -->"
#: Plans longer than this many lines are collapsed in ``<details>``.
COLLAPSE_LINES = 12

_ICON = {"fail": "❌", "error": "❌", "warn": "⚠️", "waived": "🟡", "pass": "✅"}
_ORDER = {"fail": 0, "error": 1, "warn": 2, "waived": 3, "pass": 4}


def _short(digest: str) -> str:
    return digest[:12] if digest else ""


def _plan_text(outcome: dict, plan) -> str:
    """The plan of one deployment as plain text (the infrastructure helper's renderer)."""
    if plan is not None:
        return render_plan_text([plan]).rstrip()
    if outcome["plan"]:
        return json.dumps(outcome["plan"], indent=2, sort_keys=True)
    return ""


def _plan_summary(outcome: dict, plan) -> str:
    if plan is not None:
        return plan.summary()
    return outcome["plan"].get("summary", "") if isinstance(outcome["plan"], dict) else ""


def _policy_results(report, key: str) -> list:
    if report.policy is None:
        return []
    results = [r for r in report.policy.results if r.deployment == key]
    return sorted(results, key=lambda r: (_ORDER.get(r.status, 9), r.policy_id))


def _own_blocking(report, key: str) -> list:
    """Blocking results of deployment ``key`` with the change's own policy set (if checked)."""
    head = report.policy_head
    if head is None:
        return []
    return [r for r in head.results if r.deployment == key and r.blocking]


def _model_rows(model: dict) -> list[str]:
    old, new = model.get("old"), model.get("new")
    if not old and not new:
        return []
    if old and new and old == new:
        return [
            f"**Model:** unchanged ({escape.text(new.get('framework', ''))} "
            f"{md_code(new.get('uri'))}"
            + (f" = {md_code(new['resolved'])}" if new.get("resolved") else "")
            + f", digest {md_code(_short(new.get('sha256', '')))})"
        ]
    rows = ["| model | before | after |", "|---|---|---|"]
    remote = "resolved" in (old or {}) or "resolved" in (new or {})
    for field, label in (
        ("framework", "framework"),
        ("uri", "uri"),
        ("resolved", "resolved"),
        ("sha256", "digest"),
        ("version", "version"),
    ):
        if field == "resolved" and not remote:
            continue  # a repository path or a BentoML tag: nothing is resolved
        a = (old or {}).get(field, "") if old else None
        b = (new or {}).get(field, "") if new else None
        if field == "sha256":
            a, b = (_short(a) if a else a), (_short(b) if b else b)
        mark = " **(changed)**" if old and new and a != b else ""
        rows.append(
            f"| {label} | {md_code(a, table=True) if old else '(none)'} | "
            f"{md_code(b, table=True) if new else '(deleted)'}"
            f"{mark} |"
        )
    return rows


def _deployment_status(outcome: dict, results) -> tuple[int, str]:
    """(sort rank, badge): blocked first, then deletions, then changes, then no-ops."""
    if any(r.blocking for r in results) or outcome["build"].get("status") == "failed":
        return 0, "❌ blocked"
    if outcome["smoke"] and outcome["smoke"].get("passed") is False:
        return 0, "❌ smoke failed"
    if outcome["status"] == "delete":
        return 1, "🗑️ delete"
    plan = outcome["plan"] if isinstance(outcome["plan"], dict) else {}
    empty = bool(plan.get("empty")) or plan.get("summary", "") == "no changes"
    spec = outcome["spec_diff"] or {}
    if spec.get("rebuild") and spec.get("artifact") == "edge bundle":
        return 2, "✏️ change · 🔁 new edge bundle" if not empty else "🔁 new edge bundle"
    if spec.get("rebuild"):
        return 2, "✏️ change · 🔁 new Bento" if not empty else "🔁 new Bento (rebuild and rollout)"
    if not empty:
        return 2, "✏️ change"
    if spec.get("fields") or spec.get("files"):
        return 2, "✏️ spec change"
    return 3, "no infrastructure change"


def _section(report, outcome: dict, plan, *, details: bool = True) -> str:
    results = _policy_results(report, outcome["key"])
    _rank, badge = _deployment_status(outcome, results + _own_blocking(report, outcome["key"]))
    lines = [
        f"### {md_code(outcome['name'])} · {escape.text(outcome['env'])} · "
        f"{escape.text(outcome['platform'])} — {badge}",
        "",
    ]
    change = outcome["change"] or {}
    if change:
        why = "; ".join(change.get("reasons") or []) or change.get("status", "")
        where = change.get("path") or change.get("old_path") or ""
        status = escape.text(change.get("status", ""))
        lines += [f"_{status}_ {escape.code(where)}: {escape.text(why)}", ""]
    rows = _model_rows(outcome["model"] or {})
    if rows:
        lines += rows + [""]
    spec_lines = [md_line(line) for line in spec_diff_lines(outcome["spec_diff"])]
    if spec_lines:
        lines += [f"**Spec changes** ({escape.text(outcome['env'])}, overlay merged):", ""]
        lines += [f"- {line}" for line in spec_lines[:-1]] + ["", spec_lines[-1], ""]
    summary = _plan_summary(outcome, plan) or outcome["message"]
    quiet = summary == "no changes" and bool(spec_lines)
    if quiet:
        rebuild = (outcome["spec_diff"] or {}).get("rebuild")
        lines.append(
            "**Infrastructure:** no resource changes in the rendered plan"
            + (
                "; the new Bento's image is rolled out on apply (without `--build` the "
                "plan's image tag is derived, so it does not show; `plan --build` does)"
                if rebuild
                else ""
            )
        )
    else:
        lines.append(f"**Infrastructure:** {escape.text(summary)}")
    cost = outcome.get("cost") or {}
    if cost:
        lines.append("")
        lines.append(f"**Monthly cost:** {escape.text(change_text(cost))}")
    experiment = outcome.get("experiment") or {}
    if experiment:
        lines.append("")
        verdict = experiment.get("summary") or experiment.get("verdict", "")
        lines.append(f"**A/B experiment (last verdict):** {escape.text(str(verdict))}")
    if outcome["status"] == "delete":
        lines.append(f"> {escape.text(outcome['message'])}")
    elif outcome["message"] and outcome["message"] != summary:
        lines.append(f"> {escape.text(outcome['message'])}")
    text = _plan_text(outcome, plan) if details and not quiet else ""
    items = item_lines(cost) if text else []
    if items:  # what the estimate priced, in the plan's block (untrusted names: fenced)
        text += "\n\nmonthly cost, priced items:\n" + "\n".join(f"  {i}" for i in items)
    if text:
        n = text.count("\n") + 1
        block = [escape.fence(text, "diff")]
        if n > COLLAPSE_LINES:
            block = [f"<details><summary>plan ({n} lines)</summary>", "", *block, "", "</details>"]
        lines += ["", *block]
    elif not details and _plan_summary(outcome, plan):
        lines.append("_(plan details cut to fit the comment; see `--format json`)_")
    base_set = at_base(report)
    label = "**Policy** (base policy set):" if base_set else "**Policy:**"
    counts = counts_text(policy_counts(results))
    head = report.policy_head
    if base_set and head is not None:
        mine = [r for r in head.results if r.deployment == outcome["key"]]
        counts += f" · with this change's policy set: {counts_text(policy_counts(mine))}"
    lines += ["", f"{label} {counts}"]
    shown = [r for r in results if r.status != "pass"]
    for r in shown[:30]:
        where = f"{r.position.file}:{r.position.line}" if r.position.line else r.position.file
        extra = ""
        if r.status == "waived" and r.waiver is not None:
            extra = (
                f" — waived until {escape.text(r.waiver.expires)}"
                f" by {escape.text(r.waiver.approver)}"
            )
        elif r.status == "warn":
            extra = " — advisory"
        at = ", ".join(c for c in (escape.code(where), escape.code(r.path)) if c)
        lines.append(
            f"- {_ICON.get(r.status, '')} {md_code(r.policy_id)} {escape.text(r.title)}: "
            f"{escape.text(r.message)}{f' ({at})' if at else ''}{extra}"
        )
    if len(shown) > 30:
        lines.append(f"- … {len(shown) - 30} more finding(s) (see `modelops policy check`)")
    build = outcome["build"] or {}
    build_text = build.get("message") or build.get("status") or "not run"
    if build.get("status") == "failed":
        build_text = f"❌ failed: {build.get('message', '')}"
    smoke = outcome["smoke"] or {}
    if smoke:
        if smoke.get("passed"):
            load = smoke.get("load") or {}
            smoke_text = "✅ passed"
            if load:
                smoke_text += (
                    f" (p50 {load.get('p50_ms', 0):.1f} ms, p99 {load.get('p99_ms', 0):.1f} ms, "
                    f"{load.get('throughput_rps', 0):.0f} req/s"
                    + (
                        f"; SLO p99 ≤ {smoke['slo_p99_ms']:g} ms"
                        if smoke.get("slo_p99_ms") is not None
                        else ""
                    )
                    + ")"
                )
        else:
            smoke_text = "❌ failed: " + "; ".join(smoke.get("failures") or [])[:500]
    else:
        smoke_text = build.get("smoke") or "not run (plan --smoke)"
    if outcome["status"] != "delete":
        lines.append("")
        lines.append(f"**Build:** {escape.text(build_text)} · **Smoke:** {escape.text(smoke_text)}")
    return "\n".join(lines) + "\n"


def _policy_blockers(policy, lib_suffix: str, suffix: str, seen=None) -> list[str]:
    """The library and waiver problems and the blocking results of one policy report,
    except those the report ``seen`` already listed (the same position and message; the
    same policy, deployment and message)."""
    problems = hits = set()
    if seen is not None:
        problems = {
            (str(d.position), d.message)
            for d in [*seen.library_diagnostics, *seen.waiver_diagnostics]
        }
        hits = {(r.policy_id, r.deployment, r.message) for r in seen.results if r.blocking}
    out = []
    for d in [*policy.library_diagnostics, *policy.waiver_diagnostics]:
        if (str(d.position), d.message) not in problems:
            out.append(
                f"- ❌ policy library{lib_suffix}: {md_code(d.position)} {escape.text(d.message)}"
            )
    for r in policy.results:
        if r.blocking and (r.policy_id, r.deployment, r.message) not in hits:
            where = f"{r.position.file}:{r.position.line}"
            out.append(
                f"- ❌ {md_code(r.policy_id)} on {md_code(r.deployment)}{suffix}: "
                f"{escape.text(r.message)} ({md_code(where)})"
            )
    return out


def _blocking(report) -> list[str]:
    out = []
    for d in report.spec_errors:
        out.append(f"- ❌ {md_code(d.position)} {escape.text(d.field)}: {escape.text(d.message)}")
    for guard in report.guards:
        out.append(f"- ❌ {escape.text(guard)}")
    if report.policy is not None:
        base_set = " with the merge base's policy set" if at_base(report) else ""
        out += _policy_blockers(report.policy, "", base_set)
    if report.policy_head is not None:
        mine = " with this change's policy set (what `apply` uses after the merge)"
        out += _policy_blockers(report.policy_head, mine, mine, seen=report.policy)
    for o in report.build_failures:
        what = "build" if o.to_dict()["build"].get("status") == "failed" else "smoke test"
        out.append(f"- ❌ {what} of {md_code(o.key)} failed")
    return out


def _policy_changes_md(report) -> list[str]:
    blocks = policy_change_blocks(report)
    if not blocks:
        return []
    diff = report.policy_changes
    if diff.changes_enforcement:
        title = "### 🔐 Policy changes — needs security review"
        lead = (
            "This change modifies what the policy check enforces. It is not blocking by "
            "itself, but a security reviewer must approve it: the policies below apply to "
            "every deployment after the merge."
        )
    else:
        title = "### Policy changes"
        lead = "Files of the policy directory changed; what is enforced stays the same."
    out = [title, "", lead, ""]
    for heading, lines in blocks:
        out.append(f"**{heading}:**")
        out.append("")
        out += [f"- {md_line(line)}" for line in lines]
        out.append("")
    return out


def _guard_changes_md(report) -> list[str]:
    """The guard settings of ``modelops.yaml`` this change modifies (for security review)."""
    changes = report.guard_changes
    if not changes:
        return []
    out = [
        "### 🔐 Guard settings changed — needs security review",
        "",
        "This change modifies settings that guard changes; this plan used the stricter of "
        "the merge base's and the change's values, and one that is loosened blocks until "
        "a security reviewer approves it.",
        "",
    ]
    for c in changes:
        how = "loosened" if c["loosens"] else "tightened"
        out.append(
            f"- {md_code(c['setting'])}: {md_code(str(c['base']))} → "
            f"{md_code(str(c['head']))} ({how})"
        )
    out.append("")
    return out


def write(report, limit: int = DEFAULT_LIMIT) -> str:
    """The pull-request comment for a plan run report (``RunReport`` of :mod:`reconciler.flow`).

    Args:
        report: the plan run (a ``--base`` plan or a full plan).
        limit: maximum length in characters (default: GitHub's 65,536 minus a margin).

    Returns:
        Markdown, at most ``limit`` characters, starting with :data:`MARKER` so a
        workflow can find and update its own comment. When sections had to be cut, the
        comment ends with the list of deployments cut (or shortened) and says how to get
        the full plan.
    """
    blocked = report.exit_code != 0
    verdict = "❌ blocked: do not merge" if blocked else "✅ ready to merge"
    if not blocked and report.needs_security_review:
        verdict = "⚠️ needs security review: this change modifies the policy set"
        if not report.policy_changes or not report.policy_changes.changes_enforcement:
            verdict = "⚠️ needs security review: this change modifies a guard setting"
    envs = escape.text(", ".join(report.envs) if report.envs else report.env)
    head = [MARKER, f"## modelops plan — {verdict}", ""]
    if report.base:
        changes = report.changes
        n_files = len(changes.files) if changes is not None else 0
        at = md_code(report.revision[:12]) if changes and changes.head else "the working tree"
        requested = changes.requested_base if changes is not None else ""
        head.append(
            f"Compared merge base {md_code(report.base[:12])} (of {md_code(requested)}) with {at}: "
            f"{n_files} file(s) changed, environments: {envs}."
        )
    else:
        head.append(
            f"Revision {md_code(report.revision[:12] or 'working tree')}, environments: {envs}."
        )
    if at_base(report):
        head += [
            "",
            f"🔒 **Specs checked against the policy set of the merge base** "
            f"{md_code(report.base[:12])}: this change modifies policies, waivers or "
            "organisation settings, and a policy change that has not been reviewed may not "
            "approve its own specs (see **Policy changes**). The change's own policy set, "
            "which `apply` uses after the merge, was checked too; either one failing blocks.",
        ]
    outcomes = [o.to_dict() for o in report.outcomes]
    plans = list(report.plans) + [None] * (len(outcomes) - len(report.plans))
    n_blocked = 0
    ranked = []
    for outcome, plan in zip(outcomes, plans, strict=False):
        results = _policy_results(report, outcome["key"]) + _own_blocking(report, outcome["key"])
        rank, _ = _deployment_status(outcome, results)
        n_blocked += rank == 0
        ranked.append((rank, outcome["key"], outcome, plan))
    ranked.sort(key=lambda t: (t[0], t[1]))
    parts = [f"**{len(outcomes)}** deployment(s)"]
    totals = plan_totals(report)
    if totals:
        parts.append(f"infrastructure: {totals}")
    respec = [o for o in outcomes if (o["spec_diff"] or {}).get("fields")]
    if respec:
        bentos = sum(1 for o in outcomes if (o["spec_diff"] or {}).get("rebuild"))
        parts.append(f"spec changed: {len(respec)}, new Bentos: {bentos}")
    if report.policy is not None:
        where = " (base policy set)" if at_base(report) else ""
        parts.append(f"policy{where}: {counts_text(report.policy.counts())}")
    if at_base(report) and report.policy_head is not None:
        parts.append(f"with this change's policies: {counts_text(report.policy_head.counts())}")
    costs = totals_lines(outcomes)
    if costs:
        parts.append("monthly cost: " + escape.text("; ".join(costs)))
    built = [o for o in outcomes if o["build"].get("status") in ("built", "reused")]
    if built or report.build_failures:
        parts.append(f"builds: {len(built)} ok, {len(report.build_failures)} failed")
    elif outcomes:
        parts.append("builds: not run")
    head += ["", "**Summary:** " + " · ".join(parts), ""]
    blocking = _blocking(report)
    if blocking:
        head += ["### Blocking the merge", "", *blocking[:200]]
        if len(blocking) > 200:
            head.append(f"- … and {len(blocking) - 200} more")
        head.append("")
    warnings = [d for d in report.diagnostics if d.severity != "error"]
    if warnings:
        head += ["### Warnings", ""]
        head += [f"- ⚠️ {md_code(d.position)} {escape.text(d.message)}" for d in warnings[:50]]
        head.append("")
    head += _policy_changes_md(report)
    head += _guard_changes_md(report)
    if not outcomes and not blocking:
        head += ["No deployment is affected by this change.", ""]
    for note in report.notes:
        head.append(f"<sub>{escape.text(note)}</sub>  ")
    text = "\n".join(head) + "\n"
    footer_reserve = 2_000
    budget = limit - footer_reserve
    if len(text) > budget:  # the header alone is too long: cut its lists
        # at a line end, so no escape, code span or <sub> is cut in half
        end = max(0, budget - 200)
        line_end = text.rfind("\n", 0, end)
        text = text[: line_end + 1 if line_end > 0 else end]
        text += "\n_(blocking list cut to fit the comment)_\n"
    cut, shortened = [], []
    for _rank, key, outcome, plan in ranked:
        section = _section(report, outcome, plan)
        if len(text) + len(section) > budget:
            section = _section(report, outcome, plan, details=False)
            if len(text) + len(section) > budget:
                cut.append(key)
                continue
            shortened.append(key)
        text += "\n" + section
    if cut or shortened:
        note = ["", "---", "**Cut to stay under GitHub's 65,536-character comment limit:**"]
        if shortened:
            note.append(f"plan details of {len(shortened)} deployment(s): {_names(shortened)}.")
        if cut:
            note.append(f"{len(cut)} deployment section(s) left out: {_names(cut)}.")
        note.append("The full plan: `modelops plan --format json` (the workflow's artifact).")
        text += "\n".join(note) + "\n"
    return text[:limit]


def _names(keys: list[str], n: int = 40) -> str:
    shown = ", ".join(md_code(k) for k in keys[:n])
    return shown + (f" and {len(keys) - n} more" if len(keys) > n else "")

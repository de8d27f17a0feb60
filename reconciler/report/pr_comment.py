"""The one pull-request comment: ``modelops plan --format markdown``.

A reviewer reads it top to bottom:

1. a title line saying whether the change may merge, and what was compared;
2. a summary line (deployments, infrastructure totals, policy totals, builds);
3. everything that blocks the merge: spec errors, safety guards, policy failures and
   policy errors, failed builds and smoke tests;
4. per deployment × environment, blocked ones first: the model change (framework, uri,
   digest old → new), the infrastructure plan (create, update, replace, delete with the
   changed fields, collapsed in ``<details>`` when long), the policy result (failures
   first, then advisory and waived), the build and smoke result.

GitHub rejects comments over 65,536 characters (:data:`GITHUB_COMMENT_LIMIT`). The
comment is kept under :data:`DEFAULT_LIMIT` by first dropping the collapsed plan details
of the sections that do not fit, then whole sections, and it says what it cut and where
to get the full plan (``--format json``).

Every value that comes from a spec, a plan, a policy message, a waiver or a build or
smoke error is escaped where it is inserted (:mod:`reconciler.report.escape`): running
text is HTML-escaped (``& < >``), its Markdown punctuation backslash-escaped and its
@mentions neutralised with a zero-width joiner after the ``@``; inline code and the
plan's code fence use a backtick run longer than any run in the value. A hostile value
cannot add HTML, close a ``<details>`` block or a code span, or notify anyone.
"""

from __future__ import annotations

import json

from reconciler.report import escape

GITHUB_COMMENT_LIMIT = 65_536
#: Margin for the workflow's own additions (links, the update marker).
DEFAULT_LIMIT = GITHUB_COMMENT_LIMIT - 1_536
MARKER = "<!-- modelops-plan -->"
#: Plans longer than this many lines are collapsed in ``<details>``.
COLLAPSE_LINES = 12

_ICON = {"fail": "❌", "error": "❌", "warn": "⚠️", "waived": "🟡", "pass": "✅"}
_ORDER = {"fail": 0, "error": 1, "warn": 2, "waived": 3, "pass": 4}


def _code(value: object, *, table: bool = False) -> str:
    """``value`` as inline code (:func:`escape.code`), or ``–`` when empty."""
    return escape.code(value, table=table) or "–"


def _short(digest: str) -> str:
    return digest[:12] if digest else ""


def _md_escape(text: object) -> str:
    """Untrusted running text (:func:`escape.text`): one line, no HTML, no mentions."""
    return escape.text(text)


def _plan_text(outcome, plan) -> str:
    """The plan of one deployment as plain text (the infrastructure helper's renderer)."""
    if plan is not None:
        try:
            from reconciler.engine.plan import render_plan_text

            return render_plan_text([plan]).rstrip()
        except ImportError:
            pass
    if outcome.plan:
        return json.dumps(outcome.plan, indent=2, sort_keys=True)
    return ""


def _plan_summary(outcome, plan) -> str:
    if plan is not None and hasattr(plan, "summary"):
        return plan.summary()
    return outcome.plan.get("summary", "") if isinstance(outcome.plan, dict) else ""


def _policy_results(report, key: str) -> list:
    if report.policy is None:
        return []
    results = [r for r in report.policy.results if r.deployment == key]
    return sorted(results, key=lambda r: (_ORDER.get(r.status, 9), r.policy_id))


def _policy_counts(results) -> dict:
    counts: dict[str, int] = {}
    for r in results:
        counts[r.status] = counts.get(r.status, 0) + 1
    return counts


def _counts_text(counts: dict) -> str:
    labels = [
        ("fail", "failing"),
        ("error", "policy errors"),
        ("warn", "advisory"),
        ("waived", "waived"),
        ("pass", "passed"),
    ]
    parts = [f"{counts[k]} {label}" for k, label in labels if counts.get(k)]
    return ", ".join(parts) or "no policies evaluated"


def _model_rows(model: dict) -> list[str]:
    old, new = model.get("old"), model.get("new")
    if not old and not new:
        return []
    if old and new and old == new:
        return [
            f"**Model:** unchanged ({_md_escape(new.get('framework', ''))} "
            f"{_code(new.get('uri'))}, digest {_code(_short(new.get('sha256', '')))})"
        ]
    rows = ["| model | before | after |", "|---|---|---|"]
    for field, label in (
        ("framework", "framework"),
        ("uri", "uri"),
        ("sha256", "digest"),
        ("version", "version"),
    ):
        a = (old or {}).get(field, "") if old else None
        b = (new or {}).get(field, "") if new else None
        if field == "sha256":
            a, b = (_short(a) if a else a), (_short(b) if b else b)
        mark = " **(changed)**" if old and new and a != b else ""
        rows.append(
            f"| {label} | {_code(a, table=True) if old else '(none)'} | "
            f"{_code(b, table=True) if new else '(deleted)'}"
            f"{mark} |"
        )
    return rows


def _deployment_status(outcome, results) -> tuple[int, str]:
    """(sort rank, badge): blocked first, then deletions, then changes, then no-ops."""
    if any(r.blocking for r in results) or outcome.build.get("status") == "failed":
        return 0, "❌ blocked"
    if outcome.smoke and outcome.smoke.get("passed") is False:
        return 0, "❌ smoke failed"
    if outcome.status == "delete":
        return 1, "🗑️ delete"
    summary = outcome.plan.get("summary", "") if isinstance(outcome.plan, dict) else ""
    if outcome.plan.get("empty") if isinstance(outcome.plan, dict) else False:
        return 3, "no infrastructure change"
    return 2, "✏️ change" if summary != "no changes" else "no infrastructure change"


def _section(report, outcome, plan, *, details: bool = True) -> str:
    results = _policy_results(report, outcome.key)
    _rank, badge = _deployment_status(outcome, results)
    lines = [
        f"### {_code(outcome.name)} · {_md_escape(outcome.env)} · "
        f"{_md_escape(outcome.platform)} — {badge}",
        "",
    ]
    change = outcome.change or {}
    if change:
        why = "; ".join(change.get("reasons") or []) or change.get("status", "")
        where = change.get("path") or change.get("old_path") or ""
        status = _md_escape(change.get("status", ""))
        lines += [f"_{status}_ {escape.code(where)}: {_md_escape(why)}", ""]
    rows = _model_rows(outcome.model or {})
    if rows:
        lines += rows + [""]
    summary = _plan_summary(outcome, plan) or outcome.message
    lines.append(f"**Infrastructure:** {_md_escape(summary)}")
    if outcome.status == "delete":
        lines.append(f"> {_md_escape(outcome.message)}")
    elif outcome.message and outcome.message != summary:
        lines.append(f"> {_md_escape(outcome.message)}")
    text = _plan_text(outcome, plan) if details else ""
    if text:
        n = text.count("\n") + 1
        block = [escape.fence(text, "diff")]
        if n > COLLAPSE_LINES:
            block = [f"<details><summary>plan ({n} lines)</summary>", "", *block, "", "</details>"]
        lines += ["", *block]
    elif not details and _plan_summary(outcome, plan):
        lines.append("_(plan details cut to fit the comment; see `--format json`)_")
    lines += ["", f"**Policy:** {_counts_text(_policy_counts(results))}"]
    shown = [r for r in results if r.status != "pass"]
    for r in shown[:30]:
        where = f"{r.position.file}:{r.position.line}" if r.position.line else r.position.file
        extra = ""
        if r.status == "waived" and r.waiver is not None:
            extra = (
                f" — waived until {_md_escape(r.waiver.expires)} by {_md_escape(r.waiver.approver)}"
            )
        elif r.status == "warn":
            extra = " — advisory"
        at = ", ".join(c for c in (escape.code(where), escape.code(r.path)) if c)
        lines.append(
            f"- {_ICON.get(r.status, '')} {_code(r.policy_id)} {_md_escape(r.title)}: "
            f"{_md_escape(r.message)}{f' ({at})' if at else ''}{extra}"
        )
    if len(shown) > 30:
        lines.append(f"- … {len(shown) - 30} more finding(s) (see `modelops policy check`)")
    build = outcome.build or {}
    build_text = build.get("message") or build.get("status") or "not run"
    if build.get("status") == "failed":
        build_text = f"❌ failed: {build.get('message', '')}"
    smoke = outcome.smoke or {}
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
    if outcome.status != "delete":
        lines.append("")
        lines.append(f"**Build:** {_md_escape(build_text)} · **Smoke:** {_md_escape(smoke_text)}")
    return "\n".join(lines) + "\n"


def _totals(report) -> str:
    keys = ("create", "update", "replace", "delete")
    totals = dict.fromkeys(keys, 0)
    found = False
    for plan in report.plans:
        counts = None
        if plan is not None and hasattr(plan, "counts"):
            try:
                counts = plan.counts()
            except TypeError:
                counts = None
        if counts is None and plan is not None and hasattr(plan, "to_dict"):
            counts = plan.to_dict().get("counts") or plan.to_dict().get("summary_counts")
        if isinstance(counts, dict):
            found = True
            for k in keys:
                totals[k] += int(counts.get(k, 0) or 0)
    if not found:
        return ""
    return ", ".join(f"{totals[k]} to {k}" for k in keys)


def _blocking(report) -> list[str]:
    out = []
    for d in report.spec_errors:
        out.append(f"- ❌ {_code(d.position)} {_md_escape(d.field)}: {_md_escape(d.message)}")
    for guard in report.guards:
        out.append(f"- ❌ {_md_escape(guard)}")
    if report.policy is not None:
        problems = list(report.policy.library_diagnostics) + list(report.policy.waiver_diagnostics)
        for d in problems:
            out.append(f"- ❌ policy library: {_code(d.position)} {_md_escape(d.message)}")
        for r in report.policy.results:
            if r.blocking:
                where = f"{r.position.file}:{r.position.line}"
                out.append(
                    f"- ❌ {_code(r.policy_id)} on {_code(r.deployment)}: "
                    f"{_md_escape(r.message)} ({_code(where)})"
                )
    for o in report.build_failures:
        what = "build" if o.build.get("status") == "failed" else "smoke test"
        out.append(f"- ❌ {what} of {_code(o.key)} failed")
    return out


def render_pr_comment(report, limit: int = DEFAULT_LIMIT) -> str:
    """The pull-request comment for a plan :class:`~reconciler.pipeline.RunReport`.

    Args:
        report: the plan run (``pipeline.plan(..., base=...)`` or a full plan).
        limit: maximum length in characters (default: GitHub's 65,536 minus a margin).

    Returns:
        Markdown, at most ``limit`` characters, starting with :data:`MARKER` so a
        workflow can find and update its own comment. When sections had to be cut, the
        comment ends with the list of deployments cut (or shortened) and says how to get
        the full plan.
    """
    blocked = report.exit_code != 0
    verdict = "❌ blocked: do not merge" if blocked else "✅ ready to merge"
    envs = _md_escape(", ".join(report.envs) if report.envs else report.env)
    head = [MARKER, f"## modelops plan — {verdict}", ""]
    if report.base:
        changes = report.changes
        n_files = len(changes.files) if changes is not None else 0
        at = _code(report.revision[:12]) if changes and changes.head else "the working tree"
        requested = changes.requested_base if changes is not None else ""
        head.append(
            f"Compared merge base {_code(report.base[:12])} (of {_code(requested)}) with {at}: "
            f"{n_files} file(s) changed, environments: {envs}."
        )
    else:
        head.append(
            f"Revision {_code(report.revision[:12] or 'working tree')}, environments: {envs}."
        )
    outcomes = list(report.outcomes)
    plans = list(report.plans) + [None] * (len(outcomes) - len(report.plans))
    n_blocked = 0
    ranked = []
    for outcome, plan in zip(outcomes, plans, strict=False):
        rank, _ = _deployment_status(outcome, _policy_results(report, outcome.key))
        n_blocked += rank == 0
        ranked.append((rank, outcome.key, outcome, plan))
    ranked.sort(key=lambda t: (t[0], t[1]))
    parts = [f"**{len(outcomes)}** deployment(s)"]
    totals = _totals(report)
    if totals:
        parts.append(f"infrastructure: {totals}")
    if report.policy is not None:
        parts.append(f"policy: {_counts_text(report.policy.counts())}")
    built = [o for o in outcomes if o.build.get("status") in ("built", "reused")]
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
        head += [f"- ⚠️ {_code(d.position)} {_md_escape(d.message)}" for d in warnings[:50]]
        head.append("")
    if not outcomes and not blocking:
        head += ["No deployment is affected by this change.", ""]
    for note in report.notes:
        head.append(f"<sub>{_md_escape(note)}</sub>  ")
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


def policy_summary(report, key: str | None = None) -> str:
    """Policy counts of one deployment (``key``) or of the whole run, as a phrase.

    Returns e.g. ``"1 failing, 2 waived, 24 passed"``; ``""`` when no policy ran.
    """
    if report.policy is None:
        return ""
    if key is None:
        return _counts_text(report.policy.counts())
    results = _policy_results(report, key)
    return _counts_text(_policy_counts(results)) if results else ""


def plan_totals(report) -> str:
    """``"0 to create, 1 to update, 0 to replace, 0 to delete"`` over every plan of a run."""
    return _totals(report)


def _names(keys: list[str], n: int = 40) -> str:
    shown = ", ".join(_code(k) for k in keys[:n])
    return shown + (f" and {len(keys) - n} more" if len(keys) > n else "")


def pr_comment_data(report) -> dict:
    """The same data as the comment, for ``--format json``: the run plus each plan."""
    data = report.to_dict()
    data["plans"] = [
        p.to_dict() if p is not None and hasattr(p, "to_dict") else None for p in report.plans
    ]
    return data

"""The one pull-request comment: ``modelops plan --format markdown``.

A reviewer reads it top to bottom:

1. a title line saying whether the change may merge (``❌ blocked``, ``⚠️ needs
   security review`` when it changes the policy set, else ``✅ ready to merge``), and
   what was compared, including which policy set the specs were checked against;
2. a summary line (deployments, infrastructure totals, spec changes and new Bentos,
   policy totals, builds);
3. everything that blocks the merge: spec errors, safety guards, policy failures and
   policy errors (with the base's policy set and, when the change modifies it, with the
   change's own), failed builds and smoke tests;
4. "Policy changes", whenever the change touches the policy set: policies added and
   removed, enforcement / severity / waivable changes (per environment), Rego source
   changed, organisation settings (key: old → new), waivers added, removed and changed,
   and where the two policy sets judge the planned deployments differently;
5. per deployment × environment, blocked ones first: the model change (framework, uri,
   digest old → new), the resolved-spec fields that changed (old → new) and whether
   they make a new Bento, the infrastructure plan (create, update, replace, delete with
   the changed fields, collapsed in ``<details>`` when long), the policy result
   (failures first, then advisory and waived), the build and smoke result.

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
    if outcome.plan is not None:
        return json.dumps(outcome.plan.to_dict(), indent=2, sort_keys=True)
    return ""


def _plan_summary(outcome, plan) -> str:
    if plan is not None and hasattr(plan, "summary"):
        return plan.summary()
    return outcome.plan.summary() if outcome.plan is not None else ""


def _policy_results(report, key: str) -> list:
    if report.policy is None:
        return []
    results = [r for r in report.policy.results if r.deployment == key]
    return sorted(results, key=lambda r: (_ORDER.get(r.status, 9), r.policy_id))


def _own_blocking(report, key: str) -> list:
    """Blocking results of deployment ``key`` with the change's own policy set (if checked)."""
    head = getattr(report, "policy_head", None)
    if head is None:
        return []
    return [r for r in head.results if r.deployment == key and r.blocking]


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
    if outcome.smoke is not None and not outcome.smoke.passed:
        return 0, "❌ smoke failed"
    if outcome.status == "delete":
        return 1, "🗑️ delete"
    plan = outcome.plan.to_dict() if outcome.plan is not None else {}
    empty = bool(plan.get("empty")) or plan.get("summary", "") == "no changes"
    spec = getattr(outcome, "spec_diff", None) or {}
    if spec.get("rebuild"):
        return 2, "✏️ change · 🔁 new Bento" if not empty else "🔁 new Bento (rebuild and rollout)"
    if not empty:
        return 2, "✏️ change"
    if spec.get("fields") or spec.get("files"):
        return 2, "✏️ spec change"
    return 3, "no infrastructure change"


def _section(report, outcome, plan, *, details: bool = True) -> str:
    results = _policy_results(report, outcome.key)
    _rank, badge = _deployment_status(outcome, results + _own_blocking(report, outcome.key))
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
    spec_lines = [_md_line(line) for line in spec_diff_lines(outcome)]
    if spec_lines:
        lines += [f"**Spec changes** ({_md_escape(outcome.env)}, overlay merged):", ""]
        lines += [f"- {line}" for line in spec_lines[:-1]] + ["", spec_lines[-1], ""]
    summary = _plan_summary(outcome, plan) or outcome.message
    quiet = summary == "no changes" and bool(spec_lines)
    if quiet:
        rebuild = (getattr(outcome, "spec_diff", None) or {}).get("rebuild")
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
        lines.append(f"**Infrastructure:** {_md_escape(summary)}")
    if outcome.status == "delete":
        lines.append(f"> {_md_escape(outcome.message)}")
    elif outcome.message and outcome.message != summary:
        lines.append(f"> {_md_escape(outcome.message)}")
    text = _plan_text(outcome, plan) if details and not quiet else ""
    if text:
        n = text.count("\n") + 1
        block = [escape.fence(text, "diff")]
        if n > COLLAPSE_LINES:
            block = [f"<details><summary>plan ({n} lines)</summary>", "", *block, "", "</details>"]
        lines += ["", *block]
    elif not details and _plan_summary(outcome, plan):
        lines.append("_(plan details cut to fit the comment; see `--format json`)_")
    at_base = _at_base(report)
    label = "**Policy** (base policy set):" if at_base else "**Policy:**"
    counts = _counts_text(_policy_counts(results))
    head = getattr(report, "policy_head", None)
    if at_base and head is not None:
        mine = [r for r in head.results if r.deployment == outcome.key]
        counts += f" · with this change's policy set: {_counts_text(_policy_counts(mine))}"
    lines += ["", f"{label} {counts}"]
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
    smoke = outcome.smoke.to_dict() if outcome.smoke is not None else {}
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
        base_set = " with the merge base's policy set" if _at_base(report) else ""
        for r in report.policy.results:
            if r.blocking:
                where = f"{r.position.file}:{r.position.line}"
                out.append(
                    f"- ❌ {_code(r.policy_id)} on {_code(r.deployment)}{base_set}: "
                    f"{_md_escape(r.message)} ({_code(where)})"
                )
    head = getattr(report, "policy_head", None)
    if head is not None:
        mine = " with this change's policy set (what `apply` uses after the merge)"
        seen = set()
        if report.policy is not None:
            seen = {
                (str(d.position), d.message)
                for d in [*report.policy.library_diagnostics, *report.policy.waiver_diagnostics]
            }
        for d in [*head.library_diagnostics, *head.waiver_diagnostics]:
            if (str(d.position), d.message) not in seen:
                out.append(
                    f"- ❌ policy library{mine}: {_code(d.position)} {_md_escape(d.message)}"
                )
        base_hits = set()
        if report.policy is not None:
            base_hits = {
                (r.policy_id, r.deployment, r.message) for r in report.policy.results if r.blocking
            }
        for r in head.results:
            if r.blocking and (r.policy_id, r.deployment, r.message) not in base_hits:
                where = f"{r.position.file}:{r.position.line}"
                out.append(
                    f"- ❌ {_code(r.policy_id)} on {_code(r.deployment)}{mine}: "
                    f"{_md_escape(r.message)} ({_code(where)})"
                )
    for o in report.build_failures:
        what = "build" if o.build.get("status") == "failed" else "smoke test"
        out.append(f"- ❌ {what} of {_code(o.key)} failed")
    return out


# -- structured lines, rendered as Markdown (escaped) or plain text ------------------------
#
# A line is a list of segments ``(kind, value)``: ``lit`` is the renderer's own text
# (inserted as is), ``code`` an untrusted value shown as inline code, ``text`` untrusted
# running text. :func:`_md_line` escapes with :mod:`reconciler.report.escape`;
# :func:`plain_line` joins the values for a terminal.

#: At most this many entries per list of the policy changes and per spec diff.
MAX_ITEMS = 60
MAX_VALUE = 120


def _lit(value: str) -> tuple[str, str]:
    return ("lit", value)


def _val(value: object) -> tuple[str, object]:
    """A spec, policy or settings value: ``(unset)`` for None, else inline code."""
    if value is None:
        return ("lit", "(unset)")
    text = value if isinstance(value, str) and value else json.dumps(value, default=str)
    if len(text) > MAX_VALUE:
        text = text[: MAX_VALUE - 1] + "…"
    return ("code", text)


def _md_line(parts: list) -> str:
    out = []
    for kind, value in parts:
        if kind == "code":
            out.append(_code(value))
        elif kind == "text":
            out.append(_md_escape(value))
        else:
            out.append(value)
    return "".join(out)


def plain_line(parts: list) -> str:
    """A structured line as plain text (values as they are, folded to one line)."""
    return "".join(escape.one_line(v) if k != "lit" else v for k, v in parts)


def _at_base(report) -> bool:
    diff = getattr(report, "policy_changes", None)
    return bool(diff is not None and getattr(diff, "evaluated_at_base", False))


#: ``reconciler.build.bento.build_inputs`` keys, as a reviewer knows them.
_INPUT_LABELS = {
    "model": "spec.model",
    "model_file": "model file",
    "serving": "spec.serving",
    "capture": "spec.monitoring.capture",
    "sensitive_fields": "spec.data.sensitive_fields",
    "framework": "framework package",
    "deployment": "deployment name",
    "env": "environment",
    "template": "service template",
    "bentoml": "BentoML version",
}


def spec_diff_lines(outcome) -> list[list]:
    """The spec changes of one deployment as structured lines; ``[]`` when none.

    One line per changed field (``path: old → new``), one for the changed files the
    spec names, then (always last) the Bento verdict: a new Bento is built and rolled
    out when the change touches what the build digest covers, else the Bento stays.
    """
    spec = getattr(outcome, "spec_diff", None) or {}
    fields, files = spec.get("fields") or [], spec.get("files") or []
    if not fields and not files:
        return []
    lines = []
    for f in fields[:MAX_ITEMS]:
        lines.append([_val(f["path"]), _lit(": "), _val(f["old"]), _lit(" → "), _val(f["new"])])
    if len(fields) > MAX_ITEMS:
        lines.append([_lit(f"… {len(fields) - MAX_ITEMS} more field(s) (see --format json)")])
    if files:
        lines.append([_lit("changed files it names: "), *_joined(files)])
    inputs = ", ".join(_INPUT_LABELS.get(k, k) for k in spec.get("build_inputs") or [])
    how = spec.get("decided_by") or ""
    why = [_lit(f" (changed build inputs: {inputs}"), *_how(how), _lit(")")] if inputs else []
    if spec.get("rebuild"):
        lines.append([_lit("🔁 new Bento: the service will be rebuilt and rolled out"), *why])
    else:
        lines.append([_lit("Bento unchanged: no build input changed"), *_how(how, True)])
    return lines


def _how(decided_by: str, alone: bool = False) -> list:
    if not decided_by or decided_by == "build inputs":
        return []
    return [_lit(" (" if alone else "; "), _lit("decided from the "), ("text", decided_by)] + (
        [_lit(")")] if alone else []
    )


def _joined(values: list, n: int = 20) -> list:
    out: list = []
    for i, v in enumerate(values[:n]):
        out += ([_lit(", ")] if i else []) + [("code", v)]
    if len(values) > n:
        out.append(_lit(f" and {len(values) - n} more"))
    return out


def _policy_line(p: dict) -> list:
    by_env = p.get("enforcement_by_environment") or {}
    envs = "".join(f", {e}: {v}" for e, v in by_env.items())
    return [
        _val(p.get("id") or "(no id)"),
        _lit(" "),
        ("text", p.get("title") or ""),
        _lit(" ("),
        _val(p.get("file")),
        _lit("): severity "),
        _val(p.get("severity") or "?"),
        _lit(", enforcement "),
        _val(f"{p.get('enforcement') or '?'}{envs}"),
        _lit(", waivable" if p.get("waivable", True) else ", not waivable"),
    ]


def _waiver_line(w: dict) -> list:
    scope = w.get("environment") or "every environment"
    out = [
        _val(w.get("policy") or "(no policy)"),
        _lit(" on "),
        _val(w.get("deployment") or "(no deployment)"),
        _lit(" in "),
        ("text", scope),
    ]
    for key in ("expires", "approver", "ticket", "reason"):
        if w.get(key):
            out += [_lit(f", {key} "), _val(w[key])]
    return out


def policy_change_blocks(report) -> list[tuple[str, list[list]]]:
    """What the change does to the policy set, as ``(heading, structured lines)`` blocks.

    ``[]`` when the plan did not touch the policy set. Headings are fixed text; lines are
    structured (:func:`plain_line`, or Markdown through the escaping helpers).
    """
    diff = getattr(report, "policy_changes", None)
    if diff is None or diff.empty:
        return []
    blocks: list[tuple[str, list[list]]] = []

    def block(heading: str, lines: list[list]) -> None:
        if lines:
            extra = len(lines) - MAX_ITEMS
            lines = lines[:MAX_ITEMS]
            if extra > 0:
                lines.append([_lit(f"… {extra} more (see --format json)")])
            blocks.append((heading, lines))

    if diff.paths:
        b, h = diff.paths.get("base", {}), diff.paths.get("head", {})
        block(
            "Policy set moved (modelops.yaml)",
            [
                [_lit(f"{k}: "), _val(b.get(k)), _lit(" → "), _val(h.get(k))]
                for k in ("policies", "organization")
                if b.get(k) != h.get(k)
            ],
        )
    block("Policies added", [_policy_line(p) for p in diff.added])
    block("Policies removed", [_policy_line(p) for p in diff.removed])
    changed = []
    for c in diff.changed:
        parts = [_val(c.get("id") or "(no id)"), _lit(" ("), _val(c.get("file")), _lit("): ")]
        items = []
        for f in c.get("fields") or []:
            if f["field"] == "comments":
                items.append([_lit("comments or descriptions only")])
            else:
                items.append(
                    [("text", f["field"]), _lit(" "), _val(f["old"]), _lit(" → "), _val(f["new"])]
                )
        if c.get("rego_changed"):
            items.append([_lit("Rego source changed")])
        for i, item in enumerate(items):
            parts += ([_lit("; ")] if i else []) + item
        changed.append(parts)
    block("Policies changed", changed)
    rego = [c["id"] or c["file"] for c in diff.changed if c.get("rego_changed")]
    rego += [p["id"] or p["file"] for p in diff.added]
    if rego:
        block("Rego source changed", [[_lit("in "), *_joined(rego)]])
    settings = []
    for o in diff.organization:
        line = [_val(o["key"]), _lit(": ")]
        if "added" in o:
            items = [("added ", o["added"]), ("removed ", o["removed"])]
            parts = [(label, values) for label, values in items if values]
            for i, (label, values) in enumerate(parts):
                line += ([_lit("; ")] if i else []) + [_lit(label)]
                line += _joined([v if isinstance(v, str) else json.dumps(v) for v in values])
            if not parts:
                line.append(_lit("same items, new order"))
        else:
            line += [_val(o["old"]), _lit(" → "), _val(o["new"])]
        settings.append(line)
    block("Organisation settings changed", settings)
    block("Waivers added", [_waiver_line(w) for w in diff.waivers_added])
    block("Waivers removed", [_waiver_line(w) for w in diff.waivers_removed])
    wchanged = []
    for w in diff.waivers_changed:
        parts = _waiver_line({k: w.get(k) for k in ("policy", "deployment", "environment")})
        parts.append(_lit(": "))
        for i, f in enumerate(w.get("fields") or []):
            parts += ([_lit("; ")] if i else []) + [
                ("text", f["field"]),
                _lit(" "),
                _val(f["old"]),
                _lit(" → "),
                _val(f["new"]),
            ]
        wchanged.append(parts)
    block("Waivers changed", wchanged)
    block("Could not be read", [[("text", p)] for p in diff.problems])
    block(
        "Effect on the deployments planned here (base policy set → this change's)",
        [
            [
                _val(e["policy"]),
                _lit(" on "),
                _val(e["deployment"]),
                _lit(f": {e['base']} → {e['head']}"),
            ]
            for e in diff.effects
        ],
    )
    if diff.files and not diff.changes_enforcement:
        block(
            "Edited without changing what is enforced",
            [[*_joined(diff.files), _lit(" (comments or formatting only)")]],
        )
    block(
        "Other files under the policies directory (not evaluated: fixture cases, docs)",
        [_joined(diff.other_files)] if diff.other_files else [],
    )
    return blocks


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
        out += [f"- {_md_line(line)}" for line in lines]
        out.append("")
    return out


def render_pr_comment(report, limit: int = DEFAULT_LIMIT) -> str:
    """The pull-request comment for a plan :class:`~reconciler.flow.run.RunReport`.

    Args:
        report: the plan run (``flow.plan.plan(..., base=...)`` or a full plan).
        limit: maximum length in characters (default: GitHub's 65,536 minus a margin).

    Returns:
        Markdown, at most ``limit`` characters, starting with :data:`MARKER` so a
        workflow can find and update its own comment. When sections had to be cut, the
        comment ends with the list of deployments cut (or shortened) and says how to get
        the full plan.
    """
    blocked = report.exit_code != 0
    verdict = "❌ blocked: do not merge" if blocked else "✅ ready to merge"
    if not blocked and getattr(report, "needs_security_review", False):
        verdict = "⚠️ needs security review: this change modifies the policy set"
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
    if _at_base(report):
        head += [
            "",
            f"🔒 **Specs checked against the policy set of the merge base** "
            f"{_code(report.base[:12])}: this change modifies policies, waivers or "
            "organisation settings, and a policy change that has not been reviewed may not "
            "approve its own specs (see **Policy changes**). The change's own policy set, "
            "which `apply` uses after the merge, was checked too; either one failing blocks.",
        ]
    outcomes = list(report.outcomes)
    plans = list(report.plans) + [None] * (len(outcomes) - len(report.plans))
    n_blocked = 0
    ranked = []
    for outcome, plan in zip(outcomes, plans, strict=False):
        results = _policy_results(report, outcome.key) + _own_blocking(report, outcome.key)
        rank, _ = _deployment_status(outcome, results)
        n_blocked += rank == 0
        ranked.append((rank, outcome.key, outcome, plan))
    ranked.sort(key=lambda t: (t[0], t[1]))
    parts = [f"**{len(outcomes)}** deployment(s)"]
    totals = _totals(report)
    if totals:
        parts.append(f"infrastructure: {totals}")
    respec = [o for o in outcomes if (getattr(o, "spec_diff", None) or {}).get("fields")]
    if respec:
        bentos = sum(1 for o in outcomes if (getattr(o, "spec_diff", None) or {}).get("rebuild"))
        parts.append(f"spec changed: {len(respec)}, new Bentos: {bentos}")
    if report.policy is not None:
        where = " (base policy set)" if _at_base(report) else ""
        parts.append(f"policy{where}: {_counts_text(report.policy.counts())}")
    if _at_base(report) and report.policy_head is not None:
        parts.append(f"with this change's policies: {_counts_text(report.policy_head.counts())}")
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
    head += _policy_changes_md(report)
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


def policy_summary(report, key: str | None = None, *, own: bool = False) -> str:
    """Policy counts of one deployment (``key``) or of the whole run, as a phrase.

    Args:
        report: the run.
        key: a deployment key, or ``None`` for the whole run.
        own: count the results with the change's own policy set
            (``report.policy_head``, set when the plan checked against the base's)
            instead of ``report.policy``.

    Returns e.g. ``"1 failing, 2 waived, 24 passed"``; ``""`` when no policy ran.
    """
    policy = getattr(report, "policy_head", None) if own else report.policy
    if policy is None:
        return ""
    if key is None:
        return _counts_text(policy.counts())
    results = [r for r in policy.results if r.deployment == key]
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

"""What the plan writers share: policy counts and totals as phrases, and structured lines.

A structured line is a list of segments ``(kind, value)``: ``lit`` is the writer's own
text (inserted as is), ``code`` an untrusted value shown as inline code, ``text``
untrusted running text. :func:`md_line` renders one as escaped Markdown
(:mod:`reconciler.report.escape`), :func:`plain_line` as one line for a terminal. The
spec changes of a deployment (:func:`spec_diff_lines`) and what a change does to the
policy set (:func:`policy_change_blocks`) are built once, as structured lines, for both.
"""

from __future__ import annotations

import json

from reconciler.report import escape

#: At most this many entries per list of the policy changes and per spec diff.
MAX_ITEMS = 60
MAX_VALUE = 120


def md_code(value: object, *, table: bool = False) -> str:
    """``value`` as inline code (:func:`escape.code`), or ``–`` when empty."""
    return escape.code(value, table=table) or "–"


def policy_counts(results) -> dict:
    """``{status: number}`` over policy results (``fail``, ``warn``, ``pass``...)."""
    counts: dict[str, int] = {}
    for r in results:
        counts[r.status] = counts.get(r.status, 0) + 1
    return counts


def counts_text(counts: dict) -> str:
    """``"1 failing, 2 waived, 24 passed"`` from :func:`policy_counts`;
    ``"no policies evaluated"`` when empty."""
    labels = [
        ("fail", "failing"),
        ("error", "policy errors"),
        ("warn", "advisory"),
        ("waived", "waived"),
        ("pass", "passed"),
    ]
    parts = [f"{counts[k]} {label}" for k, label in labels if counts.get(k)]
    return ", ".join(parts) or "no policies evaluated"


def plan_totals(report) -> str:
    """``"0 to create, 1 to update, 0 to replace, 0 to delete"`` over every plan of a run;
    ``""`` when no plan was computed."""
    keys = ("create", "update", "replace", "delete")
    plans = [plan for plan in report.plans if plan is not None]
    if not plans:
        return ""
    totals = dict.fromkeys(keys, 0)
    for plan in plans:
        counts = plan.counts()
        for k in keys:
            totals[k] += int(counts.get(k, 0) or 0)
    return ", ".join(f"{totals[k]} to {k}" for k in keys)


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
    policy = report.policy_head if own else report.policy
    if policy is None:
        return ""
    if key is None:
        return counts_text(policy.counts())
    results = [r for r in policy.results if r.deployment == key]
    return counts_text(policy_counts(results)) if results else ""


def at_base(report) -> bool:
    """True when the plan checked the specs against the merge base's policy set (the
    change modifies the policy set)."""
    diff = report.policy_changes
    return bool(diff is not None and diff.evaluated_at_base)


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


def md_line(parts: list) -> str:
    """A structured line as Markdown: values as inline code or escaped running text."""
    out = []
    for kind, value in parts:
        if kind == "code":
            out.append(md_code(value))
        elif kind == "text":
            out.append(escape.text(value))
        else:
            out.append(value)
    return "".join(out)


def plain_line(parts: list) -> str:
    """A structured line as plain text (values as they are, folded to one line)."""
    return "".join(escape.one_line(v) if k != "lit" else v for k, v in parts)


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


def spec_diff_lines(spec: dict) -> list[list]:
    """The spec changes of one deployment as structured lines; ``[]`` when none.

    ``spec`` is the outcome's ``spec_diff`` (``{"fields": [{"path", "old", "new"}],
    "files", "rebuild", "build_inputs", "decided_by"}``, or empty). One line per
    changed field (``path: old → new``), one for the changed files the spec names, then
    (always last) the Bento verdict: a new Bento is built and rolled out when the change
    touches what the build digest covers, else the Bento stays (for an edge deployment,
    ``spec["artifact"] == "edge bundle"``, the same verdict about its bundle).
    """
    spec = spec or {}
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
    if spec.get("artifact") == "edge bundle":
        if spec.get("rebuild"):
            lines.append([_lit("🔁 new edge bundle: it will be rebuilt and published"), *why])
        else:
            lines.append([_lit("edge bundle unchanged: no build input changed"), *_how(how, True)])
    elif spec.get("rebuild"):
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
    diff = report.policy_changes
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

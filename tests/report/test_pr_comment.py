"""The PR comment at scale: GitHub's 65,536-character limit, order, what was cut."""

from __future__ import annotations

from reconciler.core.diagnostics import Diagnostic, Position
from reconciler.engine.plan import Change, Plan
from reconciler.flow.run import Outcome, RunReport
from reconciler.report.plan_markdown import GITHUB_COMMENT_LIMIT, MARKER
from reconciler.report.plan_markdown import write as render_pr_comment


def _report(n: int, fields_per_plan: int = 40) -> RunReport:
    report = RunReport("plan", "prod", "a" * 40, envs=["prod"], base="b" * 40)
    for i in range(n):
        key = f"svc-{i:04d}-prod"
        fields = [(f"spec.template.spec.env.{j}.value", "old" * 5, "new" * 5) for j in range(40)]
        plan = Plan(
            key,
            [Change("update", "kubernetes:apps/v1:Deployment", key, fields[:fields_per_plan])],
            "kubernetes",
        )
        report.plans.append(plan)
        report.outcomes.append(
            Outcome(
                key,
                f"svc-{i:04d}",
                "prod",
                "kubernetes",
                "planned",
                plan.summary(),
                plan=plan,
                change={"status": "modified", "path": f"specs/svc-{i:04d}.yaml", "reasons": []},
                model={
                    "old": {"framework": "sklearn", "uri": "m.joblib", "sha256": "1" * 64},
                    "new": {"framework": "sklearn", "uri": "m.joblib", "sha256": "2" * 64},
                },
            )
        )
    return report


def test_huge_plan_stays_under_the_limit_and_names_what_was_cut():
    report = _report(400)
    text = render_pr_comment(report)
    assert len(text) < GITHUB_COMMENT_LIMIT
    assert text.startswith(MARKER)
    assert "Cut to stay under GitHub's 65,536-character comment limit" in text
    tail = text.split("Cut to stay under")[1]
    shown = text.count("### `svc-")
    cut = 400 - shown
    assert f"{cut} deployment section(s) left out: `svc-{shown:04d}-prod`" in tail
    assert f"and {cut - 40} more" in tail
    assert "--format json" in tail
    # the sections that are shown are collapsed
    assert "<details><summary>plan (" in text
    assert "| digest | `111111111111` | `222222222222` **(changed)** |" in text


def test_small_plan_is_not_cut_and_blocking_items_come_first():
    report = _report(3, fields_per_plan=2)
    report.diagnostics.append(
        Diagnostic(Position("specs/svc-0001.yaml", 7, 3), "metadata.name", "bad", code="x")
    )
    text = render_pr_comment(report)
    assert "Cut to stay under" not in text and "<details>" not in text
    assert "blocked: do not merge" in text
    assert text.index("### Blocking the merge") < text.index("### `svc-0000`")
    assert "`specs/svc-0001.yaml:7:3` metadata.name: bad" in text

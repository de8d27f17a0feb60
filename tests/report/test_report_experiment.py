"""The last A/B verdict in the plan text and the PR comment (hand-built run report)."""

from __future__ import annotations

from support.markdown import HOSTILE, assert_safe

from reconciler.engine.plan import Plan
from reconciler.flow.run import Outcome, RunReport
from reconciler.monitor.experiment import judge
from reconciler.report import escape, plan_markdown, plan_text


def _report(summary: str) -> RunReport:
    report = RunReport("plan", "prod", "a" * 40, envs=["prod"])
    plan = Plan("svc-prod", platform="kubernetes")
    outcome = Outcome("svc-prod", "svc", "prod", "kubernetes", "planned", "no changes", plan=plan)
    outcome.experiment = {"verdict": "winner", "summary": summary}
    report.plans.append(plan)
    report.outcomes.append(outcome)
    return report


def test_the_verdict_is_in_the_pr_comment_and_the_plan_text():
    verdict = judge("accuracy", 5000, 4500, 5000, 4650, baseline=0.9, mde=0.02)
    md = plan_markdown.write(_report(verdict.summary()))
    assert f"**A/B experiment (last verdict):** {escape.text(verdict.summary())}" in md
    assert f"A/B experiment (last verdict): {verdict.summary()}" in plan_text.write(
        _report(verdict.summary())
    )


def test_a_hostile_summary_stays_text():
    assert_safe(plan_markdown.write(_report(HOSTILE)), details=0)

"""The monthly cost in plans: before → after per deployment, the environment total, and
cost ceilings as policy (MDL-040, MDL-041) with a waiver.

Real Git repositories in temp dirs (the fraud-detector example, Kubernetes in prod), the
real renderer, the real policies through regopy, the real writers. Expected figures are
computed here by hand from OpenCost's default rates (0.031611 USD/vCPU-h, 0.004237
USD/GiB-h): a replica of 500m CPU and 1 GiB costs 0.5 × 0.031611 + 0.004237 per hour.
"""

from __future__ import annotations

import datetime as dt
import json

import pytest
from support.cli import invoke
from support.repo import PROJECT, replace_in_file

from reconciler.core.config import load_config
from reconciler.flow.plan import plan
from reconciler.report.plan_json import data as plan_json
from reconciler.report.plan_markdown import write as render_pr_comment
from reconciler.report.plan_text import write as render_text

SPEC = "specs/fraud-detector.yaml"
REPLICA_MONTH = (0.5 * 0.031611 + 1 * 0.004237) * 730  # USD per replica-month


def _replicas(repo, old: int, new: int) -> tuple[str, str]:
    replace_in_file(repo.root / SPEC, f"min_replicas: {3}}}", f"min_replicas: {old}}}")
    base = repo.commit(f"{old} replicas in prod")
    replace_in_file(repo.root / SPEC, f"min_replicas: {old}}}", f"min_replicas: {new}}}")
    return base, repo.commit(f"{new} replicas in prod")


def _org_limits(repo, team_limits: str) -> None:
    org = repo.root / "policies" / "organization.yaml"
    text = org.read_text()
    start = text.index("    payments-risk: {max_gpus")
    end = text.index("\n", start)
    org.write_text(text[:start] + team_limits + text[end:])


def test_two_to_six_replicas_in_the_pr_comment(git_repo):
    base, head = _replicas(git_repo, 2, 6)
    report = plan(load_config(git_repo.root), "prod", base=base, head=head)
    assert report.exit_code == 0, report.to_dict()
    (outcome,) = report.outcomes
    cost = outcome.cost
    # The Deployment's line moves from 2 to 6 replicas (max stays 10); the CronJobs stay.
    deploy = [line for line in cost["after"]["lines"] if line["item"].startswith("kubernetes D")]
    assert deploy[0]["expected"] == pytest.approx(6 * REPLICA_MONTH, abs=1e-4)
    assert cost["difference"]["expected"] == pytest.approx(4 * REPLICA_MONTH, abs=0.01)
    assert cost["difference"]["max"] == 0
    before, after = cost["before"]["expected"], cost["after"]["expected"]
    assert after - before == pytest.approx(4 * REPLICA_MONTH, abs=0.01)
    comment = render_pr_comment(report)
    expected = (
        f"**Monthly cost:** {before:,.2f} → {after:,.2f} USD/month "
        f"(+{4 * REPLICA_MONTH:,.2f}; max {cost['before']['max']:,.2f} → "
        f"{cost['after']['max']:,.2f}, +0.00); prices as of {cost['prices_date']}"
    )
    assert expected in comment
    assert "2-10 replica(s)" not in comment and "6-10 replica(s)" in comment
    assert f"monthly cost: prod: {before:,.2f} → {after:,.2f} USD/month" in comment
    # The same figures in the text plan and the JSON (with the environment total).
    text = render_text(report)
    assert f"cost: {before:,.2f} → {after:,.2f} USD/month" in text
    doc = json.loads(json.dumps(plan_json(report)))
    assert doc["cost"]["prod"]["difference"]["expected"] == cost["difference"]["expected"]
    assert doc["outcomes"][0]["cost"]["after"]["prices_date"] == cost["prices_date"]


def test_a_change_without_resource_changes_shows_no_cost_change(git_repo):
    base = git_repo.git.head.commit.hexsha
    replace_in_file(git_repo.root / SPEC, "workers: 1", "workers: 4")  # in the Bento only
    head = git_repo.commit("more workers")
    report = plan(load_config(git_repo.root), "prod", base=base, head=head)
    (outcome,) = report.outcomes
    assert report.plans[0].empty
    assert outcome.cost["difference"] == {"expected": 0, "max": 0}
    assert "(no change); prices as of" in render_pr_comment(report)


def test_cost_ceilings_block_a_pr_and_a_waiver_lets_it_through(git_repo):
    # Ceilings low enough for the change from 3 to 8 replicas: +5 replicas is above an
    # increase limit of 50 USD (5 × 14.6), and the max of 12 replicas is above 150 USD.
    _org_limits(
        git_repo,
        "    payments-risk: {max_gpus: 1, max_replicas: 20, max_monthly_usd: 150, "
        "max_monthly_increase_usd: 50}",
    )
    git_repo.commit("cost limits")
    base = git_repo.git.head.commit.hexsha
    replace_in_file(git_repo.root / SPEC, "min_replicas: 3}", "min_replicas: 8, max_replicas: 12}")
    head = git_repo.commit("8-12 replicas in prod")
    config = load_config(git_repo.root)
    report = plan(config, "prod", base=base, head=head)
    failed = {r.policy_id: r for r in report.policy.results if r.status == "fail"}
    assert set(failed) == {"MDL-040", "MDL-041"}, [r.message for r in failed.values()]
    assert report.exit_code == 1
    increase = 5 * REPLICA_MONTH
    assert (
        f"raises the expected cost by {round(increase, 2)} USD/month" in failed["MDL-041"].message
    )
    assert "may add at most 50 USD/month" in failed["MDL-041"].message
    assert failed["MDL-040"].position.file == SPEC  # at spec.target, in the spec file
    assert "blocked: do not merge" in render_pr_comment(report)

    # The same change on top of a base that holds the waivers (a pull request's own
    # waivers are not trusted: the policy set of the merge base decides).
    expires = (dt.date.today() + dt.timedelta(days=30)).isoformat()
    waivers = "waivers:\n" + "".join(
        f"  - policy: {pid}\n    deployment: fraud-detector\n    environment: prod\n"
        f"    reason: Peak season capacity agreed with finance.\n"
        f"    approver: finance@example.com\n    ticket: FIN-42\n    expires: {expires}\n"
        for pid in ("MDL-040", "MDL-041")
    )
    git_repo.git.git.checkout("-b", "waived", base)
    (git_repo.root / "policies" / "waivers.yaml").write_text(waivers)
    base = git_repo.commit("waive the cost ceilings for fraud-detector in prod")
    replace_in_file(git_repo.root / SPEC, "min_replicas: 3}", "min_replicas: 8, max_replicas: 12}")
    head = git_repo.commit("8-12 replicas in prod")
    report = plan(config, "prod", base=base, head=head)
    statuses = {r.policy_id: r.status for r in report.policy.results}
    assert statuses["MDL-040"] == statuses["MDL-041"] == "waived"
    assert report.exit_code == 0, [str(d) for d in report.diagnostics]


def test_plain_plan_prices_against_the_ledger_and_the_cli_prints_it(git_repo):
    result = invoke(git_repo.root, "plan", "--env", "prod")
    assert result.returncode == 0, result.output
    assert "cost: 0.00 → " in result.output and "prices as of" in result.output
    assert "Monthly cost estimate (730 h), per environment:" in result.output


def test_a_region_without_prices_is_a_finding_at_its_line(git_repo):
    text = (PROJECT / "specs" / "diabetes-progression.yaml").read_text()
    assert "    region: eu-west-1\n" in text
    text = text.replace("    region: eu-west-1\n", "    region: eu-north-1\n")
    text = text.replace("kms:eu-west-1:", "kms:eu-north-1:")  # a key in the same region
    (git_repo.root / "specs" / "sm.yaml").write_text(text)
    report = plan(load_config(git_repo.root), "prod", ["diabetes-progression"])
    cost = [d for d in report.diagnostics if d.code == "cost"]
    assert report.exit_code == 1 and cost, [str(d) for d in report.diagnostics]
    assert cost[0].field == "spec.target.region"
    line = next(i for i, x in enumerate(text.splitlines(), 1) if "region: eu-north-1" in x)
    assert (cost[0].position.file, cost[0].position.line) == ("specs/sm.yaml", line)
    assert "eu-north-1" in cost[0].message and "eu-west-1" in cost[0].message
    assert "not estimated" in render_text(report)


def test_apply_is_policed_on_the_estimate_too(git_repo):
    # What the PR plan blocks, apply refuses on main too (before the Pulumi CLI is needed).
    _org_limits(
        git_repo,
        "    payments-risk: {max_gpus: 1, max_replicas: 20, max_monthly_usd: 100}",
    )
    git_repo.commit("a 100 USD ceiling")
    result = invoke(git_repo.root, "apply", "--env", "prod")
    assert result.returncode == 1, result.output
    assert "MDL-040" in result.output and "may spend at most 100 USD/month" in result.output

"""`plan --base` when the pull request changes the policy set (real Git repos, real Rego).

A pull request's own policy change has not been reviewed, so its specs are checked
against the policies, waivers and organisation settings of the merge base, and also
against its own (what `apply` uses after the merge). The comment, the text and the JSON
plan say exactly what the change does to the policy set, and a policy change is never
"ready to merge": it needs a security review (not blocking by itself).
"""

from __future__ import annotations

import datetime as dt
import json

import pytest
from support.cli import invoke
from support.markdown import HOSTILE, TEAM, assert_safe, visible_text
from support.repo import replace_in_file

from reconciler.core.config import load_config
from reconciler.flow.plan import plan
from reconciler.report import escape
from reconciler.report.plan_markdown import MARKER
from reconciler.report.plan_markdown import write as render_pr_comment

SPEC = "specs/fraud-detector.yaml"
ORG = "policies/organization.yaml"
NON_ROOT = "policies/run_as_non_root.rego"


@pytest.fixture
def repo(git_repo):
    return git_repo


def _edit(repo, rel: str, old: str, new: str) -> None:
    replace_in_file(repo.root / rel, old, new)


def _waiver(policy: str, reason: str = "agreed with payments", approver: str = "sec@example.com"):
    expires = (dt.date.today() + dt.timedelta(days=30)).isoformat()
    return (
        f"  - policy: {policy}\n    deployment: fraud-detector\n    environment: prod\n"
        f"    reason: '{reason}'\n    approver: '{approver}'\n    ticket: SEC-1\n"
        f"    expires: {expires}\n"
    )


def _plan(repo, base, head, env="prod"):
    return plan(load_config(repo.root), env, base=base, head=head)


def test_a_pr_loosening_policies_is_checked_against_the_base_policies(repo):
    """The trial's case: MDL-018 disabled, min_production_replicas 1, min_replicas 1."""
    base = repo.git.head.commit.hexsha
    _edit(repo, NON_ROOT, "enforcement: mandatory", "enforcement: disabled")
    _edit(repo, ORG, "min_production_replicas: 2", "min_production_replicas: 1")
    _edit(repo, SPEC, "autoscaling: {min_replicas: 3}", "autoscaling: {min_replicas: 1}")
    _edit(
        repo, SPEC, "namespace: ml", "namespace: ml\n    security_context: {run_as_non_root: false}"
    )
    head = repo.commit("one replica as root, and the policies to allow it")

    report = _plan(repo, base, head)
    assert report.exit_code == 1 and report.blocked
    failing = sorted(r.policy_id for r in report.policy.results if r.status == "fail")
    assert failing == ["MDL-010", "MDL-018"]  # the base's policies and settings
    assert not report.policy_head.blocking  # the PR's own set would let it through
    diff = report.policy_changes
    assert diff.evaluated_at_base and diff.changes_enforcement
    assert diff.files == [ORG, NON_ROOT]
    (changed,) = diff.changed
    assert changed["id"] == "MDL-018" and not changed["rego_changed"]
    assert changed["fields"] == [{"field": "enforcement", "old": "mandatory", "new": "disabled"}]
    assert diff.organization == [
        {"key": "organization.min_production_replicas", "old": 2, "new": 1}
    ]
    assert {(e["policy"], e["base"], e["head"]) for e in diff.effects} == {
        ("MDL-010", "fail", "pass"),
        ("MDL-018", "fail", "not evaluated"),
    }

    code, md, _ = invoke(
        repo.root, "plan", "--base", base, "--head", head, "--env", "prod", "-f", "markdown"
    )
    assert code == 1 and md.startswith(MARKER)
    assert "ready to merge" not in md and "❌ blocked: do not merge" in md
    assert "Specs checked against the policy set of the merge base" in md
    section = md[md.index("### 🔐 Policy changes — needs security review") :]
    assert (
        "- `MDL-018` (`policies/run_as_non_root.rego`): enforcement `mandatory` → `disabled`"
        in (section)
    )
    assert "- `organization.min_production_replicas`: `2` → `1`" in section
    assert "- `MDL-010` on `fraud-detector-prod`: fail → pass" in section
    assert "- `MDL-018` on `fraud-detector-prod`: fail → not evaluated" in section
    blocking = md[md.index("### Blocking the merge") : md.index("### 🔐 Policy changes")]
    assert "`MDL-010` on `fraud-detector-prod` with the merge base's policy set" in blocking
    assert "**Policy** (base policy set): 2 failing" in md

    code, out, err = invoke(repo.root, "plan", "--base", base, "--head", head, "--env", "prod")
    assert code == 1
    assert "Policy changes (needs security review" in out
    assert "MDL-018 (policies/run_as_non_root.rego): enforcement mandatory → disabled" in out
    assert "organization.min_production_replicas: 2 → 1" in out
    assert "checked against the policy set of the merge base" in out
    assert "blocking policy results" in err

    code, out, _ = invoke(
        repo.root, "plan", "--base", base, "--head", head, "--env", "prod", "-f", "json"
    )
    data = json.loads(out)
    assert code == 1 and data["needs_security_review"] is True and data["blocked"] is True
    assert data["policy_changes"]["evaluated_at_base"] is True
    assert data["policy_changes"]["organization"][0]["new"] == 1
    assert data["policy"]["summary"]["fail"] == 2
    assert data["policy_with_pr_changes"]["summary"]["fail"] == 0


def test_a_policy_change_alone_needs_security_review_and_is_not_ready_to_merge(repo):
    base = repo.git.head.commit.hexsha
    rego = "policies/prod_monitoring.rego"
    _edit(repo, rego, "{staging: advisory, dev: disabled}", "{staging: disabled, dev: disabled}")
    _edit(repo, "policies/resources_set.rego", "severity: ", "severity: low #")
    _edit(repo, NON_ROOT, "context.run_as_non_root != true", "context.run_as_non_root == false")
    head = repo.commit("relax monitoring in staging, resources severity, non-root rule")

    report = _plan(repo, base, head, env=None)
    assert report.exit_code == 0 and report.needs_security_review
    by_id = {c["id"]: c for c in report.policy_changes.changed}
    assert by_id["MDL-018"]["rego_changed"] and by_id["MDL-018"]["fields"] == []
    staging = {"field": "enforcement in staging", "old": "advisory", "new": "disabled"}
    assert by_id["MDL-014"]["fields"] == [staging]  # per environment; dev stays disabled
    (severity,) = by_id["MDL-007"]["fields"]
    assert severity["field"] == "severity" and severity["new"] == "low"

    md = render_pr_comment(report)
    assert "ready to merge" not in md
    assert "⚠️ needs security review: this change modifies the policy set" in md
    assert "enforcement in staging `advisory` → `disabled`" in md
    assert "**Rego source changed:**" in md and "- in `MDL-018`" in md
    code, out, _ = invoke(repo.root, "plan", "--base", base, "--head", head)
    assert code == 0
    assert "nothing blocks the merge; needs security review (policy changes)" in out
    assert "Rego source changed" in out


ONE_REPLICA = ("autoscaling: {min_replicas: 3}", "autoscaling: {min_replicas: 1}")


def test_a_waiver_added_by_the_pr_does_not_waive_its_own_spec(repo):
    base = repo.git.head.commit.hexsha
    _edit(repo, SPEC, *ONE_REPLICA)
    repo.write("policies/waivers.yaml", "waivers:\n" + _waiver("MDL-010"))
    head = repo.commit("one replica in prod, and a waiver for it")

    report = _plan(repo, base, head)
    assert report.exit_code == 1
    (fail,) = [r for r in report.policy.results if r.status == "fail"]
    assert fail.policy_id == "MDL-010"
    assert [r.status for r in report.policy_head.results if r.policy_id == "MDL-010"] == ["waived"]
    (added,) = report.policy_changes.waivers_added
    assert added["policy"] == "MDL-010" and added["approver"] == "sec@example.com"
    assert report.policy_changes.effects == [
        {"deployment": "fraud-detector-prod", "policy": "MDL-010", "base": "fail", "head": "waived"}
    ]
    md = render_pr_comment(report)
    assert "❌ blocked: do not merge" in md and "**Waivers added:**" in md
    assert "- `MDL-010` on `fraud-detector` in prod, expires" in md


def test_fixing_a_spec_and_removing_its_waiver_is_not_blocked_by_the_old_waiver(repo):
    _edit(repo, SPEC, *ONE_REPLICA)
    repo.write("policies/waivers.yaml", "waivers:\n" + _waiver("MDL-010"))
    base = repo.commit("one replica, waived on main")
    _edit(repo, SPEC, *reversed(ONE_REPLICA))
    repo.write("policies/waivers.yaml", "waivers: []\n")
    head = repo.commit("three replicas again; the waiver goes")

    report = _plan(repo, base, head)
    # at the base the waiver matches nothing any more; that file is replaced, so its
    # findings are not reported, and the head's (empty) waivers are checked instead
    assert report.exit_code == 0, [str(d) for d in report.policy.diagnostics()]
    assert report.needs_security_review
    (removed,) = report.policy_changes.waivers_removed
    assert removed["policy"] == "MDL-010"
    assert any("findings about the base's policies/waivers.yaml" in n for n in report.notes)
    assert "**Waivers removed:**" in render_pr_comment(report)


def test_a_waiver_changed_in_place_is_listed_field_by_field(repo):
    _edit(repo, SPEC, *ONE_REPLICA)
    repo.write("policies/waivers.yaml", "waivers:\n" + _waiver("MDL-010"))
    base = repo.commit("waived on main")
    repo.write(
        "policies/waivers.yaml", "waivers:\n" + _waiver("MDL-010", approver="ops@example.com")
    )
    head = repo.commit("another approver")
    report = _plan(repo, base, head)
    assert report.exit_code == 0 and report.needs_security_review
    assert [r.status for r in report.policy.results if r.policy_id == "MDL-010"] == ["waived"]
    (changed,) = report.policy_changes.waivers_changed
    assert changed["fields"] == [
        {"field": "approver", "old": "sec@example.com", "new": "ops@example.com"}
    ]
    assert "approver `sec@example.com` → `ops@example.com`" in render_pr_comment(report)


def test_a_pr_tightening_policies_is_blocked_by_its_own_policies(repo):
    """Apply after the merge uses the merged policies: a PR that would break it blocks."""
    base = repo.git.head.commit.hexsha
    _edit(repo, ORG, "min_production_replicas: 2", "min_production_replicas: 5")
    head = repo.commit("five replicas in production")
    report = _plan(repo, base, head)
    assert not report.policy.blocking and report.policy_head.blocking
    assert report.exit_code == 1
    md = render_pr_comment(report)
    blocking = md[md.index("### Blocking the merge") :]
    assert (
        "`MDL-010` on `fraud-detector-prod` with this change's policy set (what `apply` uses "
        "after the merge)" in blocking
    )


def test_added_and_removed_policies_and_a_moved_policy_directory(repo):
    base = repo.git.head.commit.hexsha
    new_policy = (repo.root / NON_ROOT).read_text()
    new_policy = new_policy.replace("id: MDL-018", "id: MDL-901").replace(
        "package modelops.run_as_non_root", "package modelops.extra"
    )
    repo.write("policies/extra.rego", new_policy)
    repo.rm("policies/gpu_ceiling.rego")
    head = repo.commit("one policy more, one less")
    report = _plan(repo, base, head)
    diff = report.policy_changes
    assert [p["id"] for p in diff.added] == ["MDL-901"]
    assert [p["id"] for p in diff.removed] == ["MDL-008"]
    md = render_pr_comment(report)
    assert "**Policies added:**" in md and "**Policies removed:**" in md
    assert "- in `MDL-901`" in md  # a new policy's Rego is new source too

    # modelops.yaml pointing the policy check at another directory is a policy change
    repo.write("weak/organization.yaml", (repo.root / ORG).read_text())
    repo.write("weak/only.rego", (repo.root / NON_ROOT).read_text())
    repo.write("modelops.yaml", "state_dir: .modelops\npolicies: weak\n")
    head2 = repo.commit("policies elsewhere")
    report = plan(load_config(repo.root), "prod", base=head, head=head2)
    diff = report.policy_changes
    assert diff.paths["base"]["policies"] == "policies" and diff.paths["head"]["policies"] == "weak"
    assert diff.evaluated_at_base and len(diff.removed) > 20
    assert len(report.policy.results) > len(report.policy_head.results)
    assert "**Policy set moved (modelops.yaml):**" in render_pr_comment(report)


def test_edits_that_change_nothing_enforced_are_shown_but_ready_to_merge(repo):
    base = repo.git.head.commit.hexsha
    path = repo.root / "policies/waivers.yaml"
    path.write_text(path.read_text() + "\n# reviewed\n")
    repo.write("policies/tests/extra.yaml", "cases: []\n")
    head = repo.commit("comments and a fixture file")
    report = _plan(repo, base, head)
    diff = report.policy_changes
    assert not diff.changes_enforcement and not diff.evaluated_at_base
    assert diff.files == ["policies/waivers.yaml"]
    assert diff.other_files == ["policies/tests/extra.yaml"]
    assert report.exit_code == 0 and not report.needs_security_review
    md = render_pr_comment(report)
    assert "✅ ready to merge" in md and "### Policy changes" in md
    assert "**Edited without changing what is enforced:**" in md
    assert "Specs checked against the policy set of the merge base" not in md


def test_a_pr_that_does_not_touch_policies_has_no_policy_section(repo):
    base = repo.git.head.commit.hexsha
    _edit(repo, SPEC, "min_replicas: 3}", "min_replicas: 4}")
    head = repo.commit("4 replicas")
    report = _plan(repo, base, head)
    assert report.policy_changes is None and report.policy_head is None
    md = render_pr_comment(report)
    assert "✅ ready to merge" in md and "Policy changes" not in md


def test_hostile_values_in_the_policy_changes_section_are_escaped(repo):
    base = repo.git.head.commit.hexsha
    _edit(
        repo,
        ORG,
        "production_environments: [prod]",
        f"production_environments: [prod]\n  motto: '{HOSTILE}'",
    )
    _edit(repo, NON_ROOT, "title: Containers run as non-root", f"title: '{HOSTILE}'")
    _edit(
        repo,
        SPEC,
        "rollout: {strategy: canary, steps: [10, 50, 100], step: 0}",
        "rollout: {strategy: rolling}",
    )
    repo.write("policies/waivers.yaml", "waivers:\n" + _waiver("MDL-011", HOSTILE, TEAM))
    head = repo.commit("hostile policy changes")
    report = _plan(repo, base, head)
    md = render_pr_comment(report)
    tokens = assert_safe(md, details=md.count("<details><summary>"))
    section = md[md.index("### 🔐 Policy changes") :]
    assert "**Organisation settings changed:**" in section and "**Waivers added:**" in section
    codes = [t.content for t in tokens if t.type == "code_inline"]
    assert HOSTILE in codes  # the setting's value, the waiver's reason, the old title: intact
    text = visible_text(tokens)
    assert f"@{escape.ZWJ}org/security-team" not in text  # the approver is in code
    assert TEAM in codes

"""`modelops plan --base`: the pull-request plan on real Git repositories (offline render)."""

from __future__ import annotations

import json

import pytest
from support.cli import invoke

from reconciler.core.config import load_config
from reconciler.flow.plan import plan
from reconciler.report.plan_markdown import MARKER
from reconciler.report.plan_markdown import write as render_pr_comment


@pytest.fixture
def repo(git_repo):
    return git_repo


def _edit(repo, rel: str, old: str, new: str) -> None:
    path = repo.root / rel
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new, 1))


def test_one_line_change_plans_one_update_markdown_and_json(repo):
    base = repo.git.head.commit.hexsha
    _edit(repo, "specs/fraud-detector.yaml", "min_replicas: 3}", "min_replicas: 4}")
    head = repo.commit("prod: 4 replicas")
    code, md, err = invoke(
        repo.root, "plan", "--base", base, "--head", head, "--env", "prod", "-f", "markdown"
    )
    assert code == 0, err
    assert md.startswith(MARKER) and "ready to merge" in md
    assert "### `fraud-detector` · prod · kubernetes" in md
    assert "spec.minReplicas: 3 → 4" in md
    assert "0 to create, 1 to update, 0 to replace, 0 to delete" in md
    assert "**Policy:**" in md and "passed" in md
    assert "**Model:** unchanged" in md
    code, out, _ = invoke(
        repo.root, "plan", "--base", base, "--head", head, "--env", "prod", "-f", "json"
    )
    data = json.loads(out)
    (outcome,) = data["outcomes"]
    assert outcome["key"] == "fraud-detector-prod" and outcome["change"]["status"] == "modified"
    assert outcome["plan"]["counts"] == {"create": 0, "update": 1, "replace": 0, "delete": 0}
    assert data["plans"][0]["changes"][0]["fields"] == [
        {"path": "spec.minReplicas", "old": 3, "new": 4}
    ]
    assert data["changes"]["base"] == base and data["exit_code"] == 0
    # text: the same plan for a terminal
    code, out, _ = invoke(repo.root, "plan", "--base", base, "--head", head, "--env", "prod")
    assert code == 0 and "modified  specs/fraud-detector.yaml" in out and "3 → 4" in out


def test_head_other_than_checkout_is_read_from_git(repo):
    base = repo.git.head.commit.hexsha
    _edit(repo, "specs/fraud-detector.yaml", "min_replicas: 3}", "min_replicas: 5}")
    head = repo.commit("5 replicas")
    repo.git.git.checkout("-q", base)  # the working tree is at base now
    report = plan(load_config(repo.root), "prod", base=base, head=head)
    assert report.plans[0].changes[0].fields == [("spec.minReplicas", 3, 5)]


def test_change_only_to_a_model_file_is_planned_and_digest_mismatch_blocks(repo):
    base = repo.git.head.commit.hexsha
    (repo.root / "examples/fraud/model.joblib").write_bytes(b"not the pinned model")
    head = repo.commit("swap the model file only")
    report = plan(load_config(repo.root), "prod", base=base, head=head)
    (change,) = report.changes.specs
    assert change.status == "affected" and "examples/fraud/model.joblib" in change.reasons[0]
    assert report.exit_code == 1
    (diag,) = [d for d in report.spec_errors if d.code == "model-digest"]
    assert diag.position.file == "specs/fraud-detector.yaml" and diag.position.line > 0


def test_change_only_to_a_policy_file_replans_every_spec(repo):
    base = repo.git.head.commit.hexsha
    path = repo.root / "policies/waivers.yaml"
    path.write_text(path.read_text() + "\n# reviewed\n")
    head = repo.commit("touch waivers")
    report = plan(load_config(repo.root), None, base=base, head=head)
    assert [s.status for s in report.changes.specs] == ["affected"]
    assert sorted(o.key for o in report.outcomes) == [
        "fraud-detector-prod",
        "fraud-detector-staging",
    ]
    assert all(p.empty for p in report.plans) and report.exit_code == 0


def test_policy_failure_blocks_and_comes_first(repo):
    base = repo.git.head.commit.hexsha
    _edit(repo, "specs/fraud-detector.yaml", "public: false", "public: true")
    head = repo.commit("expose it")
    report = plan(load_config(repo.root), "prod", base=base, head=head)
    assert report.exit_code == 1 and report.policy.blocking
    md = render_pr_comment(report)
    assert "blocked: do not merge" in md
    blocking = md.index("### Blocking the merge")
    assert "spec.exposure.public" in md[blocking:] or "public" in md[blocking:]
    assert blocking < md.index("### `fraud-detector`") if "### `fraud-detector`" in md else True


def test_deleting_every_spec_is_a_guarded_mass_delete(repo):
    base = repo.git.head.commit.hexsha
    repo.rm("specs/fraud-detector.yaml")
    head = repo.commit("delete everything")
    config = load_config(repo.root)
    report = plan(config, None, base=base, head=head)
    assert sorted((o.key, o.status) for o in report.outcomes) == [
        ("fraud-detector-prod", "delete"),
        ("fraud-detector-staging", "delete"),
    ]
    assert report.exit_code == 1 and "max_delete_share" in report.guards[0]
    prod = next(o for o in report.outcomes if o.env == "prod")
    assert "protected" in prod.message and "--prune" in prod.message
    assert prod.plan.counts()["delete"] > 0
    allowed = plan(config, None, base=base, head=head, allow_mass_delete=True)
    assert allowed.exit_code == 0 and any("allowed" in n for n in allowed.notes)


def test_duplicate_name_in_a_pull_request_blocks(repo):
    base = repo.git.head.commit.hexsha
    text = (repo.root / "specs/fraud-detector.yaml").read_text()
    repo.write("specs/copy.yaml", text)
    head = repo.commit("copy")
    report = plan(load_config(repo.root), "prod", base=base, head=head)
    assert report.exit_code == 1
    (dup,) = [d for d in report.spec_errors if d.code == "duplicate-name"]
    assert dup.position.file == "specs/copy.yaml" and dup.position.line == 5
    assert "specs/fraud-detector.yaml" in dup.message


def test_nothing_affected(repo):
    base = repo.git.head.commit.hexsha
    repo.write("README.md", "docs\n")
    head = repo.commit("docs only")
    code, md, _ = invoke(repo.root, "plan", "--base", base, "--head", head, "-f", "markdown")
    assert code == 0 and "No deployment is affected by this change." in md


def test_bad_base_is_a_usage_error(repo):
    code, _, err = invoke(repo.root, "plan", "--base", "nope", "--env", "prod")
    assert code == 2 and "revision 'nope' does not exist" in err and "Traceback" not in err


def test_comment_stays_under_the_limit_and_says_what_was_cut(repo):
    base = repo.git.head.commit.hexsha
    _edit(repo, "specs/fraud-detector.yaml", "max_replicas: 10", "max_replicas: 12")
    head = repo.commit("more replicas everywhere")
    report = plan(load_config(repo.root), None, base=base, head=head)
    full = render_pr_comment(report)
    assert len(report.outcomes) == 2
    small = render_pr_comment(report, limit=len(full) - 200)
    assert len(small) <= len(full) - 200
    assert "Cut to stay under GitHub's 65,536-character comment limit" in small
    assert "`fraud-detector-" in small.split("Cut to stay under")[1]


def test_findings_become_annotations_inside_github_actions(repo, monkeypatch):
    base = repo.git.head.commit.hexsha
    repo.write("specs/copy.yaml", (repo.root / "specs/fraud-detector.yaml").read_text())
    head = repo.commit("copy")
    monkeypatch.setenv("GITHUB_ACTIONS", "true")
    code, md, err = invoke(
        repo.root, "plan", "--base", base, "--head", head, "--env", "prod", "-f", "markdown"
    )
    assert code == 1 and md.startswith(MARKER)
    assert "::error file=specs/copy.yaml,line=5,col=" in err
    assert "::" not in md.split("\n", 1)[1].split("`")[0]  # annotations stay out of the comment


@pytest.mark.slow
def test_plan_with_build_compares_built_tags_on_both_sides(repo):
    base = repo.git.head.commit.hexsha
    _edit(repo, "specs/fraud-detector.yaml", "min_replicas: 3}", "min_replicas: 4}")
    head = repo.commit("prod: 4 replicas")
    report = plan(load_config(repo.root), "prod", base=base, head=head, build=True)
    (outcome,) = report.outcomes
    assert outcome.build["status"] in ("built", "reused")
    assert outcome.artifact.bento_tag.startswith("fraud-detector:")
    # the base was built too, so the only change is the one line (no tag noise)
    assert [c.name for c in report.plans[0].changes] == ["fraud-detector"]
    assert report.plans[0].changes[0].fields == [("spec.minReplicas", 3, 4)]


def test_rename_and_edit_in_one_commit_plans_an_update_not_create_and_delete(repo):
    base = repo.git.head.commit.hexsha
    text = (repo.root / "specs/fraud-detector.yaml").read_text()
    repo.rm("specs/fraud-detector.yaml")
    repo.write("specs/payments/fraud.yaml", text.replace("min_replicas: 3}", "min_replicas: 4}"))
    head = repo.commit("move and edit")
    report = plan(load_config(repo.root), "prod", base=base, head=head)
    (outcome,) = report.outcomes
    assert outcome.status == "planned" and outcome.change["status"] == "renamed"
    assert outcome.change["old_path"] == "specs/fraud-detector.yaml"
    assert report.plans[0].summary() == "0 to create, 1 to update, 0 to replace, 0 to delete"
    assert report.exit_code == 0 and not report.guards


def test_a_plan_blocked_by_policy_still_shows_the_diff_marked_blocked(repo):
    _edit(repo, "specs/fraud-detector.yaml", "min_replicas: 3}", "min_replicas: 1}")
    report = plan(load_config(repo.root), "prod")
    assert report.exit_code == 1 and report.policy.blocking
    [outcome] = report.outcomes
    assert outcome.status == "blocked" and "blocked by policy" in outcome.message
    created = {c.type.rsplit(":", 1)[-1] for c in outcome.plan.changes if c.action == "create"}
    assert {"Deployment", "Service"} <= created and "PodDisruptionBudget" not in created
    code, out, err = invoke(repo.root, "plan", "--env", "prod")
    assert code == 1
    assert "+ create  kubernetes:apps/v1:Deployment fraud-detector" in out
    assert "BLOCKED by policy: apply would not make these changes" in out
    assert "nothing was built or applied" in err

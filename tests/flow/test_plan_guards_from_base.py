"""`plan --base` / `apply --base`: a pull request cannot switch off its own guard, and a
removed environment overlay is a delete like a deleted spec (issue 16, items 1 and 2).

Real Git repositories in temp dirs with the project's example specs; the ledger records
of the apply test are written through the ledger (no server: the deployments are local
records whose server is gone).
"""

from __future__ import annotations

import contextlib
import json

import psutil
import pytest
from support.cli import invoke
from support.repo import make_repo, replace_in_file
from support.serving import servers_under

from reconciler.core.config import load_config
from reconciler.core.diagnostics import ModelopsError
from reconciler.flow import apply as apply_flow
from reconciler.flow.plan import plan
from reconciler.gitops.changes import detect_changes
from reconciler.state.ledger import Ledger, LedgerRecord

SPECS = ("diabetes-progression", "fraud-detector", "fraud-scorer-serverless")


@pytest.fixture
def repo(tmp_path):
    """The repository; the servers and routers an apply in a test started are stopped
    after it (the prune test applies fraud-detector and keeps it live)."""
    repo = make_repo(tmp_path / "repo", specs=SPECS, git=True)
    yield repo
    for proc in servers_under(load_config(repo.root).state_dir):
        with contextlib.suppress(psutil.NoSuchProcess):
            proc.kill()


def _drop_prod_overlay(repo, name: str) -> None:
    path = repo.root / f"specs/{name}.yaml"
    replace_in_file(path, "    prod: {}\n", "")


def test_removing_overlays_is_planned_as_deletes_and_trips_the_guard(repo):
    base = repo.git.head.commit.hexsha
    for name in ("diabetes-progression", "fraud-scorer-serverless"):
        _drop_prod_overlay(repo, name)
    head = repo.commit("drop two prod overlays")

    changes = detect_changes(load_config(repo.root), base, head)
    assert {s.name: s.removed_envs for s in changes.specs} == {
        "diabetes-progression": ["prod"],
        "fraud-scorer-serverless": ["prod"],
    }
    report = plan(load_config(repo.root), "prod", base=base, head=head)
    deletes = {o.key: o.message for o in report.outcomes if o.status == "delete"}
    assert sorted(deletes) == ["diabetes-progression-prod", "fraud-scorer-serverless-prod"]
    assert all("environment overlay prod removed" in m for m in deletes.values())
    assert all(p is not None and p.counts()["delete"] > 0 for p in report.plans)
    (guard,) = report.guards
    assert "deletes 2 of 3 deployment(s) in prod" in guard and report.exit_code == 1
    # staging keeps its overlays: nothing is deleted there
    staging = plan(load_config(repo.root), "staging", base=base, head=head)
    assert not [o for o in staging.outcomes if o.status == "delete"] and not staging.guards

    code, md, _ = invoke(
        repo.root, "plan", "--base", base, "--head", head, "--env", "prod", "-f", "markdown"
    )
    assert code == 1 and "blocked" in md and "deletes 2 of 3" in md


def test_a_pr_raising_max_delete_share_is_blocked_and_planned_with_the_base_value(repo):
    base = repo.git.head.commit.hexsha
    repo.write("modelops.yaml", "state_dir: .modelops\nmax_delete_share: 1.0\n")
    repo.rm("specs/diabetes-progression.yaml")
    repo.rm("specs/fraud-scorer-serverless.yaml")
    head = repo.commit("delete two specs and raise the guard")

    report = plan(load_config(repo.root), "prod", base=base, head=head)
    assert report.guard_changes == [
        {"setting": "max_delete_share", "base": 0.5, "head": 1.0, "loosens": True}
    ]
    assert report.needs_security_review and report.exit_code == 1
    assert any("loosens the guard setting max_delete_share" in g for g in report.guards)
    assert any("deletes 2 of 3 deployment(s) in prod" in g for g in report.guards)
    # reviewed: the loosening no longer blocks, but the base's stricter share still does
    report = plan(load_config(repo.root), "prod", base=base, head=head, allow_guard_change=True)
    (guard,) = report.guards
    assert "deletes 2 of 3" in guard and "max_delete_share 50%" in guard

    code, md, _ = invoke(
        repo.root, "plan", "--base", base, "--head", head, "--env", "prod", "-f", "markdown"
    )
    assert code == 1
    assert "Guard settings changed — needs security review" in md
    assert "`max_delete_share`: `0.5` → `1.0` (loosened)" in md
    code, js, _ = invoke(
        repo.root, "plan", "--base", base, "--head", head, "--env", "prod", "-f", "json"
    )
    assert json.loads(js)["guard_changes"][0]["loosens"] is True


def test_unprotecting_an_environment_is_blocked_tightening_is_only_listed(repo):
    base = repo.git.head.commit.hexsha
    repo.write("modelops.yaml", "state_dir: .modelops\nprotected_environments: []\n")
    head = repo.commit("unprotect prod")
    report = plan(load_config(repo.root), "prod", base=base, head=head)
    assert any("protected_environments" in g for g in report.guards) and report.exit_code == 1

    repo.write("modelops.yaml", "state_dir: .modelops\nmax_delete_share: 0.2\n")
    tighter = repo.commit("tighten the share")
    report = plan(load_config(repo.root), "prod", base=head, head=tighter)
    # prod protected again (the base unprotected it; the head's default protects it)
    assert report.guards == [] and report.needs_security_review
    changed = {c["setting"]: c["loosens"] for c in report.guard_changes}
    assert changed == {"max_delete_share": False, "protected_environments": False}


def test_apply_base_prunes_a_removed_overlay_and_keeps_the_base_guard(repo):
    repo.write("modelops.yaml", "state_dir: .modelops\nmax_delete_share: 0.4\n")
    base = repo.commit("a strict share")
    config = load_config(repo.root)
    ledger = Ledger(config.state_dir)
    for name in ("diabetes-progression", "fraud-detector"):
        rec = LedgerRecord(name, "staging", platform="local")
        rec.record_success("0" * 40, "digest", outputs={})
        ledger.put(rec)
    replace_in_file(
        repo.root / "specs/diabetes-progression.yaml",
        "    staging:\n      target: {platform: local}\n",
        "",
    )
    repo.write("modelops.yaml", "state_dir: .modelops\nmax_delete_share: 1.0\n")
    repo.commit("diabetes leaves staging; the share is raised in the same change")

    report = apply_flow.apply(load_config(repo.root), "staging", base=base)
    orphaned = [o.key for o in report.outcomes if o.status == "orphaned"]
    assert orphaned == ["diabetes-progression-staging"]
    assert report.guard_changes[0]["setting"] == "max_delete_share"
    # status says which live deployment is orphaned, and how to prune it
    code, out, _ = invoke(repo.root, "status", "--env", "staging", "--format", "json")
    health = {row["deployment"]: row["health"] for row in json.loads(out)}
    assert code == 0 and "orphaned" in health["diabetes-progression-staging"]
    assert "--prune" in health["diabetes-progression-staging"]
    assert "orphaned" not in health["fraud-detector-staging"]
    # 1 of 2 is above the base's 0.4: the merged 1.0 does not loosen the merge step
    with pytest.raises(ModelopsError, match="above max_delete_share 40%"):
        apply_flow.apply(load_config(repo.root), "staging", base=base, prune=True)
    report = apply_flow.apply(
        load_config(repo.root), "staging", base=base, prune=True, allow_mass_delete=True
    )
    destroyed = [o.key for o in report.outcomes if o.status == "destroyed"]
    assert destroyed == ["diabetes-progression-staging"]
    assert ledger.get("diabetes-progression", "staging").destroyed
    assert not ledger.get("fraud-detector", "staging").destroyed


def _reviews(tmp_path, login: str, commit: str) -> str:
    """A reviews file as the action writes it: GitHub's list of pull-request reviews."""
    path = tmp_path / f"reviews-{login}-{commit[:7]}.json"
    review = {"user": {"login": login}, "state": "APPROVED", "commit_id": commit}
    path.write_text(json.dumps([{**review, "submitted_at": "2026-01-01T00:00:00Z"}]))
    return str(path)


def test_a_guard_reviewers_approval_of_the_pr_head_unblocks_a_loosened_guard(repo, tmp_path):
    """GitHub plans refs/pull/N/merge (base + the PR's head): an approval of the PR's head
    by a guard reviewer of the merge base approves; a stale one, or one by a reviewer the
    PR itself adds, does not. stalled_after is a guard setting like max_delete_share."""
    repo.write("modelops.yaml", "state_dir: .modelops\nguard_reviewers: [alice]\n")
    base = repo.commit("alice reviews guard changes")
    repo.git.git.checkout("-b", "pr")
    repo.write(
        "modelops.yaml", "state_dir: .modelops\nguard_reviewers: [alice]\nstalled_after: 9\n"
    )
    first = repo.commit("retry failing applies longer")
    repo.write(
        "modelops.yaml",
        "state_dir: .modelops\nguard_reviewers: [alice, mallory]\nstalled_after: 50\n",
    )
    pr_head = repo.commit("and longer, and mallory reviews too")
    repo.git.git.checkout(base)
    repo.git.git.merge("--no-ff", "-m", "Merge pr into main", "pr")
    merge = repo.git.head.commit.hexsha

    report = plan(load_config(repo.root), "prod", base=base, head=merge)
    loosened = {c["setting"] for c in report.guard_changes if c["loosens"]}
    assert loosened == {"stalled_after", "guard_reviewers"} and report.exit_code == 1
    assert all("no reviews were given" in g for g in report.guards)

    def guards_with(login, commit):
        code, out, err = invoke(
            repo.root,
            *("plan", "--base", base, "--head", merge, "--env", "prod", "-f", "json"),
            *("--reviews", _reviews(tmp_path, login, commit)),
        )
        return code, json.loads(out)

    code, js = guards_with("Alice", pr_head)  # logins compare as on GitHub
    assert code == 0 and js["guards"] == []
    assert any("approved by Alice" in n for n in js["notes"])
    # the stricter of both revisions is what the run uses: the base's stalled_after
    assert any("stalled_after 3" in n for n in js["notes"])
    code, js = guards_with("alice", first)
    assert code == 1 and all("of an earlier commit" in g for g in js["guards"])
    code, js = guards_with("mallory", pr_head)  # added by this very change
    assert code == 1 and all("needs an approving review" in g for g in js["guards"])

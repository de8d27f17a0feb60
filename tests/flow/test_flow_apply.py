"""`modelops apply` on real Git repositories with the real local engine (bentoml serve).

The slow tests build and serve real Bentos; every server is stopped at the end.
"""

from __future__ import annotations

import json

import psutil
import pytest
from support.cli import invoke
from support.repo import make_repo

from reconciler.core.config import load_config
from reconciler.core.diagnostics import ModelopsError
from reconciler.flow import apply as apply_flow
from reconciler.flow import destroy as destroy_flow
from reconciler.flow.plan import plan
from reconciler.flow.rollback import rollback
from reconciler.flow.stages import Engines
from reconciler.state.ledger import Ledger, LedgerRecord


def _broken_spec(repo) -> None:
    """A second local deployment whose model file is not a model (it cannot load)."""
    text = (repo.root / "specs/fraud-detector.yaml").read_text()
    lines = [ln for ln in text.splitlines() if "sha256:" not in ln]
    text = "\n".join(lines) + "\n"
    text = text.replace("name: fraud-detector", "name: broken-scorer")
    text = text.replace("examples/fraud/model.joblib", "examples/broken/model.joblib")
    repo.write("specs/broken-scorer.yaml", text)
    repo.write("examples/broken/model.joblib", b"this is not a pickled model")


@pytest.fixture
def apply_repo(git_repo):
    repo = git_repo
    _broken_spec(repo)
    repo.commit("add a deployment whose model cannot load")
    yield repo
    config = load_config(repo.root)
    if any(r.environment == "staging" for r in Ledger(config.state_dir).all()):
        destroy_flow.destroy(config, "staging", [])


@pytest.mark.slow
def test_partial_failure_then_no_op_then_stalled(apply_repo):
    repo = apply_repo
    config = load_config(repo.root)
    ledger = Ledger(config.state_dir)
    rev = repo.git.head.commit.hexsha

    code, out, err = invoke(repo.root, "apply", "--env", "staging")
    assert code == 3, out + err
    assert "error: broken-scorer-staging:" in err and "model.joblib" in err
    assert "fraud-detector-staging" in out and "applied" in out, out + err
    good = ledger.get("fraud-detector", "staging")
    assert good.lastAppliedRevision == rev and good.condition("Ready")["status"] == "True"
    assert [(h["action"], h["result"]) for h in good.history] == [("apply", "succeeded")]
    assert good.outputs["url"].startswith("http://127.0.0.1:")
    assert good.desiredState["platform"] == "local"
    bad = ledger.get("broken-scorer", "staging")
    assert bad.lastAppliedRevision == "" and bad.lastAttemptedRevision == rev
    assert bad.failures == 1 and not bad.stalled
    assert [(h["action"], h["result"]) for h in bad.history] == [("apply", "failed")]

    # the same revision again: nothing changes for the live one
    before = ledger.path("fraud-detector", "staging").read_bytes()
    report = apply_flow.apply(config, "staging")
    assert {o.key: o.status for o in report.outcomes} == {
        "broken-scorer-staging": "failed",
        "fraud-detector-staging": "unchanged",
    }
    assert ledger.path("fraud-detector", "staging").read_bytes() == before
    assert ledger.get("broken-scorer", "staging").failures == 2
    # and the plan of the unchanged, applied deployment says so: no replacement to an
    # 'unbuilt' tag, the live model not "new here"
    planned = plan(config, "staging", ["fraud-detector"])
    assert [p.summary() for p in planned.plans] == ["no changes"]
    [outcome] = planned.outcomes
    assert outcome.model["old"] == outcome.model["new"]

    # the third failure with the same inputs stalls it; the fourth run does not retry it
    apply_flow.apply(config, "staging")
    bad = ledger.get("broken-scorer", "staging")
    assert bad.stalled and bad.failures == config.stalled_after
    report = apply_flow.apply(config, "staging")
    stalled = next(o for o in report.outcomes if o.name == "broken-scorer")
    assert stalled.status == "stalled" and "consecutive failed applies" in stalled.message
    assert report.exit_code == 3
    assert len(ledger.get("broken-scorer", "staging").history) == len(bad.history)
    code, out, _ = invoke(repo.root, "status", "--env", "staging", "-f", "json")
    rows = {r["deployment"]: r for r in json.loads(out)}
    assert "consecutive failed" in rows["broken-scorer-staging"]["stalled"]
    assert rows["fraud-detector-staging"]["health"] == "Healthy"
    assert rows["fraud-detector-staging"]["revision"] == rev[:12]
    # The local server's /metrics since start: at least the apply's load test (20 requests
    # in the relaxed spec), none answered 5xx; the broken one has no server to read.
    service = rows["fraud-detector-staging"]["service_metrics"]
    assert service["requests"] >= 20 and service["errors"] == 0, service
    assert 0 < service["p50_ms"] <= service["p99_ms"] and service["request_rate"] > 0
    assert rows["fraud-detector-staging"]["service"].endswith(f"({service['requests']} requests)")
    assert rows["broken-scorer-staging"]["service"] == "-"

    # a change to one of its inputs lifts the stall: it is tried again (and fails again)
    repo.write("examples/broken/model.joblib", b"still not a model, but different")
    repo.commit("another broken model")
    report = apply_flow.apply(config, "staging")
    retried = next(o for o in report.outcomes if o.name == "broken-scorer")
    assert retried.status == "failed"
    bad = ledger.get("broken-scorer", "staging")
    assert bad.failures == 1 and not bad.stalled
    # the live one was not touched: same server, same artifact, no new history entry
    good_after = ledger.get("fraud-detector", "staging")
    assert good_after.outputs == good.outputs and good_after.artifact == good.artifact
    assert good_after.history == good.history


@pytest.mark.slow
def test_rollback_reapplies_the_old_spec_and_holds_it(git_repo):
    repo = git_repo
    config = load_config(repo.root)
    ledger = Ledger(config.state_dir)
    c1 = repo.git.head.commit.hexsha
    try:
        path = repo.root / "specs/fraud-detector.yaml"
        path.write_text(path.read_text().replace("max_latency_ms: 500", "max_latency_ms: 600"))
        c2 = repo.commit("batching: 600 ms")
        # a second commit on the same line: the revert command must take the newest first
        path.write_text(path.read_text().replace("max_latency_ms: 600", "max_latency_ms: 700"))
        c3 = repo.commit("batching: 700 ms")
        report = apply_flow.apply(config, "staging")
        assert [o.status for o in report.outcomes] == ["applied"], report.outcomes[0].message
        rec = ledger.get("fraud-detector", "staging")
        assert rec.lastAppliedRevision == c3
        tag_c3 = rec.artifact["bento_tag"]

        code, out, err = invoke(
            repo.root, "rollback", "fraud-detector", "--env", "staging", "--to", c1
        )
        assert code == 0, out + err
        assert f"git revert {c3[:12]} {c2[:12]}" in out and "batching: 600 ms" in out
        rec = ledger.get("fraud-detector", "staging")
        assert rec.lastAppliedRevision == c1 and rec.artifact["bento_tag"] != tag_c3
        assert rec.lastGoodRevision == c3  # what to go forward to again
        assert rec.history[-1]["action"] == "rollback" and rec.history[-1]["revision"] == c1
        assert rec.suspended["revision"] == c1
        assert [c["sha"] for c in rec.suspended["revert"]] == [c3, c2]

        # the next apply (Git still at c2) leaves the rolled-back deployment alone
        report = apply_flow.apply(config, "staging")
        assert [o.status for o in report.outcomes] == ["held"] and report.exit_code == 0
        assert ledger.get("fraud-detector", "staging").lastAppliedRevision == c1
        code, out, _ = invoke(repo.root, "history", "fraud-detector", "--env", "staging")
        assert code == 0 and "rollback" in out and c1[:12] in out

        # reverting in Git as printed makes Git and the ledger agree: nothing to do, hold
        # lifted (oldest first, the two reverts would conflict on the one line)
        repo.git.git.revert("--no-edit", c3[:12], c2[:12])
        report = apply_flow.apply(config, "staging")
        assert [o.status for o in report.outcomes] == ["unchanged"]
        assert ledger.get("fraud-detector", "staging").suspended == {}
    finally:
        destroy_flow.destroy(config, "staging", [])


def test_rollback_to_a_revision_without_the_spec(git_repo):
    repo = git_repo
    with pytest.raises(ModelopsError, match="no spec named 'nobody'"):
        rollback(load_config(repo.root), "nobody", "staging", "HEAD")
    with pytest.raises(ModelopsError, match="does not exist"):
        rollback(load_config(repo.root), "fraud-detector", "staging", "deadbeef")


def test_dirty_tree_on_apply_is_refused(git_repo):
    repo = git_repo
    path = repo.root / "specs/fraud-detector.yaml"
    path.write_text(path.read_text().replace("min_replicas: 3}", "min_replicas: 4}"))
    code, _, err = invoke(repo.root, "apply", "--env", "prod")
    assert code == 2
    assert "uncommitted changes" in err and "specs/fraud-detector.yaml" in err
    assert "Nothing was applied" in err
    assert Ledger(load_config(repo.root).state_dir).all() == []


def _orphan(config, name: str, env: str, applied: bool = False) -> None:
    rec = LedgerRecord(name, env, platform="local")
    if applied:
        rec.record_success("0" * 40, "digest", outputs={})
    Ledger(config.state_dir).put(rec)


def test_prune_protected_and_mass_delete_guards(tmp_path):
    # no specs at all: every record is an orphan
    repo = make_repo(tmp_path / "repo", specs=(), git=True)
    config = load_config(repo.root)
    for name in ("a", "b", "c"):
        _orphan(config, name, "dev")
    _orphan(config, "p", "prod")
    ledger = Ledger(config.state_dir)

    report = apply_flow.apply(config, "dev")
    assert {o.status for o in report.outcomes} == {"orphaned"} and report.exit_code == 0
    assert len(ledger.all()) == 4

    with pytest.raises(ModelopsError, match="would destroy 3 of 3 deployment"):
        apply_flow.apply(config, "dev", prune=True)
    assert len(ledger.all()) == 4

    code, out, err = invoke(repo.root, "apply", "--env", "prod", "--prune")
    assert code == 0 and "protected" in out and "--allow-destroy-protected" in out
    assert ledger.get("p", "prod") is not None

    report = apply_flow.apply(config, "dev", prune=True, allow_mass_delete=True)
    assert {o.status for o in report.outcomes} == {"destroyed"}
    assert [r.key for r in ledger.all()] == ["p-prod"]
    report = apply_flow.apply(
        config, "prod", prune=True, allow_destroy_protected=True, allow_mass_delete=True
    )
    assert [o.status for o in report.outcomes] == ["destroyed"] and ledger.all() == []
    # the records stay, destroyed, with their history
    kept = ledger.all(include_destroyed=True)
    assert [r.key for r in kept] == ["a-dev", "b-dev", "c-dev", "p-prod"]
    for r in kept:
        assert r.destroyed and r.history[-1]["action"] == "destroy"
        assert r.history[-1]["message"] == "destroyed (spec deleted, --prune); never applied"
    # and are not orphans any more
    assert apply_flow.apply(config, "dev").outcomes == []


def test_apply_base_only_touches_changed_specs_and_lists_deleted_ones(tmp_path):
    repo = make_repo(tmp_path / "repo", specs=(), git=True)
    config = load_config(repo.root)
    repo.write("notes.txt", "x\n")
    base = repo.commit("notes")
    _orphan(config, "gone", "dev", applied=True)
    _orphan(config, "kept", "dev", applied=True)
    # a spec named "gone" existed at base and is deleted by this change
    repo.write("specs/gone.yaml", "metadata: {name: gone}\nspec: {environments: {dev: {}}}\n")
    mid = repo.commit("gone spec")
    repo.rm("specs/gone.yaml")
    repo.commit("delete gone")
    report = apply_flow.apply(config, "dev", base=mid)
    assert [(o.key, o.status) for o in report.outcomes] == [("gone-dev", "orphaned")]
    report = apply_flow.apply(config, "dev", base=mid, prune=True)
    assert [(o.key, o.status) for o in report.outcomes] == [("gone-dev", "destroyed")]
    assert [r.key for r in Ledger(config.state_dir).all()] == ["kept-dev"]
    gone = Ledger(config.state_dir).get("gone", "dev")
    assert [(h["action"], h["result"]) for h in gone.history] == [
        ("apply", "succeeded"),
        ("destroy", "succeeded"),
    ]
    assert gone.history[-1]["revision"] == report.revision
    assert gone.destroyed["lastAppliedRevision"] == "0" * 40
    # the same change again: the destroyed record is neither orphaned nor destroyed twice
    assert apply_flow.apply(config, "dev", base=mid, prune=True).outcomes == []
    assert apply_flow.apply(config, "dev", base=base).outcomes == []


def test_destroy_keeps_the_history_status_hides_it_history_shows_it(git_repo):
    """`modelops destroy` on a real repository: the record stays, marked destroyed.

    The record is a local one whose server is gone (no pid), so no server is needed;
    test_apply_destroy_apply_continues_the_history does it with a real server.
    """
    repo = git_repo
    config = load_config(repo.root)
    ledger = Ledger(config.state_dir)
    _orphan(config, "fraud-detector", "staging", applied=True)
    head = repo.git.head.commit.hexsha

    code, out, err = invoke(repo.root, "destroy", "--env", "staging", "fraud-detector")
    assert code == 0, out + err
    assert "fraud-detector-staging" in out and "destroyed" in out
    rec = ledger.get("fraud-detector", "staging")
    assert rec.destroyed["revision"] == head and rec.destroyed["lastAppliedRevision"] == "0" * 40
    assert [(h["action"], h["revision"]) for h in rec.history] == [
        ("apply", "0" * 40),
        ("destroy", head),
    ]

    code, out, _ = invoke(repo.root, "status", "--env", "staging", "-f", "json")
    assert code == 0 and json.loads(out) == []
    code, out, _ = invoke(repo.root, "status", "-f", "json")
    (row,) = json.loads(out)  # prod was never applied: listed; staging is destroyed
    assert row["deployment"] == "fraud-detector-prod" and row["health"].startswith("NotApplied")
    code, out, _ = invoke(repo.root, "status", "--env", "staging")
    assert "no deployments recorded" in out and "destroyed" in out
    assert "fraud-detector-staging" in out

    code, out, _ = invoke(repo.root, "history", "fraud-detector", "--env", "staging")
    assert code == 0 and "destroy" in out and "apply" in out and "DESTROYED at" in out
    code, out, _ = invoke(repo.root, "history", "fraud-detector", "--env", "staging", "-f", "json")
    data = json.loads(out)
    assert [e["action"] for e in data["history"]] == ["destroy", "apply"]  # newest first
    assert data["destroyed"]["revision"] == head and data["lastAppliedRevision"] == ""

    # destroying it again says when it was destroyed, and changes nothing
    before = ledger.path("fraud-detector", "staging").read_bytes()
    code, _, err = invoke(repo.root, "destroy", "--env", "staging", "fraud-detector")
    assert code == 2 and "already destroyed" in err and rec.destroyed["actor"] in err
    assert ledger.path("fraud-detector", "staging").read_bytes() == before
    # "everything in staging" finds nothing live
    assert destroy_flow.destroy(config, "staging", []).outcomes == []


def test_failed_teardown_keeps_the_record_live_and_records_the_attempt(git_repo, monkeypatch):
    repo = git_repo
    config = load_config(repo.root)
    ledger = Ledger(config.state_dir)
    rec = LedgerRecord("fraud-detector", "prod", platform="kubernetes")
    rec.record_success("1" * 40, "digest", outputs={"url": "http://x"})
    ledger.put(rec)

    class FailingTeardown:
        """Stands in for the Pulumi engine (no `pulumi` CLI here); its destroy fails."""

        def destroy(self, record):
            raise ModelopsError(f"{record.key}: destroy failed: stack is locked", 3)

    monkeypatch.setattr(destroy_flow, "pulumi_gate", lambda platforms, env: None)
    monkeypatch.setattr(Engines, "for_platform", lambda self, p: FailingTeardown())
    report = destroy_flow.destroy(config, "prod", ["fraud-detector"])
    assert [o.status for o in report.outcomes] == ["failed"] and report.exit_code == 3
    assert "stack is locked" in report.outcomes[0].message
    back = ledger.get("fraud-detector", "prod")
    assert not back.destroyed and back.lastAppliedRevision == "1" * 40
    assert [(h["action"], h["result"]) for h in back.history] == [
        ("apply", "succeeded"),
        ("destroy", "failed"),
    ]
    assert [r.key for r in ledger.all()] == ["fraud-detector-prod"]


@pytest.mark.slow
def test_apply_destroy_apply_continues_the_history(git_repo):
    """A real server: destroyed (stopped, history kept), then applied again."""
    repo = git_repo
    config = load_config(repo.root)
    ledger = Ledger(config.state_dir)
    rev = repo.git.head.commit.hexsha
    try:
        report = apply_flow.apply(config, "staging")
        assert [o.status for o in report.outcomes] == ["applied"], report.outcomes[0].message
        first = ledger.get("fraud-detector", "staging")
        pid = first.outputs["pid"]

        code, out, err = invoke(repo.root, "destroy", "--env", "staging", "--yes")
        assert code == 0, out + err
        rec = ledger.get("fraud-detector", "staging")
        assert rec.destroyed["lastAppliedRevision"] == rev and rec.outputs == {}
        assert rec.destroyed["artifact"] == first.artifact["bento_tag"]
        assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == "zombie"
        code, out, _ = invoke(repo.root, "status", "--env", "staging", "-f", "json")
        assert json.loads(out) == []
        # the offline plan sees nothing live: it would create the deployment again
        planned = plan(config, "staging")
        assert planned.outcomes[0].status == "planned"

        report = apply_flow.apply(config, "staging")
        assert [o.status for o in report.outcomes] == ["applied"], report.outcomes[0].message
        assert "first apply since it was destroyed" in report.outcomes[0].message
        again = ledger.get("fraud-detector", "staging")
        assert not again.destroyed and again.lastAppliedRevision == rev
        assert [(h["action"], h["result"]) for h in again.history] == [
            ("apply", "succeeded"),
            ("destroy", "succeeded"),
            ("apply", "succeeded"),
        ]
        code, out, _ = invoke(repo.root, "status", "--env", "staging", "-f", "json")
        (row,) = json.loads(out)
        assert row["deployment"] == "fraud-detector-staging" and row["health"] == "Healthy"
        code, out, _ = invoke(
            repo.root, "history", "fraud-detector", "--env", "staging", "-f", "json"
        )
        assert [e["action"] for e in json.loads(out)["history"]] == ["apply", "destroy", "apply"]
    finally:
        destroy_flow.destroy(config, "staging", [])


class FakePulumiEngine:
    """Stands in for the Pulumi engine (no `pulumi` CLI here): like the real one, it
    writes no ledger and raises exit 3 when the update fails."""

    calls = 0

    def __init__(self, config) -> None:
        self.config = config

    def apply(self, dep, artifact, revision, record=None):
        FakePulumiEngine.calls += 1
        raise ModelopsError(f"{dep.key}: update failed: AccessDenied", 3)


@pytest.mark.slow
def test_engine_failures_are_counted_once_and_stall(git_repo, monkeypatch):
    repo = git_repo
    config = load_config(repo.root)
    monkeypatch.setattr(apply_flow, "pulumi_gate", lambda platforms, env: None)
    monkeypatch.setattr(Engines, "for_platform", lambda self, platform: FakePulumiEngine(config))
    ledger = Ledger(config.state_dir)
    for i in range(1, 4):
        report = apply_flow.apply(config, "prod")
        assert [o.status for o in report.outcomes] == ["failed"] and report.exit_code == 3
        rec = ledger.get("fraud-detector", "prod")
        assert rec.failures == i and len(rec.history) == i
    assert rec.stalled and "AccessDenied" in rec.stalled_reason
    calls = FakePulumiEngine.calls
    report = apply_flow.apply(config, "prod")
    assert [o.status for o in report.outcomes] == ["stalled"]
    assert FakePulumiEngine.calls == calls  # not retried

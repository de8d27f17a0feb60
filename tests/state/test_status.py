"""The one status writer: what each function records, on the real ledger (no engine)."""

from __future__ import annotations

from pathlib import Path

from reconciler.build.artifact import Artifact
from reconciler.build.smoke import SmokeResult
from reconciler.engine.base import ApplyResult
from reconciler.spec.model import Deployment, Spec
from reconciler.state import status
from reconciler.state.ledger import Ledger, LedgerRecord


def _dep(platform: str = "local") -> Deployment:
    data = {"metadata": {"name": "fraud"}, "spec": {"target": {"platform": platform}}}
    spec = Spec(file="specs/fraud.yaml", path=Path("/repo/specs/fraud.yaml"), data=data)
    return Deployment(spec=spec, env="staging", data=data)


ARTIFACT = Artifact("fraud:1", "1" * 64)


def test_applied_then_unchanged_then_failed_then_stalled(tmp_path):
    ledger, dep = Ledger(tmp_path), _dep()
    smoke = SmokeResult("fraud-staging", "http://127.0.0.1:1")
    result = ApplyResult(True, {"url": "u", "pid": 1}, "serving fraud:1", "engine-d", smoke=smoke)
    status.applied(
        ledger, dep, result, revision="r1", digest="flow-d", artifact=ARTIFACT, desired_state={}
    )
    rec = ledger.get("fraud", "staging")
    assert rec.lastAppliedRevision == "r1" and rec.inputsDigest == "engine-d"
    assert rec.lastAttemptedDigest == "flow-d" and rec.platform == "local"
    assert rec.specFile == "specs/fraud.yaml" and rec.outputs == {"url": "u", "pid": 1}
    assert rec.condition("Ready")["reason"] == "ApplySucceeded"
    (entry,) = rec.history
    assert entry["action"] == "apply" and entry["artifact"] == "fraud:1"
    assert entry["smoke"]["passed"] is True

    # a no-op at the same revision leaves the file alone; a new revision moves on
    before = ledger.path("fraud", "staging").read_bytes()
    status.unchanged(ledger, dep, revision="r1", digest="flow-d", desired_state=None)
    assert ledger.path("fraud", "staging").read_bytes() == before
    status.unchanged(ledger, dep, revision="r2", digest="flow-d", desired_state=None)
    rec = ledger.get("fraud", "staging")
    assert rec.lastAppliedRevision == rec.lastAttemptedRevision == "r2" and len(rec.history) == 1

    for i in range(1, 4):
        status.failed(ledger, dep, revision="r3", digest="flow-e", message="boom", stalled_after=3)
        rec = ledger.get("fraud", "staging")
        assert rec.failures == i and len(rec.history) == 1 + i
    assert rec.stalled and rec.condition("Stalled")["reason"] == "RetriesExhausted"
    assert rec.lastAppliedRevision == "r2" and rec.condition("Ready")["reason"] == "ApplyFailed"


def test_failure_with_the_old_server_restarted_or_not(tmp_path):
    ledger, dep = Ledger(tmp_path), _dep()
    rec = LedgerRecord("fraud", "staging", platform="local")
    rec.record_success("r1", "d", outputs={"pid": 1, "port": 8000})
    ledger.put(rec)
    status.failed(
        ledger,
        dep,
        revision="r2",
        digest="d2",
        message="smoke failed",
        stalled_after=3,
        outputs={"pid": 2, "port": 8000},
    )
    rec = ledger.get("fraud", "staging")
    assert rec.outputs == {"pid": 2, "port": 8000} and rec.lastAppliedRevision == "r1"
    assert rec.condition("Ready")["reason"] == "ApplyFailed"
    status.failed(
        ledger,
        dep,
        revision="r2",
        digest="d2",
        message="smoke failed",
        stalled_after=3,
        restore_failed="port 8000 is taken",
    )
    ready = ledger.get("fraud", "staging").condition("Ready")
    assert ready["status"] == "False" and ready["reason"] == "RestoreFailed"
    assert ready["message"] == "previous server could not restart: port 8000 is taken"


def test_rollback_is_one_entry_and_holds(tmp_path):
    ledger, dep = Ledger(tmp_path), _dep("kubernetes")
    status.applied(
        ledger,
        dep,
        ApplyResult(True, {}, "applied", "e1"),
        revision="c2",
        digest="d2",
        artifact=ARTIFACT,
        desired_state=None,
    )
    status.rolled_back(
        ledger,
        dep,
        ApplyResult(True, {}, "applied", "e0"),
        revision="c1" * 20,
        digest="d1",
        artifact=ARTIFACT,
        desired_state=None,
        head_digest="d2",
        revert=[{"sha": "c2", "summary": "x"}],
    )
    rec = ledger.get("fraud", "staging")
    assert [(h["action"], h["result"]) for h in rec.history] == [
        ("apply", "succeeded"),
        ("rollback", "succeeded"),
    ]
    assert rec.lastGoodRevision == "c2" and rec.lastAppliedRevision == "c1" * 20
    assert rec.condition("Ready")["reason"] == "RollbackSucceeded"
    assert rec.condition("Ready")["message"] == f"rolled back to {('c1' * 20)[:12]}"
    assert rec.suspended["headDigest"] == "d2" and rec.suspended["since"] == rec.history[-1]["time"]
    # a rollback the engine had nothing to do for still gets its one entry
    status.rolled_back(
        ledger,
        dep,
        ApplyResult(False, {}, "unchanged", "e0", ran=False),
        revision="c1" * 20,
        digest="d1",
        artifact=ARTIFACT,
        desired_state=None,
        head_digest="d2",
        revert=[],
    )
    assert [h["action"] for h in ledger.get("fraud", "staging").history][-1] == "rollback"


def test_destroyed_and_destroy_failed_and_jobs(tmp_path):
    ledger, dep = Ledger(tmp_path), _dep()
    rec = LedgerRecord("fraud", "staging", platform="local")
    rec.record_success("r1", "d")
    ledger.put(rec)
    status.destroy_failed(ledger, rec, revision="r2", message="locked")
    assert ledger.get("fraud", "staging").history[-1]["result"] == "failed"
    status.destroyed(ledger, rec, revision="r2", reason="modelops destroy")
    gone = ledger.get("fraud", "staging")
    assert gone.destroyed["revision"] == "r2" and gone.history[-1]["action"] == "destroy"
    status.destroyed(ledger, rec, revision="r3", reason="again")  # already destroyed: no-op
    assert ledger.get("fraud", "staging").destroyed["revision"] == "r2"

    status.drift_result(ledger, dep, {"status": "ok"}, "ok", "no drift")
    status.drift_result(ledger, dep, {"status": "failed"}, "failed", "no data")
    rec = ledger.get("fraud", "staging")
    assert rec.drift == {"status": "failed", "previous": {"status": "ok"}}
    entry = status.retraining_result(ledger, dep, "proposed", "better", branch="b")
    assert entry == ledger.get("fraud", "staging").history[-1]
    assert entry["action"] == "retrain" and entry["branch"] == "b"


def test_canary_progress_while_it_runs_then_steps_and_verdict_on_the_outcome(tmp_path):
    ledger, dep = Ledger(tmp_path), _dep()
    status.canary_progress(ledger, ("fraud", "staging"), {"result": "passed"})
    assert ledger.get("fraud", "staging") is None  # no apply pending: nothing written
    status.pending(ledger, ("fraud", "staging"), action="apply", revision="r1", artifact="a")
    check = {"step": 0, "weight": 50, "result": "failed", "failed": ["agreement 0.1 < 0.9"]}
    status.canary_progress(ledger, ("fraud", "staging"), {**check, "result": "passed"})
    status.canary_progress(ledger, ("fraud", "staging"), check)
    progress = ledger.get("fraud", "staging").pending["canary"]
    assert progress["checks"] == 2 and progress["result"] == "failed"
    assert progress["weight"] == 50 and progress["failed"] == ["agreement 0.1 < 0.9"]

    rollout = {
        "verdict": "aborted",
        "reason": "check 2 at 50% failed",
        "steps": [50],
        "checks": [{**check, "result": "passed", "failed": []}, check],
    }
    status.failed(
        ledger, dep, revision="r1", digest="d", message="canary aborted", stalled_after=3,
        rollout=rollout,
    )  # fmt: skip
    rec = ledger.get("fraud", "staging")
    assert rec.pending == {}
    step, verdict, apply = rec.history[-3:]
    assert step["action"] == "canary" and step["result"] == "failed" and step["weight"] == 50
    assert step["message"] == "step 50%: 1 of 2 check(s) passed; agreement 0.1 < 0.9"
    assert verdict["result"] == "aborted" and verdict["message"] == "check 2 at 50% failed"
    assert apply["action"] == "apply" and apply["result"] == "failed"
    assert rec.outputs["rollout"]["verdict"] == "aborted"

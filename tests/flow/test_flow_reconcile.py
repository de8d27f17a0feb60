"""Self-heal: `apply --base` and `modelops reconcile` converge what left its ledger record.

A killed local server (a real `bentoml serve`, killed for real) is started again by
`apply --base` with nothing changed in Git and by `reconcile`; a stack whose refresh
shows drift, and lock conflicts, go through the real Pulumi engine code against a *fake
stack* (the Pulumi CLI and a cluster cannot run here) that raises the SDK's own errors.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import signal
import socket
import subprocess
import sys
from datetime import datetime

import httpx
import pytest
from pulumi.automation import ConcurrentUpdateError, OutputValue, UpdateSummary, UpResult
from pulumi.automation._cmd import CommandResult
from support.cli import invoke
from support.repo import make_repo, relax

from reconciler.core.config import load_config
from reconciler.core.diagnostics import ModelopsError
from reconciler.core.procs import signal_group
from reconciler.engine.pulumi_engine import PulumiEngine
from reconciler.flow import apply as apply_flow
from reconciler.flow import destroy as destroy_flow
from reconciler.flow import heal as heal_flow
from reconciler.flow import reconcile as reconcile_flow
from reconciler.flow.digests import inputs_digest
from reconciler.flow.heal import DIVERGED, NOT_APPLIED, check_live
from reconciler.flow.run import RunReport
from reconciler.flow.stages import Engines
from reconciler.spec.repo import load_all
from reconciler.state.ledger import Ledger, LedgerRecord
from reconciler.state.lock import LOCK_FILE, LockInfo
from reconciler.state.reasons import READY, TRANSIENT_FAILURE

#: What the Pulumi CLI says on a self-managed (S3) backend when stale lock files of
#: crashed runs are left besides the live one: one line per lock after the error.
MANY_LOCKS = (
    "error: the stack is currently locked by 12 lock(s). Either wait for the other "
    "process(es) to end or delete the lock file with `pulumi cancel`.\n"
    + "".join(
        f"  s3://state/.pulumi/locks/organization/modelops/fraud-detector-prod/{i:04d}.json: "
        f"created by runner@ci-{i} (pid {1000 + i}) at 2026-12-06T2{i % 10}:00:00Z\n"
        for i in range(12)
    )
)


class FakeStack:
    """A fake of the Automation API stack (no Pulumi CLI here): while ``locked`` every
    operation raises the SDK's ConcurrentUpdateError with the CLI's text; otherwise
    ``up`` creates resources and ``preview_refresh`` reports ``drift``."""

    def __init__(self, drift=None):
        self.locked = False
        self.drift = drift or {}
        self.calls: list[str] = []

    def _op(self, name):
        self.calls.append(name)
        if self.locked:
            raise ConcurrentUpdateError(CommandResult("", MANY_LOCKS, 255))

    def refresh(self, **kwargs):
        self._op("refresh")

    def preview(self, **kwargs):
        self._op("preview")

    def preview_refresh(self, **kwargs):
        self._op("preview_refresh")
        return type("PreviewResult", (), {"change_summary": dict(self.drift)})()

    def up(self, on_event=None, **kwargs):
        self._op("up")
        n = 8  # the kubernetes program's resources
        summary = UpdateSummary(
            "update", datetime.now(), "", {}, {}, "succeeded", resource_changes={"create": n}
        )
        return UpResult("", "", summary, {"url": OutputValue("http://svc", False)})


@pytest.mark.slow
def test_lock_conflicts_never_stall_and_the_next_base_apply_retries(git_repo, monkeypatch):
    """A deployment on main that was never applied (the merge's apply job died before
    recording) is applied by the next `apply --base` with nothing changed in Git. Many lock
    conflicts (the lock text beyond the error's last lines) are transient: never Stalled,
    and each later `apply --base` retries the deployment (before, three conflicts stalled
    it and later applies skipped it)."""
    repo = git_repo
    config = load_config(repo.root)
    fake = FakeStack()
    fake.locked = True
    monkeypatch.setattr(apply_flow, "pulumi_gate", lambda platforms, env: None)
    monkeypatch.setattr(apply_flow, "_sleep", lambda s: None)
    monkeypatch.setattr(PulumiEngine, "stack", lambda self, dep, artifact=None, record=None: fake)
    ledger = Ledger(config.state_dir)
    (dep,) = load_all(config, ["fraud-detector"], "prod").deployments
    engine = Engines(config).for_platform(dep.platform)
    assert isinstance(engine, PulumiEngine)  # the real engine code, on a fake stack
    head = repo.git.head.commit.hexsha
    assert ledger.get("fraud-detector", "prod") is None
    code, out, _ = invoke(repo.root, "status", "--env", "prod", "-f", "json")
    (row,) = json.loads(out)
    assert row["deployment"] == "fraud-detector-prod" and row["platform"] == "kubernetes"
    assert row["health"].startswith(NOT_APPLIED + " (specs/fraud-detector.yaml;")
    reasons = []
    for _ in range(config.stalled_after + 1):
        # nothing changed in Git: only the self-heal check puts it in the run
        tried = apply_flow.apply(config, "prod", base=head)
        (outcome,) = tried.outcomes
        assert outcome.status == "failed" and "locked by another update" in outcome.message
        assert tried.exit_code == 3 and outcome.change["status"] == DIVERGED
        reasons.append(outcome.change["reasons"][0])
    assert reasons[0].startswith(NOT_APPLIED) and "failed transiently" in reasons[-1]
    assert fake.calls == ["refresh"] * 3 * (config.stalled_after + 1)  # retried each time
    rec = ledger.get("fraud-detector", "prod")
    assert not rec.stalled and rec.failures == 0
    assert rec.condition(READY)["reason"] == TRANSIENT_FAILURE
    with pytest.raises(ModelopsError, match="locked by another update"):
        apply_flow.converge(dep, None, config, ledger, engine, head)  # raised to its caller
    fake.locked = False
    fake.calls.clear()
    healed = apply_flow.apply(config, "prod", base=head)
    assert len(healed.outcomes) == 1, (healed.notes, healed.to_dict()["diagnostics"], rec.to_dict())
    (outcome,) = healed.outcomes
    assert outcome.status == "applied", outcome.message
    assert outcome.change["status"] == DIVERGED
    assert "failed transiently" in outcome.change["reasons"][0]
    assert fake.calls == ["refresh", "preview", "up"]
    assert ledger.get("fraud-detector", "prod").condition(READY)["status"] == "True"
    # in sync now: the next --base apply has nothing to do
    assert apply_flow.apply(config, "prod", base=head).outcomes == []


def test_refresh_drift_of_a_stack_is_found_and_a_check_failure_is_a_note(spec_repo, monkeypatch):
    config = load_config(spec_repo)
    ledger = Ledger(config.state_dir)
    for name in ("a", "b", "c"):
        rec = LedgerRecord(name, "prod", platform="kubernetes", lastAppliedRevision="r1")
        rec.set_condition(READY, "True", "ApplySucceeded", "applied")
        ledger.put(rec)
    stacks = {
        "a-prod": FakeStack(drift={"same": 7}),
        "b-prod": FakeStack(drift={"same": 5, "update": 1, "delete": 1}),
        "c-prod": FakeStack(),
    }
    stacks["c-prod"].locked = True
    monkeypatch.setattr(heal_flow, "pulumi_available", lambda: True)
    monkeypatch.setattr(PulumiEngine, "existing_stack", lambda self, key, action: stacks[key])
    check = check_live(config, "prod", ledger, Engines(config))
    assert check.checked == 3
    drifted = [(d.key, d.reason) for d in check.diverged if d.reason != NOT_APPLIED]
    assert drifted == [("b-prod", "a refresh of stack b-prod shows drift (1 delete, 1 update)")]
    assert len(check.notes) == 1 and "c-prod: drift check failed" in check.notes[0]
    assert all(s.calls == ["preview_refresh"] for s in stacks.values())
    # without the CLI the check cannot run, and says so
    monkeypatch.setattr(heal_flow, "pulumi_available", lambda: False)
    check = check_live(config, "prod", ledger, Engines(config))
    assert {d.reason for d in check.diverged} == {NOT_APPLIED}  # the specs/ of the repo
    assert "drift of 3 stack(s) not checked" in check.notes[0]


def test_records_that_cannot_drift_are_not_checked(spec_repo):
    config = load_config(spec_repo)
    ledger = Ledger(config.state_dir)
    never = LedgerRecord("never", "staging", platform="local")  # only job history
    never.add_history("monitor", "", "ok")
    ledger.put(never)
    failed_first = LedgerRecord("failed", "staging", platform="local")
    failed_first.record_failure("r1", "d1", "model does not load")  # nothing live
    ledger.put(failed_first)
    stalled = LedgerRecord("stalled", "staging", platform="local", lastAppliedRevision="r0")
    for _ in range(3):
        stalled.record_failure("r1", "d1", "model does not load")
    ledger.put(stalled)
    held = LedgerRecord("held", "staging", platform="local", lastAppliedRevision="r0")
    held.suspended = {"reason": "rollback", "headDigest": "x"}
    ledger.put(held)
    pending = LedgerRecord("pending", "staging", platform="local")
    pending.pending = {"action": "apply", "time": "t", "actor": "ci"}
    ledger.put(pending)
    check = check_live(config, "staging", ledger, Engines(config))
    # a held or stalled local deployment is left alone while it serves; one whose server
    # is down is reported (its router is restored when the server still runs)
    assert [(d.key, d.reason) for d in check.diverged if d.reason != NOT_APPLIED] == [
        ("held-staging", "NotRunning: no server recorded"),
        ("pending-staging", "apply begun at t by ci did not finish"),
        ("stalled-staging", "NotRunning: no server recorded"),
    ]
    assert check.checked == 3
    for key in ("held", "stalled"):  # the same records on a cloud platform: not checked
        rec = ledger.get(key, "staging")
        rec.platform = "kubernetes"
        ledger.put(rec)
    check = check_live(config, "staging", ledger, Engines(config))
    assert [(d.key, d.reason) for d in check.diverged if d.reason != NOT_APPLIED] == [
        ("pending-staging", "apply begun at t by ci did not finish")
    ]
    assert check.checked == 1


def test_deployments_declared_in_git_and_never_applied_are_found(spec_repo):
    """A spec on main whose apply never recorded anything (the job died first, or never
    ran) is out of sync, as Argo CD would call it; a destroyed deployment, one that was
    attempted, and one a `--base` apply handles anyway are not."""
    config = load_config(spec_repo)
    ledger = Ledger(config.state_dir)
    # staging is declared by diabetes-progression and fraud-detector (specs/)
    check = check_live(config, "staging", ledger, Engines(config))
    assert [(d.key, d.reason, d.spec_file, d.record) for d in check.diverged] == [
        ("diabetes-progression-staging", NOT_APPLIED, "specs/diabetes-progression.yaml", None),
        ("fraud-detector-staging", NOT_APPLIED, "specs/fraud-detector.yaml", None),
    ]
    assert check.summary("staging") == (
        "0 deployment(s) of staging checked, 0 diverged from the ledger, 2 declared in Git "
        "and never applied"
    )
    files, reasons = heal_flow.heal_files(config, "staging", check)
    assert [config.rel(f) for f in files] == [
        "specs/diabetes-progression.yaml",
        "specs/fraud-detector.yaml",
    ]
    assert set(reasons.values()) == {NOT_APPLIED}
    # only a monitoring job's history: still never applied; a failed first apply was
    # attempted (the spec's fault: retried when it changes); a destroy is deliberate
    jobs_only = LedgerRecord("fraud-detector", "staging", platform="local")
    jobs_only.add_history("monitor", "", "ok")
    ledger.put(jobs_only)
    (diabetes,) = load_all(config, ["diabetes-progression"], "staging").deployments
    failed = LedgerRecord("diabetes-progression", "staging", platform="local")
    failed.record_failure("r1", inputs_digest(diabetes, config), "model does not load")
    ledger.put(failed)
    check = check_live(config, "staging", ledger, Engines(config))
    assert [(d.key, d.record.history[0]["action"]) for d in check.diverged] == [
        ("fraud-detector-staging", "monitor")
    ]
    # ... and tried again once the spec in the tree is no longer the one that failed
    failed.record_failure("r0", "an older spec", "model does not load")
    ledger.put(failed)
    check = check_live(config, "staging", ledger, Engines(config))
    assert [(d.key, d.reason) for d in check.diverged][0] == (
        "diabetes-progression-staging",
        "OutOfSync: HEAD differs from what was applied (never applied successfully)",
    )
    failed.record_failure("r1", inputs_digest(diabetes, config), "model does not load")
    ledger.put(failed)
    destroyed = LedgerRecord("fraud-detector", "staging", platform="local")
    destroyed.record_destroyed("r2")
    ledger.put(destroyed)
    assert check_live(config, "staging", ledger, Engines(config)).diverged == []
    # skipped keys are left to the caller; an unparsable spec is a note, never dropped
    (spec_repo / "specs" / "broken.yaml").write_text("spec: [unclosed\n")
    check = check_live(config, "prod", ledger, Engines(config), skip={"fraud-detector-prod"})
    assert [d.key for d in check.diverged] == [
        "diabetes-progression-prod",
        "fraud-scorer-serverless-prod",
    ]
    assert check.notes == [
        "1 spec file(s) cannot be parsed, not checked for deployments of prod never applied "
        "(specs/broken.yaml): `modelops validate` says why"
    ]


def test_the_loop_stops_between_passes_on_sigterm():
    stop = reconcile_flow.StopFlag()
    seen: list[str] = []

    def run_pass():
        seen.append("pass")
        if len(seen) == 2:
            os.kill(os.getpid(), signal.SIGTERM)  # arrives during the pass
        if len(seen) == 1:
            raise ModelopsError("the state lock is held by another run")
        return RunReport("reconcile", "staging")

    errors: list[str] = []
    with stop.installed():
        passes = reconcile_flow.reconcile_loop(
            run_pass,
            lambda report: seen.append("report"),
            interval_s=0,
            stop=stop,
            on_error=lambda exc: errors.append(exc.message),
        )
    assert passes == 2 and seen == ["pass", "pass", "report"]  # the pass finished
    assert stop.signal == signal.SIGTERM and errors == ["the state lock is held by another run"]
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL


def test_reconcile_usage_errors(git_repo):
    code, _, err = invoke(
        git_repo.root, "reconcile", "--env", "staging", "--once", "--interval", "5"
    )
    assert code == 2 and "either --once or --interval" in err
    code, _, err = invoke(git_repo.root, "reconcile", "--env", "nowhere")
    assert code == 2 and "unknown environment 'nowhere'" in err
    # dev: no spec of the repository declares it, so there is nothing to check
    code, out, _ = invoke(git_repo.root, "reconcile", "--env", "dev", "-f", "json")
    assert code == 0 and json.loads(out)["outcomes"] == []
    notes = json.loads(out)["notes"]
    assert notes[0] == "0 deployment(s) of dev checked, 0 diverged from the ledger"


def _kill(record) -> None:
    """SIGKILL the recorded server's process group, as an OOM killer or a crash would
    (and reap the manager: this process started it)."""
    assert signal_group(int(record.outputs["pgid"]), signal.SIGKILL)
    try:
        os.waitpid(int(record.outputs["pid"]), 0)
    except ChildProcessError:
        pass


@pytest.mark.slow
def test_a_killed_local_server_is_healed_by_apply_base_and_by_reconcile(tmp_path, monkeypatch):
    repo = make_repo(tmp_path / "repo", specs=["fraud-detector"], edit=relax, git=True)
    config = load_config(repo.root)
    ledger = Ledger(config.state_dir)
    head = repo.git.head.commit.hexsha
    try:
        # the spec is on main and its apply never ran: out of sync, applied by reconcile
        code, out, _ = invoke(repo.root, "status", "--env", "staging", "-f", "json")
        (row,) = json.loads(out)
        assert row["health"].startswith(NOT_APPLIED) and row["revision"] == "-"
        code, out, err = invoke(repo.root, "reconcile", "--env", "staging", "-f", "json")
        assert code == 0, out + err
        doc = json.loads(out)
        (outcome,) = doc["outcomes"]
        assert outcome["status"] == "applied" and outcome["change"]["status"] == DIVERGED
        assert outcome["change"]["reasons"][0].startswith(NOT_APPLIED)
        assert doc["notes"][0].endswith("1 declared in Git and never applied")
        first = ledger.get("fraud-detector", "staging")
        assert first.lastAppliedRevision == head
        _kill(first)
        code, out, _ = invoke(repo.root, "status", "--env", "staging", "-f", "json")
        assert json.loads(out)[0]["health"].startswith("NotRunning")

        code, out, err = invoke(
            repo.root, "apply", "--env", "staging", "--base", head, "-f", "json"
        )
        assert code == 0, out + err
        (outcome,) = json.loads(out)["outcomes"]
        assert outcome["status"] == "applied" and outcome["change"]["status"] == DIVERGED
        assert outcome["message"].startswith("live state diverged (NotRunning")
        second = ledger.get("fraud-detector", "staging")
        assert second.outputs["pid"] != first.outputs["pid"]
        assert second.lastAppliedRevision == head
        _kill(second)

        code, out, err = invoke(repo.root, "reconcile", "--env", "staging", "-f", "json")
        assert code == 0, out + err
        doc = json.loads(out)
        (outcome,) = doc["outcomes"]
        assert outcome["status"] == "applied" and outcome["change"]["status"] == DIVERGED
        assert "NotRunning" in outcome["change"]["reasons"][0]
        third = ledger.get("fraud-detector", "staging")
        code, out, _ = invoke(repo.root, "status", "--env", "staging", "-f", "json")
        assert json.loads(out)[0]["health"] == "Healthy"
        # in sync: the next pass checks it and touches nothing
        code, out, _ = invoke(repo.root, "reconcile", "--env", "staging", "--once")
        assert code == 0 and "1 deployment(s) of staging checked, 0 diverged" in out
        assert ledger.get("fraud-detector", "staging").outputs == third.outputs

        # only the router dies (the recorded server still runs): the pass restores the
        # recorded deployment, a new router for that server, and starts no server; while
        # another process holds the port that is transient (exit 3, never counted)
        _kill_router(third)
        code, out, _ = invoke(repo.root, "status", "--env", "staging", "-f", "json")
        assert json.loads(out)[0]["health"].startswith(
            "Unhealthy: the server runs, but not its router"
        )
        port = third.outputs["port"]
        monkeypatch.setattr(apply_flow, "_sleep", lambda s: None)  # the retries' backoff
        with socket.socket() as squatter:
            squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # TIME_WAIT
            squatter.bind(("127.0.0.1", port))
            squatter.listen()
            code, out, err = invoke(repo.root, "reconcile", "--env", "staging", "-f", "json")
        assert code == 3, out + err
        (outcome,) = json.loads(out)["outcomes"]
        assert outcome["status"] == "failed"
        assert f"port {port} on 127.0.0.1 is already in use" in outcome["message"]
        rec = ledger.get("fraud-detector", "staging")
        assert rec.condition(READY)["reason"] == TRANSIENT_FAILURE
        assert rec.failures == 0 and not rec.stalled
        code, out, err = invoke(repo.root, "reconcile", "--env", "staging", "-f", "json")
        assert code == 0, out + err
        (outcome,) = json.loads(out)["outcomes"]
        assert outcome["status"] == "applied"
        restored = f"restored the recorded deployment: a new router on port {port} for its"
        assert restored in outcome["message"] and "no new server started" in outcome["message"]
        fourth = ledger.get("fraud-detector", "staging")
        assert fourth.outputs["pid"] == third.outputs["pid"]  # the same server, none started
        assert fourth.outputs["router"]["pid"] != third.outputs["router"]["pid"]
        assert fourth.lastAppliedRevision == head and fourth.condition(READY)["status"] == "True"
        code, out, _ = invoke(repo.root, "status", "--env", "staging", "-f", "json")
        (row,) = json.loads(out)
        assert row["health"] == "Healthy" and row["last_failure"] is None

        # the server dies while Git holds a change of it that cannot be applied (its new
        # stable port is held by another process): the pass starts the recorded Bento
        # again behind the router first, so the endpoint serves the recorded version
        # while the change fails (before, the change was applied onto a dead endpoint)
        with socket.socket() as squatter:
            squatter.bind(("127.0.0.1", 0))
            squatter.listen()
            taken = squatter.getsockname()[1]
            spec = repo.root / "specs" / "fraud-detector.yaml"
            text = spec.read_text()
            assert text.count("target: {platform: local}") == 1
            spec.write_text(
                text.replace(
                    "target: {platform: local}", f"target: {{platform: local, port: {taken}}}"
                )
            )
            repo.commit("fraud-detector: staging on a fixed port")
            _kill(fourth)
            code, out, err = invoke(repo.root, "reconcile", "--env", "staging", "-f", "json")
        assert code == 3, out + err
        (outcome,) = json.loads(out)["outcomes"]
        assert outcome["status"] == "failed" and f"port {taken} on 127.0.0.1" in outcome["message"]
        assert (
            f"restored the recorded deployment: {fourth.outputs['bento_tag']} started again"
            in (outcome["message"])
        )
        fifth = ledger.get("fraud-detector", "staging")
        assert fifth.outputs["pid"] != fourth.outputs["pid"]
        assert fifth.outputs["router"] == fourth.outputs["router"]  # the same router, switched
        assert fifth.artifact == fourth.artifact and fifth.lastAppliedRevision == head
        assert httpx.get(fifth.outputs["url"] + "/livez", timeout=10).status_code == 200
        code, out, _ = invoke(repo.root, "status", "--env", "staging", "-f", "json")
        (row,) = json.loads(out)
        assert row["health"].startswith("Healthy; OutOfSync: HEAD differs from the applied")
        assert f"port {taken} on 127.0.0.1" in row["last_failure"]["reason"]
    finally:
        destroy_flow.destroy(config, "staging", [])


def _kill_router(record) -> None:
    """SIGKILL the recorded router's process group (and reap it: this process started
    it), leaving its server running."""
    router = record.outputs["router"]
    assert signal_group(int(router["pgid"]), signal.SIGKILL)
    try:
        os.waitpid(int(router["pid"]), 0)
    except ChildProcessError:
        pass


def _bump(repo, name: str, version: str) -> str:
    """Commit a new ``model.version`` of spec ``name``; returns the commit's sha."""
    path = repo.root / "specs" / f"{name}.yaml"
    text = path.read_text()
    assert 'version: "1.0.0"' in text or "version: " in text
    path.write_text(re.sub(r'(\n    version: )"[^"]*"', rf'\1"{version}"', text, count=1))
    return repo.commit(f"{name}: model version {version}")


@pytest.mark.slow
def test_a_change_whose_apply_never_ran_is_converged_by_the_next_base_apply(tmp_path, monkeypatch):
    """Argo CD's OutOfSync. Commit A is live in prod; commit B (fraud-detector's model
    version bump) is never applied (its job was skipped, or staging failed and prod
    `needs: staging`); commit C changes something else. `apply --base B` plans only C's
    changes: before, fraud-detector stayed at A, `reconcile` said "0 diverged" and
    `status` said nothing. Now the spec in the tree is compared with the inputs digest the
    last successful apply recorded: status says OutOfSync, `apply --base B` converges it,
    and after that nothing is out of sync. The Pulumi stack is a fake (no CLI here); Git,
    the Bento build, the gates and the ledger are real."""
    repo = make_repo(tmp_path / "repo", specs=["fraud-detector"], git=True)
    config = load_config(repo.root)
    ledger = Ledger(config.state_dir)
    stacks: dict[str, FakeStack] = {}
    monkeypatch.setattr(apply_flow, "pulumi_gate", lambda platforms, env: None)
    monkeypatch.setattr(reconcile_flow, "pulumi_gate", lambda platforms, env: None)
    monkeypatch.setattr(heal_flow, "pulumi_available", lambda: False)  # no drift check
    monkeypatch.setattr(
        PulumiEngine,
        "stack",
        lambda self, dep, artifact=None, record=None: stacks.setdefault(dep.key, FakeStack()),
    )
    # A is live (as its apply recorded it: the digest of the spec resolved for prod)
    a = repo.git.head.commit.hexsha
    (dep,) = load_all(config, ["fraud-detector"], "prod").deployments
    live = LedgerRecord("fraud-detector", "prod", platform="kubernetes")
    live.record_success(a, "engine", spec_file="specs/fraud-detector.yaml")
    live.lastAttemptedDigest = live.lastAppliedDigest = inputs_digest(dep, config)
    ledger.put(live)
    # an apply killed outright (SIGKILL) left its lock: the self-heal removes it, says so
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = LockInfo(socket.gethostname(), dead.pid, "2026-01-01T00:00:00Z", "modelops apply")
    config.state_dir.mkdir(parents=True, exist_ok=True)
    (config.state_dir / LOCK_FILE).write_text(json.dumps(dataclasses.asdict(stale)))
    report = reconcile_flow.reconcile(config, "prod")
    assert report.outcomes == [] and report.exit_code == 0  # in sync at A
    assert report.notes[0] == (
        f"removed a stale state lock: its holder is gone ({stale.describe()}); this pass "
        "converges what that run left unfinished"
    )
    assert not (config.state_dir / LOCK_FILE).exists()
    b = _bump(repo, "fraud-detector", "1.1.0")  # its apply never runs
    repo.write("README.md", "spec repository\n")
    repo.commit("README")
    code, out, _ = invoke(repo.root, "status", "--env", "prod", "-f", "json")
    (row,) = json.loads(out)
    assert row["health"] == (
        f"Ready=True ApplySucceeded; OutOfSync: HEAD differs from the applied revision {a[:12]}"
    )
    check = check_live(config, "prod", ledger, Engines(config))
    assert check.summary("prod") == (
        "1 deployment(s) of prod checked, 0 diverged from the ledger, 1 out of sync with Git "
        "(the spec differs from what was applied)"
    )
    code, out, err = invoke(repo.root, "apply", "--env", "prod", "--base", b, "-f", "json")
    assert code == 0, out + err
    doc = json.loads(out)
    assert doc["changes"]["specs"] == []  # B..C touched no spec
    (healed,) = doc["outcomes"]
    assert healed["status"] == "applied" and healed["change"]["status"] == DIVERGED
    assert healed["change"]["reasons"][0].startswith(
        f"OutOfSync: HEAD differs from the applied revision {a[:12]}: the spec in the tree"
    )
    assert stacks["fraud-detector-prod"].calls == ["refresh", "preview", "up"]
    head = repo.git.head.commit.hexsha
    assert ledger.get("fraud-detector", "prod").lastAppliedRevision == head
    # in sync now: status says nothing more, a pass converges nothing
    code, out, _ = invoke(repo.root, "status", "--env", "prod", "-f", "json")
    assert json.loads(out)[0]["health"] == "Ready=True ApplySucceeded"
    report = reconcile_flow.reconcile(config, "prod")
    assert report.outcomes == [] and report.exit_code == 0
    assert report.notes[0] == "1 deployment(s) of prod checked, 0 diverged from the ledger"


def test_a_pass_never_exits_0_while_a_deployment_is_stalled(git_repo):
    """A stalled deployment waits for a change of its spec; the pass does not converge it,
    and says so with exit 3 (before, it exited 0 and 'nothing diverged')."""
    config = load_config(git_repo.root)
    (dep,) = load_all(config, ["fraud-detector"], "prod").deployments
    rec = LedgerRecord("fraud-detector", "prod", platform="kubernetes")
    rec.record_success("r0", "engine")
    for _ in range(config.stalled_after):  # failed at the spec in the tree
        rec.record_failure("r1", inputs_digest(dep, config), "quota exceeded")
    assert rec.stalled
    Ledger(config.state_dir).put(rec)
    code, out, err = invoke(git_repo.root, "reconcile", "--env", "prod", "-f", "json")
    assert code == 3, out + err
    doc = json.loads(out)
    (outcome,) = doc["outcomes"]
    assert outcome["key"] == "fraud-detector-prod" and outcome["status"] == "stalled"
    assert outcome["message"].startswith("stalled, not retried until its spec changes: 3 ")
    assert "quota exceeded" in outcome["message"]

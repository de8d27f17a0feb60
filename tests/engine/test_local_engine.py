"""LocalEngine: apply / no-op / restart / failed smoke / crash / destroy, for real.

Real parts only: a spec repository in a temp dir, a real Bento build, real ``bentoml
serve`` processes, the real ledger (written by the status writer from what the engine
returns, as ``modelops apply`` does: :func:`converge`). The example spec's load test is
shrunk (40 requests at concurrency 2), its SLO and batching latency widened, so that these
tests check the engine's behaviour and not this machine's speed (the SLO check is tested
in ``test_smoke.py``).
"""

from __future__ import annotations

import os
import signal
import socket
from pathlib import Path

import httpx
import psutil
import pytest
from support.repo import make_repo
from support.serving import SteadyClient, model_never_loads, server_ids, servers_under
from support.waiting import wait_exited

from reconciler.build.bento import build as build_bento
from reconciler.build.serve import free_port
from reconciler.core.config import load_config
from reconciler.core.diagnostics import EXIT_APPLY_FAILED
from reconciler.engine.base import ApplyError
from reconciler.engine.local import LocalEngine, engine_digest
from reconciler.engine.routing import find_routers, port_taken_message, start_router, stop_router
from reconciler.flow import apply as apply_flow
from reconciler.spec.repo import load_all
from reconciler.state import status
from reconciler.state.ledger import Ledger, LedgerRecord

SPEC = "specs/fraud-detector.yaml"
SLO_LINE = "p99_latency_ms: 200}"
LOAD_LINE = "load: {requests: 200, concurrency: 8}"
BATCH_LINE = "batching: {enabled: true, max_batch_size: 64, max_latency_ms: 20}"
SMOKE_REQUEST = "      request: examples/fraud/request.json\n"


def edit(root: Path, old: str, new: str) -> None:
    path = root / SPEC
    text = path.read_text()
    assert old in text, f"{old!r} not in {SPEC}"
    path.write_text(text.replace(old, new, 1))


def deployment(config):
    result = load_all(config, ["fraud-detector"], "staging")
    assert not result.errors, [str(d) for d in result.errors]
    return next(d for d in result.deployments if d.env == "staging")


@pytest.fixture
def repo(tmp_path):
    root = make_repo(tmp_path / "repo", policies=False).root
    edit(root, LOAD_LINE, "load: {requests: 40, concurrency: 2}")
    edit(root, SLO_LINE, "p99_latency_ms: 5000}")
    edit(root, "workers: 2\n", "workers: 1\n")  # a worker costs a BentoML import + model load
    # BentoML sheds (503) requests that wait longer than max_latency_ms; 20 ms is too
    # tight for a loaded 2-core test machine, and shedding is not what these tests check.
    edit(root, BATCH_LINE, "batching: {enabled: true, max_batch_size: 64, max_latency_ms: 2000}")
    config = load_config(root)
    yield root, config
    left = servers_under(config.state_dir)
    for proc in left:
        proc.kill()
    assert not left, f"processes left running: {[p.cmdline() for p in left]}"


def build(config, dep):
    return build_bento(dep, config)


def converge(engine, ledger, dep, artifact, revision):
    """The engine converges; the status writer records its result (``modelops apply``)."""
    return apply_flow.converge(dep, artifact, engine.config, ledger, engine, revision)


@pytest.mark.slow
def test_lifecycle_apply_noop_failed_smoke_restart_crash_destroy(repo):
    root, config = repo
    engine = LocalEngine(config)
    ledger = Ledger(config.state_dir)
    dep = deployment(config)
    artifact = build(config, dep)

    # 1. first apply: a live server, smoke-tested, recorded
    first = converge(engine, ledger, dep, artifact, "rev1")
    assert first.changed
    out = first.outputs
    assert out["url"] == f"http://127.0.0.1:{out['port']}"
    assert out["bento_tag"] == artifact.bento_tag
    assert first.smoke is not None and first.smoke.passed
    assert first.smoke.load["completed"] == 40
    resp = httpx.post(f"{out['url']}/predict", json={"instances": [[1.0] * 30]}, timeout=30)
    assert resp.status_code == 200 and len(resp.json()["predictions"]) == 1
    rec = ledger.get("fraud-detector", "staging")
    assert rec.platform == "local"
    assert rec.lastAppliedRevision == rec.lastAttemptedRevision == "rev1"
    assert rec.artifact["bento_tag"] == artifact.bento_tag
    assert rec.outputs["pid"] == out["pid"]
    assert rec.inputsDigest == engine_digest(dep, artifact)
    assert rec.condition("Ready")["status"] == "True"
    assert rec.history[-1]["result"] == "succeeded"
    assert engine.health(rec) == "Healthy"
    log = config.state_dir / "logs" / "fraud-detector-staging.log"
    assert log.is_file() and rec.outputs["log"] == ".modelops/logs/fraud-detector-staging.log"

    # 2. re-apply unchanged: a no-op that says so, ledger file untouched
    before = ledger.path("fraud-detector", "staging").read_bytes()
    again = converge(engine, ledger, dep, build(config, dep), "rev1")
    assert not again.changed
    assert again.message.startswith("unchanged:")
    assert again.outputs["pid"] == out["pid"]
    assert ledger.path("fraud-detector", "staging").read_bytes() == before

    # 3. smoke failure (an expect that cannot match): new server stopped, ledger's applied
    #    state unchanged, old server still serving
    edit(
        root,
        SMOKE_REQUEST,
        SMOKE_REQUEST
        + "      requests:\n"
        + "        - request: examples/fraud/request.json\n"
        + "          expect: {status: 200, values: [7, 7]}\n",
    )
    bad = deployment(config)
    with pytest.raises(ApplyError) as err:
        converge(engine, ledger, bad, build(config, bad), "rev2")
    assert err.value.exit_code == EXIT_APPLY_FAILED
    assert "smoke test of fraud-detector-staging" in err.value.message
    assert "predictions[0]: expected 7" in err.value.message
    assert "fraud-detector-staging stays at revision rev1" in err.value.message
    rec = ledger.get("fraud-detector", "staging")
    assert rec.lastAppliedRevision == "rev1"
    assert rec.lastAttemptedRevision == "rev2"
    assert rec.outputs == out
    assert rec.failures == 1
    assert rec.history[-1]["result"] == "failed"
    assert rec.condition("Ready")["reason"] == "ApplyFailed"  # the attempt failed ...
    assert engine.health(rec) == "Healthy"  # ... and the old server still serves
    assert server_ids(config) == {out["server_id"]}  # nothing of the new server is left

    # 4. a changed deployment restarts: new server first, then the router switches to it
    #    and the old one is drained and stopped; the URL stays, and a steady client
    #    through it sees no failed request (it runs until the swap is recorded)
    edit(root, "p99_latency_ms: 5000}", "p99_latency_ms: 4000}")
    path = root / SPEC
    path.write_text(path.read_text().replace("values: [7, 7]", "shape: [2]"))
    good = deployment(config)
    client = SteadyClient(out["url"])
    changed = converge(engine, ledger, good, build(config, good), "rev3")
    client.stop(after=5)
    assert client.failures == [] and client.ok >= 5
    assert changed.changed
    assert changed.outputs["url"] == out["url"] and changed.outputs["port"] == out["port"]
    assert changed.outputs["router"] == out["router"]  # the same router, switched
    assert changed.outputs["backend_port"] != out["backend_port"]
    assert changed.outputs["pid"] != out["pid"]
    assert not psutil.pid_exists(out["pid"]) or psutil.Process(out["pid"]).status() == "zombie"
    rec = ledger.get("fraud-detector", "staging")
    assert rec.lastAppliedRevision == "rev3"
    assert rec.lastGoodRevision == "rev1"
    assert rec.failures == 0
    assert server_ids(config) == {changed.outputs["server_id"]}

    # 5. a crashed server (kill -9 of the manager) is noticed by health(), and the next
    #    apply of the same inputs starts it again (and stops the orphaned workers)
    os.kill(changed.outputs["pid"], signal.SIGKILL)
    wait_exited(changed.outputs["pid"])  # the kill took effect (not a fixed sleep)
    assert engine.health(rec) == f"NotRunning: process {changed.outputs['pid']} exited"
    revived = converge(engine, ledger, good, build(config, good), "rev3")
    assert revived.changed
    assert "not healthy (NotRunning: process" in revived.message
    assert revived.outputs["pid"] != changed.outputs["pid"]
    assert server_ids(config) == {revived.outputs["server_id"]}  # orphaned workers gone
    rec = ledger.get("fraud-detector", "staging")
    assert engine.health(rec) == "Healthy"

    # 6. destroy stops it and the record is marked destroyed; the history stays
    n = len(rec.history)
    assert engine.destroy(rec) is True
    status.destroyed(ledger, rec, revision="rev4", reason="modelops destroy")
    gone = ledger.get("fraud-detector", "staging")
    assert gone.destroyed["revision"] == "rev4" and gone.destroyed["lastAppliedRevision"] == "rev3"
    assert gone.outputs == {} and gone.lastAppliedRevision == "" and ledger.all() == []
    assert len(gone.history) == n + 1 and gone.history[-1]["action"] == "destroy"
    assert gone.history[-1]["message"].startswith("destroyed (modelops destroy); was live at rev3")
    assert engine.health(gone) == "NotRunning: no server recorded"
    assert not servers_under(config.state_dir)
    assert engine.destroy(gone) is False  # already destroyed


@pytest.mark.slow
def test_port_taken_fails_with_exit_3_and_records_nothing(repo):
    root, config = repo
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        edit(root, "target: {platform: local}", f"target: {{platform: local, port: {port}}}")
        dep = deployment(config)
        assert dep.get("spec.target.port") == port
        with pytest.raises(ApplyError) as err:
            LocalEngine(config).apply(dep, build(config, dep), "rev1")
    assert err.value.exit_code == 3
    assert f"port {port} on 127.0.0.1 is already in use" in err.value.message
    assert "nothing was recorded for fraud-detector-staging" in err.value.message
    assert Ledger(config.state_dir).get("fraud-detector", "staging") is None
    assert not servers_under(config.state_dir)


@pytest.mark.slow
def test_not_ready_in_time_stops_the_server_and_records_nothing(repo):
    _, config = repo
    dep = deployment(config)
    artifact = build(config, dep)
    with model_never_loads(config, artifact), pytest.raises(ApplyError) as err:
        LocalEngine(config, ready_timeout_s=1).apply(dep, artifact, "rev1")
    assert err.value.exit_code == 3
    assert "did not become ready (GET /readyz) within 1 s; it was stopped" in err.value.message
    assert Ledger(config.state_dir).get("fraud-detector", "staging") is None
    assert not servers_under(config.state_dir)


def test_health_of_a_record_without_a_server(tmp_path):
    config = load_config(make_repo(tmp_path / "repo", policies=False).root)
    engine = LocalEngine(config)
    assert engine.health(LedgerRecord("x", "dev")) == "NotRunning: no server recorded"
    rec = LedgerRecord("x", "dev", outputs={"pid": 999_999_999, "url": "http://127.0.0.1:9"})
    assert engine.health(rec) == "NotRunning: process 999999999 exited"
    assert engine.destroy(LedgerRecord("x", "dev")) is False


@pytest.mark.slow
def test_pinned_port_is_kept_and_a_failed_change_leaves_the_old_server_serving(repo):
    """spec.target.port is the router's: a change that fails its smoke test never touched
    the old server, which still answers on the pinned port."""
    root, config = repo
    port = free_port()
    edit(root, "target: {platform: local}", f"target: {{platform: local, port: {port}}}")
    engine = LocalEngine(config)
    ledger = Ledger(config.state_dir)
    dep = deployment(config)
    first = converge(engine, ledger, dep, build(config, dep), "rev1")
    assert first.outputs["port"] == port and first.outputs["backend_port"] != port
    edit(
        root,
        SMOKE_REQUEST,
        SMOKE_REQUEST
        + "      requests:\n"
        + "        - request: examples/fraud/request.json\n"
        + "          expect: {status: 418}\n",
    )
    bad = deployment(config)
    with pytest.raises(ApplyError) as err:
        converge(engine, ledger, bad, build(config, bad), "rev2")
    assert "expected HTTP 418, got 200" in err.value.message
    rec = ledger.get("fraud-detector", "staging")
    assert rec.lastAppliedRevision == "rev1"
    assert rec.outputs == first.outputs  # untouched: same server, same router
    assert engine.health(rec) == "Healthy"
    resp = httpx.post(f"http://127.0.0.1:{port}/predict", json={"instances": [[1.0] * 30]})
    assert resp.status_code == 200
    assert server_ids(config) == {rec.outputs["server_id"]}
    assert engine.destroy(rec)
    assert not servers_under(config.state_dir)


def test_a_taken_port_names_its_holder_and_how_to_choose_another():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        message = port_taken_message(port, "fraud-detector-staging")
    assert message.startswith(f"port {port} on 127.0.0.1 is already in use by pid {os.getpid()} (")
    assert "spec.target.port" in message and "ss -ltnp" in message


def test_an_unrecorded_router_is_found_and_stopped_with_its_table(tmp_path):
    """A router that no record names (an apply killed after it started it) is listed with
    the deployment's unrecorded processes and stopped by the next apply or destroy."""
    config = load_config(make_repo(tmp_path / "repo", specs=(), examples=(), policies=False).root)
    engine = LocalEngine(config, stop_grace_s=5)
    handle = start_router(config, "x-dev", free_port(), [])
    try:
        (stray,) = engine.unrecorded("x-dev", None)
        assert stray["router"] and stray["manager"] == handle.pid
        assert list(engine.without_record("dev", [])) == ["x-dev"]
        assert engine.stop_unrecorded("x-dev", None) == [stray]
        assert find_routers(config.state_dir) == {} and not Path(handle.table).exists()
    finally:
        stop_router(handle, grace_s=1)

"""The local canary with real Bentos, a real router and real traffic (issue 19 item 4).

One spec repository, chained applies of the fraud-detector (staging, local) with a canary
analysis: a first apply (no stable version yet: served directly), a canary whose model
predicts the opposite class (a test-only model file: the example's logistic regression
with its coefficients negated) is aborted within two intervals while a steady client
sees no failed request; a canary whose server never becomes ready is aborted with the
stable version untouched; a good canary is promoted. Every step and verdict is in the
ledger's history (written by the status writer, as ``modelops apply`` does).
"""

from __future__ import annotations

import hashlib
import json

import joblib
import pytest
from support.cli import invoke
from support.repo import make_repo
from support.serving import SteadyClient, model_never_loads, server_ids, servers_under

from reconciler.build.bento import build
from reconciler.core.config import load_config
from reconciler.engine.base import ApplyError
from reconciler.engine.local import LocalEngine
from reconciler.flow import apply as apply_flow
from reconciler.spec.repo import load_all
from reconciler.state.ledger import Ledger

pytestmark = pytest.mark.slow
SPEC = "specs/fraud-detector.yaml"
CANARY = (
    "rollout: {strategy: canary, steps: [50, 100], analysis: {interval_seconds: 1, "
    "pause_seconds: 2, failure_limit: 1, metrics: {error_rate: 0.05, "
    "p99_latency_ms: from_slo, agreement: 0.9}}}"
)


def edit(root, old: str, new: str) -> None:
    path = root / SPEC
    text = path.read_text()
    assert old in text, old
    path.write_text(text.replace(old, new, 1))


def flipped_model(root) -> str:
    """examples/fraud/model-flipped.joblib: the example pipeline, predicting the opposite
    class (negated coefficients); returns its SHA-256."""
    model = joblib.load(root / "examples/fraud/model.joblib")
    lr = model.steps[-1][1]
    lr.coef_, lr.intercept_ = -lr.coef_, -lr.intercept_
    path = root / "examples/fraud/model-flipped.joblib"
    joblib.dump(model, path)
    return hashlib.sha256(path.read_bytes()).hexdigest()


def deployment(config):
    result = load_all(config, ["fraud-detector"], "staging")
    assert not result.errors, [str(d) for d in result.errors]
    return next(d for d in result.deployments if d.env == "staging")


def apply(engine, ledger, config, revision):
    dep = deployment(config)
    artifact = build(dep, config)
    return apply_flow.converge(dep, artifact, config, ledger, engine, revision), artifact


def test_canary_aborts_a_flipped_model_and_a_dead_server_and_promotes_a_good_one(tmp_path):
    root = make_repo(tmp_path / "repo", specs=["fraud-detector"], policies=False).root
    edit(root, "rollout: {strategy: canary, steps: [10, 50, 100], step: 0}", CANARY)
    edit(root, "load: {requests: 200, concurrency: 8}", "load: {requests: 20, concurrency: 2}")
    edit(root, "p99_latency_ms: 200}", "p99_latency_ms: 5000}")
    edit(root, "workers: 2\n", "workers: 1\n")
    edit(root, "max_latency_ms: 20}", "max_latency_ms: 2000}")
    config = load_config(root)
    engine = LocalEngine(config, ready_timeout_s=60)
    ledger = Ledger(config.state_dir)
    try:
        # 1. first apply: nothing to compare with, served directly behind the router
        first, _ = apply(engine, ledger, config, "rev1")
        assert first.rollout is None
        stable = first.outputs

        # 2. a canary that predicts the opposite class: aborted on agreement within two
        #    intervals; a steady client through the stable URL sees no failed request
        sha = flipped_model(root)
        original = "uri: examples/fraud/model.joblib"
        edit(root, original, "uri: examples/fraud/model-flipped.joblib")
        edit(
            root,
            'sha256: "cc8cd22265aa7df3578322bf234a37cbbc80e683a07aafd1b290e0b9c8233267"',
            f'sha256: "{sha}"',
        )
        client = SteadyClient(stable["url"])
        with pytest.raises(ApplyError) as err:
            apply(engine, ledger, config, "rev2")
        client.stop(after=5)
        assert client.failures == [] and client.ok >= 5
        assert "canary aborted: check" in err.value.message and "agreement" in err.value.message
        rollout = err.value.rollout
        assert rollout["verdict"] == "aborted" and len(rollout["checks"]) <= 2
        rec = ledger.get("fraud-detector", "staging")
        assert rec.outputs["pid"] == stable["pid"] and rec.lastAppliedRevision == "rev1"
        assert rec.outputs["rollout"]["verdict"] == "aborted" and rec.pending == {}
        canary_entries = [h for h in rec.history if h["action"] == "canary"]
        assert canary_entries[-1]["result"] == "aborted"
        assert canary_entries[-2]["weight"] == 50 and canary_entries[-2]["checks"]
        assert engine.health(rec) == "Healthy"
        assert server_ids(config) == {stable["server_id"]}  # the canary was stopped
        (row,) = json.loads(invoke(root, "status", "--env", "staging", "-f", "json").stdout)
        assert row["health"].startswith("Healthy; last canary aborted at ")

        # 3. back to the good model, but its server never becomes ready: aborted, stable
        #    untouched
        path = root / SPEC
        path.write_text(
            path.read_text()
            .replace("uri: examples/fraud/model-flipped.joblib", original)
            .replace(
                f'sha256: "{sha}"',
                'sha256: "cc8cd22265aa7df3578322bf234a37cbbc80e683a07aafd1b290e0b9c8233267"',
            )
            .replace("p99_latency_ms: 5000}", "p99_latency_ms: 4000}")
        )
        dep = deployment(config)
        artifact = build(dep, config)
        with model_never_loads(config, artifact), pytest.raises(ApplyError) as err:
            apply_flow.converge(
                dep, artifact, config, ledger, LocalEngine(config, ready_timeout_s=2), "rev3"
            )
        assert "canary aborted: its server did not start" in err.value.message
        assert "did not become ready (GET /readyz) within 2 s" in err.value.message
        assert err.value.message.count("apply of") == 1
        rec = ledger.get("fraud-detector", "staging")
        assert rec.outputs["pid"] == stable["pid"] and engine.health(rec) == "Healthy"

        # 4. the same change with a server that starts: promoted, on the same URL
        promoted, _ = apply(engine, ledger, config, "rev4")
        assert promoted.rollout["verdict"] == "promoted"
        assert promoted.outputs["url"] == stable["url"]
        assert promoted.outputs["pid"] != stable["pid"]
        rec = ledger.get("fraud-detector", "staging")
        assert rec.lastAppliedRevision == "rev4" and rec.outputs["rollout"]["steps"] == [50, 100]
        assert [h["result"] for h in rec.history if h["action"] == "canary"][-1] == "promoted"
        assert server_ids(config) == {promoted.outputs["server_id"]}
        assert engine.destroy(rec)
    finally:
        left = servers_under(config.state_dir)
        for proc in left:
            proc.kill()
    assert not left

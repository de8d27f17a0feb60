"""The local canary with real Bentos, a real router and real traffic (issue 19 item 4).

One spec repository, chained applies of the fraud-detector (staging, local) with a canary
analysis, one stable server throughout, and one canary of each kind of bad model (each a
test-only model file derived from the example's pipeline, StandardScaler +
LogisticRegression):

1. a first apply (no stable version yet: served directly);
2. a canary that predicts the opposite class (coefficients negated) is aborted on
   ``agreement``;
3. a canary that errors (``sqrt`` then ``square`` prepended: the same predictions for
   non-negative rows, ``ValueError: Input X contains NaN`` -> HTTP 500 for a row with a
   negative feature; the smoke request is all positive, so it starts) is aborted on
   ``error_rate`` while the steady client sends rows with a negative feature;
4. a canary that answers slowly (50,000 identity steps prepended, one shared transformer:
   the same predictions, a few hundred ms per request) is aborted on ``p99_latency_ms``,
   set to 50 ms for that phase, well below its latency on an idle machine, so contention
   can only make it slower, never pass (the SLO stays loose and the load test is one
   request: the smoke load test checks the SLO on the canary's own port before the
   analysis starts and would stop a canary this slow first; that path is a smoke failure);
5. a canary whose server never becomes ready is aborted with the stable version
   untouched;
6. a good canary is promoted.

Each bad canary is aborted within two intervals of its answers reaching the router (the
flipped and the erroring one at the second check that saw them, failure_limit 1; the
slow one, each of whose requests burns CPU, at the first, failure_limit 0; a check that
no canary answer reached is inconclusive) while a steady client through the stable URL
sees no failed request (the router answers from the stable version whatever the canary
did). Every step and verdict is in the ledger's history (written by the
status writer, as ``modelops apply`` does).
"""

from __future__ import annotations

import hashlib
import json
import re

import joblib
import numpy as np
import pytest
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer
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


def canary(steps: str, metrics: str, pause_seconds: int = 2, failure_limit: int = 1) -> str:
    """A ``rollout`` line: canary ``steps``, a check every second."""
    return (
        f"rollout: {{strategy: canary, steps: {steps}, analysis: {{interval_seconds: 1, "
        f"pause_seconds: {pause_seconds}, failure_limit: {failure_limit}, "
        f"metrics: {metrics}}}}}"
    )


CANARY = canary("[50, 100]", "{error_rate: 0.05, p99_latency_ms: from_slo, agreement: 0.9}")
#: the bad canaries' phases: ten checks per step, so a window that no canary answer
#: reached (a loaded machine) cannot end the step before two checks have failed
ERRORING = canary("[50, 100]", "{error_rate: 0.05, p99_latency_ms: from_slo, agreement: 0.9}", 10)
#: no agreement metric: no mirrored requests, so only the weight's share (10 %) of the
#: traffic reaches the slow canary; p99 only, so a failed check can only be a p99 one;
#: failure_limit 0: the first check that saw its answers aborts (each of its requests
#: burns a few hundred ms of CPU)
SLOW = canary("[10, 100]", "{p99_latency_ms: 50}", pause_seconds=10, failure_limit=0)
SLOW_P99_MS = 50
#: the steady client's pause between requests (s): about 10 requests a second through
#: each bad canary's apply (Bento start included) instead of 40; the probe feeds the
#: checks too, and the erroring canary also sees every client request mirrored
PERIOD_S = 0.1
ORIGINAL_SHA = "cc8cd22265aa7df3578322bf234a37cbbc80e683a07aafd1b290e0b9c8233267"


def edit(root, old: str, new: str) -> None:
    path = root / SPEC
    text = path.read_text()
    assert old in text, old
    path.write_text(text.replace(old, new, 1))


def use_model(root, name: str, sha: str) -> None:
    """Point ``spec.model`` at ``examples/fraud/<name>`` with digest ``sha``."""
    path = root / SPEC
    text, n_uri = re.subn(
        r"uri: examples/fraud/\S+", f"uri: examples/fraud/{name}", path.read_text()
    )
    text, n_sha = re.subn(r'sha256: "[0-9a-f]{64}"', f'sha256: "{sha}"', text)
    assert n_uri == n_sha == 1
    path.write_text(text)


def write_model(root, name: str, model) -> str:
    """Dump ``model`` to ``examples/fraud/<name>``; returns its SHA-256."""
    path = root / "examples/fraud" / name
    joblib.dump(model, path)
    return hashlib.sha256(path.read_bytes()).hexdigest()


def flipped_model(root) -> str:
    """model-flipped.joblib: the example pipeline, predicting the opposite class (negated
    coefficients); returns its SHA-256."""
    model = joblib.load(root / "examples/fraud/model.joblib")
    lr = model.steps[-1][1]
    lr.coef_, lr.intercept_ = -lr.coef_, -lr.intercept_
    return write_model(root, "model-flipped.joblib", model)


def erroring_model(root) -> str:
    """model-nan.joblib: ``sqrt`` then ``square`` before the example pipeline. The same
    predictions for rows without a negative feature; a row with one becomes NaN and the
    LogisticRegression raises ``ValueError: Input X contains NaN`` (HTTP 500)."""
    model = joblib.load(root / "examples/fraud/model.joblib")
    steps = [("sqrt", FunctionTransformer(np.sqrt)), ("square", FunctionTransformer(np.square))]
    return write_model(root, "model-nan.joblib", Pipeline([*steps, *model.steps]))


def slow_model(root, identity_steps: int = 50_000) -> str:
    """model-slow.joblib: ``identity_steps`` identity transformers before the example
    pipeline (the same predictions; 5-12 us per step and request on the 2-core test
    machine, so a few hundred ms per request). One transformer object fills every step:
    the pickle holds it once (1 MB, loaded in about 0.2 s instead of 2.4 s)."""
    model = joblib.load(root / "examples/fraud/model.joblib")
    identity = FunctionTransformer()
    steps = [(f"identity{i}", identity) for i in range(identity_steps)]
    return write_model(root, "model-slow.joblib", Pipeline([*steps, *model.steps]))


def deployment(config):
    result = load_all(config, ["fraud-detector"], "staging")
    assert not result.errors, [str(d) for d in result.errors]
    return next(d for d in result.deployments if d.env == "staging")


def apply(engine, ledger, config, revision):
    dep = deployment(config)
    artifact = build(dep, config)
    return apply_flow.converge(dep, artifact, config, ledger, engine, revision), artifact


def assert_aborted(err, ledger, engine, config, stable, failure_limit: int = 1) -> dict:
    """The checks an aborted canary left: aborted at check ``failure_limit + 1`` of those
    that saw a canary answer, the stable version serves, untouched (same server,
    revision rev1), the canary server is stopped, the ledger's history ends with the
    aborted canary after its step's checks; returns the rollout (``verdict``,
    ``reason``, ``checks``)."""
    assert "canary aborted: check" in err.message, err.message
    rollout = err.rollout
    assert rollout["verdict"] == "aborted"
    # checks that no canary answer reached are inconclusive: neither pass nor fail
    seen = [c for c in rollout["checks"] if c["result"] != "inconclusive"]
    assert [c["result"] for c in seen] == ["failed"] * (failure_limit + 1), rollout["checks"]
    rec = ledger.get("fraud-detector", "staging")
    assert rec.outputs["pid"] == stable["pid"] and rec.lastAppliedRevision == "rev1"
    assert rec.outputs["rollout"]["verdict"] == "aborted" and rec.pending == {}
    canary_entries = [h for h in rec.history if h["action"] == "canary"]
    assert canary_entries[-1]["result"] == "aborted"
    assert canary_entries[-2]["weight"] == rollout["steps"][-1] and canary_entries[-2]["checks"]
    assert engine.health(rec) == "Healthy"
    assert server_ids(config) == {stable["server_id"]}  # the canary was stopped
    return rollout


def test_canary_aborts_each_kind_of_bad_model_and_promotes_a_good_one(tmp_path):
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
        use_model(root, "model-flipped.joblib", flipped_model(root))
        client = SteadyClient(stable["url"], period_s=PERIOD_S)
        with pytest.raises(ApplyError) as err:
            apply(engine, ledger, config, "rev2")
        client.stop(after=5)
        assert client.failures == [] and client.ok >= 5
        assert "agreement" in err.value.message
        rollout = assert_aborted(err.value, ledger, engine, config, stable)
        assert len(rollout["checks"]) <= 2
        (row,) = json.loads(invoke(root, "status", "--env", "staging", "-f", "json").stdout)
        assert row["health"].startswith("Healthy; last canary aborted at ")
        failure = row["last_failure"]  # the failed apply, shown until one succeeds
        assert failure["revision"] == "rev2" and "agreement" in failure["reason"]
        assert "canary aborted" in failure["reason"]
        assert f"; last apply failed at {failure['time']}: {failure['reason']}" in row["health"]
        assert row["health"].endswith(" (rev rev2)") and row["stalled"] == "no"

        # 3. a canary that answers 500 to rows with a negative feature (the smoke request
        #    has none): aborted on error_rate; the client, sending such rows, gets the
        #    stable version's answers
        use_model(root, "model-nan.joblib", erroring_model(root))
        edit(root, CANARY, ERRORING)
        client = SteadyClient(stable["url"], rows=[[-1.0] + [1.0] * 29], period_s=PERIOD_S)
        with pytest.raises(ApplyError) as err:
            apply(engine, ledger, config, "rev3")
        client.stop(after=5)
        assert client.failures == [] and client.ok >= 5
        rollout = assert_aborted(err.value, ledger, engine, config, stable)
        failed = [c for c in rollout["checks"] if c["result"] == "failed"]
        for check in failed:  # only the error rate: its answers agree with stable's
            assert [f.split(" ")[0] for f in check["failed"]] == ["error"], check
            assert check["error_rate"] > 0.05
        assert "error rate" in err.value.message

        # 4. a canary that answers slowly: aborted on p99
        use_model(root, "model-slow.joblib", slow_model(root))
        edit(root, ERRORING, SLOW)
        edit(root, "load: {requests: 20, concurrency: 2}", "load: {requests: 1, concurrency: 1}")
        client = SteadyClient(stable["url"], period_s=PERIOD_S)
        with pytest.raises(ApplyError) as err:
            apply(engine, ledger, config, "rev4")
        client.stop(after=5)
        assert client.failures == [] and client.ok >= 5
        rollout = assert_aborted(err.value, ledger, engine, config, stable, failure_limit=0)
        (check,) = [c for c in rollout["checks"] if c["result"] == "failed"]
        assert [f.split(" ")[0] for f in check["failed"]] == ["p99"], check
        assert check["p99_latency_ms"] > SLOW_P99_MS
        assert f"ms > {SLOW_P99_MS} ms" in err.value.message
        assert rollout["steps"] == [10]

        # 5. back to the good model, but its server never becomes ready: aborted, stable
        #    untouched
        use_model(root, "model.joblib", ORIGINAL_SHA)
        edit(root, SLOW, CANARY)
        edit(root, "load: {requests: 1, concurrency: 1}", "load: {requests: 20, concurrency: 2}")
        edit(root, "p99_latency_ms: 5000}", "p99_latency_ms: 4000}")
        dep = deployment(config)
        artifact = build(dep, config)
        with model_never_loads(config, artifact), pytest.raises(ApplyError) as err:
            apply_flow.converge(
                dep, artifact, config, ledger, LocalEngine(config, ready_timeout_s=2), "rev5"
            )
        assert "canary aborted: its server did not start" in err.value.message
        assert "did not become ready (GET /readyz) within 2 s" in err.value.message
        assert err.value.message.count("apply of") == 1
        rec = ledger.get("fraud-detector", "staging")
        assert rec.outputs["pid"] == stable["pid"] and engine.health(rec) == "Healthy"

        # 6. the same change with a server that starts: promoted, on the same URL
        promoted, _ = apply(engine, ledger, config, "rev6")
        assert promoted.rollout["verdict"] == "promoted"
        assert promoted.outputs["url"] == stable["url"]
        assert promoted.outputs["pid"] != stable["pid"]
        rec = ledger.get("fraud-detector", "staging")
        assert rec.lastAppliedRevision == "rev6" and rec.outputs["rollout"]["steps"] == [50, 100]
        history = [h["result"] for h in rec.history if h["action"] == "canary"]
        assert history[-1] == "promoted" and history.count("aborted") == 4
        assert server_ids(config) == {promoted.outputs["server_id"]}
        assert engine.destroy(rec)
    finally:
        left = servers_under(config.state_dir)
        for proc in left:
            proc.kill()
    assert not left

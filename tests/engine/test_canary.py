"""The local canary's analysis (issue 19 item 4), without a Bento: the thresholds, the
histogram quantile, and the walk through a real router process.

The backends here are test-only HTTP stubs in this process (named as such: a good one,
one that answers 5xx, one that answers slowly), so each kind of bad canary is checked
in about a second; the Bento version of the walk is in test_local_canary.py.
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest
from support.repo import make_repo

from reconciler.build.serve import free_port
from reconciler.core.config import load_config
from reconciler.engine import routing
from reconciler.engine.canary import (
    ABORTED,
    FAILED,
    INCONCLUSIVE,
    PASSED,
    PROMOTED,
    Analysis,
    evaluate,
    quantile_ms,
    run_canary,
    window,
)
from reconciler.flow.stages import Engines

BUCKETS = ("1", "2", "5", "10", "20", "50", "100", "200", "inf")


def hist(**counts: int) -> dict:
    return {b: counts.get(f"b{b}", 0) for b in BUCKETS}


def test_quantile_interpolates_within_the_bucket_like_histogram_quantile():
    assert quantile_ms(hist(), 0.99) is None
    # 100 answers between 10 and 20 ms: p50 is half-way into the bucket
    assert quantile_ms(hist(b20=100), 0.5) == pytest.approx(15.0)
    # 99 fast, 1 slow in (100, 200]: p99 is the top of the fast bucket
    h = hist(b2=99, b200=1)
    assert quantile_ms(h, 0.99) == pytest.approx(2.0)
    assert quantile_ms(hist(b2=98, b200=2), 0.99) == pytest.approx(150.0)
    assert quantile_ms({**hist(), "inf": 5}, 0.99) == 200.0  # unbounded: the last finite bound


def reading(requests, errors, buckets, rows=0, agreed=0, conf=(0.0, 0)):
    return {
        "requests": requests,
        "errors": errors,
        "latency_buckets_ms": buckets,
        "agreement": {"rows": rows, "agreed": agreed},
        "confidence_sum": conf[0],
        "confidence_n": conf[1],
    }


def test_each_threshold_fails_its_own_check_and_no_answer_is_inconclusive():
    analysis = Analysis(
        steps=(50, 100),
        interval_s=1,
        pause_s=1,
        failure_limit=0,
        error_rate=0.01,
        p99_latency_ms=100,
        agreement=0.95,
        estimated_quality=0.8,
    )
    before = reading(10, 0, hist(b5=10), rows=10, agreed=10, conf=(9.0, 10))
    good = reading(110, 0, hist(b5=110), rows=110, agreed=109, conf=(99.0, 110))
    check = evaluate(analysis, window(before, good))
    assert check["result"] == PASSED and check["requests"] == 100 and check["failed"] == []
    assert check["agreement"] == pytest.approx(0.99)
    assert check["estimated_quality"] == pytest.approx(0.9)

    cases = {
        "error rate 0.050 > 0.01": reading(110, 5, hist(b5=110), rows=110, agreed=110),
        "p99 199 ms > 100 ms": reading(110, 0, hist(b5=10, b200=100), rows=110, agreed=110),
        "agreement 0.000 < 0.95": reading(110, 0, hist(b5=110), rows=110, agreed=10),
        "estimated quality 0.600 < 0.8": reading(110, 0, hist(b5=110), conf=(69.0, 110)),
    }
    for phrase, after in cases.items():
        check = evaluate(analysis, window(before, after))
        assert check["result"] == FAILED and check["failed"] == [phrase], phrase
    assert evaluate(analysis, window(before, before))["result"] == INCONCLUSIVE


def test_analysis_of_a_rollout_fills_from_slo_and_is_none_without_analysis():
    steps = {"strategy": "canary", "steps": [10, 50, 100], "step": 0}
    assert Analysis.from_rollout(steps, 200) is None  # steps only: a plain swap
    assert Analysis.from_rollout({"strategy": "rolling", "analysis": {}}, 200) is None
    analysis = Analysis.from_rollout(
        {
            **steps,
            "analysis": {
                "interval_seconds": 2,
                "pause_seconds": 5,
                "failure_limit": 1,
                "metrics": {"p99_latency_ms": "from_slo", "agreement": 0.95},
            },
        },
        200,
    )
    assert analysis.steps == (10, 50, 100) and analysis.p99_latency_ms == 200.0
    assert (analysis.interval_s, analysis.pause_s, analysis.failure_limit) == (2, 5, 1)
    assert analysis.agreement == 0.95 and analysis.error_rate is None


def test_realized_quality_is_judged_once_enough_labels_arrived():
    analysis = Analysis(
        steps=(50, 100), interval_s=1, pause_s=1, failure_limit=0,
        realized_quality=("accuracy", 0.8, 30),
    )  # fmt: skip
    before = reading(10, 0, hist(b5=10))
    after = reading(110, 0, hist(b5=110))
    low = evaluate(analysis, window(before, after), {"value": 0.6, "n": 40})
    assert low["result"] == FAILED and low["failed"] == [
        "realized accuracy 0.600 < 0.8 (n=40 labelled)"
    ]
    assert (low["realized_quality"], low["labelled"]) == (0.6, 40)
    # too few labels yet, or none readable: not measurable, neither passes nor fails it
    for realized in ({"value": 0.1, "n": 29}, {"value": None, "n": 0}, None):
        check = evaluate(analysis, window(before, after), realized)
        assert check["result"] == PASSED and check["realized_quality"] is None, realized
    good = evaluate(analysis, window(before, after), {"value": 0.85, "n": 30})
    assert good["result"] == PASSED and good["realized_quality"] == 0.85
    # without the metric, no labelled count is reported
    assert "labelled" not in evaluate(Analysis((100,), 1, 1, 0), window(before, after))

    parsed = Analysis.from_rollout(
        {
            "strategy": "canary",
            "steps": [50, 100],
            "analysis": {"metrics": {"realized_quality": {"metric": "f1", "min": 0.7}}},
        }
    )
    assert parsed.realized_quality == ("f1", 0.7, 30)  # min_labels: the quality job's 30


class Stub(BaseHTTPRequestHandler):
    """A test-only stand-in for a Bento server (``POST /predict``)."""

    status = 200
    prediction = 1
    delay_s = 0.0

    def do_POST(self):  # noqa: N802 - http.server's name
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if self.delay_s:
            time.sleep(self.delay_s)
        body = json.dumps({"predictions": [self.prediction], "probabilities": [[0.9]]}).encode()
        self.send_response(self.status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def stub(**behaviour) -> tuple[ThreadingHTTPServer, str]:
    handler = type("S", (Stub,), behaviour)
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"


@pytest.fixture(scope="module")
def shared_router(tmp_path_factory):
    """One real router process (and a good stub as its stable backend) for this module."""
    root = make_repo(
        tmp_path_factory.mktemp("canary") / "repo", specs=(), examples=(), policies=False
    )
    config = load_config(root.root)
    stable, stable_url = stub()
    handle = routing.start_router(
        config, "stub-dev", free_port(), [{"name": "stable", "url": stable_url, "weight": 100}]
    )
    yield handle, stable_url
    routing.stop_router(handle, grace_s=5)
    stable.shutdown()
    assert routing.find_routers(config.state_dir) == {}


@pytest.fixture
def router(shared_router):
    """The shared router, routing everything to the stable stub again."""
    handle, stable_url = shared_router
    routing.set_backends(handle, [{"name": "stable", "url": stable_url, "weight": 100}])
    return handle, stable_url


ANALYSIS = dict(steps=(50, 100), interval_s=0.4, pause_s=0.8, failure_limit=1)


@pytest.mark.parametrize(
    ("behaviour", "metric", "phrase"),
    [
        ({"status": 500}, {"error_rate": 0.05}, "error rate 1.000 > 0.05"),
        ({"delay_s": 0.3}, {"p99_latency_ms": 100.0}, "ms > 100 ms"),
        ({"prediction": 0}, {"agreement": 0.9}, "agreement 0.000 < 0.9"),
    ],
    ids=["errors", "slow", "flipped"],
)
def test_a_bad_canary_is_aborted_within_two_intervals_and_no_client_request_fails(
    router, behaviour, metric, phrase
):
    handle, stable_url = router
    canary, canary_url = stub(**behaviour)
    answers = []
    try:
        with httpx.Client(trust_env=False, timeout=30) as client:
            done = threading.Event()

            def steady():
                while not done.is_set():
                    r = client.post(f"{handle.url}/predict", json={"instances": [[1]]})
                    answers.append((r.status_code, r.json()["predictions"]))

            thread = threading.Thread(target=steady, daemon=True)
            thread.start()
            rollout = run_canary(handle, stable_url, canary_url, Analysis(**ANALYSIS, **metric))
            done.set()
            thread.join(timeout=30)
    finally:
        canary.shutdown()
    assert rollout.verdict == ABORTED and phrase in rollout.reason
    assert len(rollout.checks) <= 2 and rollout.checks[-1]["result"] == FAILED
    assert all(code == 200 for code, _ in answers) and answers
    status = routing.read_status(handle.url)
    assert [b["url"] for b in status["backends"].values()] == [stable_url]  # back on stable
    if "status" in behaviour:  # the errors were answered by stable (router fallback)
        assert all(preds == [1] for _, preds in answers)


def test_a_good_canary_is_promoted_after_every_step(router):
    handle, stable_url = router
    canary, canary_url = stub()
    seen = []
    try:
        rollout = run_canary(
            handle,
            stable_url,
            canary_url,
            Analysis(**ANALYSIS, error_rate=0.01, agreement=0.9),
            probe_body={"instances": [[1]]},  # no user traffic: the probe feeds the checks
            on_check=seen.append,  # the flow records each check as it is made
        )
    finally:
        canary.shutdown()
    assert rollout.verdict == PROMOTED, rollout
    assert rollout.steps == [50, 100] and {c["result"] for c in rollout.checks} == {PASSED}
    assert seen == rollout.checks
    status = routing.read_status(handle.url)
    assert [b["url"] for b in status["backends"].values()] == [canary_url]


@pytest.mark.parametrize(
    ("value", "verdict", "phrase"),
    [
        (0.5, ABORTED, "realized accuracy 0.500 < 0.9 (n=50 labelled)"),
        (None, PROMOTED, "realized accuracy not judged: 12 labelled prediction(s)"),
    ],
    ids=["below-floor", "labels-late"],
)
def test_realized_quality_gates_the_walk(router, value, verdict, phrase):
    """The realized-quality reader (the flow's join of labels and capture, here a
    stand-in returning fixed counts) is read at each check: a floor missed aborts; labels
    that do not arrive in time leave the metric unjudged, and the promotion says so."""
    handle, stable_url = router
    canary, canary_url = stub()
    reads = []

    def realized():
        reads.append(1)
        return {"value": value, "n": 50} if value is not None else {"value": 0.99, "n": 12}

    try:
        rollout = run_canary(
            handle, stable_url, canary_url,
            Analysis(**ANALYSIS, realized_quality=("accuracy", 0.9, 30)),
            probe_body={"instances": [[1]]}, realized=realized,
        )  # fmt: skip
    finally:
        canary.shutdown()
    assert rollout.verdict == verdict and phrase in rollout.reason, rollout.reason
    assert len(reads) == len(rollout.checks)


def test_a_rollback_switches_at_once_without_a_canary_walk(tmp_path):
    """The version a rollback returns to is the known-good one: judged as a canary
    against the bad live version it could be refused, so the rollback's local engine
    skips the walk (reconciler.flow.rollback uses Engines(..., immediate=True))."""
    config = load_config(make_repo(tmp_path / "repo", specs=(), examples=(), policies=False).root)
    assert Engines(config, immediate=True).for_platform("local").immediate is True
    assert Engines(config).for_platform("local").immediate is False

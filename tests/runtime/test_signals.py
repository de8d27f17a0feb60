"""Model signals for rollout analysis (reconciler/runtime/signals.py).

The unit tests check the arithmetic and the CloudWatch embedded-metric-format record;
the served tests use the session's real fraud-detector Bento (``served_fraud``): its
``/metrics`` carries the confidence counters after real requests, and it is the stable
version a new version's comparison copies are sent to.
"""

from __future__ import annotations

import asyncio
import io
import json

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from support.repo import PROJECT

from reconciler.runtime import signals

FRAUD_REQUEST = (PROJECT / "examples/fraud/request.json").read_bytes()


def test_confidence_is_the_sum_of_top_class_probabilities():
    assert signals.confidence([[0.9, 0.1], [0.3, 0.7], [0.5, 0.5]]) == (3, pytest.approx(2.1))
    assert signals.confidence(None) == (0, 0.0)


def test_agreement_counts_equal_labels_and_refuses_unequal_lengths():
    assert signals.agreement([1, 0, 1, 1], [1, 1, 1, 0]) == (4, 2)
    assert signals.agreement([1, 0], [1]) == (0, 0)
    assert signals.agreement([1, 0], None) == (0, 0)


def test_the_quality_estimate_is_written_once_a_period_in_embedded_metric_format():
    out = io.StringIO()
    env = {
        "MODELOPS_SIGNALS_NAMESPACE": "modelops",
        "MODELOPS_SIGNALS_ENDPOINT": "fraud-prod",
        "MODELOPS_SIGNALS_VARIANT": "Shadow",
    }
    sig = signals.Signals(environ=env, out=out)
    sig.observe({"predictions": [1, 0], "probabilities": [[0.2, 0.8], [0.6, 0.4]]}, b"", False)
    assert out.getvalue() == ""  # the period has not ended
    sig._window_start -= signals.EMF_PERIOD_S  # as if a period had passed
    sig.observe({"predictions": [1], "probabilities": [[0.0, 1.0]]}, b"", False)
    (line,) = out.getvalue().splitlines()
    record = json.loads(line)
    (directive,) = record["_aws"]["CloudWatchMetrics"]
    assert directive["Namespace"] == "modelops"
    assert directive["Dimensions"] == [["EndpointName", "VariantName"]]
    assert directive["Metrics"][0]["Name"] == "EstimatedQuality"
    assert record["EndpointName"] == "fraud-prod" and record["VariantName"] == "Shadow"
    assert record["EstimatedQuality"] == pytest.approx((0.8 + 0.6 + 1.0) / 3)


def test_modelops_own_traffic_is_not_counted():
    before = signals.CONFIDENCE_ROWS._value.get()
    signals.Signals(environ={}).observe({"probabilities": [[0.5, 0.5]]}, b"", True)
    assert signals.CONFIDENCE_ROWS._value.get() == before


def _metric(text: str, name: str) -> float:
    return sum(
        s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == name
    )


@pytest.mark.slow
def test_the_served_bento_exposes_the_confidence_counters(served_fraud):
    before = _metric(
        httpx.get(served_fraud.url + "/metrics").text, "modelops_confidence_rows_total"
    )
    resp = httpx.post(served_fraud.url + "/predict", content=FRAUD_REQUEST, timeout=30)
    assert resp.status_code == 200, resp.text
    rows = len(resp.json()["predictions"])
    text = httpx.get(served_fraud.url + "/metrics").text
    assert _metric(text, "modelops_confidence_rows_total") == before + rows
    assert _metric(text, "modelops_confidence_sum_total") > 0


@pytest.mark.slow
def test_agreement_with_a_real_stable_version(served_fraud):
    """The served Bento as the stable version: the same labels agree, flipped ones do not."""
    sig = signals.Signals(environ={signals.STABLE_URL_ENV: served_fraud.url + "/predict"})
    labels = httpx.post(served_fraud.url + "/predict", content=FRAUD_REQUEST, timeout=30).json()[
        "predictions"
    ]
    flipped = [1 - int(v) for v in labels]

    async def both():
        return await sig.compare(FRAUD_REQUEST, labels), await sig.compare(FRAUD_REQUEST, flipped)

    assert asyncio.run(both()) == ((len(labels), len(labels)), (len(labels), 0))
    down = signals.Signals(environ={signals.STABLE_URL_ENV: "http://127.0.0.1:9/predict"})
    errors = signals.AGREEMENT_ERRORS._value.get()
    assert asyncio.run(down.compare(FRAUD_REQUEST, labels)) == (0, 0)
    assert signals.AGREEMENT_ERRORS._value.get() == errors + 1

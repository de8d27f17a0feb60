"""The shadow report (reconciler.monitor.shadow) on real captured records.

Two real scikit-learn classifiers on the bundled breast-cancer data stand for the stable
and the shadow version; their answers to the same requests are written by the runtime's
own CaptureWriter (the capture format every Bento writes), read back, joined by request id
and judged.
"""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.datasets import load_breast_cancer
from sklearn.linear_model import LogisticRegression
from sklearn.tree import DecisionTreeClassifier

from reconciler.monitor import shadow
from reconciler.runtime.capture import CaptureWriter

X, Y = load_breast_cancer(return_X_y=True)
STABLE = LogisticRegression(max_iter=5000).fit(X, Y)
SIMILAR = LogisticRegression(max_iter=5000, C=0.5).fit(X, Y)
DIFFERENT = DecisionTreeClassifier(max_depth=1, random_state=0).fit(X, 1 - Y)  # flipped labels


def _capture(tmp_path, model, version: str, latency_ms: float, ids, extra=0):
    """Capture-format records of ``model`` answering ``ids`` (one request per 2 rows)."""
    writer = CaptureWriter(tmp_path / version, "fraud-detector", "prod", sample_rate=1.0)
    for i, rid in enumerate(ids):
        rows = X[2 * i : 2 * i + 2]
        writer.submit(
            rid,
            version,
            latency_ms + (i % 10),
            rows.tolist(),
            model.predict(rows).tolist(),
            probabilities=model.predict_proba(rows).tolist(),
        )
    for j in range(extra):  # requests only this version saw
        writer.submit(f"{version}-only-{j}", version, latency_ms, X[:1].tolist(), [1])
    writer.close()
    return sorted((tmp_path / version).rglob("capture-*.jsonl"))


def _records(tmp_path, shadow_model, shadow_latency=5.0, n=250, extra=0):
    ids = [f"req-{i}" for i in range(n)]
    files = _capture(tmp_path, STABLE, "1.0.0", 4.0, ids)
    files += _capture(tmp_path, shadow_model, "1.1.0", shadow_latency, ids, extra)
    return shadow.read_records(files)


def test_a_similar_shadow_is_promoted_with_its_figures(tmp_path):
    records = _records(tmp_path, SIMILAR, extra=3)
    report = shadow.compare(records, "1.0.0", "1.1.0", shadow.Thresholds(0.9, 50.0))
    assert report.requests == 250 and report.rows == 500
    assert report.unmatched == {"stable": 0, "shadow": 3}
    expected = float(np.mean(STABLE.predict(X[:500]) == SIMILAR.predict(X[:500])))
    assert report.agreement == pytest.approx(expected) and report.agreement > 0.9
    diff = np.abs(STABLE.predict_proba(X[:500]) - SIMILAR.predict_proba(X[:500])).max(axis=1)
    assert report.prob_diff["max"] == pytest.approx(diff.max())
    assert sum(report.prob_diff["histogram"]) == 500
    assert report.latency_ms["stable"]["p50"] < report.latency_ms["shadow"]["p50"]
    assert report.verdict == shadow.PROMOTE, report.reasons
    assert "verdict: promote" in report.text() and "label agreement" in report.text()


def test_a_disagreeing_slow_shadow_is_dropped_with_the_reasons(tmp_path):
    records = _records(tmp_path, DIFFERENT, shadow_latency=80.0)
    report = shadow.compare(records, "1.0.0", "1.1.0", shadow.Thresholds(0.95, 50.0))
    assert report.verdict == shadow.DROP
    assert any("agreement" in r for r in report.reasons)
    assert any("p99" in r and "above 50 ms" in r for r in report.reasons)


def test_too_few_joined_rows_is_insufficient_data_not_a_verdict(tmp_path):
    records = _records(tmp_path, DIFFERENT, n=20)
    report = shadow.compare(records, "1.0.0", "1.1.0")
    assert report.verdict == shadow.INSUFFICIENT and "40 joined rows" in report.reasons[0]


def test_thresholds_come_from_the_rollout_analysis_and_the_slo():
    class Dep:
        data = {
            "spec.target.rollout.analysis.metrics": {"agreement": 0.9, "estimated_quality": 0.7},
            "spec.serving.slo.p99_latency_ms": 120,
        }

        def get(self, path, default=None):
            return self.data.get(path, default)

    assert shadow.Thresholds.of(Dep()) == shadow.Thresholds(0.9, 120.0, 0.7)

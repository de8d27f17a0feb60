"""The quality metrics against scikit-learn and pandas on the same data, the intervals'
coverage, and CBPE on data whose outcomes follow the model's probabilities (where its
estimate must match the realized value) and on flipped outcomes (where it cannot)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import (
    accuracy_score,
    f1_score,
    mean_absolute_error,
    precision_score,
    r2_score,
    recall_score,
    roc_auc_score,
)

from reconciler.monitor import metrics as mx
from reconciler.monitor.quality import join


def _data(n: int, seed: int):
    rng = np.random.default_rng(seed)
    p = rng.beta(0.7, 0.7, size=n)
    y = (rng.uniform(size=n) < p).astype(np.int64)  # outcomes follow the probabilities
    return p, y, (p > 0.5).astype(np.int64)


def test_point_values_equal_scikit_learn_binary_and_multiclass() -> None:
    p, y, yhat = _data(5000, 1)
    m, _ = mx.classification_metrics(y, yhat, np.c_[1 - p, p], 2)
    assert m["accuracy"]["value"] == pytest.approx(accuracy_score(y, yhat), abs=1e-6)
    assert m["precision"]["value"] == pytest.approx(precision_score(y, yhat), abs=1e-6)
    assert m["recall"]["value"] == pytest.approx(recall_score(y, yhat), abs=1e-6)
    assert m["f1"]["value"] == pytest.approx(f1_score(y, yhat), abs=1e-6)
    assert m["roc_auc"]["value"] == pytest.approx(roc_auc_score(y, p), abs=1e-6)
    rng = np.random.default_rng(2)
    y3, h3 = rng.integers(0, 3, 3000), rng.integers(0, 3, 3000)
    m3, _ = mx.classification_metrics(y3, h3, None, 3)
    assert m3["f1"]["value"] == pytest.approx(f1_score(y3, h3, average="macro"), abs=1e-6)
    assert "roc_auc" not in m3
    ties = np.array([0.1, 0.4, 0.4, 0.8])
    assert mx.roc_auc(np.array([0, 0, 1, 1]), ties) == roc_auc_score([0, 0, 1, 1], ties)
    yr = rng.normal(size=500)
    hr = yr + rng.normal(scale=0.5, size=500)
    r, kpi = mx.regression_metrics(yr, hr, cost_per_unit_error=-2.0)
    assert r["mae"]["value"] == pytest.approx(mean_absolute_error(yr, hr), abs=1e-6)
    assert r["r2"]["value"] == pytest.approx(r2_score(yr, hr), abs=1e-6)
    assert kpi["value"] == pytest.approx(-2.0 * r["mae"]["value"], abs=1e-5)


def test_intervals_cover_the_population_value_about_95_percent_of_the_time() -> None:
    # population accuracy of _data's rule: E[max(p, 1-p)] for Beta(0.7, 0.7)
    big_p, big_y, big_h = _data(2_000_000, 99)
    truth = float((big_y == big_h).mean())
    hits = 0
    for seed in range(100):
        p, y, yhat = _data(400, seed)
        m, _ = mx.classification_metrics(y, yhat, np.c_[1 - p, p], 2, seed=seed)
        hits += m["accuracy"]["low"] <= truth <= m["accuracy"]["high"]
    assert 88 <= hits <= 100  # 95% nominal; 100 windows


def test_kpi_is_the_confusion_values_per_prediction() -> None:
    y = np.array([1, 1, 0, 0, 0, 1])
    yhat = np.array([1, 0, 1, 0, 0, 1])  # tp 2, fn 1, fp 1, tn 2
    _, kpi = mx.classification_metrics(
        y, yhat, None, 2, confusion_values={"tp": 10, "fp": -5, "fn": -250, "tn": 0}
    )
    assert kpi["value"] == pytest.approx((2 * 10 - 5 - 250) / 6, abs=1e-6)
    assert kpi["low"] <= kpi["value"] <= kpi["high"]


def test_cbpe_matches_realized_when_outcomes_follow_the_probabilities() -> None:
    p, y, yhat = _data(20000, 3)
    est = mx.cbpe(np.c_[1 - p, p], yhat, 2)
    real, _ = mx.classification_metrics(y, yhat, np.c_[1 - p, p], 2)
    for name in ("accuracy", "precision", "recall", "f1", "roc_auc"):
        assert abs(est[name] - real[name]["value"]) < 0.01, name
    # a concept shift (outcomes flipped where p > 0.8) moves realized, not the estimate
    flipped = np.where(p > 0.8, 1 - y, y)
    shifted, _ = mx.classification_metrics(flipped, yhat, np.c_[1 - p, p], 2)
    assert est["accuracy"] - shifted["accuracy"]["value"] > 0.2


def test_calibration_makes_overconfident_probabilities_honest() -> None:
    p, y, yhat = _data(20000, 4)
    sharp = np.clip(np.where(p > 0.5, p + 0.3, p - 0.3), 0, 1)  # overconfident model
    raw = mx.cbpe(np.c_[1 - sharp, sharp], yhat, 2)["accuracy"]
    cal = mx.Calibrator().fit(sharp[:10000], y[:10000].astype(float))
    fixed = mx.cbpe(np.c_[1 - sharp, sharp][10000:], yhat[10000:], 2, cal)["accuracy"]
    real = float((y[10000:] == yhat[10000:]).mean())
    assert raw - real > 0.1 and abs(fixed - real) < 0.02


def test_join_equals_a_pandas_inner_merge() -> None:
    rng = np.random.default_rng(5)
    preds = pd.DataFrame({"id": [f"r{i}" for i in range(1000)], "prediction": ["1"] * 1000})
    ids = rng.choice(1500, size=700, replace=False)  # some labels for unknown ids
    labels = pd.DataFrame({"id": [f"r{i}" for i in ids], "label": ["0"] * 700})
    joined, n = join(preds, labels)
    merged = preds.assign(row=range(1000)).merge(labels, on="id")
    assert n == 1000
    assert sorted(joined["id"]) == sorted(merged["id"])
    assert (joined.sort_values("id")["row"].to_numpy() == merged.sort_values("id")["row"]).all()
    empty, n = join(preds, labels.iloc[:0])
    assert len(empty) == 0 and n == 1000

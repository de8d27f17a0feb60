"""Benchmark: the quality job's join and metrics, and how well CBPE estimates accuracy.

Three measurements, printed with the peer they are compared with:

1. **Join + metrics, 1,000,000 × 1,000,000.** One million captured predictions (id,
   predicted class, class probabilities) and one million labels for the same ids in
   another order. ``ours``: :func:`reconciler.monitor.quality.join` (pandas merge by id)
   and :func:`reconciler.monitor.metrics.classification_metrics`: accuracy, precision,
   recall, F1 (bootstrap intervals, 1000 draws of the confusion matrix), ROC AUC
   (Hanley-McNeil interval), calibration error (bootstrap interval) and a KPI with its
   interval. ``peer``: a plain ``pandas.merge`` and scikit-learn's ``accuracy_score``,
   ``precision_score``, ``recall_score``, ``f1_score``, ``roc_auc_score`` (points only,
   no intervals) on the same frames. Best of 3 wall times (``time.perf_counter``); the
   target is under 10 s on this 2-core machine.
2. **CBPE under covariate shift**, from the bundled breast-cancer data (the fraud
   example's model recipe: StandardScaler + LogisticRegression): trained on 50% of the
   rows, calibrated (isotonic) on a reference split of 25%, evaluated on windows drawn
   from the last 25% with replacement and weighted toward large or small tumours
   (weights ``exp(a·z(mean_radius))``, ``a`` from -2 to 2): the input mix and the real
   accuracy move, the labels are the real ones; every other window is weighted toward
   rows near the decision boundary instead (``exp(-1.5·|a|·|logit|)``), where the model
   errs. Mean absolute error of the estimated
   accuracy against the realized one over 40 windows of 400 rows; target ≤ 0.05.
3. **CBPE under concept shift**: the same windows with the outcomes flipped for the
   largest 40% of mean_radius (inputs unchanged): the estimate cannot see it; the
   printed gap is how far it misses, beside the realized accuracy that catches it.

Usage: ``python bench/bench_quality.py`` (about 30 s of CPU).
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.datasets import load_breast_cancer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, f1_score, precision_score, recall_score, roc_auc_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from reconciler.monitor import metrics as mx  # noqa: E402 - after the path set-up
from reconciler.monitor.quality import join  # noqa: E402

N = 1_000_000
KPI = {"tp": 0.0, "fp": -5.0, "fn": -250.0, "tn": 0.0}


def best_of(fn, repeat: int = 3) -> tuple[float, object]:
    best, out = float("inf"), None
    for _ in range(repeat):
        start = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - start)
    return best, out


def join_bench() -> None:
    rng = np.random.default_rng(0)
    p = rng.uniform(size=N)
    y = (rng.uniform(size=N) < p).astype(np.int64)
    ids = np.char.add("req-", np.arange(N).astype(str)).astype(object)
    preds = pd.DataFrame({"id": ids, "prediction": (p > 0.5).astype(np.int64).astype(str)})
    proba = np.c_[1 - p, p]
    order = rng.permutation(N)
    labels = pd.DataFrame({"id": ids[order], "label": y[order].astype(str)})
    index = {"0": 0, "1": 1}

    def ours():
        joined, _ = join(preds, labels)
        yy = joined["label"].map(index).to_numpy(dtype=np.int64)
        yh = joined["prediction"].map(index).to_numpy(dtype=np.int64)
        pr = proba[joined["row"].to_numpy()]
        return mx.classification_metrics(yy, yh, pr, 2, confusion_values=KPI)

    def peer():
        frame = preds.assign(p1=p).merge(labels, on="id", how="inner")
        yy = frame["label"].astype(np.int64).to_numpy()
        yh = frame["prediction"].astype(np.int64).to_numpy()
        return {
            "accuracy": accuracy_score(yy, yh),
            "precision": precision_score(yy, yh),
            "recall": recall_score(yy, yh),
            "f1": f1_score(yy, yh),
            "roc_auc": roc_auc_score(yy, frame["p1"].to_numpy()),
        }

    t_ours, (m, kpi) = best_of(ours)
    t_peer, ref = best_of(peer)
    print(f"join + metrics, {N:,} predictions x {N:,} labels (best of 3, wall):")
    print(f"  ours (with 95% intervals, ECE, KPI): {t_ours:6.2f} s   target < 10 s")
    print(f"  peer (pandas merge + scikit-learn, points only): {t_peer:6.2f} s")
    print(f"  ratio ours/peer: {t_ours / t_peer:.2f}")
    for name in ("accuracy", "precision", "recall", "f1", "roc_auc"):
        e = m[name]
        same = abs(e["value"] - ref[name]) < 1e-6  # ours are rounded to 6 places
        print(
            f"  {name:9s} {e['value']:.6f} [{e['low']:.6f}, {e['high']:.6f}]  "
            f"scikit-learn {ref[name]:.6f}  {'same' if same else 'DIFFERENT'}"
        )
    print(f"  KPI {kpi['value']:.4f} [{kpi['low']:.4f}, {kpi['high']:.4f}] per prediction")


def _fraud_model():
    ds = load_breast_cancer()
    x = ds.data.astype(np.float32)
    y = ds.target
    rng = np.random.default_rng(42)
    idx = rng.permutation(len(x))
    a, b = len(x) // 2, (3 * len(x)) // 4
    train, ref, pool = idx[:a], idx[a:b], idx[b:]
    model = make_pipeline(StandardScaler(), LogisticRegression(C=0.05, max_iter=2000))
    model.fit(x[train], y[train])
    rp = model.predict_proba(x[ref])
    cal = mx.Calibrator().fit(rp[:, 1], (y[ref] == 1).astype(float))
    return x, y, pool, model, cal


def cbpe_bench() -> None:
    x, y, pool, model, cal = _fraud_model()
    radius = x[pool, 0]
    z = (radius - radius.mean()) / radius.std()
    margin = np.abs(model.decision_function(x[pool]))  # hard cases: near the boundary
    cut = np.quantile(x[:, 0], 0.6)
    rng = np.random.default_rng(7)
    errors, concept_gap, concept_real, concept_est, accs = [], [], [], [], []
    for i, a in enumerate(np.linspace(-2, 2, 40)):
        w = np.exp(a * z) if i % 2 else np.exp(-abs(a) * 1.5 * margin)
        rows = pool[rng.choice(len(pool), size=400, replace=True, p=w / w.sum())]
        proba = model.predict_proba(x[rows])
        yhat = proba.argmax(axis=1)
        est = mx.cbpe(proba, yhat, 2, cal)["accuracy"]
        real = float((yhat == y[rows]).mean())
        accs.append(real)
        errors.append(abs(est - real))
        flipped = y[rows].copy()
        seg = x[rows, 0] > cut
        flipped[seg] = 1 - flipped[seg]
        real_c = float((yhat == flipped).mean())
        concept_real.append(real_c)
        concept_est.append(est)
        concept_gap.append(est - real_c)
    print("CBPE, covariate shift (bundled breast-cancer data, 40 windows of 400 rows):")
    print(f"  realized accuracy across windows: {min(accs):.3f} .. {max(accs):.3f}")
    print(f"  MAE of estimated vs realized accuracy: {np.mean(errors):.4f}   target <= 0.05")
    print(f"  worst window: {np.max(errors):.4f}")
    print("CBPE, concept shift (outcomes flipped for mean_radius above its 60th percentile):")
    print(
        f"  estimated accuracy (unchanged inputs): {np.mean(concept_est):.3f}; realized: "
        f"{np.mean(concept_real):.3f}; the estimate misses by {np.mean(concept_gap):.3f} "
        f"(min {np.min(concept_gap):.3f}, max {np.max(concept_gap):.3f})"
    )


def main() -> int:
    print(f"bench_quality on {os.cpu_count()} cores")
    join_bench()
    cbpe_bench()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

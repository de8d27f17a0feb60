"""Model-quality metrics with 95% intervals, and the label-free estimate (CBPE).

Plain numpy on arrays, so that a million joined rows take well under a second. Which
interval each metric gets, and why (``docs/monitor.md``, "Quality metrics"):

* accuracy, precision, recall, F1 and a classifier's KPI are functions of the confusion
  matrix, so the iid bootstrap of the rows is exactly a multinomial draw of the matrix's
  cells: :data:`BOOTSTRAP` draws, percentile interval (Efron & Tibshirani 1993, ch. 13).
* ROC AUC: Hanley & McNeil (1982) standard error, normal interval, clipped to [0, 1].
* calibration error (ECE, 10 equal-width confidence bins, Guo et al. 2017): bootstrap of
  the (bin, correct) cells with each bin's mean confidence held fixed (an approximation:
  it leaves out the spread of confidence inside a bin).
* regression: MAE normal interval (mean of |e|); RMSE by the delta method on the mean
  of e²; R² = 1 − MSE/var(y) with var(y) held fixed.

CBPE (confidence-based performance estimation, as NannyML describes it; implemented
here, no dependency): with calibrated probabilities ``p = P(y = positive)``, a row
predicted positive is a true positive with probability ``p`` and a false positive with
``1 − p`` (predicted negative: false negative ``p``, true negative ``1 − p``); summing
gives the expected confusion matrix, and the metrics follow from it. The expected ROC AUC
weighs every (i, j) pair by ``p_i (1 − p_j)``.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # annotations only
    import numpy as np

BOOTSTRAP = 1000
"""Bootstrap draws for the confusion-matrix metrics."""
Z95 = 1.959963984540054
ECE_BINS = 10
CLASSIFICATION = ("accuracy", "precision", "recall", "f1", "roc_auc", "calibration_error")
REGRESSION = ("mae", "rmse", "r2")
HIGHER_IS_BETTER = {"accuracy", "precision", "recall", "f1", "roc_auc", "r2"}


def _np():
    import numpy as np  # heavy: loaded when metrics are computed

    return np


def _entry(value, low, high, n: int, method: str) -> dict:
    def r(x):
        return None if x is None or not math.isfinite(x) else round(float(x), 6)

    return {"value": r(value), "low": r(low), "high": r(high), "n": int(n), "interval": method}


def confusion(y: np.ndarray, yhat: np.ndarray, k: int) -> np.ndarray:
    """``k × k`` counts: rows true class, columns predicted class (indexes 0..k-1)."""
    np = _np()
    return np.bincount(y * k + yhat, minlength=k * k).reshape(k, k)


def _cm_metrics(cm: np.ndarray) -> dict:
    """accuracy, precision, recall, f1 of confusion matrices ``(..., k, k)``: binary on
    class 1, macro-averaged for more classes (classes that never occur count 0)."""
    np = _np()
    cm = np.asarray(cm, dtype=np.float64)
    total = cm.sum(axis=(-2, -1))
    diag = np.diagonal(cm, axis1=-2, axis2=-1)
    with np.errstate(divide="ignore", invalid="ignore"):
        acc = diag.sum(axis=-1) / total
        pred = cm.sum(axis=-2)
        true = cm.sum(axis=-1)
        prec = np.where(pred > 0, diag / np.where(pred > 0, pred, 1), 0.0)
        rec = np.where(true > 0, diag / np.where(true > 0, true, 1), 0.0)
        f1 = np.where(prec + rec > 0, 2 * prec * rec / np.where(prec + rec > 0, prec + rec, 1), 0.0)
    if cm.shape[-1] == 2:
        return {"accuracy": acc, "precision": prec[..., 1], "recall": rec[..., 1], "f1": f1[..., 1]}
    return {
        "accuracy": acc,
        "precision": prec.mean(axis=-1),
        "recall": rec.mean(axis=-1),
        "f1": f1.mean(axis=-1),
    }


def bootstrap_cm(cm: np.ndarray, draws: int = BOOTSTRAP, seed: int = 0) -> np.ndarray:
    """``draws`` resampled confusion matrices (multinomial over the cells, same n)."""
    np = _np()
    flat = cm.reshape(-1).astype(np.float64)
    n = int(flat.sum())
    rng = np.random.default_rng(seed)
    return rng.multinomial(n, flat / n, size=draws).reshape(draws, *cm.shape)


def roc_auc(y_pos: np.ndarray, score: np.ndarray, weight_pos: np.ndarray | None = None) -> float:
    """ROC AUC of ``score`` for the positive class (ties count one half).

    With ``weight_pos`` (probabilities that each row is positive, CBPE) the expected AUC:
    pairs weighted by ``w_i (1 − w_j)``, the row itself left out.
    """
    np = _np()
    order = np.argsort(score, kind="mergesort")
    s = score[order]
    if weight_pos is None:
        pos = y_pos[order].astype(np.float64)
    else:
        pos = weight_pos[order].astype(np.float64)
    neg = 1.0 - pos
    # ties: group equal scores; a pair inside a group counts one half
    starts = np.r_[0, np.flatnonzero(np.diff(s)) + 1]
    gpos = np.add.reduceat(pos, starts)
    gneg = np.add.reduceat(neg, starts)
    neg_before = np.cumsum(gneg) - gneg
    concordant = float((gpos * neg_before).sum() + 0.5 * (gpos * gneg).sum())
    pairs = float(pos.sum() * neg.sum())
    if weight_pos is not None:  # a row is not paired with itself
        own = float((pos * neg).sum())
        concordant -= 0.5 * own
        pairs -= own
    return concordant / pairs if pairs > 0 else float("nan")


def _hanley_mcneil(auc: float, n_pos: int, n_neg: int) -> tuple[float, float]:
    if not (n_pos and n_neg) or not math.isfinite(auc):
        return float("nan"), float("nan")
    q1, q2 = auc / (2 - auc), 2 * auc * auc / (1 + auc)
    var = (auc * (1 - auc) + (n_pos - 1) * (q1 - auc * auc) + (n_neg - 1) * (q2 - auc * auc)) / (
        n_pos * n_neg
    )
    se = math.sqrt(max(var, 0.0))
    return max(0.0, auc - Z95 * se), min(1.0, auc + Z95 * se)


def _ece_cells(conf: np.ndarray, correct: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Counts ``(bins, 2)`` of (wrong, correct) rows per confidence bin, and mean confidence."""
    np = _np()
    b = np.minimum((conf * ECE_BINS).astype(np.int64), ECE_BINS - 1)
    counts = np.bincount(b * 2 + correct.astype(np.int64), minlength=2 * ECE_BINS).reshape(
        ECE_BINS, 2
    )
    n_bin = counts.sum(axis=1)
    mean_conf = np.bincount(b, weights=conf, minlength=ECE_BINS) / np.maximum(n_bin, 1)
    return counts, mean_conf


def _ece(counts: np.ndarray, mean_conf: np.ndarray) -> np.ndarray:
    np = _np()
    n_bin = counts.sum(axis=-1)
    acc = counts[..., 1] / np.maximum(n_bin, 1)
    return (np.abs(acc - mean_conf) * n_bin).sum(axis=-1) / n_bin.sum(axis=-1)


def _percentile(draws: np.ndarray) -> tuple[float, float]:
    np = _np()
    lo, hi = np.nanpercentile(draws, [2.5, 97.5])
    return float(lo), float(hi)


def classification_metrics(
    y: np.ndarray,
    yhat: np.ndarray,
    proba: np.ndarray | None,
    k: int,
    *,
    confusion_values: dict | None = None,
    seed: int = 0,
) -> tuple[dict, dict | None]:
    """Realized classification metrics with 95% intervals, and the KPI.

    Args:
        y, yhat: true and predicted class indexes (0..k-1), same length n > 0.
        proba: ``(n, k)`` probabilities in class order, or ``None`` (no ROC AUC, no
            calibration error).
        k: number of classes (binary: class 1 is the positive class).
        confusion_values: ``{"tp", "fp", "fn", "tn"}`` value per prediction in each cell
            (binary only), for the KPI.
        seed: bootstrap seed.

    Returns:
        ``(metrics, kpi)``: ``{metric: {"value", "low", "high", "n", "interval"}}`` for
        :data:`CLASSIFICATION` (those computable), and the KPI entry
        (value per prediction) or ``None``.
    """
    np = _np()
    n = len(y)
    cm = confusion(y, yhat, k)
    point = _cm_metrics(cm)
    boot = bootstrap_cm(cm, seed=seed)
    draws = _cm_metrics(boot)
    out = {}
    for name in ("accuracy", "precision", "recall", "f1"):
        lo, hi = _percentile(draws[name])
        out[name] = _entry(point[name], lo, hi, n, "bootstrap (confusion matrix)")
    if proba is not None:
        if k == 2:
            auc = roc_auc(y == 1, proba[:, 1])
            n_pos = int((y == 1).sum())
            lo, hi = _hanley_mcneil(auc, n_pos, n - n_pos)
            out["roc_auc"] = _entry(auc, lo, hi, n, "Hanley-McNeil normal")
        conf = proba.max(axis=1)
        counts, mean_conf = _ece_cells(conf, yhat == y)
        ece = float(_ece(counts, mean_conf))
        rng = np.random.default_rng(seed + 1)
        flat = counts.reshape(-1) / n
        boot_cells = rng.multinomial(n, flat, size=BOOTSTRAP).reshape(BOOTSTRAP, ECE_BINS, 2)
        lo, hi = _percentile(_ece(boot_cells, mean_conf))
        out["calibration_error"] = _entry(ece, lo, hi, n, "bootstrap (confidence bins)")
    kpi = None
    if confusion_values and k == 2:
        values = np.array(
            [
                [confusion_values["tn"], confusion_values["fp"]],
                [confusion_values["fn"], confusion_values["tp"]],
            ],
            dtype=np.float64,
        )
        per = float((cm * values).sum() / n)
        lo, hi = _percentile((boot * values).sum(axis=(1, 2)) / n)
        kpi = _entry(per, lo, hi, n, "bootstrap (confusion matrix)")
    return out, kpi


def regression_metrics(
    y: np.ndarray, yhat: np.ndarray, *, cost_per_unit_error: float | None = None
) -> tuple[dict, dict | None]:
    """MAE, RMSE and R² with 95% intervals; the KPI (value per prediction) when
    ``cost_per_unit_error`` is given (``cost × MAE``)."""
    np = _np()
    n = len(y)
    e = yhat.astype(np.float64) - y.astype(np.float64)
    ae, se2 = np.abs(e), e * e
    mae, mse = float(ae.mean()), float(se2.mean())
    sd_ae = float(ae.std(ddof=1)) if n > 1 else float("nan")
    sd_se = float(se2.std(ddof=1)) if n > 1 else float("nan")
    h_ae, h_se = Z95 * sd_ae / math.sqrt(n), Z95 * sd_se / math.sqrt(n)
    var_y = float(y.astype(np.float64).var())
    out = {
        "mae": _entry(mae, mae - h_ae, mae + h_ae, n, "normal"),
        "rmse": _entry(
            math.sqrt(mse),
            math.sqrt(max(mse - h_se, 0.0)),
            math.sqrt(mse + h_se),
            n,
            "delta method",
        ),
    }
    if var_y > 0:
        r2 = 1 - mse / var_y
        out["r2"] = _entry(
            r2, 1 - (mse + h_se) / var_y, 1 - max(mse - h_se, 0) / var_y, n, "normal (var(y) fixed)"
        )
    kpi = None
    if cost_per_unit_error is not None:
        c = float(cost_per_unit_error)
        lo, hi = sorted((c * (mae - h_ae), c * (mae + h_ae)))
        kpi = _entry(c * mae, lo, hi, n, "normal")
    return out, kpi


# -- CBPE -------------------------------------------------------------------------------


class Calibrator:
    """Isotonic calibration of the positive class's probability, fitted on reference
    rows with labels (scikit-learn's ``IsotonicRegression``, clipped outside the range).
    Identity when not fitted."""

    def __init__(self) -> None:
        self._iso = None

    def fit(self, p: np.ndarray, y_pos: np.ndarray) -> Calibrator:
        """Fit on reference probabilities ``p`` and outcomes (1 positive)."""
        from sklearn.isotonic import IsotonicRegression  # heavy: only when CBPE runs

        self._iso = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip").fit(p, y_pos)
        return self

    def __call__(self, p: np.ndarray) -> np.ndarray:
        """Calibrated probabilities."""
        return p if self._iso is None else self._iso.predict(p)


def cbpe(proba: np.ndarray, yhat: np.ndarray, k: int, calibrate: Calibrator | None = None) -> dict:
    """Estimated metrics of predictions without labels (CBPE).

    Args:
        proba: ``(n, k)`` probabilities (model output, class order).
        yhat: predicted class indexes (what the model answered).
        k: classes; binary gives accuracy, precision, recall, F1 and ROC AUC, more
            classes give accuracy (the mean calibrated confidence of the predicted class).
        calibrate: maps the positive class's probability to a calibrated one.

    Returns:
        ``{metric: value}``.
    """
    np = _np()
    if k != 2:
        conf = proba[np.arange(len(yhat)), yhat]
        return {"accuracy": round(float(conf.mean()), 6)}
    p = proba[:, 1]
    pc = calibrate(p) if calibrate is not None else p
    pred_pos = yhat == 1
    cm = np.array(
        [
            [float((1 - pc)[~pred_pos].sum()), float((1 - pc)[pred_pos].sum())],
            [float(pc[~pred_pos].sum()), float(pc[pred_pos].sum())],
        ]
    )
    est = {m: round(float(v), 6) for m, v in _cm_metrics(cm).items()}
    est["roc_auc"] = round(roc_auc(None, p, weight_pos=pc), 6)
    return est


__all__ = [
    "CLASSIFICATION",
    "Calibrator",
    "HIGHER_IS_BETTER",
    "REGRESSION",
    "cbpe",
    "classification_metrics",
    "regression_metrics",
    "roc_auc",
]

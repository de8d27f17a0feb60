"""Judging a retrained model: find the candidate file, load it, score it on the holdout."""

from __future__ import annotations

from pathlib import Path

import joblib

from reconciler.core.diagnostics import ModelopsError

TARGET_COLUMN = "target"
"""The label column of the holdout set (the convention of ``examples/train.py``)."""
SCORERS = {
    "accuracy": "accuracy",
    "f1": "f1",
    "roc_auc": "roc_auc",
    "r2": "r2",
    "neg_mae": "neg_mean_absolute_error",
    "neg_rmse": "neg_root_mean_squared_error",
}
"""``spec.retraining.metric`` → scikit-learn scorer name (higher is better for all)."""


def find_model(output: Path, live_name: str, log: Path) -> Path:
    """The candidate: the one file in ``output`` (recursively) with ``live_name``'s suffix.

    A file named exactly ``live_name`` wins when there are several.

    Raises:
        ModelopsError: no such file, or several and none named ``live_name``.
    """
    suffix = Path(live_name).suffix
    found = sorted(p for p in output.rglob(f"*{suffix}") if p.is_file())
    if not found:
        raise ModelopsError(
            f"the retraining command produced no model: no *{suffix} file in "
            f"$MODELOPS_OUTPUT_DIR ({output}); the command must write the model there "
            f"(log: {log})"
        )
    same = [p for p in found if p.name == live_name]
    if same:
        return same[0]
    if len(found) > 1:
        raise ModelopsError(
            f"the retraining command wrote {len(found)} *{suffix} files in {output} and none "
            f"is named {live_name}; write exactly one model file"
        )
    return found[0]


def load_candidate(path: Path):
    """The candidate model object (``joblib.load``).

    Raises:
        ModelopsError: the file cannot be loaded.
    """
    try:
        return joblib.load(path)
    except Exception as exc:  # noqa: BLE001 - unreadable model
        raise ModelopsError(
            f"cannot load the candidate model {path}: {type(exc).__name__}: {exc}"
        ) from None


def score(model, x, y, metric: str, what: str) -> float:
    """``metric`` (a key of :data:`SCORERS`) of ``model`` on features ``x`` and labels ``y``.

    Raises:
        ModelopsError: the scorer fails on this model (``what``: ``candidate``/``live``).
    """
    from sklearn.metrics import get_scorer  # heavy: scikit-learn loads in about a second

    try:
        return float(get_scorer(SCORERS[metric])(model, x, y))
    except Exception as exc:  # noqa: BLE001 - a model that cannot be scored
        raise ModelopsError(
            f"cannot score the {what} model with {metric} on the holdout: "
            f"{type(exc).__name__}: {exc}"
        ) from None

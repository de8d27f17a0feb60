"""Train the example models on scikit-learn's bundled data sets (no download).

Two models, both deterministic (fixed split seed, deterministic solvers):

* ``fraud``: a binary classifier (StandardScaler + LogisticRegression) on the
  breast-cancer data set (569 rows, 30 float features); label 1 = "flagged".
* ``diabetes``: a regressor (StandardScaler + Ridge) on the diabetes data set
  (442 rows, 10 float features); target = disease progression after one year.

For each model the output directory receives:

* ``model.joblib``: the fitted scikit-learn pipeline;
* ``model.json``: framework, task, input signature (shape, dtype, feature names),
  SHA-256 of ``model.joblib``, holdout metrics, and the scikit-learn, numpy and joblib
  versions that wrote it (a pickle's bytes depend on them);
* ``reference.parquet``: the training features (the drift reference);
* ``holdout.parquet``: held-out features plus the ``target`` column;
* ``request.json``: a sample request ``{"instances": [[...], ...]}`` of two rows.

Usage::

    python examples/train.py fraud --out examples/fraud
    python examples/train.py all            # both, into examples/<model>/

Environment variables (used when modelops runs this as a retraining command):
``MODELOPS_TRAINING_DATA`` (a Parquet/CSV file with the feature columns and
``target``; default: the bundled data set) and ``MODELOPS_OUTPUT_DIR`` (default
``--out``).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
from pathlib import Path

import joblib
import numpy as np
import pandas as pd
import sklearn
from sklearn.datasets import load_breast_cancer, load_diabetes
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.metrics import accuracy_score, r2_score, roc_auc_score
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

SEED = 42
HERE = Path(__file__).resolve().parent


def _feature_names(raw: list[str]) -> list[str]:
    return [n.strip().replace(" ", "_") for n in raw]


def bundled(model: str) -> pd.DataFrame:
    """The bundled data set for ``model`` as a frame of float32 features plus ``target``."""
    ds = load_breast_cancer() if model == "fraud" else load_diabetes()
    frame = pd.DataFrame(ds.data.astype(np.float32), columns=_feature_names(list(ds.feature_names)))
    frame["target"] = ds.target
    return frame


def _read(path: str) -> pd.DataFrame:
    return pd.read_parquet(path) if path.endswith(".parquet") else pd.read_csv(path)


def train(model: str, out: Path, data: pd.DataFrame | None = None) -> dict:
    """Fit ``model`` (``fraud`` or ``diabetes``) and write its files into ``out``.

    Returns the ``model.json`` content. Raises ``ValueError`` for an unknown model or
    data without a ``target`` column.
    """
    if model not in ("fraud", "diabetes"):
        raise ValueError(f"unknown model {model!r}; expected fraud or diabetes")
    frame = bundled(model) if data is None else data
    if "target" not in frame.columns:
        raise ValueError("training data has no 'target' column")
    features = [c for c in frame.columns if c != "target"]
    x = frame[features].to_numpy(dtype=np.float32)
    y = frame["target"].to_numpy()
    classify = model == "fraud"
    x_train, x_test, y_train, y_test = train_test_split(
        x, y, test_size=0.25, random_state=SEED, stratify=y if classify else None
    )
    if classify:
        est = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
    else:
        est = make_pipeline(StandardScaler(), Ridge(alpha=1.0))
    est.fit(x_train, y_train)
    if classify:
        proba = est.predict_proba(x_test)[:, 1]
        metrics = {
            "accuracy": round(float(accuracy_score(y_test, est.predict(x_test))), 6),
            "roc_auc": round(float(roc_auc_score(y_test, proba)), 6),
        }
    else:
        metrics = {"r2": round(float(r2_score(y_test, est.predict(x_test))), 6)}

    out.mkdir(parents=True, exist_ok=True)
    model_path = out / "model.joblib"
    joblib.dump(est, model_path)
    digest = hashlib.sha256(model_path.read_bytes()).hexdigest()
    pd.DataFrame(x_train, columns=features).to_parquet(out / "reference.parquet", index=False)
    holdout = pd.DataFrame(x_test, columns=features)
    holdout["target"] = y_test
    holdout.to_parquet(out / "holdout.parquet", index=False)
    request = {"instances": [[round(float(v), 4) for v in row] for row in x_test[:2]]}
    (out / "request.json").write_text(json.dumps(request) + "\n")
    info = {
        "model": model,
        "framework": "sklearn",
        "task": "classification" if classify else "regression",
        "sha256": digest,
        "signature": {
            "inputs": {"shape": [-1, len(features)], "dtype": "float32", "names": features}
        },
        "metrics": metrics,
        "rows": {"train": len(x_train), "holdout": len(x_test)},
        "libraries": {
            "scikit-learn": sklearn.__version__,
            "numpy": np.__version__,
            "joblib": joblib.__version__,
        },
    }
    (out / "model.json").write_text(json.dumps(info, indent=2) + "\n")
    return info


def main(argv: list[str] | None = None) -> int:
    """Command line: ``train.py {fraud,diabetes,all} [--out DIR]``; prints each digest."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", choices=["fraud", "diabetes", "all"])
    parser.add_argument("--out", type=Path, help="output directory (default examples/<model>)")
    args = parser.parse_args(argv)
    data_env = os.environ.get("MODELOPS_TRAINING_DATA")
    out_env = os.environ.get("MODELOPS_OUTPUT_DIR")
    models = ["fraud", "diabetes"] if args.model == "all" else [args.model]
    for model in models:
        out = Path(out_env) if out_env else (args.out or HERE / model)
        if args.model == "all" and args.out:
            out = args.out / model
        try:
            data = _read(data_env) if data_env else None
            info = train(model, out, data)
        except (ValueError, OSError) as exc:
            print(f"train.py: {model}: {exc}", file=sys.stderr)
            return 1
        print(f"{model}: sha256 {info['sha256']} metrics {info['metrics']} -> {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

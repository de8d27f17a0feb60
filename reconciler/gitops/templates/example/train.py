"""Train the example model: an iris-species classifier on scikit-learn's bundled data.

Written by ``modelops init``; replace it with your own training, keeping the contract
(``docs/monitor.md``, "The retraining contract"; ``modelops schema`` shows it under
``spec.retraining``):

Inputs
    ``MODELOPS_TRAINING_DATA``: a Parquet or CSV file with the feature columns and a
    ``target`` column (default: the bundled iris data set).
Outputs, into ``MODELOPS_OUTPUT_DIR`` (default: ``--out``, else this file's directory)
    ``model.joblib`` (the fitted scikit-learn pipeline; scikit-learn specs take a joblib
    or pickle file), ``model.json`` (framework, task, signature, SHA-256 of the model
    file, library versions, holdout metrics), ``reference.parquet`` (training features:
    the drift reference), ``holdout.parquet`` (held-out features plus ``target``) and
    ``request.json`` (a sample request of two rows).
Exit code
    0 when the files were written, 1 on bad input (the message says why).

Deterministic: fixed split seed and solver, so a rerun with the same library versions
writes the same model.
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
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

SEED = 7
FEATURES = ["sepal_length", "sepal_width", "petal_length", "petal_width"]


def bundled() -> pd.DataFrame:
    """The iris data set: four float32 features and ``target`` (0, 1, 2)."""
    iris = load_iris()
    frame = pd.DataFrame(iris.data.astype(np.float32), columns=FEATURES)
    frame["target"] = iris.target
    return frame


def train(out: Path, frame: pd.DataFrame) -> dict:
    """Fit the model on ``frame``, write the output files into ``out``; returns model.json.

    Raises ValueError when ``frame`` lacks ``target`` or a feature column.
    """
    missing = [c for c in [*FEATURES, "target"] if c not in frame.columns]
    if missing:
        raise ValueError(f"training data lacks column(s) {', '.join(missing)}")
    x = frame[FEATURES].to_numpy(dtype=np.float32)
    y = frame["target"].to_numpy()
    x_train, x_test, y_train, y_test = train_test_split(
        x, y, test_size=0.3, random_state=SEED, stratify=y
    )
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))
    model.fit(x_train, y_train)
    out.mkdir(parents=True, exist_ok=True)
    joblib.dump(model, out / "model.joblib")
    digest = hashlib.sha256((out / "model.joblib").read_bytes()).hexdigest()
    pd.DataFrame(x_train, columns=FEATURES).to_parquet(out / "reference.parquet", index=False)
    holdout = pd.DataFrame(x_test, columns=FEATURES)
    holdout["target"] = y_test
    holdout.to_parquet(out / "holdout.parquet", index=False)
    request = {"instances": [[round(float(v), 2) for v in row] for row in x_test[:2]]}
    (out / "request.json").write_text(json.dumps(request) + "\n")
    info = {
        "framework": "sklearn",
        "task": "classification",
        "sha256": digest,
        "signature": {"inputs": {"shape": [-1, 4], "dtype": "float32", "names": FEATURES}},
        "libraries": {
            "scikit-learn": sklearn.__version__,
            "numpy": np.__version__,
            "joblib": joblib.__version__,
        },
        "metrics": {"accuracy": round(float(accuracy_score(y_test, model.predict(x_test))), 6)},
    }
    (out / "model.json").write_text(json.dumps(info, indent=2) + "\n")
    return info


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent)
    args = parser.parse_args(argv)
    out = Path(os.environ.get("MODELOPS_OUTPUT_DIR") or args.out)
    source = os.environ.get("MODELOPS_TRAINING_DATA")
    try:
        if source:
            frame = pd.read_parquet(source) if source.endswith(".parquet") else pd.read_csv(source)
        else:
            frame = bundled()
        info = train(out, frame)
    except (ValueError, OSError) as exc:
        print(f"train.py: {exc}", file=sys.stderr)
        return 1
    print(f"sha256 {info['sha256']} accuracy {info['metrics']['accuracy']} -> {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

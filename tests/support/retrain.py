"""Retraining test helpers: a weak live model, a bare ``origin``, store-backed specs.

Shared by tests/monitor/test_retrain_publish.py and tests/flow/test_model_sources.py
(which holds the MLflow retraining test, so that one worker creates the registry).
"""

from __future__ import annotations

import sys
from pathlib import Path

import git
import joblib
from sklearn.dummy import DummyClassifier

from support.monitor import PROJECT, fraud_repo

sys.path.insert(0, str(PROJECT / "examples"))
from train import bundled  # noqa: E402 - the example's own data loader

PINNED = '    sha256: "cc8cd22265aa7df3578322bf234a37cbbc80e683a07aafd1b290e0b9c8233267"\n'
SPEC = "specs/fraud-detector.yaml"


def weak_live_model(tmp_path: Path) -> Path:
    """A live model any retrained one beats: the class prior (ROC AUC 0.5)."""
    data = bundled("fraud")
    model = DummyClassifier(strategy="prior").fit(data.drop(columns="target"), data["target"])
    path = tmp_path / "live" / "model.joblib"
    path.parent.mkdir()
    joblib.dump(model, path)
    return path


def with_origin(tmp_path: Path, root: Path) -> git.Repo:
    """``root`` with a real bare repository as ``origin``, main pushed."""
    bare = git.Repo.init(tmp_path / "origin.git", bare=True, initial_branch="main")
    repo = git.Repo(root)
    repo.create_remote("origin", bare.working_dir if bare.working_dir else str(bare.git_dir))
    repo.git.push("origin", "main")
    return bare


def store_repo(tmp_path: Path, uri: str, extra: str = "") -> Path:
    def edit(text: str) -> str:
        text = text.replace("uri: examples/fraud/model.joblib", f"uri: {uri}")
        text = text.replace(PINNED, "")
        return text.replace("    cooldown_hours: 24\n", f"    cooldown_hours: 24\n{extra}")

    return fraud_repo(tmp_path, edit)


def training_data(tmp_path: Path) -> str:
    path = tmp_path / "train.parquet"
    bundled("fraud").sample(frac=1.0, random_state=1).to_parquet(path)
    return str(path)

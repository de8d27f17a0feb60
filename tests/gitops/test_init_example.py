"""The example `modelops init` writes is accepted as written: validate, policy check and
plan --env prod, in a real Git repository (the example's training script really runs).

`apply --env dev` (a served Bento) is left to the demo and the slow serving tests; here
the dev deployment is checked to be on the local target.
"""

from __future__ import annotations

import json
import runpy
import subprocess
from pathlib import Path

import joblib
import numpy as np
import pandas as pd
import pytest
import yaml
from support.cli import invoke

from reconciler.core.digests import file_sha256


def _commit(repo) -> None:
    git = ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@example.com"]
    subprocess.run([*git, "add", "-A"], check=True)
    subprocess.run([*git, "commit", "-qm", "init"], check=True)


@pytest.fixture(scope="module")
def initialised(tmp_path_factory):
    """``modelops init demo`` once for this module: (repository, init's stdout)."""
    tmp = tmp_path_factory.mktemp("init")
    with pytest.MonkeyPatch.context() as mp:  # `modelops init demo` as the README says
        mp.chdir(tmp)
        code, out, err = invoke(None, "init", "demo")
    assert code == 0, err
    return tmp / "demo", out


def test_the_example_validates_passes_policy_and_plans_prod_as_written(initialised):
    repo, out = initialised
    for rel in (
        "README.md",
        "specs/iris-classifier.yaml",
        "examples/iris/train.py",
        "examples/iris/model.joblib",
        "examples/iris/model.json",
        "examples/iris/request.json",
        "examples/iris/reference.parquet",
        "examples/iris/holdout.parquet",
    ):
        assert (repo / rel).is_file(), rel
        assert f"wrote {rel}" in out, rel
    spec = yaml.safe_load((repo / "specs/iris-classifier.yaml").read_text())
    info = json.loads((repo / "examples/iris/model.json").read_text())
    assert spec["spec"]["model"]["sha256"] == info["sha256"]
    assert file_sha256(repo / "examples/iris/model.joblib") == info["sha256"]
    assert spec["spec"]["environments"]["dev"]["target"]["platform"] == "local"
    assert spec["spec"]["target"]["platform"] == "kubernetes"
    assert set(info["libraries"]) == {"scikit-learn", "numpy", "joblib"}
    _commit(repo)

    code, out, err = invoke(repo, "validate")
    assert code == 0, out + err
    assert "1 spec(s), 2 deployment(s) checked: ok" in out
    code, out, err = invoke(repo, "policy", "check")
    assert code == 0, out + err
    assert "0 failed" in out
    code, out, err = invoke(repo, "plan", "--env", "prod")
    assert code == 0, out + err
    assert "nothing blocks the merge" in out
    assert "kubernetes:apps/v1:Deployment iris-classifier" in out

    # the model answers the request file with one iris class per row
    model = joblib.load(repo / "examples/iris/model.joblib")
    rows = json.loads((repo / "examples/iris/request.json").read_text())["instances"]
    assert set(model.predict(np.asarray(rows, dtype=np.float32))) <= {0, 1, 2}
    holdout = pd.read_parquet(repo / "examples/iris/holdout.parquet")
    features = spec["spec"]["model"]["signature"]["inputs"]["names"]
    accuracy = float((model.predict(holdout[features].to_numpy()) == holdout["target"]).mean())
    assert round(accuracy, 6) == info["metrics"]["accuracy"]  # model.json reports this model


def test_the_training_script_follows_the_retraining_contract(
    initialised, tmp_path, monkeypatch, capsys
):
    """MODELOPS_OUTPUT_DIR and MODELOPS_TRAINING_DATA as `modelops retrain` sets them;
    bad input exits 1 with the reason. (The script's main() runs in this process.)"""
    repo, _ = initialised
    main = runpy.run_path(str(repo / "examples/iris/train.py"))["main"]
    holdout = pd.read_parquet(repo / "examples/iris/holdout.parquet")
    data = tmp_path / "data.csv"
    pd.concat([holdout] * 3).to_csv(data, index=False)
    monkeypatch.setenv("MODELOPS_OUTPUT_DIR", str(tmp_path / "out"))
    monkeypatch.setenv("MODELOPS_TRAINING_DATA", str(data))
    assert main([]) == 0
    assert sorted(p.name for p in (tmp_path / "out").iterdir() if p.suffix == ".joblib") == [
        "model.joblib"
    ]
    data.write_text("a,b\n1,2\n")
    assert main([]) == 1
    assert "lacks column(s) sepal_length" in capsys.readouterr().err


def test_the_bundled_example_models_record_their_digest_and_library_versions():
    """examples/<model>/model.json names the bytes it describes and the versions that
    wrote them (the demo compares a retrained model by predictions, not by bytes)."""
    root = Path(__file__).resolve().parents[2] / "examples"
    for model in ("fraud", "diabetes"):
        info = json.loads((root / model / "model.json").read_text())
        assert info["sha256"] == file_sha256(root / model / "model.joblib")
        assert set(info["libraries"]) == {"scikit-learn", "numpy", "joblib"}

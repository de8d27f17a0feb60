"""Framework adapters: real models of each installed framework, saved, loaded, built.

Each framework's model is trained on scikit-learn's breast-cancer data (30 features, the
fraud example's signature), written with :func:`frameworks.save_model`, read back with
:func:`frameworks.load_model`, and must predict what the in-memory model predicts. Then a
real Bento is built for it from the fraud-detector spec. Frameworks whose package is not
installed are skipped with the reason (``pip install modelops-gitops[frameworks]``).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import yaml
from sklearn.datasets import load_breast_cancer

from reconciler.build.artifact import BuildError
from reconciler.build.bento import build
from reconciler.core.config import load_config
from reconciler.runtime import frameworks
from reconciler.spec.repo import load_all


def needs(module: str):
    return pytest.mark.skipif(
        importlib.util.find_spec(module) is None,
        reason=f"{module} is not installed (pip install modelops-gitops[frameworks])",
    )


@pytest.fixture(scope="module")
def data():
    x, y = load_breast_cancer(return_X_y=True)
    return x.astype(np.float32), y


def train(framework: str, x, y, path: Path):
    """Train a small classifier with ``framework`` and save it to ``path``."""
    if framework == "xgboost":
        import xgboost

        model = xgboost.XGBClassifier(n_estimators=20, max_depth=3, random_state=0, n_jobs=1)
        model.fit(x, y)
        frameworks.save_model("xgboost", model, path)
        return model.predict(x[:20])
    if framework == "lightgbm":
        import lightgbm

        model = lightgbm.LGBMClassifier(n_estimators=20, random_state=0, verbose=-1, n_jobs=1)
        model.fit(x, y)
        frameworks.save_model("lightgbm", model.booster_, path)
        return model.predict(x[:20])
    if framework == "onnx":
        from skl2onnx import to_onnx
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler

        model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000)).fit(x, y)
        onx = to_onnx(model, x[:1], options={id(model.steps[-1][1]): {"zipmap": False}})
        frameworks.save_model("onnx", onx, path)
        return model.predict(x[:20])
    raise AssertionError(framework)


CASES = [
    pytest.param("xgboost", "model.json", marks=needs("xgboost")),
    pytest.param("lightgbm", "model.txt", marks=needs("lightgbm")),
    pytest.param("onnx", "model.onnx", marks=[needs("onnxruntime"), needs("skl2onnx")]),
]


@pytest.mark.parametrize(("framework", "filename"), CASES)
def test_save_load_predict_roundtrip(framework, filename, data, tmp_path):
    x, y = data
    expected = train(framework, x, y, tmp_path / filename)
    model = frameworks.load_model(framework, tmp_path / filename, "classification")
    preds, proba = frameworks.predict(framework, model, x[:20], "classification")
    assert np.array_equal(np.asarray(preds).astype(int), np.asarray(expected).astype(int))
    assert proba is not None and proba.shape == (20, 2)
    assert np.allclose(proba.sum(axis=1), 1.0, atol=1e-5)


@pytest.mark.parametrize(("framework", "filename"), CASES)
def test_garbage_file_fails_with_the_file_named(framework, filename, tmp_path):
    path = tmp_path / filename
    path.write_bytes(b"\x00garbage")
    with pytest.raises(frameworks.FrameworkError) as err:
        frameworks.load_model(framework, path, "classification")
    assert str(path) in str(err.value) and framework in str(err.value)


def test_sklearn_garbage_and_non_estimator(tmp_path):
    import joblib

    bad = tmp_path / "model.joblib"
    bad.write_bytes(b"nope")
    with pytest.raises(frameworks.FrameworkError, match="cannot be loaded as a sklearn model"):
        frameworks.load_model("sklearn", bad)
    joblib.dump({"not": "a model"}, bad)
    with pytest.raises(frameworks.FrameworkError, match="has no predict"):
        frameworks.load_model("sklearn", bad)


def test_unknown_or_missing_framework():
    with pytest.raises(frameworks.FrameworkError, match="unknown framework"):
        frameworks.distribution("caffe")
    if importlib.util.find_spec("torch") is None:
        with pytest.raises(frameworks.FrameworkError, match="pip install torch"):
            frameworks.distribution("pytorch")


@pytest.mark.slow
@pytest.mark.parametrize(("framework", "filename"), CASES)
def test_real_bento_for_framework(framework, filename, data, spec_repo):
    x, y = data
    model_path = spec_repo / "examples" / "fraud" / filename
    train(framework, x, y, model_path)
    spec_path = spec_repo / "specs" / "fraud-detector.yaml"
    doc = yaml.safe_load(spec_path.read_text())
    doc["spec"]["model"].update(framework=framework, uri=f"examples/fraud/{filename}")
    doc["spec"]["model"].pop("sha256")
    doc["spec"].pop("retraining")  # candidates are scored for scikit-learn only (validate)
    spec_path.write_text(yaml.safe_dump(doc, sort_keys=False))
    config = load_config(spec_repo)
    loaded = load_all(config, ["fraud-detector"], "staging")
    assert not loaded.errors, [str(d) for d in loaded.errors]
    artifact = build(loaded.deployments[0], config)
    assert artifact.framework == framework and not artifact.reused
    stored = Path(config.state_dir / "bentoml" / "models" / "fraud-detector-model")
    assert any(p.name == frameworks.model_file_name(framework, filename) for p in stored.rglob("*"))

    loaded.deployments[0].data["spec"]["model"]["signature"]["inputs"]["shape"] = [-1, 4]
    loaded.deployments[0].data["spec"]["model"]["signature"]["inputs"].pop("names")
    with pytest.raises(BuildError, match=f"examples/fraud/{filename}"):
        build(loaded.deployments[0], config)


@pytest.mark.slow
@pytest.mark.skipif(
    importlib.util.find_spec("skl2onnx") is None or importlib.util.find_spec("onnxruntime") is None,
    reason="onnxruntime/skl2onnx not installed (pip install modelops-gitops[frameworks])",
)
def test_served_onnx_bento_predicts_like_the_model(data, spec_repo):
    import httpx

    from reconciler.build.serve import start_server, stop_server

    x, y = data
    expected = train("onnx", x, y, spec_repo / "examples/fraud/model.onnx")
    spec_path = spec_repo / "specs" / "fraud-detector.yaml"
    doc = yaml.safe_load(spec_path.read_text())
    doc["spec"]["model"].update(framework="onnx", uri="examples/fraud/model.onnx")
    doc["spec"]["model"].pop("sha256")
    doc["spec"].pop("retraining")  # candidates are scored for scikit-learn only (validate)
    doc["spec"]["monitoring"]["capture"]["enabled"] = False
    spec_path.write_text(yaml.safe_dump(doc, sort_keys=False))
    config = load_config(spec_repo)
    dep = load_all(config, ["fraud-detector"], "staging").deployments[0]
    handle = start_server(build(dep, config), config, timeout_s=120)
    try:
        rows = x[:20].astype(float).tolist()
        resp = httpx.post(handle.url + "/invocations", json={"instances": rows}, timeout=30)
        assert resp.status_code == 200, resp.text
        assert resp.json()["predictions"] == [int(v) for v in expected]
        assert len(resp.json()["probabilities"][0]) == 2
        bad = httpx.post(handle.url + "/invocations", json={"instance": rows[0][:5]}, timeout=30)
        assert bad.status_code == 400 and bad.json()["field"] == "instance"
        meta = httpx.get(handle.url + "/metadata", timeout=30).json()
        assert meta["model"]["framework"] == "onnx"
    finally:
        stop_server(handle)

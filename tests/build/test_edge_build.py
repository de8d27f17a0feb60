"""The edge build for real: skl2onnx / onnxmltools exports, ONNX Runtime parity and
latency, int8 quantization and the reproducible bundle, on the bundled example models
and on XGBoost, LightGBM and MLP models trained here on the fraud example's data."""

from __future__ import annotations

import hashlib
import json
import os
import tarfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.neighbors import NearestCentroid
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from reconciler.build.edge_bundle import build_edge, prune_bundles
from reconciler.build.edge_export import EdgeBuildError, export
from reconciler.core.config import load_config
from reconciler.runtime import frameworks
from reconciler.spec.repo import load_files

pytestmark = pytest.mark.slow  # ONNX exports and edge bundle builds

EDGE_SPEC = "examples/edge/fraud-edge.yaml"
DIABETES_NAMES = ["age", "sex", "bmi", "bp", "s1", "s2", "s3", "s4", "s5", "s6"]


def _spec(root: Path, name: str, edits: dict[str, str]) -> Path:
    """The example edge spec as ``specs-edge/<name>.yaml`` with ``edits`` (old -> new).

    The latency budget is relaxed to 1 s unless ``edits`` sets it: these tests are about
    export, parity and bundles on a busy shared machine, not about speed (the budget
    check itself is tested with a budget no machine meets; bench/bench_edge.py measures).
    """
    text = (root / EDGE_SPEC).read_text().replace("name: fraud-edge", f"name: {name}")
    edits = {"max_p99_ms: 5": "max_p99_ms: 1000", **edits}
    for old, new in edits.items():
        assert old in text, old
        text = text.replace(old, new)
    path = root / "specs-edge" / f"{name}.yaml"
    path.parent.mkdir(exist_ok=True)
    path.write_text(text)
    return path


def _build(root: Path, spec: Path, revision: str = "r1"):
    config = load_config(root)
    loaded = load_files(config, [spec])
    assert not loaded.errors, [str(d) for d in loaded.diagnostics]
    (dep,) = loaded.deployments
    return build_edge(dep, config, revision)


def _fraud_xy(root: Path) -> tuple[np.ndarray, np.ndarray]:
    frame = pd.read_parquet(root / "examples/fraud/holdout.parquet")
    x = frame.drop(columns=["target"]).to_numpy(np.float32)
    return x, frame["target"].to_numpy()


def _own_model(root: Path, name: str, framework: str, model, file: str, edits=None) -> Path:
    path = root / "examples" / name / file
    path.parent.mkdir(exist_ok=True)
    frameworks.save_model(framework, model, path)
    return _spec(
        root,
        name,
        {
            "framework: sklearn": f"framework: {framework}",
            "uri: examples/fraud/model.joblib": f"uri: examples/{name}/{file}",
            '    sha256: "cc8cd22265aa7df3578322bf234a37cbbc80e683a07aafd1b290e0b9c8233267"\n': "",
            "max_bytes: 65536": "max_bytes: 10000000",
            **(edits or {}),
        },
    )


def test_example_fraud_pipeline_exports_with_parity_and_a_byte_identical_bundle(spec_repo):
    spec = _spec(spec_repo, "fraud-edge", {})
    first = _build(spec_repo, spec)
    assert first.export.converter.startswith("skl2onnx ")
    assert first.export.operators == ["LinearClassifier", "Scaler"]
    assert first.parity.passed and first.parity.label_agreement == 1.0
    assert first.parity.compared == "probabilities"
    assert first.parity.edge_case_rows == 2 * 30 + 3
    assert first.budget.size_bytes == len((first.bundle_dir / "model.onnx").read_bytes())
    assert 0 < first.budget.p50_ms <= first.budget.p99_ms
    blob = first.tarball.read_bytes()
    assert hashlib.sha256(blob).hexdigest() == first.sha256
    manifest = json.loads((first.bundle_dir / "manifest.json").read_text())
    assert manifest["revision"] == "r1" and manifest["device"]["arch"] == "arm64"
    for name in ("model.onnx", "parity.json"):
        data = (first.bundle_dir / name).read_bytes()
        assert manifest["files"][name]["sha256"] == hashlib.sha256(data).hexdigest()
    with tarfile.open(first.tarball) as tar:
        members = tar.getmembers()
    assert [m.name.split("/", 1)[1] for m in members] == [
        "manifest.json",
        "model.onnx",
        "parity.json",
    ]
    assert {m.mtime for m in members} == {0}
    oci_index = json.loads((first.oci_dir / "index.json").read_text())
    layer_digest = first.sha256
    assert (first.oci_dir / "blobs" / "sha256" / layer_digest).read_bytes() == blob
    assert oci_index["manifests"][0]["annotations"]["org.opencontainers.image.ref.name"]
    # a second build of the same inputs gives the same bytes (latency differs, and is
    # therefore kept out of the bundle)
    second = _build(spec_repo, spec)
    assert second.tarball.read_bytes() == blob
    assert second.sha256 == first.sha256
    # another spec revision is another bundle
    assert _build(spec_repo, spec, "r2").sha256 != first.sha256


def test_example_diabetes_regressor_exports_with_output_parity(spec_repo):
    spec = _spec(
        spec_repo,
        "diabetes-edge",
        {
            "task: classification": "task: regression",
            "uri: examples/fraud/model.joblib": "uri: examples/diabetes/model.joblib",
            '    sha256: "cc8cd22265aa7df3578322bf234a37cbbc80e683a07aafd1b290e0b9c8233267"\n': "",
            "shape: [-1, 30]": "shape: [-1, 10]",
            "examples/fraud/holdout.parquet": "examples/diabetes/holdout.parquet",
        },
    )
    text = spec.read_text()
    start = text.index("names: [")
    end = text.index("]", start) + 1
    spec.write_text(text[:start] + f"names: {json.dumps(DIABETES_NAMES)}" + text[end:])
    built = _build(spec_repo, spec)
    assert built.parity.compared == "outputs" and built.parity.label_agreement is None
    assert built.parity.passed, built.parity.failures
    assert built.parity.max_abs_diff < 1e-3


def test_xgboost_and_lightgbm_export_and_tree_quantization_is_a_stated_no_op(spec_repo):
    import lightgbm
    import xgboost

    x, y = _fraud_xy(spec_repo)
    xgb = xgboost.XGBClassifier(n_estimators=20, max_depth=3, n_jobs=1).fit(x, y)
    built = _build(spec_repo, _own_model(spec_repo, "xgb-edge", "xgboost", xgb, "model.json"))
    assert built.export.converter.startswith("onnxmltools ")
    assert built.export.operators == ["TreeEnsembleClassifier"]
    assert built.parity.passed and built.parity.label_agreement == 1.0

    lgb = lightgbm.train(
        {"objective": "binary", "num_leaves": 8, "verbose": -1, "num_threads": 1},
        lightgbm.Dataset(x, y),
        num_boost_round=20,
    )
    spec = _own_model(
        spec_repo,
        "lgb-edge",
        "lightgbm",
        lgb,
        "model.txt",
        {"quantization: none": "quantization: dynamic"},
    )
    built = _build(spec_repo, spec)
    assert "TreeEnsembleClassifier" in built.export.operators
    assert built.parity.passed and built.parity.label_agreement == 1.0
    # the quantizer cannot touch ai.onnx.ml trees: said, and no copy under a new name
    assert built.export.quantization == "none"
    assert built.budget.size_bytes == built.export.unquantized_bytes
    (note,) = built.export.notes
    assert "dynamic int8 quantization left the graph unchanged" in note
    assert "TreeEnsembleClassifier" in note
    manifest = json.loads((built.bundle_dir / "manifest.json").read_text())
    assert manifest["quantization"] == "none" and manifest["notes"] == [note]


def _mlp(root: Path):
    x, y = _fraud_xy(root)
    model = make_pipeline(
        StandardScaler(),
        MLPClassifier(hidden_layer_sizes=(128, 64), max_iter=25, random_state=0),
    )
    return model.fit(x, y)


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_mlp_quantizes_to_a_smaller_model_within_loose_parity_and_fails_strict_parity(
    spec_repo,
):
    model = _mlp(spec_repo)
    loose = {
        "quantization: none": "quantization: dynamic",
        "min_label_agreement: 0.99": "min_label_agreement: 0.9",
        "max_abs_diff: 0.001": "max_abs_diff: 0.25",
    }
    plain = _build(spec_repo, _own_model(spec_repo, "mlp-edge", "sklearn", model, "model.joblib"))
    quant = _build(
        spec_repo, _own_model(spec_repo, "mlp-edge-q", "sklearn", model, "model.joblib", loose)
    )
    assert quant.export.quantization == "dynamic"
    assert {"DynamicQuantizeLinear", "MatMulInteger"} & set(quant.export.operators)
    assert quant.budget.size_bytes * 2.5 < plain.budget.size_bytes  # int8 weights: ~3x
    assert quant.parity.passed
    assert quant.parity.max_abs_diff > plain.parity.max_abs_diff
    static = _build(
        spec_repo,
        _own_model(
            spec_repo,
            "mlp-edge-static",
            "sklearn",
            model,
            "model.joblib",
            {**loose, "quantization: dynamic": "quantization: static"},
        ),
    )
    assert static.export.quantization == "static" and "QuantizeLinear" in static.export.operators
    assert static.budget.size_bytes * 2 < plain.budget.size_bytes and static.parity.passed
    # the same lossy conversion under a strict threshold: a failed build, rows named
    strict = _own_model(
        spec_repo,
        "mlp-edge-strict",
        "sklearn",
        model,
        "model.joblib",
        {
            "quantization: none": "quantization: dynamic",
            "max_abs_diff: 0.001": "max_abs_diff: 0.000001",
        },
    )
    with pytest.raises(
        EdgeBuildError,
        match=r"max absolute difference of the probabilities .* "
        r"above spec.edge.parity.max_abs_diff 1e-06 \(worst row: ",
    ):
        _build(spec_repo, strict)


def test_unconvertible_estimator_is_named(spec_repo):
    x, y = _fraud_xy(spec_repo)
    model = make_pipeline(StandardScaler(), NearestCentroid()).fit(x, y)
    spec = _own_model(spec_repo, "centroid-edge", "sklearn", model, "model.joblib")
    with pytest.raises(EdgeBuildError, match="skl2onnx has no converter for NearestCentroid"):
        _build(spec_repo, spec)


def test_parity_data_with_wrong_columns_fails_naming_them(spec_repo):
    frame = pd.read_parquet(spec_repo / "examples/fraud/holdout.parquet")
    frame.drop(columns=["mean_radius", "worst_area"]).to_parquet(
        spec_repo / "examples/edge/bad.parquet"
    )
    spec = _spec(
        spec_repo,
        "fraud-edge-bad-data",
        {"data: examples/fraud/holdout.parquet": "data: examples/edge/bad.parquet"},
    )
    with pytest.raises(EdgeBuildError) as caught:
        _build(spec_repo, spec)
    message = caught.value.message
    assert "spec.edge.parity.data: parity data lacks 2 of the signature's columns" in message
    assert "mean_radius, worst_area" in message
    assert message.startswith("specs-edge/fraud-edge-bad-data.yaml:")


def test_unmeetable_budget_fails_the_build_naming_both_limits(spec_repo):
    spec = _spec(
        spec_repo,
        "fraud-edge-tight",
        {"max_bytes: 65536": "max_bytes: 100", "max_p99_ms: 5": "max_p99_ms: 0.000001"},
    )
    with pytest.raises(EdgeBuildError) as caught:
        _build(spec_repo, spec)
    message = caught.value.message
    assert "nothing published" in message
    assert "bytes, above spec.edge.max_bytes 100" in message
    assert "above spec.edge.max_p99_ms 1e-06" in message
    assert not (spec_repo / "dist").exists()


def test_an_onnx_model_passes_through_and_a_wrong_input_width_is_refused(spec_repo):
    original = frameworks.load_model("sklearn", spec_repo / "examples/fraud/model.joblib")
    onnx_bytes = export(
        "sklearn", original, width=30, dtype="float32", task="classification", display="x"
    ).onnx
    spec = _own_model(spec_repo, "onnx-edge", "onnx", onnx_bytes, "model.onnx")
    built = _build(spec_repo, spec)
    assert built.export.converter == "passthrough"
    assert (built.bundle_dir / "model.onnx").read_bytes() == onnx_bytes
    assert built.parity.passed and built.parity.max_abs_diff == 0.0

    narrow = export(
        "sklearn",
        make_pipeline(StandardScaler(), NearestCentroid()).fit(np.eye(4), [0, 1, 0, 1])[0],
        width=4,
        dtype="float32",
        task="regression",
        display="x",
    ).onnx
    spec = _own_model(spec_repo, "onnx-edge-narrow", "onnx", narrow, "model.onnx")
    with pytest.raises(
        EdgeBuildError,
        match=r"input 'input' has shape \[-1, 4\]; the spec's signature is \[-1, 30\]",
    ):
        _build(spec_repo, spec)


def test_old_bundles_are_pruned_keeping_the_newest_and_the_current(tmp_path):
    for i in range(7):
        (tmp_path / f"b{i}.tar.gz").write_bytes(b"x")
        (tmp_path / f"b{i}").mkdir()
        (tmp_path / f"b{i}.oci").mkdir()
        os.utime(tmp_path / f"b{i}.tar.gz", (1000 + i, 1000 + i))
    removed = prune_bundles(tmp_path, keep=3, current="b0")  # b0: oldest, but just built
    assert sorted(removed) == ["b1", "b2", "b3", "b4"]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        f"b{i}{suffix}" for i in (0, 5, 6) for suffix in ("", ".tar.gz", ".oci")
    )

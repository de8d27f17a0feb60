"""``target.platform: edge``: the example edge spec validates; each thing the edge build
would fail on is a validate finding at its file, line and column, naming what is valid."""

from __future__ import annotations

from pathlib import Path

import pytest
from support.cli import invoke

EDGE_SPEC = "examples/edge/fraud-edge.yaml"


def _edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, f"{old!r} not in {path}"
    path.write_text(text.replace(old, new, 1))


def _line_of(path: Path, needle: str) -> int:
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if needle in line:
            return number
    raise AssertionError(needle)


def test_example_edge_spec_is_valid(spec_repo):
    proc = invoke(spec_repo, "validate", str(spec_repo / EDGE_SPEC))
    assert proc.returncode == 0, proc.output
    assert "1 spec(s), 1 deployment(s) checked: ok" in proc.stdout


@pytest.mark.parametrize(
    ("old", "new", "line_of", "field", "words"),
    [
        (
            "framework: sklearn",
            "framework: pytorch",
            "framework:",
            "spec.model.framework",
            "edge bundles are built from sklearn, xgboost, lightgbm, onnx",
        ),
        (
            "uri: examples/fraud/model.joblib",
            "uri: bentoml:fraud-model:latest",
            "uri:",
            "spec.model.uri",
            "reads a model file in the repository",
        ),
        (
            "shape: [-1, 30]",
            "shape: [-1, 30, 2]",
            "shape:",
            "spec.model.signature.inputs.shape",
            "needs [-1, N]",
        ),
        (
            "dtype: float32",
            "dtype: bool",
            "dtype:",
            "spec.model.signature.inputs.dtype",
            "valid: float32, float64, int64",
        ),
        (
            "    device: {arch: arm64, os: linux, runtime: onnxruntime}\n",
            "",
            "    platform: edge",
            "spec.target.platform",
            "needs spec.target.device",
        ),
        (
            "destination: dist/edge-bundles",
            "destination: ../bundles",
            "destination:",
            "spec.edge.destination",
            "leaves the repository",
        ),
        (
            "destination: dist/edge-bundles",
            "destination: s3://bundles/fraud",
            "layout: oci",
            "spec.edge.layout",
            "use layout: bundle",
        ),
        (
            "data: examples/fraud/holdout.parquet",
            "data: examples/fraud/nowhere.parquet",
            "data: examples",
            "spec.edge.parity.data",
            "not found",
        ),
        (
            "min_label_agreement: 0.99",
            "min_label_agreement: 1.5",
            "min_label_agreement",
            "spec.edge.parity.min_label_agreement",
            "at most 1",
        ),
        (
            "quantization: none",
            "quantization: int4",
            "quantization:",
            "spec.edge.quantization",
            "'dynamic', 'static'",
        ),
    ],
)
def test_edge_findings_name_file_line_field_and_what_is_valid(
    spec_repo, old, new, line_of, field, words
):
    spec = spec_repo / EDGE_SPEC
    _edit(spec, old, new)
    line = _line_of(spec, line_of)
    proc = invoke(spec_repo, "validate", str(spec_repo / EDGE_SPEC))
    assert proc.returncode == 1, proc.output
    findings = [ln for ln in proc.stdout.splitlines() if f": {field}: " in ln]
    assert findings, proc.stdout
    assert findings[0].startswith(f"{EDGE_SPEC}:{line}:"), findings
    assert words in findings[0]


def test_no_parity_data_anywhere_is_a_finding(spec_repo):
    spec = spec_repo / EDGE_SPEC
    _edit(spec, "      data: examples/fraud/holdout.parquet\n", "")
    proc = invoke(spec_repo, "validate", str(spec_repo / EDGE_SPEC))
    assert proc.returncode == 1
    assert "spec.edge: parity needs data" in proc.stdout


def test_server_fields_on_edge_and_device_elsewhere_are_warnings(spec_repo):
    spec = spec_repo / EDGE_SPEC
    _edit(
        spec, "    platform: edge\n", "    platform: edge\n    registry: registry.example.com/ml\n"
    )
    _edit(spec, "    staging: {}", "    staging: {}\n    dev: {target: {platform: local}}")
    proc = invoke(spec_repo, "validate", str(spec_repo / EDGE_SPEC))
    assert proc.returncode == 0, proc.output
    assert "warning: spec.target.registry: not used by platform edge" in proc.stdout
    assert "warning: spec.target.device: used only by platform edge" in proc.stdout

"""The drift job on real data: the fraud example's reference and holdout rows, captured
through the serving runtime's own CaptureWriter, compared with Evidently."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from support.monitor import (
    NOW,
    capture,
    deployment,
    fraud_repo,
    holdout_features,
    record,
    reference,
    set_line,
    write_lines,
)

from reconciler.flow.monitor import monitor_run
from reconciler.monitor.data import MonitorInputError
from reconciler.monitor.drift import run_drift
from reconciler.monitor.traffic import shifted
from reconciler.state.ledger import Ledger

KS = "drift: {threshold: 0.3, method: ks}"


def test_shifted_capture_is_detected_and_recorded(tmp_path: Path) -> None:
    root = fraud_repo(tmp_path)
    config, dep = deployment(root)
    requests = capture(root, shifted(reference(), seed=1))

    result = monitor_run(dep, config, now=NOW)

    assert result.drifted
    assert result.requests == requests and result.rows["current"] == len(reference())
    assert result.share_drifted >= result.threshold == 0.3
    moved = list(reference().columns[:15])  # the documented shift: first half of columns
    assert set(moved) <= set(result.drifted_features)
    assert all(f["test"] == "psi" and f["score"] is not None for f in result.features)
    assert result.prediction_drift is not None and result.prediction_drift["drifted"]
    assert result.sampled is None
    assert Path(result.report_html).stat().st_size > 10_000
    summary = json.loads(Path(result.summary_json).read_text())
    assert summary["status"] == "drifted" and summary["share_drifted"] == result.share_drifted
    # written next to the captured data
    assert Path(result.report_html).is_relative_to(root / ".modelops" / "capture")
    rec = Ledger(config.state_dir).get("fraud-detector", "staging")
    assert rec.drift["status"] == "drifted"
    assert rec.history[-1]["action"] == "monitor" and rec.history[-1]["result"] == "drifted"


def test_unshifted_holdout_parquet_capture_passes(tmp_path: Path) -> None:
    # the real holdout rows (same distribution), captured as Parquet; KS accounts for the
    # small sample (PSI on 143 rows is noisy, see the report)
    root = fraud_repo(
        tmp_path,
        lambda t: set_line(
            set_line(t, "drift:", KS), "capture:", "capture: {sink: cap, format: parquet}"
        ),
    )
    config, dep = deployment(root)
    from reconciler.runtime.capture import CaptureWriter

    writer = CaptureWriter(root / "cap", "fraud-detector", "staging", 1.0, fmt="parquet")
    rows = holdout_features().to_numpy(dtype=np.float64)
    model = __import__("joblib").load(root / "examples" / "fraud" / "model.joblib")
    for i in range(0, len(rows), 8):
        chunk = rows[i : i + 8]
        writer.submit(
            f"r{i}",
            "1",
            1.0,
            chunk.tolist(),
            model.predict(chunk).tolist(),
            timestamp=NOW.replace(second=0) - pd.Timedelta(minutes=2),
        )
    writer.close()

    result = monitor_run(dep, config, now=NOW)

    assert not result.drifted, result.drifted_features
    assert result.share_drifted < 0.3
    assert result.rows["current"] == len(rows)
    assert result.prediction_drift is not None and not result.prediction_drift["drifted"]
    rec = Ledger(config.state_dir).get("fraud-detector", "staging")
    assert rec.drift["status"] == "ok"


def _fails(root: Path, match: str, **kwargs) -> None:
    config, dep = deployment(root)
    with pytest.raises(MonitorInputError, match=match):
        monitor_run(dep, config, now=NOW, **kwargs)
    rec = Ledger(config.state_dir).get("fraud-detector", "staging")
    if "current" in kwargs:  # a what-if run records nothing, failed or not
        assert rec is None
        return
    assert rec.drift["status"] == "failed"
    assert rec.history[-1]["action"] == "monitor" and rec.history[-1]["result"] == "failed"


def test_missing_reference(tmp_path: Path) -> None:
    root = fraud_repo(
        tmp_path,
        lambda t: t.replace(
            "reference: examples/fraud/reference.parquet", "reference: examples/fraud/nope.parquet"
        ),
    )
    _fails(
        root,
        r"fraud-detector.yaml:\d+:\d+: spec.monitoring.reference: reference data .*"
        r"nope.parquet not found",
    )


def test_unreadable_reference(tmp_path: Path) -> None:
    root = fraud_repo(tmp_path)
    (root / "examples" / "fraud" / "reference.parquet").write_bytes(b"not parquet at all")
    write_lines(root, [record([[0.0] * 30])])
    _fails(root, r"spec.monitoring.reference: cannot read reference data")


def test_reference_missing_columns(tmp_path: Path) -> None:
    root = fraud_repo(tmp_path)
    config, dep = deployment(root)
    # changed after validate (validate refuses it: tests/spec/test_spec_validate.py); the
    # job still says which columns are missing and records the failure
    ref = reference().drop(columns=["mean_radius", "worst_symmetry"])
    ref.to_parquet(root / "examples" / "fraud" / "reference.parquet")
    with pytest.raises(MonitorInputError, match=r"lacks 2 feature column\(s\).*mean_radius, wor"):
        monitor_run(dep, config, now=NOW)
    rec = Ledger(config.state_dir).get("fraud-detector", "staging")
    assert rec.drift["status"] == "failed" and rec.history[-1]["result"] == "failed"


def test_capture_with_missing_columns(tmp_path: Path) -> None:
    root = fraud_repo(tmp_path)
    write_lines(root, [record([[1.0] * 30]), record([[1.0] * 29])])
    _fails(root, r"capture-1-1.jsonl:2: inputs\[0\] has 29 values; the model signature .* 30")


def test_capture_with_wrong_types(tmp_path: Path) -> None:
    root = fraud_repo(tmp_path)
    row = [1.0] * 30
    row[3] = "large"
    write_lines(root, [record([[1.0] * 30]), record([[1.0] * 30]), record([row])])
    _fails(root, r"capture-1-1.jsonl:3: inputs\[0\]\[3\] \(feature 'mean_area'\): 'large' is a str")


def test_capture_not_json(tmp_path: Path) -> None:
    root = fraud_repo(tmp_path)
    write_lines(root, [record([[1.0] * 30]), "{broken"])
    _fails(root, r"capture-1-1.jsonl:2: not a JSON object")


def test_empty_window_no_files(tmp_path: Path) -> None:
    root = fraud_repo(tmp_path)
    _fails(root, r"spec.monitoring.capture.sink: empty window: no captured traffic")


def test_empty_window_only_old_records(tmp_path: Path) -> None:
    root = fraud_repo(tmp_path)
    old = NOW - pd.Timedelta(hours=30)
    write_lines(root, [record([[1.0] * 30], when=old)], day=NOW.strftime("%Y-%m-%d"))
    _fails(root, r"empty window: 1 capture file\(s\) .* but no request timestamped")


def test_current_frame_missing_columns(tmp_path: Path) -> None:
    root = fraud_repo(tmp_path)
    _fails(
        root,
        r"current data lacks feature column\(s\) mean_radius",
        current=reference().drop(columns=["mean_radius"]),
    )


def test_s3_reference_says_it_is_not_reachable(tmp_path: Path) -> None:
    root = fraud_repo(
        tmp_path,
        lambda t: t.replace(
            "reference: examples/fraud/reference.parquet", "reference: s3://bucket/ref.parquet"
        ),
    )
    _fails(root, r"on S3, which needs AWS credentials")


def test_chisquare_on_numeric_features_is_refused(tmp_path: Path) -> None:
    root = fraud_repo(tmp_path, lambda t: set_line(t, "drift:", "drift: {method: chisquare}"))
    _fails(
        root,
        r"spec.monitoring.drift.method: chisquare applies to categorical features",
        current=reference(),
    )


def test_hashed_sensitive_feature_is_left_out(tmp_path: Path) -> None:
    # the runtime hashes spec.data.sensitive_fields in the capture (redact: hash); those
    # columns cannot be compared and are excluded, with a note
    root = fraud_repo(
        tmp_path,
        lambda t: re.sub(r"sensitive_fields: \[[^\]]*\]", "sensitive_fields: [mean_radius]", t),
    )
    config, dep = deployment(root)
    from reconciler.runtime.capture import CaptureWriter

    writer = CaptureWriter(
        root / ".modelops" / "capture",
        "fraud-detector",
        "staging",
        1.0,
        redact="hash",
        sensitive_idx=[0],
    )
    rows = shifted(reference(), seed=5).to_numpy(dtype=np.float64)
    for i in range(0, len(rows), 8):
        writer.submit(
            f"r{i}",
            "1",
            1.0,
            rows[i : i + 8].tolist(),
            [0] * len(rows[i : i + 8]),
            timestamp=NOW - pd.Timedelta(minutes=3),
        )
    writer.close()

    result = run_drift(dep, config, now=NOW)

    assert result.drifted
    assert [f["name"] for f in result.features] == list(reference().columns[1:])
    assert any("redacted features excluded from drift: mean_radius" in n for n in result.notes)
    # prediction drift still runs: the captured outputs against the model's predictions on
    # the (unredacted) reference rows
    assert result.prediction_drift is not None and result.prediction_drift["name"] == "prediction"
    assert not any(n.startswith("prediction drift skipped") for n in result.notes)
    # the job returns its result; only the flow (monitor_run) records it
    assert Ledger(config.state_dir).get("fraud-detector", "staging") is None

"""``modelops monitor run`` and ``modelops retrain`` through the real entry point."""

from __future__ import annotations

import json
from pathlib import Path

import git
import pandas as pd
from support.cli import invoke
from support.monitor import capture, fraud_repo, reference, set_line

from reconciler.monitor.traffic import shifted
from reconciler.state.ledger import Ledger

COPY_LIVE = (
    'command: ["python", "-c", "import os, shutil; shutil.copy(\'examples/fraud/model.joblib\', '
    "os.environ['MODELOPS_OUTPUT_DIR'])\"]"
)


def test_drift_exits_1_and_triggers_retraining(tmp_path: Path) -> None:
    # the deployment's captured traffic (not --current: a what-if run records nothing)
    root = fraud_repo(tmp_path, lambda t: set_line(t, "command:", COPY_LIVE))
    big = shifted(pd.concat([reference()] * 3, ignore_index=True), seed=2)
    capture(root, big)
    code, out, err = invoke(
        root,
        "monitor",
        "run",
        "fraud-detector",
        "--env",
        "staging",
        "--format",
        "json",
        "--sample-size",
        "400",
        "--seed",
        "7",
    )
    assert code == 1, err
    data = json.loads(out)
    assert data["status"] == "drifted" and data["drifted"] is True
    assert len(data["features"]) == 27  # 30 features, 3 of them hashed in the capture
    # sampled with a fixed seed, and the summary says so
    assert data["sampled"] == 400 and data["rows"] == {"current": 1278, "reference": 426}
    assert data["rows_used"] == {"current": 400, "reference": 400}
    assert any("sampled 400 of 1278 current" in n for n in data["notes"])
    html = Path(data["report_html"]).read_text()
    assert "sampled 400 of 1278 current" in html  # the HTML report says it sampled
    # spec.monitoring.on_drift: retrain -> the retraining ran (the model came back identical)
    assert data["retraining"]["status"] == "unchanged"
    assert data["retraining"]["reason"] == "drift"
    record = Ledger(root / ".modelops").get("fraud-detector", "staging")
    assert [h["action"] for h in record.history] == ["monitor", "retrain"]


def test_no_drift_exits_0_with_a_table(tmp_path: Path) -> None:
    root = fraud_repo(tmp_path)
    current = root / "current.parquet"
    reference().to_parquet(current)
    code, out, err = invoke(
        root,
        "monitor",
        "run",
        "fraud-detector",
        "--env",
        "staging",
        "--current",
        str(current),
    )
    assert code == 0, err
    assert "fraud-detector-staging: no drift: 0/27 features drifted" in out
    assert "mean_radius" in out and "report: .modelops/drift/" in out


def test_bad_input_exits_2_without_traceback(tmp_path: Path) -> None:
    root = fraud_repo(tmp_path)
    code, out, err = invoke(root, "monitor", "run", "fraud-detector", "--env", "staging")
    assert code == 2
    assert "error: specs/fraud-detector.yaml:" in err and "empty window" in err
    assert "Traceback" not in err + out
    # the failed run is recorded, but a deployment never applied is not shown as a server
    code, out, err = invoke(root, "status", "--env", "staging", "--format", "json")
    (row,) = json.loads(out)
    assert code == 0 and row["health"].startswith("NotApplied: never applied")


def test_retrain_failure_exits_2(tmp_path: Path) -> None:
    root = fraud_repo(
        tmp_path, lambda t: set_line(t, "command:", 'command: ["python", "-c", "pass"]')
    )
    code, out, err = invoke(root, "retrain", "fraud-detector", "--env", "staging")
    assert code == 2
    assert "error: the retraining command produced no model" in err
    assert [h.name for h in git.Repo(root).heads] == ["main"]

"""The quality job's bad windows, on real capture files (the runtime's CaptureWriter) and
real label files: an empty window and a window whose labels are all overdue give a
clear verdict and a recorded result, never a crash; labels that arrive after
``max_delay`` are stored and counted as late."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pandas as pd
from support.monitor import NOW, capture, deployment, fraud_repo, reference

from reconciler.flow.monitor import labels_ingest, quality_run
from reconciler.monitor.quality import INSUFFICIENT
from reconciler.state.ledger import Ledger

LABELS = "    labels: {sink: labels, max_delay: 2d}\n    quality: {min_accuracy: 0.8}\n"


def _repo(tmp_path: Path) -> Path:
    return fraud_repo(tmp_path, lambda t: t.replace("    on_drift: retrain\n", LABELS))


def test_empty_window_is_insufficient_labels_and_recorded(tmp_path: Path) -> None:
    root = _repo(tmp_path)
    config, dep = deployment(root)

    result = quality_run(dep, config, now=NOW)

    assert result.verdict == INSUFFICIENT and result.predictions == 0
    assert any(n.startswith("empty window: no captured predictions") for n in result.notes)
    record = Ledger(config.state_dir).get("fraud-detector", "staging")
    assert record.quality["status"] == INSUFFICIENT
    assert record.history[-1]["action"] == "quality"


def test_every_label_overdue_then_late_labels_are_counted(tmp_path: Path) -> None:
    root = _repo(tmp_path)
    config, dep = deployment(root)
    rows = reference().iloc[:64]
    capture(root, rows, when=NOW - timedelta(hours=60), batch=1)  # older than max_delay

    result = quality_run(dep, config, now=NOW)

    assert result.verdict == INSUFFICIENT
    assert (result.predictions, result.labelled, result.pending, result.overdue) == (64, 0, 0, 1)
    assert any("0 prediction(s) within max_delay, 64 past it" in n for n in result.notes)

    # the labels come after all: stored, counted as late, and joined
    ids = [f"r{i}" for i in range(64)]  # support.monitor.capture's request ids, one row each
    pd.DataFrame({"request_id": ids, "label": [0] * 64}).to_parquet(root / "late.parquet")
    ingested = labels_ingest(dep, config, root / "late.parquet", now=NOW)
    assert (ingested.accepted, ingested.late, ingested.rejected) == (64, 64, {})
    again = quality_run(dep, config, now=NOW)
    assert again.labelled == 64 and again.metrics["accuracy"]["value"] == 1.0  # outputs are 0
    history = Ledger(config.state_dir).get("fraud-detector", "staging").history
    assert [h["action"] for h in history] == ["quality", "labels", "quality"]
    assert "64 late" in history[1]["message"]

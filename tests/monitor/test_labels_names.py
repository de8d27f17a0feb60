"""Label files are never replaced: two ingests with the same ``now`` keep both files, and
the same file ingested again stores nothing new (labels are kept once per id).

Everything is real: the spec repository, the capture files (the runtime's CaptureWriter),
the label files and the local label sink; no model is served.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pandas as pd
from support.monitor import NOW, capture, deployment, fraud_repo, reference

from reconciler.monitor.labels import ingest_labels, label_settings, stored_labels


def _repo(tmp_path: Path) -> Path:
    labels = "    labels: {sink: outcomes, max_delay: 2d}\n    quality: {min_accuracy: 0.8}\n"
    return fraud_repo(tmp_path, lambda t: t.replace("    on_drift: retrain\n", labels))


def test_two_ingests_at_the_same_time_keep_both_files_and_a_repeat_adds_nothing(tmp_path):
    root = _repo(tmp_path)
    capture(root, reference().iloc[:8], when=NOW - timedelta(hours=1), batch=1)
    ids = [f"r{i}" for i in range(8)]  # support.monitor.capture's request ids, one row each
    pd.DataFrame({"request_id": ids[:4], "label": [0, 1, 0, 1]}).to_csv(root / "a.csv", index=False)
    pd.DataFrame({"request_id": ids[4:], "label": [1, 1, 0, 0]}).to_csv(root / "b.csv", index=False)
    config, dep = deployment(root)

    def labels_ingest(dep, config, file, now):  # the fraud model's classes, not loaded
        return ingest_labels(dep, config, file, classes=["0", "1"], now=now)

    first = labels_ingest(dep, config, root / "a.csv", now=NOW)
    second = labels_ingest(dep, config, root / "b.csv", now=NOW)  # the same ingest time
    again = labels_ingest(dep, config, root / "a.csv", now=NOW)  # the same file again

    assert (first.accepted, second.accepted) == (4, 4)
    assert first.stored != second.stored
    assert (again.accepted, again.already_stored, again.stored) == (0, 4, "")
    files = sorted((root / "outcomes").rglob("labels-*.parquet"))
    assert [config.rel(f) for f in files] == sorted([first.stored, second.stored])
    stored = stored_labels(label_settings(dep, config))
    assert sorted(stored["id"]) == sorted(ids)  # nothing lost, nothing counted twice
    assert dict(zip(stored["id"], stored["label"], strict=True))["r5"] == "1"

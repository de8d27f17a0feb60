"""The local canary's realized quality (issue 19 item 1, ``rollout.analysis.metrics.
realized_quality``): the quality job's join of captured predictions and stored labels,
for one model version since the canary started, on real capture files (the runtime's
CaptureWriter) and real label files (``labels ingest``); and what validate accepts and
refuses for it."""

from __future__ import annotations

import json
import threading
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import joblib
import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import accuracy_score, roc_auc_score
from support.monitor import NOW, deployment, fraud_repo

from reconciler.engine.canary import Analysis
from reconciler.engine.local import LocalEngine
from reconciler.flow import apply as apply_flow
from reconciler.flow.monitor import labels_ingest
from reconciler.monitor.quality import realized_metric
from reconciler.runtime.capture import CaptureWriter
from reconciler.spec.repo import load_all
from reconciler.spec.rollout import rollout_diagnostics

LABELS = "    labels: {sink: labels, max_delay: 2d}\n    quality: {min_accuracy: 0.8}\n"
ROLLOUT = "rollout: {strategy: canary, steps: [10, 50, 100], step: 0}"
REALIZED = (
    "rollout: {strategy: canary, steps: [50, 100], analysis: {interval_seconds: 10, "
    "pause_seconds: 60, metrics: {realized_quality: {metric: accuracy, min: 0.9}}}}"
)


def _repo(tmp_path: Path) -> Path:
    return fraud_repo(
        tmp_path,
        lambda t: t.replace("    on_drift: retrain\n", LABELS).replace(ROLLOUT, REALIZED),
    )


def test_realized_metric_joins_only_the_new_versions_predictions_since_the_start(tmp_path):
    root = _repo(tmp_path)
    config, dep = deployment(root)
    holdout = pd.read_parquet(root / "examples/fraud/holdout.parquet")
    x = holdout.drop(columns="target").to_numpy(dtype=np.float32)
    model = joblib.load(root / "examples/fraud/model.joblib")
    proba = model.predict_proba(x)
    pred = proba.argmax(axis=1)
    since = NOW - timedelta(minutes=30)
    writer = CaptureWriter(root / ".modelops/capture", "fraud-detector", "staging", 1.0)
    for i in range(len(x)):
        # the canary (2.0.0): the real model's answers after the start; the stable version
        # (1.0.0) on the same rows answers the opposite class; 2.0.0's answers before the
        # start (an earlier canary) are flipped too: neither may count
        ts = since + timedelta(seconds=i + 1)
        writer.submit(f"c{i}", "2.0.0", 2.0, [x[i].tolist()], [int(pred[i])], ts,
                      [proba[i].tolist()])  # fmt: skip
        writer.submit(f"s{i}", "1.0.0", 2.0, [x[i].tolist()], [int(1 - pred[i])], ts,
                      [proba[i][::-1].tolist()])  # fmt: skip
        writer.submit(f"e{i}", "2.0.0", 2.0, [x[i].tolist()], [int(1 - pred[i])],
                      since - timedelta(minutes=1))  # fmt: skip
    writer.close()

    # labels for the first 40 canary rows only, then for the rest: each read sees the
    # labels stored so far
    y = holdout["target"].to_numpy()
    ids = [f"{p}{i}" for i in range(len(x)) for p in "cse"]
    labels = pd.DataFrame({"request_id": ids, "label": np.repeat(y, 3)})
    first = labels[labels["request_id"].isin([f"c{i}" for i in range(40)])]
    first.to_csv(root / "first.csv", index=False)
    assert labels_ingest(dep, config, root / "first.csv", now=NOW).accepted == 40

    early = realized_metric(dep, config, "accuracy", "2.0.0", since, NOW)
    assert early["n"] == 40
    assert early["value"] == pytest.approx(accuracy_score(y[:40], pred[:40]))

    labels.to_csv(root / "all.csv", index=False)
    labels_ingest(dep, config, root / "all.csv", now=NOW)
    full = realized_metric(dep, config, "accuracy", "2.0.0", since, NOW)
    assert full["n"] == len(x)
    assert full["value"] == pytest.approx(accuracy_score(y, pred)) and full["value"] > 0.9
    stable = realized_metric(dep, config, "accuracy", "1.0.0", since, NOW)
    assert stable["value"] == pytest.approx(1 - accuracy_score(y, pred))
    auc = realized_metric(dep, config, "roc_auc", "2.0.0", since, NOW)
    assert auc["value"] == pytest.approx(
        roc_auc_score(y, proba[:, 1]), abs=1e-6
    )  # metrics are rounded to 6 places
    stable_auc = realized_metric(dep, config, "roc_auc", "1.0.0", since, NOW)
    assert stable_auc["value"] == pytest.approx(
        1 - auc["value"], abs=1e-6
    )  # metrics are rounded to 6 places
    # a version nothing captured: nothing joined
    assert realized_metric(dep, config, "accuracy", "3.0.0", since, NOW)["n"] == 0

    # the spec above is valid for the local target (staging: deployment() asserted no
    # error), and refused where the target cannot join labels, at its line
    assert [d for d in rollout_diagnostics(dep) if d.severity == "error"] == []
    prod = load_all(config, ["fraud-detector"], "prod")
    (err,) = [d for d in prod.errors if d.field.endswith("realized_quality")]
    assert str(err).startswith("specs/fraud-detector.yaml:44:")
    assert "metric realized_quality cannot be measured on a kubernetes target" in err.message
    assert "targets that can: local [env prod]" in err.message


class _Metadata(BaseHTTPRequestHandler):
    """A test-only stand-in for the stable Bento's ``GET /metadata`` (model version 1.0.0)."""

    def do_GET(self):  # noqa: N802 - http.server's name
        body = json.dumps({"model_version": "1.0.0"}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def test_the_apply_flow_reads_the_new_versions_realized_quality(tmp_path):
    """The reader the apply flow gives the local engine (the join above, the classes read
    once from the model), and the engine's guard: the canary's predictions are told apart
    by model.version, so a version equal to the stable server's is never judged."""
    root = _repo(tmp_path)
    config, dep = deployment(root)
    model = joblib.load(root / "examples/fraud/model.joblib")
    holdout = pd.read_parquet(root / "examples/fraud/holdout.parquet").iloc[:40]
    x = holdout.drop(columns="target").to_numpy(dtype=np.float32)
    pred = model.predict(x)
    since = NOW - timedelta(minutes=5)
    writer = CaptureWriter(root / ".modelops/capture", "fraud-detector", "staging", 1.0)
    for i in range(len(x)):
        writer.submit(f"c{i}", "1.0.0", 2.0, [x[i].tolist()], [int(pred[i])],
                      since + timedelta(seconds=i + 1))  # fmt: skip
    writer.close()
    labels = pd.DataFrame({"request_id": [f"c{i}" for i in range(len(x))], "label": 1})
    labels.to_csv(root / "labels.csv", index=False)
    labels_ingest(dep, config, root / "labels.csv", now=NOW)

    read = apply_flow._realized_reader(config)
    got = read(dep, "1.0.0", since)
    assert got["n"] == len(x) and got["value"] == pytest.approx(float((pred == 1).mean()))

    engine = LocalEngine(config)
    analysis = Analysis.of(dep)
    assert analysis.realized_quality == ("accuracy", 0.9, 30)
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Metadata)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    stable_url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        assert engine._realized(dep, stable_url, analysis) == (
            None, "nothing reads labels in this run"
        )  # fmt: skip
        engine.realized_quality = read
        reader, why = engine._realized(dep, stable_url, analysis)  # the spec says 1.0.0 too
        assert reader is None and "both are model.version '1.0.0'" in why
        new = deployment_with_version(root, "1.1.0")
        reader, why = engine._realized(new, stable_url, analysis)
        assert why == "" and reader() == {"metric": "accuracy", "value": None, "n": 0}
    finally:
        server.shutdown()


def deployment_with_version(root: Path, version: str):
    path = root / "specs/fraud-detector.yaml"
    path.write_text(path.read_text().replace('version: "1.0.0"', f'version: "{version}"', 1))
    return deployment(root)[1]

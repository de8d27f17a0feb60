"""``modelops monitor shadow``: the shadow report of a shadow rollout from the capture.

Real parts: the diabetes-progression spec repository (prod on SageMaker, turned into a
shadow rollout), Parquet capture files written by the runtime's own CaptureWriter for both
versions (stable 0.9.0, shadow 1.0.0 = spec.model.version) and shipped by its
CaptureShipper to the spec's s3:// sink, and the CLI in process. S3 is moto's server on
loopback (a fake, named as such: no AWS here). No model is served: the captured answers
are given.
"""

from __future__ import annotations

import json
from pathlib import Path

from support.cli import invoke
from support.repo import make_repo

from reconciler.runtime.capture import CaptureShipper, CaptureWriter, resolve_sink

SHADOW_PROD = (
    "    prod:\n      target:\n        rollout: {strategy: shadow, shadow: {sample_percent: 20}}\n"
)
SINK = "s3://clinical-ml-capture/diabetes"  # the spec's capture sink (format: parquet)
ARGS = ("monitor", "shadow", "diabetes-progression", "--env", "prod")


def _repo(tmp_path: Path, shadow: bool = True) -> Path:
    edit = (lambda t: t.replace("    prod: {}\n", SHADOW_PROD)) if shadow else None
    return make_repo(
        tmp_path / "repo", specs=["diabetes-progression"], examples=["diabetes"], edit=edit
    ).root


def _capture(root: Path, version: str, answers: list[int], latency_ms: float, s3) -> None:
    """One request of two rows per pair of answers, request ids shared by both versions,
    shipped to the fake S3 as the service ships them."""
    spool, _ = resolve_sink(SINK, root)
    shipper = CaptureShipper(spool, SINK, client=s3)
    writer = CaptureWriter(
        spool, "diabetes-progression", "prod", 1.0, fmt="parquet", on_close=shipper.ship
    )
    for i in range(0, len(answers), 2):
        outs = answers[i : i + 2]
        probs = [[0.9, 0.1] if y == 0 else [0.2, 0.8] for y in outs]
        writer.submit(f"q{i}", version, latency_ms, [[0.0], [1.0]], outs, probabilities=probs)
    writer.close()
    shipper.close()
    assert shipper.shipped == 1 and not list(spool.rglob("capture-*"))


def test_an_agreeing_shadow_is_promoted_and_a_disagreeing_one_dropped(tmp_path, fake_s3):
    fake_s3.create_bucket(Bucket="clinical-ml-capture")
    root = _repo(tmp_path)
    stable = [i % 2 for i in range(600)]
    _capture(root, "0.9.0", stable, 4.0, fake_s3)
    _capture(root, "1.0.0", stable, 5.0, fake_s3)

    code, out, err = invoke(root, *ARGS)
    assert code == 0, out + err
    assert "shadow 1.0.0 vs stable 0.9.0: 300 joined requests (600 rows)" in out
    assert "label agreement: 100.00%" in out
    assert "diabetes-progression-prod: shadow 1.0.0: PROMOTE" in out

    _capture(root, "1.1.0", [1 - y for y in stable], 5.0, fake_s3)  # another shadow
    code, out, err = invoke(
        root, *ARGS, "--shadow", "1.1.0", "--stable", "0.9.0", "--format", "json"
    )
    assert code == 1, out + err
    doc = json.loads(out)
    assert (doc["verdict"], doc["agreement"], doc["rows"]) == ("drop", 0.0, 600)
    assert "agreement 0.00% below 95.00%" in doc["reasons"][0]


def test_no_verdict_is_exit_2_too_few_rows_a_single_version_or_no_shadow_rollout(tmp_path, fake_s3):
    fake_s3.create_bucket(Bucket="clinical-ml-capture")
    root = _repo(tmp_path)
    _capture(root, "1.0.0", [0, 1] * 10, 5.0, fake_s3)
    code, out, err = invoke(root, *ARGS)
    assert code == 2
    assert "no captured request of a version other than the shadow 1.0.0" in out + err

    _capture(root, "0.9.0", [0, 1] * 10, 4.0, fake_s3)
    code, out, err = invoke(root, *ARGS)
    assert code == 2, out + err  # insufficient data is no verdict, never promote
    assert "INSUFFICIENT DATA" in out and "20 joined rows, fewer than 400" in out

    canary = _repo(tmp_path / "canary", shadow=False)
    code, out, err = invoke(canary, *ARGS)
    assert code == 2
    assert "diabetes-progression.yaml:" in out + err and "spec.target.rollout.strategy" in out + err

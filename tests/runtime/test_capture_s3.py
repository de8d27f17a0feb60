"""Traffic capture to an ``s3://`` sink.

S3 cannot be reached from this machine, so S3 is moto's fake (named as such): in-process
(``mock_aws``) for the writer and shipper units, and moto's threaded HTTP server
(``ThreadedMotoServer`` on loopback, reached through ``AWS_ENDPOINT_URL``) for the served
Bento, which uploads from its own worker process with plain boto3. Everything else is
real: the writer thread, the files, the BentoML build and ``bentoml serve``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import boto3
import httpx
import pytest
import yaml
from moto import mock_aws
from support.monitor import NOW, deployment, fraud_repo, reference
from support.waiting import HANG_GUARD_S, wait_for

from reconciler.runtime.capture import CaptureShipper, CaptureWriter
from reconciler.runtime.uris import parse_s3_uri

BUCKET = "capture-bucket"


@pytest.fixture
def fake_s3(monkeypatch):
    """moto's in-process fake S3 (no AWS here) with dummy credentials."""
    for key, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    with mock_aws():
        yield boto3.client("s3", region_name="us-east-1")


def objects(client, prefix: str = "") -> dict[str, bytes]:
    listing = client.list_objects_v2(Bucket=BUCKET, Prefix=prefix)
    return {
        o["Key"]: client.get_object(Bucket=BUCKET, Key=o["Key"])["Body"].read()
        for o in listing.get("Contents", [])
    }


def records(n: int, writer: CaptureWriter, start: int = 0) -> None:
    for i in range(start, start + n):
        assert writer.submit(f"req-{i}", "1.0.0", 1.5, [[float(i), 2.0]], [i % 2])


def test_closed_files_reach_s3_in_the_layout_the_monitoring_job_reads(fake_s3, tmp_path):
    fake_s3.create_bucket(Bucket=BUCKET)
    spool = tmp_path / "spool" / BUCKET / "team/capture"
    shipper = CaptureShipper(spool, f"s3://{BUCKET}/team/capture/", retry_s=0.1, client=fake_s3)
    writer = CaptureWriter(
        spool,
        "fraud-detector",
        "prod",
        sample_rate=1.0,
        flush_interval_s=0.05,
        max_file_age_s=1.0,  # far longer than the writer needs for 3 queued records
        on_close=shipper.ship,
    )
    records(3, writer)
    # idle past max_file_age_s: the first file is closed and shipped (waited for, not slept)
    wait_for(lambda: shipper.shipped == 1, "the first file to be closed and shipped")
    records(2, writer, start=3)
    writer.close(timeout_s=HANG_GUARD_S)
    shipper.close(timeout_s=HANG_GUARD_S)

    stored = objects(fake_s3, "team/capture/fraud-detector/prod/")
    assert len(stored) == 2, sorted(stored)
    for key in stored:
        parts = key.split("/")
        assert parts[:4] == ["team", "capture", "fraud-detector", "prod"]
        time.strptime(parts[4], "%Y-%m-%d")
        assert f"-{os.getpid()}-{writer.writer_id}-" in parts[5] and parts[5].endswith(".jsonl")
    lines = [json.loads(line) for body in stored.values() for line in body.splitlines()]
    assert sorted(r["request_id"] for r in lines) == [f"req-{i}" for i in range(5)]
    assert shipper.shipped == 2 and shipper.errors == 0
    assert not list(spool.rglob("capture-*"))  # shipped files leave the spool


def test_a_failed_upload_keeps_the_file_and_is_retried(fake_s3, tmp_path):
    spool = tmp_path / "spool"
    shipper = CaptureShipper(spool, f"s3://{BUCKET}", retry_s=60, client=fake_s3)
    writer = CaptureWriter(spool, "d", "staging", sample_rate=1.0, on_close=shipper.ship)
    records(1, writer)
    writer.close(timeout_s=HANG_GUARD_S)  # closes the file: the upload fails, no bucket yet
    wait_for(lambda: shipper.errors > 0, "the failed upload")
    assert shipper.errors >= 1 and "NoSuchBucket" in shipper.last_error
    assert f"s3://{BUCKET}/d/staging/" in shipper.last_error
    assert len(list(spool.rglob("capture-*.jsonl"))) == 1  # kept for the retry

    fake_s3.create_bucket(Bucket=BUCKET)
    shipper.close(timeout_s=HANG_GUARD_S)  # retries what failed before stopping
    assert shipper.shipped == 1
    assert len(objects(fake_s3, "d/staging/")) == 1
    assert not list(spool.rglob("capture-*"))


def test_files_left_by_a_dead_process_are_shipped_at_start(fake_s3, tmp_path):
    fake_s3.create_bucket(Bucket=BUCKET)
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    spool = tmp_path / "spool"
    day = spool / "d" / "prod" / "2026-11-28"
    day.mkdir(parents=True)
    (day / f"capture-{gone.pid}-1.jsonl").write_text('{"request_id": "old"}\n')
    (day / f"capture-{os.getpid()}-9.jsonl").write_text('{"request_id": "mine"}\n')
    shipper = CaptureShipper(spool, f"s3://{BUCKET}/p", client=fake_s3)
    shipper.close(timeout_s=HANG_GUARD_S)
    assert list(objects(fake_s3)) == [f"p/d/prod/2026-11-28/capture-{gone.pid}-1.jsonl"]
    assert (day / f"capture-{os.getpid()}-9.jsonl").exists()  # a live writer's file stays


def test_a_file_of_an_earlier_process_with_this_pid_is_shipped_at_start(fake_s3, tmp_path):
    """A restarted container is pid 1 again: its spool holds files of "its own" pid that
    no live writer owns; they are shipped, an open writer's file is not."""
    fake_s3.create_bucket(Bucket=BUCKET)
    spool = tmp_path / "spool"
    live = CaptureWriter(spool, "d", "prod", sample_rate=1.0)
    records(1, live)
    wait_for(lambda: live.written == 1, "the live writer's record")
    mine = next(spool.rglob("capture-*.jsonl"))
    day = mine.parent
    earlier = f"capture-20261128T000000000000Z-{os.getpid()}-0123456789ab-000001.jsonl"
    (day / earlier).write_text('{"request_id": "before the restart"}\n')
    shipper = CaptureShipper(spool, f"s3://{BUCKET}", client=fake_s3)
    shipper.close(timeout_s=HANG_GUARD_S)
    assert list(objects(fake_s3)) == [f"d/prod/{day.name}/{earlier}"]
    assert mine.exists()  # the open writer's file stays in the spool
    live.close(timeout_s=HANG_GUARD_S)


@pytest.mark.parametrize(
    "uri",
    [
        "s3://",
        "s3:///key",
        "s3://Upper/x",
        "s3://ab",
        "https://bucket/x",
        "s3:/b/x",
        "s3://bucket/../../etc",
        "s3://10.0.0.1/x",
    ],
)
def test_malformed_s3_uris_are_refused(uri):
    with pytest.raises(ValueError, match="is not a valid S3 URI: .*; expected s3://<bucket>/<key>"):
        parse_s3_uri(uri)


def test_parse_s3_uri():
    assert parse_s3_uri("s3://my-bucket.eu/a/b/") == ("my-bucket.eu", "a/b")
    assert parse_s3_uri("s3://my-bucket") == ("my-bucket", "")


@pytest.mark.slow
def test_served_bento_uploads_captured_traffic_to_s3(spec_repo, monkeypatch):
    from moto.server import ThreadedMotoServer

    from reconciler.build.bento import build
    from reconciler.build.serve import free_port, start_server, stop_server
    from reconciler.core.config import load_config
    from reconciler.spec.repo import load_all

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port)
    server.start()
    try:
        endpoint = f"http://127.0.0.1:{port}"
        for key, value in {
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_ENDPOINT_URL": endpoint,  # the served Bento's boto3 goes to the fake
            "MODELOPS_CAPTURE_FILE_AGE_S": "0.5",
        }.items():
            monkeypatch.setenv(key, value)
        client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
        client.create_bucket(Bucket=BUCKET)

        root = spec_repo
        spec_path = root / "specs/fraud-detector.yaml"
        doc = yaml.safe_load(spec_path.read_text())
        doc["spec"]["monitoring"]["capture"].update(
            sample_rate=1.0, sink=f"s3://{BUCKET}/captured", format="jsonl"
        )
        spec_path.write_text(yaml.safe_dump(doc, sort_keys=False))
        config = load_config(root)
        loaded = load_all(config, ["fraud-detector"], "staging")
        assert not loaded.errors, loaded.errors
        artifact = build(loaded.deployments[0], config)
        monkeypatch.setenv("MODELOPS_REPO_ROOT", str(root))
        handle = start_server(artifact, config, timeout_s=90, workers=1)
        try:
            row = json.loads((root / "examples/fraud/request.json").read_text())["instances"][0]
            for _ in range(5):
                resp = httpx.post(handle.url + "/predict", json={"instances": [row]}, timeout=30)
                assert resp.status_code == 200
            deadline = time.monotonic() + HANG_GUARD_S
            stored: dict = {}
            while time.monotonic() < deadline:
                listing = client.list_objects_v2(Bucket=BUCKET, Prefix="captured/")
                stored = {o["Key"] for o in listing.get("Contents", [])}
                if stored:
                    break
                time.sleep(0.25)
            stats = httpx.get(handle.url + "/metadata", timeout=10).json()["capture_stats"]
        finally:
            stop_server(handle)
    finally:
        server.stop()
    assert stored, f"nothing reached S3; capture stats: {stats}"
    assert all(k.startswith("captured/fraud-detector/staging/") for k in stored)
    assert stats["shipped"] >= 1 and stats["ship_errors"] == 0


def _s3_sink_repo(tmp_path: Path, sink: str):
    root = fraud_repo(
        tmp_path, lambda text: text.replace("sink: .modelops/capture", f"sink: {sink}")
    )
    return root, *deployment(root)


def _capture_to(spool: Path, shipper, frame, when) -> tuple[int, int]:
    """The monitoring tests' capture (real CaptureWriter), shipped when ``shipper``;
    returns (requests, files): one file per UTC day the timestamps fall on (two when the
    test runs just after midnight)."""
    import numpy as np

    writer = CaptureWriter(
        spool,
        "fraud-detector",
        "staging",
        1.0,
        on_close=shipper.ship if shipper else None,
    )
    rows = frame.to_numpy(dtype=np.float64)
    days = set()
    for i, start in enumerate(range(0, len(rows), 8)):
        ts = when - timedelta(minutes=1) - timedelta(seconds=len(rows) - start)
        days.add(ts.date())
        chunk = rows[start : start + 8].tolist()
        writer.submit(f"r{i}", "1.0.0", 2.5, chunk, [0] * len(chunk), timestamp=ts)
    writer.close(timeout_s=HANG_GUARD_S)
    if shipper:
        shipper.close(timeout_s=HANG_GUARD_S)
    return -(-len(rows) // 8), len(days)


def test_drift_job_reads_the_capture_the_service_shipped_to_s3(fake_s3, tmp_path):
    from reconciler.monitor.drift import run_drift
    from reconciler.monitor.traffic import shifted
    from reconciler.runtime.capture import resolve_sink

    fake_s3.create_bucket(Bucket=BUCKET)
    sink = f"s3://{BUCKET}/cap"
    root, config, dep = _s3_sink_repo(tmp_path, sink)
    spool, _ = resolve_sink(sink, root)
    shipper = CaptureShipper(spool, sink, client=fake_s3)
    requests, files = _capture_to(spool, shipper, shifted(reference(), seed=1), NOW)
    assert not list(spool.rglob("capture-*"))  # everything went to S3

    result = run_drift(dep, config, now=NOW)

    assert result.drifted and result.requests == requests
    read = f"read {files} capture file(s) from {sink}/fraud-detector/"
    assert any(read in n for n in result.notes), result.notes
    cached = list((config.state_dir / "capture-cache").rglob("capture-*.jsonl"))
    assert len(cached) == files  # downloaded once into the state directory


def test_drift_job_falls_back_to_the_spool_when_s3_cannot_be_read(fake_s3, tmp_path):
    from reconciler.monitor.drift import run_drift
    from reconciler.runtime.capture import resolve_sink

    sink = f"s3://{BUCKET}/cap"  # the bucket does not exist on the fake: S3 says no
    root, config, dep = _s3_sink_repo(tmp_path, sink)
    spool, _ = resolve_sink(sink, root)
    requests, files = _capture_to(spool, None, reference(), NOW)  # not shipped yet

    result = run_drift(dep, config, now=NOW)

    assert not result.drifted and result.requests == requests
    note = next(n for n in result.notes if "could not be read" in n)
    assert "NoSuchBucket" in note and f"read only the local spool ({files} file(s))" in note

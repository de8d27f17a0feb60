"""Labels on an ``s3://`` sink: ``labels ingest`` stores them by day under the prefix (the
directory sink's layout and files) and the quality job joins them from there.

S3 cannot be reached from this machine, so S3 is moto's fake (named as such): its HTTP
server on loopback, reached by the CLI's own boto3 through ``AWS_ENDPOINT_URL``. The
spec repository, the capture files (the runtime's CaptureWriter), the label files, the
fraud model and the quality job are real; no Bento is served.
"""

from __future__ import annotations

import io
import json
from datetime import timedelta
from pathlib import Path

import pandas as pd
import pytest
from support.cli import invoke
from support.monitor import NOW, capture, deployment, fraud_repo, reference

from reconciler.flow.monitor import labels_ingest, quality_run
from reconciler.monitor.data import MonitorInputError
from reconciler.monitor.s3 import put_objects
from reconciler.state.ledger import Ledger

BUCKET = "label-bucket"
SINK = f"s3://{BUCKET}/outcomes"


def _repo(tmp_path: Path, sink: str = SINK) -> Path:
    labels = f"    labels: {{sink: {sink}, max_delay: 2d}}\n    quality: {{min_accuracy: 0.8}}\n"
    return fraud_repo(tmp_path, lambda t: t.replace("    on_drift: retrain\n", labels))


def _keys(client) -> list[str]:
    listing = client.list_objects_v2(Bucket=BUCKET)
    return sorted(o["Key"] for o in listing.get("Contents", []))


def test_labels_ingested_to_s3_are_stored_by_day_and_joined_by_the_quality_job(fake_s3, tmp_path):
    fake_s3.create_bucket(Bucket=BUCKET)
    root = _repo(tmp_path)
    capture(root, reference().iloc[:64], when=NOW - timedelta(hours=1), batch=1)
    ids = [f"r{i}" for i in range(64)]  # support.monitor.capture's request ids, one row each
    labels = pd.DataFrame({"request_id": [*ids, "nobody"], "label": [0] * 24 + [1] * 41})
    labels.to_csv(root / "outcomes.csv", index=False)

    code, out, err = invoke(
        root, "labels", "ingest", "fraud-detector", "--env", "staging",
        str(root / "outcomes.csv"), "--format", "json",
    )  # fmt: skip

    assert code == 1, out + err  # one row rejected: exit 1, as for a directory sink
    doc = json.loads(out)
    assert (doc["accepted"], doc["rejected"]) == (64, {"unknown_id": 1})
    base = f"outcomes/fraud-detector/staging/{NOW:%Y-%m-%d}/"
    keys = _keys(fake_s3)
    assert [k.rsplit("/", 1)[0] + "/" for k in keys] == [base, base]
    stored = next(k for k in keys if k.rsplit("/", 1)[1].startswith("labels-"))
    rejected = next(k for k in keys if k.rsplit("/", 1)[1].startswith("rejected-"))
    assert (doc["stored"], doc["rejected_file"]) == (
        f"s3://{BUCKET}/{stored}",
        f"s3://{BUCKET}/{rejected}",
    )
    frame = pd.read_parquet(
        io.BytesIO(fake_s3.get_object(Bucket=BUCKET, Key=stored)["Body"].read())
    )
    assert list(frame.columns) == ["id", "label", "received_at"] and len(frame) == 64
    row = json.loads(fake_s3.get_object(Bucket=BUCKET, Key=rejected)["Body"].read())
    assert (row["id"], row["reason"]) == ("nobody", "unknown_id")
    assert not (root / "outcomes").exists()  # nothing written into the repository

    config, dep = deployment(root)
    again = labels_ingest(dep, config, root / "outcomes.csv", now=NOW)  # read back from S3
    assert (again.accepted, again.already_stored) == (0, 64)

    result = quality_run(dep, config, now=NOW)

    assert result.labelled == 64 and result.predictions == 64
    assert result.metrics["accuracy"]["value"] == pytest.approx(24 / 64)  # outputs are 0
    assert result.verdict == "quality alert"  # below min_accuracy 0.8


def test_a_missing_bucket_is_exit_2_naming_the_uri_and_nothing_is_written(fake_s3, tmp_path):
    root = _repo(tmp_path)  # the bucket is not created on the fake: S3 says NoSuchBucket
    capture(root, reference().iloc[:8], when=NOW - timedelta(hours=1), batch=1)
    pd.DataFrame({"request_id": ["r0"], "label": [0]}).to_csv(root / "o.csv", index=False)

    code, out, err = invoke(
        root, "labels", "ingest", "fraud-detector", "--env", "staging", str(root / "o.csv")
    )

    assert code == 2, out + err
    assert f"{SINK}/fraud-detector/staging/: labels cannot be read: " in err
    assert "NoSuchBucket" in err and "Traceback" not in out + err
    config, dep = deployment(root)
    entry = Ledger(config.state_dir).get("fraud-detector", "staging").history[-1]
    assert (entry["action"], entry["result"]) == ("labels", "failed")
    with pytest.raises(MonitorInputError, match="labels cannot be read"):
        quality_run(dep, config, now=NOW)
    fake_s3.create_bucket(Bucket=BUCKET)
    assert _keys(fake_s3) == []


def test_a_refused_write_leaves_no_object_of_the_set_behind(fake_s3):
    fake_s3.create_bucket(Bucket=BUCKET)

    class RefusesSecond:
        """The fake's client, refusing the second PutObject (as a denied key would)."""

        def __init__(self):
            self.puts = 0

        def put_object(self, **kw):
            self.puts += 1
            if self.puts == 2:
                raise PermissionError("AccessDenied")
            return fake_s3.put_object(**kw)

        def delete_object(self, **kw):
            return fake_s3.delete_object(**kw)

    with pytest.raises(PermissionError):
        put_objects(SINK, {"d/labels-1.parquet": b"x", "d/rejected-1.jsonl": b"y"}, RefusesSecond())
    assert _keys(fake_s3) == []


@pytest.mark.parametrize(
    ("sink", "said"),
    [
        ("s3://Bad_Bucket/x", "is not a valid S3 bucket name"),
        ("gs://labels/x", "URI"),
    ],
)
def test_validate_accepts_an_s3_label_sink_and_refuses_bad_ones(tmp_path, sink, said):
    good = _repo(tmp_path / "good")
    code, out, err = invoke(good, "validate")
    assert code == 0, out + err

    bad = _repo(tmp_path / "bad", sink)
    code, out, err = invoke(bad, "validate")
    assert code == 1, out + err
    assert "spec.monitoring.labels.sink" in out + err and said in out + err

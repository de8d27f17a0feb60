"""``target.platform: edge`` through plan, apply, status and destroy on real Git
repositories: the real edge build (skl2onnx, ONNX Runtime) and the edge engine
publishing to a repository directory, or to S3 served by moto's server on loopback (a
fake named as such: S3 cannot be reached from here)."""

from __future__ import annotations

import hashlib
import json
import re

import pytest
from support.cli import invoke
from support.repo import make_repo

from reconciler.core.config import load_config
from reconciler.state.ledger import Ledger

pytestmark = pytest.mark.slow  # ONNX exports and edge bundle builds

EDGE = "examples/edge/fraud-edge.yaml"
DEST = "dist/edge-bundles/fraud-edge/staging"


def _edge_repo(tmp_path, edits: dict[str, str] | None = None):
    """A Git repository with the example edge spec in specs/ (latency budget relaxed to
    1 s: these tests are about publishing, not speed) and no other spec."""
    repo = make_repo(tmp_path / "repo", specs=(), examples=["fraud", "edge"], git=True)
    text = (repo.root / EDGE).read_text().replace("max_p99_ms: 5", "max_p99_ms: 1000")
    for old, new in (edits or {}).items():
        assert old in text, old
        text = text.replace(old, new)
    repo.write("specs/fraud-edge.yaml", text)
    repo.commit("an edge deployment")
    return repo


def test_apply_publishes_the_bundle_status_lists_it_reapply_is_a_no_op_destroy_removes_it(
    tmp_path,
):
    repo = _edge_repo(tmp_path)
    code, out, err = invoke(repo.root, "plan", "--env", "staging")
    assert code == 0, out + err
    assert "+ create  modelops:edge:Bundle fraud-edge" in out

    code, out, err = invoke(repo.root, "apply", "--env", "staging")
    assert code == 0, out + err
    pointer = json.loads((repo.root / DEST / "current.json").read_text())
    tarball = repo.root / DEST / pointer["bundle"]
    assert hashlib.sha256(tarball.read_bytes()).hexdigest() == pointer["sha256"]
    assert pointer["revision"] == repo.git.head.commit.hexsha
    assert pointer["device"] == {"arch": "arm64", "os": "linux", "runtime": "onnxruntime"}
    layout = repo.root / DEST / pointer["oci"]
    assert (layout / "blobs/sha256" / pointer["sha256"]).read_bytes() == tarball.read_bytes()

    record = Ledger(load_config(repo.root).state_dir).get("fraud-edge", "staging")
    assert record.platform == "edge" and record.artifact["edge"]["bundle"] == pointer["bundle"]
    code, out, _ = invoke(repo.root, "status", "--format", "json")
    (row,) = json.loads(out)
    assert row["bundle"] == pointer["bundle"]
    assert row["url"] == f"{DEST}/{pointer['bundle']}"

    # a commit that touches none of its inputs: the same bundle bytes (its manifest names
    # the spec revision, the last commit that changed the spec, model or parity data),
    # already published: nothing to do
    repo.write("README.md", "notes\n")
    repo.commit("unrelated")
    code, out, err = invoke(repo.root, "apply", "--env", "staging")
    assert code == 0 and "unchanged" in out, out + err

    # the plan's build line: the budget of the bundle in the ledger -> this build's
    code, out, err = invoke(repo.root, "plan", "--env", "staging", "--build")
    assert code == 0, out + err
    assert "no changes" in out  # the same bundle: nothing to publish
    # the same bundle, so the same size; the latency is measured again
    assert re.search(r"size (\d+) bytes -> \1 bytes \(max 65536\); p99 [\d.]+ ms -> ", out), out
    assert "parity on 206 rows" in out

    code, out, err = invoke(repo.root, "destroy", "--env", "staging", "fraud-edge")
    assert code == 0, out + err
    assert not (repo.root / DEST).exists()


def test_a_failed_edge_build_publishes_nothing_and_is_recorded(tmp_path):
    repo = _edge_repo(tmp_path, {"max_bytes: 65536": "max_bytes: 100"})
    code, out, err = invoke(repo.root, "apply", "--env", "staging")
    assert code == 3, out + err
    assert "above spec.edge.max_bytes 100" in out + err
    assert "nothing published" in out + err
    assert not (repo.root / "dist").exists()
    record = Ledger(load_config(repo.root).state_dir).get("fraud-edge", "staging")
    assert record.failures == 1 and record.lastAppliedRevision == ""
    # no server to smoke-test: said so, pointing at the build's parity and budget checks
    code, out, err = invoke(repo.root, "smoke", "fraud-edge", "--env", "staging")
    assert code == 2 and "an edge deployment has no server to smoke-test" in err


def test_apply_publishes_to_s3(tmp_path, fake_s3):
    fake_s3.create_bucket(Bucket="fleet-bundles")
    repo = _edge_repo(
        tmp_path,
        {
            "destination: dist/edge-bundles": "destination: s3://fleet-bundles/edge",
            "layout: oci": "layout: bundle",
        },
    )
    code, out, err = invoke(repo.root, "apply", "--env", "staging")
    assert code == 0, out + err
    prefix = "edge/fraud-edge/staging/"
    body = fake_s3.get_object(Bucket="fleet-bundles", Key=prefix + "current.json")["Body"]
    pointer = json.loads(body.read())
    blob = fake_s3.get_object(Bucket="fleet-bundles", Key=prefix + pointer["bundle"])["Body"]
    assert hashlib.sha256(blob.read()).hexdigest() == pointer["sha256"]
    code, out, _ = invoke(repo.root, "status", "--format", "json")
    (row,) = json.loads(out)
    assert row["url"] == f"s3://fleet-bundles/{prefix}{pointer['bundle']}"


def test_pr_plan_shows_the_budget_base_to_head_and_build_builds_the_bundle(tmp_path):
    repo = _edge_repo(tmp_path)
    spec = repo.root / "specs/fraud-edge.yaml"
    spec.write_text(spec.read_text().replace("quantization: none", "quantization: dynamic"))
    repo.commit("ask for int8 quantization")
    code, out, err = invoke(
        repo.root, "plan", "--base", "HEAD~1", "--head", "HEAD", "--env", "staging", "--build"
    )
    assert code == 0, out + err
    # both sides were built: the build line compares the base's bundle with the head's
    # int8 asked, nothing to quantize: the same model size on both sides
    assert re.search(r"size (\d+) bytes -> \1 bytes \(max 65536\); p99 [\d.]+ ms -> ", out), out
    assert "dynamic int8 quantization left the graph unchanged" in out

    code, out, err = invoke(repo.root, "build", "--env", "staging")
    assert code == 0, out + err
    assert "fraud-edge-staging: built edge bundle fraud-edge-" in out
    assert re.search(r"model\.onnx \d+ bytes, p99 [\d.]+ ms, parity max abs diff", out), out

"""Model sources (issue 14 item 1): ``spec.model.uri`` on S3 or in an MLflow registry.

Real parts: MLflow's own registry store on SQLite (``support.registry``), the spec
loader, the fetcher and its cache, the CLI, a Git repository, the Bento build and
``bentoml serve`` on loopback. S3 is moto's server on loopback, a FAKE named as such
(``support.s3``). End to end: ``plan`` shows and pins the version and digest an
alias resolves to, ``apply`` serves exactly that; after the alias moves, ``apply``
refuses (exit 3, recorded, the old server untouched) and the next plan shows the move.
Also the retraining of a registry model (issue 14 item 2): registered as a new version
and proposed as a pull request against a loopback GitHub API (``support.fake_github``, a
FAKE) from a real bare ``origin``. One file, so that one worker creates the registry
(its migrations take seconds).
"""

from __future__ import annotations

import json
import socket
from pathlib import Path

import git
import httpx
import joblib
import pytest
import yaml
from support.cli import invoke
from support.repo import make_repo, relax, replace_in_file
from support.retrain import SPEC, store_repo, training_data, weak_live_model, with_origin

from reconciler.build import fetch
from reconciler.build.fetch import FetchError, resolve_model
from reconciler.core.config import load_config
from reconciler.core.digests import file_sha256
from reconciler.flow.transient import is_transient
from reconciler.monitor.publish import EXPERIMENT
from reconciler.spec.repo import load_all
from reconciler.state.ledger import Ledger

FRAUD = Path(__file__).resolve().parents[2] / "examples" / "fraud" / "model.joblib"
DIABETES = Path(__file__).resolve().parents[2] / "examples" / "diabetes" / "model.joblib"
PINNED = 'sha256: "cc8cd22265aa7df3578322bf234a37cbbc80e683a07aafd1b290e0b9c8233267"'


def _repo(tmp_path: Path, uri: str, *, pinned: bool = False):
    """The fraud-detector spec with ``spec.model.uri: uri`` (digest pin kept or dropped)."""
    repo = make_repo(tmp_path / "repo", specs=["fraud-detector"], edit=relax, git=True)
    spec = repo.root / "specs" / "fraud-detector.yaml"
    replace_in_file(spec, "uri: examples/fraud/model.joblib", f"uri: {uri}")
    if not pinned:
        replace_in_file(spec, f"    {PINNED}\n", "")
    repo.commit("model from a registry")
    return repo


def _dep(root: Path, env: str = "staging"):
    config = load_config(root)
    loaded = load_all(config, ["fraud-detector"], env)
    assert not loaded.errors, [str(d) for d in loaded.errors]
    return loaded.deployments[0], config


@pytest.fixture(autouse=True)
def own_cache(tmp_path, monkeypatch):
    """A model cache of the test's own (the session's is content-addressed and shared)."""
    monkeypatch.setenv("MODELOPS_CACHE_DIR", str(tmp_path / "cache"))


@pytest.fixture
def registry(mlflow_registry, monkeypatch):
    """The session's real MLflow registry as the one code under test uses."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_registry.uri)
    monkeypatch.delenv("MLFLOW_REGISTRY_URI", raising=False)
    return mlflow_registry


def test_an_alias_resolves_to_its_version_fetched_once_and_moves(tmp_path, registry):
    v1 = registry.register("fraud-a", FRAUD, extra={"MLmodel": "flavors: {}\n"})
    v2 = registry.register("fraud-a", DIABETES)
    registry.alias("fraud-a", "champion", v1)
    repo = _repo(tmp_path, "models:/fraud-a@champion")
    dep, config = _dep(repo.root)

    first = resolve_model(dep, config)
    assert (first.kind, first.resolved, first.version) == ("mlflow", f"models:/fraud-a/{v1}", v1)
    assert first.sha256 == file_sha256(FRAUD) and first.fetched
    assert first.path.read_bytes() == FRAUD.read_bytes()  # the model file, not MLmodel
    assert first.path.is_relative_to(fetch.cache_root(config) / "sha256" / first.sha256)
    again = resolve_model(dep, config)
    assert not again.fetched and again.path == first.path  # fetched once

    registry.alias("fraud-a", "champion", v2)
    moved = resolve_model(dep, config)
    assert moved.resolved == f"models:/fraud-a/{v2}" and moved.sha256 == file_sha256(DIABETES)
    assert moved.to_dict() == {
        "uri": "models:/fraud-a@champion",
        "kind": "mlflow",
        "resolved": f"models:/fraud-a/{v2}",
        "version": v2,
        "sha256": file_sha256(DIABETES),
    }


def test_registry_errors_name_the_uri(tmp_path, registry, monkeypatch):
    registry.register("fraud-b", FRAUD)
    repo = _repo(tmp_path, "models:/fraud-b@nobody")
    dep, config = _dep(repo.root)
    with pytest.raises(FetchError) as missing:
        resolve_model(dep, config)
    assert "models:/fraud-b@nobody: not in the MLflow registry" in missing.value.message
    assert "fraud-detector.yaml:" in missing.value.message and missing.value.exit_code == 2

    with socket.socket() as sock:  # a port nothing listens on: the registry is down
        sock.bind(("127.0.0.1", 0))
        down = f"http://127.0.0.1:{sock.getsockname()[1]}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", down)
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    with pytest.raises(FetchError) as unreachable:
        resolve_model(dep, config)
    assert f"the MLflow registry {down} did not answer" in unreachable.value.message
    assert is_transient(unreachable.value)  # apply retries it; it never counts toward Stalled
    assert not is_transient(missing.value)
    # the commands: plan stops with exit 2, apply records a transient failure (exit 3)
    code, out, err = invoke(repo.root, "plan", "--env", "staging")
    assert code == 2 and f"models:/fraud-b@nobody: the MLflow registry {down}" in out + err
    code, out, err = invoke(repo.root, "apply", "--env", "staging")
    assert code == 3 and "did not answer" in out + err
    record = Ledger(config.state_dir).get("fraud-detector", "staging")
    assert record.failures == 0 and record.history[-1]["message"].startswith("transient: ")

    monkeypatch.delenv("MLFLOW_TRACKING_URI")
    with pytest.raises(FetchError) as unset:
        resolve_model(dep, config)
    assert "neither MLFLOW_REGISTRY_URI nor MLFLOW_TRACKING_URI" in unset.value.message


def test_a_version_with_two_model_files_is_refused(tmp_path, registry):
    version = registry.register("fraud-c", FRAUD, extra={"other.joblib": "x"})
    repo = _repo(tmp_path, f"models:/fraud-c/{version}")
    dep, config = _dep(repo.root)
    with pytest.raises(FetchError, match=r"holds 2 model files \(model.joblib, other.joblib\)"):
        resolve_model(dep, config)


def test_s3_model_fetched_once_digest_checked_and_missing_named(tmp_path, fake_s3):
    fake_s3.create_bucket(Bucket="models")
    fake_s3.put_object(Bucket="models", Key="fraud/model.joblib", Body=FRAUD.read_bytes())
    repo = _repo(tmp_path, "s3://models/fraud/model.joblib", pinned=True)
    dep, config = _dep(repo.root)
    first = resolve_model(dep, config)
    assert first.fetched and first.sha256 == file_sha256(FRAUD) and first.kind == "s3"
    fake_s3.delete_object(Bucket="models", Key="fraud/model.joblib")
    again = resolve_model(dep, config)  # pinned digest in the cache: no S3 call at all
    assert not again.fetched and again.path == first.path

    fake_s3.put_object(Bucket="models", Key="fraud/model.joblib", Body=DIABETES.read_bytes())
    for blob in fetch.cache_root(config).rglob("*"):
        if blob.is_file():
            blob.unlink()  # an empty cache: the object is fetched, and its digest differs
    with pytest.raises(FetchError) as mismatch:
        resolve_model(dep, config)
    assert "spec.model.sha256: model s3://models/fraud/model.joblib has sha256" in str(
        mismatch.value
    )

    replace_in_file(
        repo.root / "specs" / "fraud-detector.yaml", "fraud/model.joblib", "nope.joblib"
    )
    dep, config = _dep(repo.root)
    with pytest.raises(FetchError, match=r"s3://models/nope.joblib does not exist"):
        resolve_model(dep, config)


def test_s3_error_messages_by_kind():
    from botocore.exceptions import ClientError, NoCredentialsError

    def client_error(code: str) -> ClientError:
        return ClientError({"Error": {"Code": code, "Message": code}}, "GetObject")

    uri = "s3://models/m.joblib"
    assert "access denied" in fetch._s3_problem(uri, client_error("403"))
    assert "bucket does not exist" in fetch._s3_problem(uri, client_error("NoSuchBucket"))
    assert "no AWS credentials" in fetch._s3_problem(uri, NoCredentialsError())


@pytest.mark.parametrize(
    ("uri", "said"),
    [
        ("models:/fraud/latest", "'latest' and stages do not name one version"),
        ("models:/fraud", "names no registered model with an alias or a version"),
        ("gs://bucket/model.joblib", "gs: model URIs are not fetched by the build"),
        ("s3://models", "names a bucket, not the model object"),
    ],
)
def test_validate_refuses_model_uris_the_build_cannot_fetch(tmp_path, uri, said):
    repo = _repo(tmp_path, uri)
    result = invoke(repo.root, "validate", "--format", "json")
    assert result.returncode == 1, result.stderr
    found = [f for f in json.loads(result.stdout)["findings"] if f["field"] == "spec.model.uri"]
    assert found and said in found[0]["message"], found


@pytest.mark.slow
def test_alias_pinned_by_plan_served_by_apply_and_a_move_is_refused_then_shown(
    tmp_path, mlflow_registry, monkeypatch
):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_registry.uri)
    monkeypatch.setenv("MODELOPS_CACHE_DIR", str(tmp_path / "cache"))
    retrained = tmp_path / "retrained" / "model.joblib"  # same model, other bytes
    retrained.parent.mkdir()
    joblib.dump(joblib.load(FRAUD), retrained, compress=3)
    v1 = mlflow_registry.register("fraud-flow", FRAUD)
    v2 = mlflow_registry.register("fraud-flow", retrained)
    mlflow_registry.alias("fraud-flow", "champion", v1)
    repo = make_repo(tmp_path / "repo", specs=["fraud-detector"], edit=relax, git=True)
    spec = repo.root / "specs" / "fraud-detector.yaml"
    replace_in_file(spec, "uri: examples/fraud/model.joblib", "uri: models:/fraud-flow@champion")
    replace_in_file(spec, f"    {PINNED}\n", "")
    repo.commit("the model comes from the registry")
    old_sha, new_sha = file_sha256(FRAUD), file_sha256(retrained)
    ledger = Ledger(load_config(repo.root).state_dir)

    code, out, err = invoke(repo.root, "plan", "--env", "staging")
    assert code == 0, out + err
    assert f"models:/fraud-flow@champion = models:/fraud-flow/{v1} {old_sha[:12]}" in out
    assert ledger.pin("fraud-detector", "staging")["resolved"] == f"models:/fraud-flow/{v1}"
    try:
        code, out, err = invoke(repo.root, "apply", "--env", "staging")
        assert code == 0, out + err
        record = ledger.get("fraud-detector", "staging")
        assert record.artifact["model_source"] == {
            "uri": "models:/fraud-flow@champion",
            "kind": "mlflow",
            "resolved": f"models:/fraud-flow/{v1}",
            "version": v1,
            "sha256": old_sha,
        }
        url = record.outputs["url"]
        meta = httpx.get(f"{url}/metadata", timeout=30).json()
        assert meta["model"]["sha256"] == old_sha  # the served model is the pinned one

        mlflow_registry.alias("fraud-flow", "champion", v2)
        code, out, err = invoke(repo.root, "apply", "--env", "staging")
        assert code == 3, out + err
        assert "models:/fraud-flow@champion moved since the plan: the plan showed " in out + err
        assert f"models:/fraud-flow/{v2}" in out + err
        record = ledger.get("fraud-detector", "staging")
        assert record.artifact["model_sha256"] == old_sha  # what is live stays recorded
        # not the spec's fault: never counted toward Stalled (plan again is the remedy)
        assert record.failures == 0 and record.history[-1]["message"].startswith("transient: ")
        assert httpx.get(f"{url}/metadata", timeout=30).json()["model"]["sha256"] == old_sha

        # a pull request that does not touch the spec still shows the move
        code, out, err = invoke(repo.root, "plan", "--env", "staging", "--base", "HEAD")
        assert code == 0, out + err
        assert f"model resolved: models:/fraud-flow/{v1} -> models:/fraud-flow/{v2}" in out
        assert f"now resolves to models:/fraud-flow/{v2}" in out  # why it is planned
        code, out, err = invoke(repo.root, "plan", "--env", "staging")
        assert code == 0, out + err
        assert f"model resolved: models:/fraud-flow/{v1} -> models:/fraud-flow/{v2}" in out
        assert f"model sha256: {old_sha[:24]} -> {new_sha[:24]}" in out
        assert ledger.pin("fraud-detector", "staging")["sha256"] == new_sha
    finally:
        invoke(repo.root, "destroy", "--env", "staging", "--yes")


def test_mlflow_candidate_registered_and_proposed_as_a_pull_request(
    tmp_path, mlflow_registry, fake_github, monkeypatch
):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_registry.uri)
    monkeypatch.setenv("MODELOPS_CACHE_DIR", str(tmp_path / "cache"))
    if mlflow_registry.client.get_experiment_by_name(EXPERIMENT) is None:
        artifacts = mlflow_registry.root.parent / "artifacts"
        mlflow_registry.client.create_experiment(EXPERIMENT, artifact_location=artifacts.as_uri())
    live = weak_live_model(tmp_path)
    v1 = mlflow_registry.register("fraud-retrain", live)
    mlflow_registry.alias("fraud-retrain", "champion", v1)
    root = store_repo(tmp_path, "models:/fraud-retrain@champion")
    bare = with_origin(tmp_path, root)
    head = git.Repo(root).head.commit.hexsha

    code, out, err = invoke(
        root, "retrain", "fraud-detector", "--env", "staging",
        "--training-data", training_data(tmp_path), "--format", "json",
    )  # fmt: skip
    assert code == 0, out + err
    res = json.loads(out)
    assert res["status"] == "proposed", res["message"]
    assert res["candidate_score"] > res["live_score"]
    v2 = str(int(v1) + 1)
    assert res["published"] == res["model_uri"] == f"models:/fraud-retrain/{v2}"
    assert res["model_version"] == "1.0.1"  # bumped from the base's 1.0.0
    # registered: the new version's files are the candidate's bytes
    mv = mlflow_registry.client.get_model_version("fraud-retrain", v2)
    assert mv.tags["sha256"] == res["sha256"]

    # pushed: the branch is on the bare remote, and changes only the spec (no binary)
    commit = bare.commit(res["branch"])
    assert commit.hexsha == res["commit"] and commit.parents[0].hexsha == head
    assert sorted(commit.stats.files) == [SPEC]
    new = yaml.safe_load((commit.tree / SPEC).data_stream.read())
    old = yaml.safe_load((commit.parents[0].tree / SPEC).data_stream.read())
    assert new["spec"]["model"] == old["spec"]["model"]  # the base is untouched
    assert new["spec"]["environments"]["staging"]["model"] == {
        "uri": f"models:/fraud-retrain/{v2}",
        "sha256": res["sha256"],
        "version": "1.0.1",
    }
    assert "model" not in new["spec"]["environments"]["prod"]  # prod keeps its model

    # the pull request, through the fake GitHub API
    posts = [r for r in fake_github.requests if r["method"] == "POST"]
    assert len(posts) == 1 and posts[0]["path"] == "/repos/acme/specs/pulls"
    body = posts[0]["body"]
    assert (body["head"], body["base"]) == (res["branch"], "main")
    assert "### Monitoring verdicts" in body["body"] and res["sha256"] in body["body"]
    assert '"decision": "promote"' in body["body"]
    assert res["pull_request"] == "https://github.example/acme/specs/pull/1"
    entry = Ledger(root / ".modelops").get("fraud-detector", "staging").history[-1]
    assert entry["pull_request"] == res["pull_request"] and entry["published"] == res["published"]

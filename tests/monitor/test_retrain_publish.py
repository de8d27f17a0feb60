"""Retraining publishes, then proposes (issue 14 item 2).

Real: examples/train.py run by ``modelops retrain`` in a real Git repository, a real
bare repository as ``origin``, a real MLflow registry (``support.registry``: MLflow's
SQLAlchemy store on SQLite), scikit-learn scoring. FAKES, named as such: S3 is moto's
server (``support.fake_s3``), GitHub's pull-request API a loopback server
(``support.fake_github``).
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import git
import joblib
import pytest
import yaml
from sklearn.dummy import DummyClassifier
from support.cli import invoke
from support.monitor import PROJECT, deployment, fraud_repo
from support.repo import replace_in_file

from reconciler.flow.propose import deliver
from reconciler.gitops.forge import ForgeError
from reconciler.monitor.proposal import bump_version
from reconciler.monitor.publish import EXPERIMENT
from reconciler.monitor.retrain import RetrainResult
from reconciler.state.ledger import Ledger

sys.path.insert(0, str(PROJECT / "examples"))
from train import bundled  # noqa: E402 - the example's own data loader

PINNED = '    sha256: "cc8cd22265aa7df3578322bf234a37cbbc80e683a07aafd1b290e0b9c8233267"\n'
SPEC = "specs/fraud-detector.yaml"


def _weak_live_model(tmp_path: Path) -> Path:
    """A live model any retrained one beats: the class prior (ROC AUC 0.5)."""
    data = bundled("fraud")
    model = DummyClassifier(strategy="prior").fit(data.drop(columns="target"), data["target"])
    path = tmp_path / "live" / "model.joblib"
    path.parent.mkdir()
    joblib.dump(model, path)
    return path


def _with_origin(tmp_path: Path, root: Path) -> git.Repo:
    """``root`` with a real bare repository as ``origin``, main pushed."""
    bare = git.Repo.init(tmp_path / "origin.git", bare=True, initial_branch="main")
    repo = git.Repo(root)
    repo.create_remote("origin", bare.working_dir if bare.working_dir else str(bare.git_dir))
    repo.git.push("origin", "main")
    return bare


def _store_repo(tmp_path: Path, uri: str, extra: str = "") -> Path:
    def edit(text: str) -> str:
        text = text.replace("uri: examples/fraud/model.joblib", f"uri: {uri}")
        text = text.replace(PINNED, "")
        return text.replace("    cooldown_hours: 24\n", f"    cooldown_hours: 24\n{extra}")

    return fraud_repo(tmp_path, edit)


def _training_data(tmp_path: Path) -> str:
    path = tmp_path / "train.parquet"
    bundled("fraud").sample(frac=1.0, random_state=1).to_parquet(path)
    return str(path)


def test_mlflow_candidate_registered_and_proposed_as_a_pull_request(
    tmp_path, mlflow_registry, fake_github, monkeypatch
):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_registry.uri)
    monkeypatch.setenv("MODELOPS_CACHE_DIR", str(tmp_path / "cache"))
    if mlflow_registry.client.get_experiment_by_name(EXPERIMENT) is None:
        artifacts = mlflow_registry.root.parent / "artifacts"
        mlflow_registry.client.create_experiment(EXPERIMENT, artifact_location=artifacts.as_uri())
    live = _weak_live_model(tmp_path)
    v1 = mlflow_registry.register("fraud-retrain", live)
    mlflow_registry.alias("fraud-retrain", "champion", v1)
    root = _store_repo(tmp_path, "models:/fraud-retrain@champion")
    bare = _with_origin(tmp_path, root)
    head = git.Repo(root).head.commit.hexsha

    code, out, err = invoke(
        root, "retrain", "fraud-detector", "--env", "staging",
        "--training-data", _training_data(tmp_path), "--format", "json",
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


def test_s3_candidate_uploaded_a_tie_is_not_proposed_and_no_token_prints_compare_url(
    tmp_path, fake_s3, monkeypatch
):
    monkeypatch.setenv("MODELOPS_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("GITHUB_TOKEN", raising=False)
    monkeypatch.setenv("GITHUB_REPOSITORY", "acme/specs")
    live = _weak_live_model(tmp_path)
    fake_s3.create_bucket(Bucket="models")
    fake_s3.put_object(Bucket="models", Key="fraud/model.joblib", Body=live.read_bytes())
    root = _store_repo(
        tmp_path, "s3://models/fraud/model.joblib", extra="    min_improvement: 0.9\n"
    )
    bare = _with_origin(tmp_path, root)
    config, dep = deployment(root)
    data = _training_data(tmp_path)

    code, out, err = invoke(root, "retrain", "fraud-detector", "--env", "staging",
                            "--training-data", data, "--format", "json")  # fmt: skip
    res = json.loads(out)
    assert code == 0 and res["status"] == "rejected", out + err
    assert "below the required > 0 and >= 0.9" in res["message"]
    keys = [o["Key"] for o in fake_s3.list_objects_v2(Bucket="models")["Contents"]]
    assert keys == ["fraud/model.joblib"]  # nothing uploaded for a rejected candidate

    replace_in_file(root / SPEC, "min_improvement: 0.9", "min_improvement: 0.001")
    git.Repo(root).git.commit("-am", "a smaller bar")
    code, out, err = invoke(root, "retrain", "fraud-detector", "--env", "staging", "--force",
                            "--training-data", data, "--format", "json")  # fmt: skip
    res = json.loads(out)
    assert code == 0 and res["status"] == "proposed", out + err
    key = f"fraud/model-{res['sha256'][:12]}.joblib"
    assert res["model_uri"] == f"s3://models/{key}"
    body = fake_s3.get_object(Bucket="models", Key=key)["Body"].read()
    assert hashlib.sha256(body).hexdigest() == res["sha256"]
    assert sorted(bare.commit(res["branch"]).stats.files) == [SPEC]
    assert res["pull_request"] == (
        f"https://github.com/acme/specs/compare/main...{res['branch']}?expand=1"
    )
    assert "open the pull request: https://github.com/acme/specs/compare/" in res["message"]


def _committed_branch(root: Path, name: str) -> RetrainResult:
    """A proposal branch with one commit (what run_retraining leaves), and its result."""
    repo = git.Repo(root)
    report = root / "candidate.json"
    report.write_text(json.dumps({"decision": "promote"}))
    repo.create_head(name, repo.head.commit)
    return RetrainResult(
        name="fraud-detector",
        env="staging",
        status="proposed",
        metric="roc_auc",
        candidate_score=0.99,
        live_score=0.5,
        branch=name,
        commit=repo.head.commit.hexsha,
        report=str(report),
        sha256="a" * 64,
        message="proposed",
    )


def test_forge_error_and_rejected_push_leave_nothing_half_proposed(tmp_path, fake_github):
    root = fraud_repo(tmp_path)
    bare = _with_origin(tmp_path, root)
    _config, dep = deployment(root)
    repo = git.Repo(root)

    fake_github.fail = {"POST": (502, "Bad Gateway")}
    result = _committed_branch(root, "modelops/retrain/fraud-detector-1")
    with pytest.raises(ForgeError) as forge:
        deliver(repo, dep, result, None)
    said = forge.value.message
    assert f"opening a pull request on acme/specs at {fake_github.url}: HTTP 502" in said
    assert "nothing proposed: the branch was deleted from origin" in said
    assert result.branch not in [h.name for h in bare.heads]  # taken back from the remote
    assert result.branch not in [h.name for h in repo.heads]

    fake_github.fail = {}
    calls = len(fake_github.requests)
    hook = Path(bare.git_dir) / "hooks" / "pre-receive"
    hook.write_text("#!/bin/sh\necho 'protected: no new branches' >&2\nexit 1\n")
    hook.chmod(0o755)
    result = _committed_branch(root, "modelops/retrain/fraud-detector-2")
    with pytest.raises(ForgeError) as rejected:
        deliver(repo, dep, result, None)
    said = rejected.value.message
    assert "push of modelops/retrain/fraud-detector-2 to origin" in said
    assert "protected: no new branches" in said and "the local branch was deleted" in said
    assert [h.name for h in repo.heads] == ["main"]
    assert len(fake_github.requests) == calls  # a rejected push calls no forge API


@pytest.mark.parametrize(
    ("old", "new"), [("1.0.0", "1.0.1"), ("7", "8"), ("v2", "v3"), (None, "1"), ("rc", "rc.1")]
)
def test_bump_version(old, new):
    assert bump_version(old) == new

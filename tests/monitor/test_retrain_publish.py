"""Retraining publishes, then proposes (issue 14 item 2).

Real: examples/train.py run by ``modelops retrain`` in a real Git repository, a real
bare repository as ``origin``, scikit-learn scoring. The MLflow registry case is in
tests/flow/test_model_sources.py (one worker creates the registry). FAKES, named as
such: S3 is moto's server (``support.s3``), GitHub's pull-request API a loopback server
(``support.fake_github``).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import git
import pytest
from support.cli import invoke
from support.monitor import deployment, fraud_repo
from support.retrain import SPEC, store_repo, training_data, weak_live_model, with_origin

from reconciler.flow.propose import deliver
from reconciler.gitops.forge import ForgeError
from reconciler.monitor.proposal import bump_version
from reconciler.monitor.retrain import RetrainResult, improves


def test_s3_candidate_uploaded_and_proposed_without_a_token_prints_the_compare_url(
    tmp_path, fake_s3, monkeypatch
):
    monkeypatch.setenv("MODELOPS_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("GITHUB_TOKEN", raising=False)
    monkeypatch.setenv("GITHUB_REPOSITORY", "acme/specs")
    live = weak_live_model(tmp_path)
    fake_s3.create_bucket(Bucket="models")
    fake_s3.put_object(Bucket="models", Key="fraud/model.joblib", Body=live.read_bytes())
    root = store_repo(tmp_path, "s3://models/fraud/model.joblib")
    bare = with_origin(tmp_path, root)
    data = training_data(tmp_path)
    code, out, err = invoke(root, "retrain", "fraud-detector", "--env", "staging",
                            "--training-data", data, "--format", "json")  # fmt: skip
    res = json.loads(out)
    assert code == 0 and res["status"] == "proposed", out + err
    assert "meets the required > 0 and >= 0.001" in res["message"]  # the default bar
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
    bare = with_origin(tmp_path, root)
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


@pytest.mark.parametrize(
    ("candidate", "live", "needed", "proposed"),
    [
        (0.95, 0.95, 0.0, False),  # a tie is never proposed, even with no bar
        (0.9500001, 0.95, 0.0, False),  # below the scores' precision: a tie
        (0.951, 0.95, 0.001, True),
        (0.9509, 0.95, 0.001, False),
        (0.96, 0.95, 0.0, True),
        (-0.2, -0.3, 0.05, True),  # neg_rmse: higher is better too
    ],
)
def test_the_bar_is_a_strict_improvement_of_at_least_min_improvement(
    candidate, live, needed, proposed
):
    assert improves(candidate, live, needed)[0] is proposed

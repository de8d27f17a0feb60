"""Retraining for real: examples/train.py runs in a temp Git repository, the candidate is
scored on the real holdout, and a real commit lands on a real branch (GitPython)."""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

import git
import pytest
from support.monitor import PROJECT, deployment, fraud_repo, set_line

from reconciler.flow.monitor import retrain
from reconciler.monitor.retrain import RetrainError, run_retraining
from reconciler.monitor.specedit import edit_scalars
from reconciler.spec.loader import load_spec
from reconciler.state.ledger import Ledger

sys.path.insert(0, str(PROJECT / "examples"))
from train import bundled  # noqa: E402 - the example's own data loader

LIVE_SHA = "cc8cd22265aa7df3578322bf234a37cbbc80e683a07aafd1b290e0b9c8233267"


def _training_data(tmp_path: Path, **sample) -> str:
    """The bundled breast-cancer rows, re-sampled: new labelled data for the command."""
    path = tmp_path / "train.parquet"
    bundled("fraud").sample(**sample).to_parquet(path)
    return str(path)


def _command(argv: str, timeout: int = 600):
    return lambda t: set_line(
        set_line(t, "command:", f"command: {argv}"), "timeout_s:", f"timeout_s: {timeout}"
    )


def _untouched(root: Path, head: str, dirty: str) -> git.Repo:
    """Main's HEAD, branch, working tree and index are as the user left them."""
    repo = git.Repo(root)
    assert repo.active_branch.name == "main"
    assert repo.head.commit.hexsha == head
    assert (root / "specs" / "fraud-detector.yaml").read_text().endswith(dirty)
    assert not repo.index.diff("HEAD")  # nothing staged
    assert len(repo.git.worktree("list").splitlines()) == 1  # temporary worktree removed
    return repo


def test_better_candidate_is_committed_on_a_new_branch(tmp_path: Path) -> None:
    # this candidate beats the live model by about 0.0008 ROC AUC, under the default bar
    # (0.001; tests/monitor/test_retrain_publish.py checks the bar itself)
    root = fraud_repo(
        tmp_path,
        lambda t: t.replace(
            "    metric: roc_auc\n", "    metric: roc_auc\n    min_improvement: 0.0001\n"
        ),
    )
    repo = git.Repo(root)
    head = repo.head.commit.hexsha
    spec_file = root / "specs" / "fraud-detector.yaml"
    spec_file.write_text(spec_file.read_text() + "# local edit, not committed\n")
    config, dep = deployment(root)
    data = _training_data(tmp_path, frac=1.0, random_state=1)

    res = retrain(dep, config, reason="drift", training_data=data)

    assert res.status == "proposed", res.message
    assert res.candidate_score > res.live_score
    assert res.branch.startswith("modelops/retrain/fraud-detector-")
    repo = _untouched(root, head, "# local edit, not committed\n")
    commit = repo.commit(res.branch)
    assert commit.hexsha == res.commit and commit.parents[0].hexsha == head
    assert "Reason: drift" in commit.message and "roc_auc" in commit.message
    changed = sorted(commit.stats.files)
    assert changed == [res.model_uri, "specs/fraud-detector.yaml"]
    assert res.model_uri == f"examples/fraud/model-{res.sha256[:12]}.joblib"
    blob = commit.tree / res.model_uri
    assert hashlib.sha256(blob.data_stream.read()).hexdigest() == res.sha256
    old = (commit.parents[0].tree / "specs/fraud-detector.yaml").data_stream.read().decode()
    new = (commit.tree / "specs/fraud-detector.yaml").data_stream.read().decode()
    # one line added, in the staging overlay; the base and prod are untouched
    proposed = f'      model: {{uri: {res.model_uri}, sha256: "{res.sha256}", version: "1.0.1"}}'
    lines = new.splitlines()
    assert proposed in lines and [x for x in lines if x != proposed] == old.splitlines()
    assert lines[lines.index(proposed) - 1] == "      target: {platform: local}"
    # the proposed spec is valid: load it from the branch and check its digest
    spec = load_spec(Path("specs/fraud-detector.yaml"), raw=new.encode())
    staging = spec.data["spec"]["environments"]["staging"]["model"]
    assert staging["sha256"] == res.sha256 and spec.data["spec"]["model"]["sha256"] == LIVE_SHA
    assert not (root / res.model_uri).exists()  # main's working tree gained nothing
    history = Ledger(config.state_dir).get("fraud-detector", "staging").history
    assert history[-1]["result"] == "proposed" and history[-1]["branch"] == res.branch
    assert Path(res.report).is_file()
    assert "fraud: sha256 " + res.sha256 in Path(res.log).read_text()  # output captured

    # cooldown: a second run within spec.retraining.cooldown_hours (24) is skipped
    again = retrain(dep, config, training_data=data)
    assert again.status == "skipped" and "cooldown" in again.message
    assert len([h for h in repo.heads if h.name.startswith("modelops/")]) == 1


def test_worse_candidate_is_rejected_without_a_branch(tmp_path: Path) -> None:
    root = fraud_repo(tmp_path)
    config, dep = deployment(root)
    res = run_retraining(dep, config, training_data=_training_data(tmp_path, n=40, random_state=5))
    assert res.status == "rejected"
    assert res.candidate_score < res.live_score
    assert [h.name for h in git.Repo(root).heads] == ["main"]
    # the job returns its result; only the flow (retrain) records it
    assert Ledger(config.state_dir).get("fraud-detector", "staging") is None


def test_identical_model_is_not_proposed_and_starts_the_cooldown(tmp_path: Path) -> None:
    copy = (
        '["python", "-c", "import os, shutil; shutil.copy(\'examples/fraud/model.joblib\', '
        "os.environ['MODELOPS_OUTPUT_DIR'])\"]"
    )
    root = fraud_repo(tmp_path, _command(copy))
    config, dep = deployment(root)
    res = retrain(dep, config)
    assert res.status == "unchanged" and res.sha256 == LIVE_SHA
    assert [h.name for h in git.Repo(root).heads] == ["main"]

    # the cooldown outlives the ledger's capped history (an hourly drift job fills it)
    ledger = Ledger(config.state_dir)
    record = ledger.get("fraud-detector", "staging")
    for _ in range(120):
        record.add_history("monitor", "", "ok", "no drift")
    ledger.put(record)
    assert not any(
        h["action"] == "retrain" for h in ledger.get("fraud-detector", "staging").history
    )
    assert retrain(dep, config).status == "skipped"


@pytest.mark.parametrize(
    ("argv", "timeout", "message"),
    [
        (
            '["python", "-c", "import sys; print(\'boom\'); sys.exit(3)"]',
            600,
            r"exited with code 3; last lines of .*train.log:\n  boom",
        ),
        (
            '["python", "-c", "import time; time.sleep(3600)"]',  # killed at the time-out
            1,
            r"timed out after 1 s \(spec.retraining.timeout_s\)",
        ),
        ('["python", "-c", "pass"]', 600, r"produced no model: no \*.joblib file"),
        ('["no-such-program-xyz"]', 600, r"cannot start the retraining command"),
    ],
    ids=["fails", "hangs", "no-model", "not-found"],
)
def test_command_failures_record_a_failed_run_and_commit_nothing(
    tmp_path: Path, argv: str, timeout: int, message: str
) -> None:
    root = fraud_repo(tmp_path, _command(argv, timeout))
    head = git.Repo(root).head.commit.hexsha
    config, dep = deployment(root)
    with pytest.raises(RetrainError, match=message) as info:
        retrain(dep, config)
    assert info.value.result.status == "failed"
    last = Ledger(config.state_dir).get("fraud-detector", "staging").history[-1]
    assert last["action"] == "retrain" and last["result"] == "failed"
    repo = git.Repo(root)
    assert [h.name for h in repo.heads] == ["main"] and repo.head.commit.hexsha == head
    # a failed run does not start the cooldown
    with pytest.raises(RetrainError):
        retrain(dep, config)


def test_missing_holdout_is_a_clear_failure(tmp_path: Path) -> None:
    root = fraud_repo(
        tmp_path,
        lambda t: t.replace(
            "holdout: examples/fraud/holdout.parquet", "holdout: examples/fraud/gone.parquet"
        ),
    )
    config, dep = deployment(root)
    with pytest.raises(RetrainError, match=r"spec.retraining.holdout: holdout data .*gone"):
        run_retraining(dep, config)


def test_not_a_git_repository(tmp_path: Path) -> None:
    root = fraud_repo(tmp_path)
    import shutil

    shutil.rmtree(root / ".git")
    config, dep = deployment(root)
    with pytest.raises(RetrainError, match="not in a Git repository"):
        run_retraining(dep, config)


def test_spec_edit_keeps_comments_and_handles_overlays_and_insertion() -> None:
    text = (
        "spec:\n"
        "  model:\n"
        "    uri: models/m.joblib   # the live model\n"
        "    framework: sklearn\n"
        "  environments:\n"
        "    prod:\n"
        "      model: {uri: 'models/p.joblib', sha256: \"" + "a" * 64 + '"}\n'
    )
    out = edit_scalars(
        text,
        "s.yaml",
        {
            ("spec", "model", "uri"): "models/m-123.joblib",
            ("spec", "model", "sha256"): "b" * 64,
            ("spec", "environments", "prod", "model", "uri"): "models/p-9.joblib",
            ("spec", "environments", "prod", "model", "sha256"): "c" * 64,
        },
        {("spec", "model", "sha256"), ("spec", "environments", "prod", "model", "sha256")},
    )
    assert out == (
        "spec:\n"
        "  model:\n"
        "    uri: models/m-123.joblib   # the live model\n"
        '    sha256: "' + "b" * 64 + '"\n'
        "    framework: sklearn\n"
        "  environments:\n"
        "    prod:\n"
        "      model: {uri: 'models/p-9.joblib', sha256: \"" + "c" * 64 + '"}\n'
    )


def test_tampered_live_model_is_not_loaded(tmp_path: Path) -> None:
    from reconciler.monitor.drift import load_live_model

    root = fraud_repo(tmp_path)
    config, dep = deployment(root)
    model = root / "examples" / "fraud" / "model.joblib"
    assert load_live_model(dep, config)[0] is not None
    model.write_bytes(model.read_bytes() + b"tampered")
    loaded, why = load_live_model(dep, config)
    assert loaded is None and "does not match spec.model.sha256" in why
    with pytest.raises(RetrainError, match="does not match spec.model.sha256"):
        run_retraining(dep, config)

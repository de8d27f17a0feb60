"""The retraining command's environment (``monitor/command.py: command_env``)."""

from __future__ import annotations

from reconciler.core.config import load_config
from reconciler.monitor.command import command_env
from reconciler.spec.repo import load_all


def test_the_command_never_gets_the_forge_token(spec_repo, tmp_path, monkeypatch):
    """The scheduled workflow gives modelops a token to push the proposal and open its
    pull request; the repository's training code it runs does not get it."""
    monkeypatch.setenv("GITHUB_TOKEN", "ghs_forge")
    monkeypatch.setenv("GH_TOKEN", "ghs_cli")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5000")
    # a scheduled job's Authorization header (state/checkout.py)
    monkeypatch.setenv("GIT_CONFIG_COUNT", "1")
    monkeypatch.setenv("GIT_CONFIG_KEY_0", "http.extraHeader")
    monkeypatch.setenv("GIT_CONFIG_VALUE_0", "Authorization: Basic eC1hY2Nlc3M=")
    config = load_config(spec_repo)
    (dep,) = load_all(config, ["fraud-detector"], "staging").deployments
    env = command_env(
        dep,
        config,
        output=tmp_path / "out",
        holdout=tmp_path / "holdout.parquet",
        reason="schedule",
        training_data=None,
    )
    assert "GITHUB_TOKEN" not in env and "GH_TOKEN" not in env
    assert not [k for k in env if k.startswith("GIT_CONFIG_")]
    assert env["MLFLOW_TRACKING_URI"] == "http://127.0.0.1:5000"  # the rest is inherited
    assert env["MODELOPS_REASON"] == "schedule" and env["MODELOPS_ENV"] == "staging"

"""CLI usage errors and read-only commands of plan/apply/destroy/status/history/rollback."""

from __future__ import annotations

import json

from support.cli import invoke

from reconciler.core.config import load_config
from reconciler.state.ledger import Ledger, LedgerRecord


def test_usage_errors_are_exit_2_without_traceback(git_repo):
    repo = git_repo
    cases = [
        (("plan", "--head", "HEAD"), "--head needs --base"),
        (("plan", "--all"), "--all needs --base"),
        (("apply", "--env", "dev", "--base", "HEAD", "fraud-detector"), "either --base or"),
        (("destroy", "--env", "dev"), "needs --yes"),
        (("history", "fraud-detector", "--env", "prod"), "nothing recorded for fraud-detector"),
        (("rollback", "fraud-detector", "--env", "prod"), "no last good revision"),
        (("plan", "--env", "qa"), "unknown environment 'qa'"),
    ]
    for args, message in cases:
        code, _out, err = invoke(repo.root, *args)
        assert code == 2, (args, err)
        assert message in err and "Traceback" not in err, (args, err)


def test_status_and_history_read_the_ledger(git_repo):
    repo = git_repo
    config = load_config(repo.root)
    rec = LedgerRecord("fraud-detector", "prod", platform="kubernetes")
    rec.record_success("a" * 40, "d1", outputs={"url": "https://ml.example.com"})
    rec.record_failure("b" * 40, "d2", "update failed: quota", stalled_after=1)
    rec.drift = {"drifted": True}
    Ledger(config.state_dir).put(rec)
    code, out, _ = invoke(repo.root, "status", "-f", "json")
    row, never = json.loads(out)  # sorted by name, then environment
    assert row["deployment"] == "fraud-detector-prod" and row["revision"] == "a" * 12
    assert never["deployment"] == "fraud-detector-staging" and never["platform"] == "local"
    assert never["health"].startswith("NotApplied: declared in Git, never applied")
    assert "quota" in row["stalled"] and row["drift"] == "drifted"
    # what is live (digest d1) is not the spec in the tree: out of sync, though stalled
    failed_at = row["last_failure"]["time"]
    assert row["health"] == (
        "Ready=False ApplyFailed; OutOfSync: HEAD differs from the applied revision "
        f"{'a' * 12}; last apply failed at {failed_at}: update failed: quota (rev {'b' * 12})"
    )
    code, out, _ = invoke(repo.root, "history", "fraud-detector", "--env", "prod", "-f", "json")
    data = json.loads(out)
    assert [h["result"] for h in data["history"]] == ["failed", "succeeded"]  # newest first
    assert data["lastAppliedRevision"] == "a" * 40 and data["stalled"] is True

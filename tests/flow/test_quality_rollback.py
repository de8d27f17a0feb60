"""A quality alert with ``on_quality_drop: rollback`` re-applies the last good revision:
two real applies with the local engine (bentoml serve), then the action the flow takes
for the alert. The alert itself is a value here (the quality job that produces it is
tested in tests/monitor/test_quality.py)."""

from __future__ import annotations

import httpx
import pytest

from reconciler.core.config import load_config
from reconciler.core.diagnostics import ModelopsError
from reconciler.flow import apply as apply_flow
from reconciler.flow import destroy as destroy_flow
from reconciler.flow.monitor import act_on_quality
from reconciler.monitor.quality import ALERT, OK, QualityResult
from reconciler.spec.repo import load_all
from reconciler.state.ledger import Ledger

pytestmark = pytest.mark.slow


def _alert(verdict: str = ALERT) -> QualityResult:
    return QualityResult(
        name="fraud-detector",
        env="staging",
        task="classification",
        verdict=verdict,
        window={},
        predictions=500,
        labelled=480,
        join_rate=0.96,
        pending=0.04,
        overdue=0.0,
        metric="accuracy",
        alerts=["accuracy 0.610 [0.566, 0.652] below min_accuracy 0.85"],
        action="rollback",
    )


def test_quality_alert_rolls_back_to_the_last_good_revision(git_repo):
    repo = git_repo
    config = load_config(repo.root)
    ledger = Ledger(config.state_dir)
    dep = load_all(config, ["fraud-detector"], "staging").deployments[0]
    assert act_on_quality(dep, config, _alert(OK)) == {"action": "rollback", "status": "none"}
    with pytest.raises(ModelopsError, match="no last good revision is recorded"):
        act_on_quality(dep, config, _alert())  # nothing applied yet
    c1 = repo.git.head.commit.hexsha
    try:
        assert [o.status for o in apply_flow.apply(config, "staging").outcomes] == ["applied"]
        path = repo.root / "specs/fraud-detector.yaml"
        path.write_text(path.read_text().replace("max_latency_ms: 500", "max_latency_ms: 600"))
        c2 = repo.commit("batching: 600 ms")
        assert [o.status for o in apply_flow.apply(config, "staging").outcomes] == ["applied"]
        rec = ledger.get("fraud-detector", "staging")
        assert (rec.lastAppliedRevision, rec.lastGoodRevision) == (c2, c1)

        acted = act_on_quality(dep, config, _alert())

        assert acted == {
            "action": "rollback",
            "status": "rolled back",
            "revision": c1,
            "exit_code": 0,
        }
        rec = ledger.get("fraud-detector", "staging")
        assert rec.lastAppliedRevision == c1 and rec.history[-1]["action"] == "rollback"
        assert rec.suspended["revision"] == c1
        url = rec.outputs["url"]
        body = {"instances": [[1.0] * 30]}
        assert httpx.post(url + "/predict", json=body, timeout=30).status_code == 200
    finally:
        destroy_flow.destroy(config, "staging", [])

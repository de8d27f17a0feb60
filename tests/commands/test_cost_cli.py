"""``modelops cost --env ENV``: live (ledger) and specs, by team and deployment; text,
JSON and CSV. The live state is recorded by the one status writer (state.status.applied)
from a real render of the spec at 2 replicas; the spec then says 6. Figures by hand from
OpenCost's default rates (a 500m + 1 GiB replica: (0.5 × 0.031611 + 0.004237) × 730).
"""

from __future__ import annotations

import csv
import io
import json

import pytest
from support.cli import invoke
from support.repo import make_repo, replace_in_file

from reconciler.build.artifact import Artifact
from reconciler.core.config import load_config
from reconciler.engine.base import ApplyResult
from reconciler.flow.stages import render_live
from reconciler.spec.repo import load_all
from reconciler.state import status
from reconciler.state.ledger import Ledger

REPLICA_MONTH = (0.5 * 0.031611 + 0.004237) * 730
SPEC = "specs/fraud-detector.yaml"


@pytest.fixture
def repo(tmp_path):
    root = make_repo(tmp_path / "repo", specs=["fraud-detector", "diabetes-progression"]).root
    replace_in_file(root / SPEC, "min_replicas: 3}", "min_replicas: 2}")
    config = load_config(root)
    (dep,) = [d for d in load_all(config, ["fraud-detector"], "prod").deployments]
    state = render_live(dep, None, config).to_dict()
    status.applied(
        Ledger(config.state_dir),
        dep,
        ApplyResult(True, message="applied"),
        revision="a" * 40,
        digest="d" * 64,
        artifact=Artifact("fraud-detector:x", "e" * 64),
        desired_state=state,
    )
    replace_in_file(root / SPEC, "min_replicas: 2}", "min_replicas: 6}")
    return root


def test_cost_table_live_and_specs_by_team(repo):
    result = invoke(repo, "cost", "--env", "prod", "--format", "json")
    assert result.returncode == 0, result.output
    doc = json.loads(result.stdout)
    rows = {r["deployment"]: r for r in doc["deployments"]}
    fraud = rows["fraud-detector-prod"]
    assert fraud["team"] == "payments-risk"
    diff = fraud["specs"]["expected"] - fraud["live"]["expected"]
    assert diff == pytest.approx(4 * REPLICA_MONTH, abs=0.02)
    assert rows["diabetes-progression-prod"]["live"] is None  # never applied
    assert set(doc["teams"]) == {"payments-risk", "clinical-ml"}
    total = doc["total"]["specs"]["expected"]
    assert total == pytest.approx(sum(r["specs"]["expected"] for r in rows.values()), abs=0.01)
    assert doc["prices_date"]

    text = invoke(repo, "cost", "--env", "prod").stdout
    assert "prices as of" in text and "(team total, 1)" in text and "(total, 2)" in text
    assert f"{fraud['live']['expected']:,.2f} (max" in text

    table = list(
        csv.DictReader(io.StringIO(invoke(repo, "cost", "-e", "prod", "-f", "csv").stdout))
    )
    (row,) = [r for r in table if r["deployment"] == "fraud-detector-prod"]
    assert float(row["live_expected_usd"]) == fraud["live"]["expected"]
    assert row["team"] == "payments-risk" and row["prices_date"] == doc["prices_date"]


def test_cost_usage_errors(repo):
    assert invoke(repo, "cost", "--env", "prod", "--format", "xml").returncode == 2
    assert invoke(repo, "cost", "--env", "nowhere").returncode == 2
    text = (repo / "specs" / "diabetes-progression.yaml").read_text()
    (repo / "specs" / "diabetes-progression.yaml").write_text(
        text.replace("region: eu-west-1", "region: eu-north-1").replace(
            "kms:eu-west-1:", "kms:eu-north-1:"
        )
    )
    result = invoke(repo, "cost", "--env", "prod")
    assert result.returncode == 1
    assert "spec.target.region" in result.stderr and "eu-north-1" in result.stderr
    assert "fraud-detector-prod" in result.stdout  # the others are still shown

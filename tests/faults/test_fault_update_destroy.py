"""Fault: ``apply`` killed during an update, ``destroy`` killed between stopping and
recording (issue 16, items 5 and 6).

A real spec repository, a real Bento, real servers. The update kill happens after the
new server passed its smoke test and the old one was stopped, before the ledger write:
the ledger names a stopped server, a live one is unrecorded. The next apply stops the
unrecorded one and converges to one recorded server. A destroy killed after it stopped
the server leaves its intent in the record (``status`` says so; the record is not
"Ready" with nothing running), and the next destroy confirms it.
"""

from __future__ import annotations

import json

import pytest
from support.cli import invoke
from support.faults import Tally
from support.repo import make_repo, relax, replace_in_file

from reconciler.build.serve import find_servers
from reconciler.core.config import load_config
from reconciler.state.ledger import Ledger

pytestmark = pytest.mark.slow
KEY = "fraud-detector-staging"


def test_update_and_destroy_killed_midway_converge(tmp_path):
    repo = make_repo(tmp_path / "repo", specs=["fraud-detector"], edit=relax, git=True)
    state = load_config(repo.root).state_dir
    ledger = Ledger(state)
    tally = Tally()
    apply = ("apply", "--env", "staging")

    tally.clean("first apply", invoke(repo.root, *apply))
    n = tally.converged("first apply", state, KEY, 1)
    first = ledger.get("fraud-detector", "staging").outputs["server_id"]

    # a change that builds a new Bento (an update); not a second worker, which each later
    # server start would pay for (a BentoML import and a model load)
    replace_in_file(
        repo.root / "specs/fraud-detector.yaml", "max_batch_size: 64", "max_batch_size: 32"
    )
    repo.commit("batches of 32")
    tally.kill(repo.root, "update", *apply)
    (left,) = find_servers(state, KEY)  # the old one stopped, the new one unrecorded
    assert left != first and ledger.get("fraud-detector", "staging").pending

    tally.clean("apply after the update kill", invoke(repo.root, *apply))
    n = tally.converged("apply after the update kill", state, KEY, n)
    assert left not in find_servers(state, KEY)

    tally.kill(repo.root, "destroy", "destroy", "--env", "staging", "fraud-detector")
    assert find_servers(state, KEY) == {}
    rec = ledger.get("fraud-detector", "staging")
    assert rec.pending["action"] == "destroy" and not rec.destroyed
    (row,) = json.loads(invoke(repo.root, "status", "--env", "staging", "-f", "json").stdout)
    assert "destroy begun" in row["health"] and "did not finish" in row["health"]

    tally.clean("destroy again", invoke(repo.root, "destroy", "--env", "staging", "fraud-detector"))
    rec = ledger.get("fraud-detector", "staging")
    assert rec.destroyed and not rec.pending and len(rec.history) >= n
    assert find_servers(state, KEY) == {}
    tally.report("apply killed during an update, destroy killed before it recorded")
    assert tally.problems == []

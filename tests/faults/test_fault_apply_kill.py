"""Fault: ``apply`` killed at each stage (build, start, smoke, record) (issue 16, item 5).

One real spec repository, one real Bento and real ``bentoml serve`` processes. The runs
are chained so each recovery is also the next fault: every run after a kill must first
stop the server the killed one left unrecorded, and the last, clean run leaves exactly
one server, the one its ledger record names. The kills are the test-only hook
``MODELOPS_FAULT_AT`` (deterministic); ``update`` and ``destroy`` are in
test_fault_update_destroy.py (so xdist runs the two files side by side).
"""

from __future__ import annotations

import json

import pytest
from support.cli import invoke
from support.faults import Tally, run
from support.repo import make_repo, relax

from reconciler.build.serve import find_servers
from reconciler.core.config import load_config
from reconciler.flow.destroy import destroy
from reconciler.state.ledger import Ledger
from reconciler.state.lock import LOCK_FILE

pytestmark = pytest.mark.slow
KEY = "fraud-detector-staging"


def test_apply_killed_at_each_stage_converges_to_one_recorded_server(tmp_path):
    repo = make_repo(tmp_path / "repo", specs=["fraud-detector"], edit=relax, git=True)
    state = load_config(repo.root).state_dir
    tally = Tally()
    apply = ("apply", "--env", "staging")

    tally.kill(repo.root, "build", *apply)
    assert find_servers(state, KEY) == {}  # killed before anything started

    tally.kill(repo.root, "start", *apply)
    # intent first: the record says an apply began, before the server started
    rec = Ledger(state).get("fraud-detector", "staging")
    assert rec.pending["action"] == "apply" and not rec.outputs
    (left,) = find_servers(state, KEY)  # the server the killed run left, unrecorded
    (row,) = json.loads(invoke(repo.root, "status", "--env", "staging", "-f", "json").stdout)
    assert "1 unrecorded server(s) of this deployment running" in row["health"]
    assert "apply begun at" in row["health"] and "did not finish" in row["health"]

    # without any record (the ledger file lost): destroy still finds the server by its
    # state-directory marker and stops it
    ledger_file = Ledger(state).path("fraud-detector", "staging")
    saved = ledger_file.read_bytes()
    ledger_file.unlink()
    (outcome,) = destroy(load_config(repo.root), "staging", ["fraud-detector"]).outcomes
    assert outcome.status == "destroyed" and "no ledger record names" in outcome.message
    assert find_servers(state, KEY) == {}
    ledger_file.write_bytes(saved)

    tally.kill(repo.root, "smoke", *apply)
    servers = find_servers(state, KEY)
    assert left not in servers and len(servers) == 1  # swept, then a new one killed

    tally.kill(repo.root, "record", *apply)
    assert len(find_servers(state, KEY)) == 1

    # SIGTERM (timeout, docker stop, Kubernetes) after the smoke test: the run unwinds as
    # on Ctrl-C, exit 143, and releases the lock, so the next run needs no `unlock`
    proc = run(repo.root, *apply, fault="smoke:term")
    assert proc.returncode == 143, proc.stderr
    assert "terminated (SIGTERM)" in proc.stderr and "Traceback" not in proc.stderr
    assert not (state / LOCK_FILE).exists()
    (row,) = json.loads(invoke(repo.root, "status", "--env", "staging", "-f", "json").stdout)
    assert "did not finish" in row["health"]  # the intent it recorded is shown

    tally.clean("apply after the kills", invoke(repo.root, *apply))
    tally.converged("apply after the kills", state, KEY, 1)
    (row,) = json.loads(invoke(repo.root, "status", "--env", "staging", "-f", "json").stdout)
    assert row["health"] == "Healthy"

    tally.clean("destroy", invoke(repo.root, "destroy", "--env", "staging", "fraud-detector"))
    assert find_servers(state, KEY) == {}
    tally.report("apply killed at build/start/smoke/record, terminated after smoke")
    assert tally.problems == []

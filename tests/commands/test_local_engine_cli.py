"""``modelops apply`` on a local target whose port is taken: exit 3, one clear message.

Through the real console script, on a real spec repository (a Git repo in a temp dir) with
the real policies and a real Bento build; the port is held by a socket this test binds.
"""

from __future__ import annotations

import socket

import pytest
from support.cli import run_cli
from support.repo import make_repo, replace_in_file
from support.serving import servers_under

from reconciler.state.ledger import Ledger


@pytest.mark.slow
def test_apply_with_port_taken_exits_3_and_records_nothing(tmp_path):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        repo = make_repo(tmp_path / "repo", git=True)
        root = repo.root
        replace_in_file(
            root / "specs/fraud-detector.yaml",
            "target: {platform: local}",
            f"target: {{platform: local, port: {port}}}",
        )
        repo.commit("specs")
        proc = run_cli(root, "apply", "--env", "staging", "fraud-detector")
    out = proc.stdout + proc.stderr
    assert proc.returncode == 3, out
    assert "Traceback" not in out
    # not a terminal (CI): the build and start steps draw nothing (no spinner, no step
    # lines, no escape codes)
    assert "\x1b[" not in out and "✓" not in out and "✗" not in out
    assert f"port {port} on 127.0.0.1 is already in use" in " ".join(out.split())
    # nothing applied: the pipeline may record the failed attempt, never an applied state
    record = Ledger(root / ".modelops").get("fraud-detector", "staging")
    if record is not None:
        assert record.lastAppliedRevision == ""
        assert "pid" not in record.outputs
        assert record.history[-1]["result"] == "failed"
    assert not servers_under(root / ".modelops")

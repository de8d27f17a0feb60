"""``modelops apply`` on a local target whose port is taken: exit 3, one clear message.

Through the real console script, on a real spec repository (a Git repo in a temp dir) with
the real policies and a real Bento build; the port is held by a socket this test binds.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys

import pytest
from test_serve import PROJECT, make_repo, servers_under  # same directory (pytest rootdir)

from reconciler.state.ledger import Ledger


@pytest.mark.slow
def test_apply_with_port_taken_exits_3_and_records_nothing(tmp_path):
    root = make_repo(tmp_path / "repo")
    shutil.copytree(PROJECT / "policies", root / "policies")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        spec = root / "specs/fraud-detector.yaml"
        spec.write_text(
            spec.read_text().replace(
                "target: {platform: local}", f"target: {{platform: local, port: {port}}}", 1
            )
        )
        for args in (["init", "-q"], ["add", "-A"], ["commit", "-qm", "specs"]):
            subprocess.run(
                ["git", "-c", "user.name=t", "-c", "user.email=t@example.com", *args],
                cwd=root,
                check=True,
            )
        proc = subprocess.run(
            [sys.executable, "-m", "reconciler", "--root", str(root)]
            + ["apply", "--env", "staging", "fraud-detector"],
            capture_output=True,
            text=True,
            timeout=300,
        )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 3, out
    assert "Traceback" not in out
    assert f"port {port} on 127.0.0.1 is already in use" in " ".join(out.split())
    # nothing applied: the pipeline may record the failed attempt, never an applied state
    record = Ledger(root / ".modelops").get("fraud-detector", "staging")
    if record is not None:
        assert record.lastAppliedRevision == ""
        assert "pid" not in record.outputs
        assert record.history[-1]["result"] == "failed"
    assert not servers_under(root / ".modelops")

"""Faults around a served Bento: a recorded pid that now belongs to another deployment's
server (issue 16, item 4), and a server whose log device is full (item 7).

The shared served Bento (``served_fraud``: one real ``bentoml serve`` per worker) plays
the other deployment's server; a ledger record of a deployment ``victim-staging`` names
its pid, as if the victim's server had exited and the pid been reused. ``destroy`` and
the health check must leave it alone and say what did not match.
"""

from __future__ import annotations

import httpx
import pytest
from support.serving import servers_under

from reconciler.build.serve import server_id_of, start_server, stop_server
from reconciler.core.procs import identity_of
from reconciler.engine.local import LocalEngine
from reconciler.state.ledger import LedgerRecord

pytestmark = pytest.mark.slow


def _manager(state_dir):
    (proc,) = [p for p in servers_under(state_dir) if "serve" in p.cmdline()]
    return proc.pid


def _record(outputs: dict) -> LedgerRecord:
    rec = LedgerRecord("victim", "staging", platform="local")
    rec.record_success("0" * 40, "digest", outputs=outputs)
    return rec


@pytest.mark.parametrize(
    "mismatch",
    ["server_id", "started", "bento_tag", "pgid"],
)
def test_destroy_does_not_signal_a_pid_with_another_identity(served_fraud, mismatch):
    pid = _manager(served_fraud.config.state_dir)
    live = identity_of(pid)
    outputs = {
        "pid": pid,
        "pgid": pid,
        "url": served_fraud.url,
        "server_id": server_id_of(pid),
        "bento_tag": served_fraud.artifact.bento_tag,
        "process_started": live["started"],
    }
    # the victim's own identity differs from the live server's in one part
    outputs.update(
        {
            "server_id": {"server_id": "victim-staging-0123456789ab"},
            "started": {"process_started": live["started"] - 3600.0},
            "bento_tag": {"bento_tag": "victim:0123456789abcdef"},
            "pgid": {"pgid": pid + 1},
        }[mismatch]
    )
    engine = LocalEngine(served_fraud.config, stop_grace_s=1)
    record = _record(outputs)
    health = engine.health(record)
    assert health.startswith(f"NotRunning: process {pid} exited (the pid now belongs")
    expected = {
        "server_id": "carries server id",
        "started": "the pid was reused",
        "bento_tag": "does not contain 'victim:0123456789abcdef'",
        "pgid": "process group",
    }[mismatch]
    assert expected in health
    engine.destroy(record)
    assert identity_of(pid) is not None  # not signalled
    assert httpx.get(f"{served_fraud.url}/livez", timeout=10, trust_env=False).status_code == 200


def test_the_matching_identity_is_healthy(served_fraud):
    pid = _manager(served_fraud.config.state_dir)
    record = _record(
        {
            "pid": pid,
            "pgid": pid,
            "url": served_fraud.url,
            "server_id": server_id_of(pid),
            "bento_tag": served_fraud.artifact.bento_tag,
            "process_started": identity_of(pid)["started"],
        }
    )
    assert LocalEngine(served_fraud.config).health(record) == "Healthy"


def test_a_full_log_device_does_not_stop_the_server_or_its_health(served_fraud):
    """The server log on a device with no space left (``/dev/full``: every write fails
    with ENOSPC): the server still starts, /livez and /predict still answer, and the
    engine's health check says Healthy (it reads no log)."""
    config, artifact = served_fraud.config, served_fraud.artifact
    log = config.state_dir / "logs" / "full-disk.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    log.unlink(missing_ok=True)
    log.symlink_to("/dev/full")
    handle = start_server(artifact, config, log_name="full-disk", timeout_s=120)
    try:
        with httpx.Client(timeout=30, trust_env=False) as client:
            codes = {client.get(f"{handle.url}/livez").status_code for _ in range(20)}
            body = {"instances": [[0.0] * 30]}
            predicted = client.post(f"{handle.url}/predict", json=body).status_code
        assert codes == {200} and predicted == 200
        record = _record(
            {
                "pid": handle.pid,
                "pgid": handle.pgid,
                "url": handle.url,
                "server_id": handle.server_id,
                "bento_tag": handle.bento_tag,
                "process_started": handle.started,
            }
        )
        assert LocalEngine(config).health(record) == "Healthy"
    finally:
        stop_server(handle)
        log.unlink(missing_ok=True)

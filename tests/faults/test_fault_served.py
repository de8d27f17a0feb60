"""Faults around a served Bento: a recorded pid that now belongs to another deployment's
server (issue 16, item 4), and a server whose state disk and log device are full (item 7).

The shared served Bento (``served_fraud``: one real ``bentoml serve`` per worker) plays
the other deployment's server; a ledger record of a deployment ``victim-staging`` names
its pid, as if the victim's server had exited and the pid been reused. ``destroy`` and
the health check must leave it alone and say what did not match.
"""

from __future__ import annotations

from dataclasses import replace

import httpx
import pytest
from support.faults import fill, tmpfs
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


def test_a_full_state_disk_does_not_stop_the_server_or_its_health(served_fraud, tmp_path):
    """The state directory on a real small tmpfs, filled up once the server runs (every
    new block fails with ENOSPC), and the server log on ``/dev/full``: the health
    endpoints (/livez, /readyz, /healthz), /predict and the engine's health check keep
    answering and no worker is restarted. Before the metrics directory left the state
    disk (``build/serve.py: metrics_dir``), the worker died at its next request and in
    every restart, so /livez and /predict failed while /metrics answered. Without the
    privilege to mount, the state directory is a plain one and only the log is full."""
    config, artifact = served_fraud.config, served_fraud.artifact
    with tmpfs(tmp_path / "state", "size=4m") as why_not:
        state = tmp_path / "state"
        for part in ("bentos", "models", "envs"):  # the Bento store stays where it was built
            (state / "bentoml").mkdir(exist_ok=True)
            (state / "bentoml" / part).symlink_to(config.state_dir / "bentoml" / part)
        (state / "logs").mkdir()
        (state / "logs" / "full-disk.log").symlink_to("/dev/full")
        full = replace(config, state_dir=state)
        handle = start_server(artifact, full, log_name="full-disk", timeout_s=120)
        try:
            workers = {p.pid for p in servers_under(state)}
            if not why_not:
                fill(state)
            with httpx.Client(timeout=30, trust_env=False) as client:
                codes = {
                    client.get(f"{handle.url}{path}").status_code
                    for _ in range(5)
                    for path in ("/livez", "/readyz", "/healthz")
                }
                body = {"instances": [[0.0] * 30]}
                predicted = {
                    client.post(f"{handle.url}/predict", json=body).status_code for _ in range(3)
                }
            assert codes == {200} and predicted == {200}
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
            assert LocalEngine(full).health(record) == "Healthy"
            assert {p.pid for p in servers_under(state)} == workers  # none restarted
            metrics = (state / "servers/full-disk/bentoml/prometheus_multiproc_dir").resolve()
            assert not metrics.is_relative_to(state)  # the metrics are not on the state disk
        finally:
            stop_server(handle)

"""start_server / stop_server against a real Bento built by modelops and served by BentoML.

Every test here runs real processes (``bentoml serve``); nothing is faked. After each
test no process of the test's BentoML home may be left running.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psutil
import pytest
from support.repo import make_repo
from support.serving import model_never_loads, servers_under
from support.waiting import HANG_GUARD_S, wait_exited

from reconciler.build.artifact import Artifact
from reconciler.build.serve import (
    ServeError,
    free_port,
    is_bentoml_server,
    log_tail,
    metrics_dir,
    port_is_free,
    prune_metrics_dirs,
    server_health,
    server_processes,
    start_server,
    stop_server,
)
from reconciler.core.config import load_config
from reconciler.core.diagnostics import EXIT_APPLY_FAILED
from reconciler.engine.metrics import read_metrics
from reconciler.spec.repo import load_all


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """(config, deployment, artifact): the fraud-detector staging Bento, built for real."""
    from reconciler.build.bento import build

    root = make_repo(tmp_path_factory.mktemp("serve") / "repo", policies=False).root
    config = load_config(root)
    dep = next(d for d in load_all(config, ["fraud-detector"], "staging").deployments)
    artifact = build(dep, config)
    yield config, dep, artifact
    for proc in servers_under(config.state_dir):
        proc.kill()


@pytest.fixture
def no_leftovers(built):
    """Fails the test when a server of the test's state directory is still running after it."""
    config = built[0]
    yield
    left = servers_under(config.state_dir)
    for proc in left:
        proc.kill()
    assert not left, f"processes left running: {[p.cmdline() for p in left]}"


def test_free_port_and_port_is_free():
    port = free_port()
    assert 1024 <= port <= 65535
    assert port_is_free(port)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))
        assert not port_is_free(port)


def test_log_tail_reads_only_from_offset(tmp_path):
    log = tmp_path / "x.log"
    log.write_text("old\n" + "".join(f"line {i}\n" for i in range(40)))
    assert log_tail(log, start=4, lines=3) == "line 37\nline 38\nline 39"
    assert log_tail(tmp_path / "missing.log") == ""


@pytest.mark.slow
def test_serve_predict_health_and_stop(built, no_leftovers):
    config, dep, artifact = built
    handle = start_server(artifact, config, timeout_s=120, workers=2, log_name=dep.key)
    try:
        assert handle.url == f"http://127.0.0.1:{handle.port}"
        assert handle.pgid == handle.pid == os.getpgid(handle.pid)
        assert Path(handle.log_path) == config.state_dir / "logs" / "fraud-detector-staging.log"
        procs = server_processes(handle.pid)
        workers = [p for p in procs if p.pid != handle.pid]
        assert len(workers) == 2  # the workers setting reached BentoML
        # listens on loopback only
        conns = [c for p in procs for c in p.net_connections("tcp")]
        listening = {c.laddr.ip for c in conns if c.status == psutil.CONN_LISTEN}
        assert listening == {"127.0.0.1"}
        body = {"instances": [[1.0] * 30, [2.0] * 30]}
        resp = httpx.post(f"{handle.url}/predict", json=body, timeout=30)
        assert resp.status_code == 200, resp.text
        assert len(resp.json()["predictions"]) == 2
        assert server_health(handle.pid, handle.url) == "Healthy"
        # BENTOML_HOME is the server's own under the state directory, never ~/bentoml,
        # and it shares the state directory's Bento store
        env = psutil.Process(handle.pid).environ()
        home = Path(env["BENTOML_HOME"])
        assert home.is_relative_to(config.state_dir / "servers")
        assert (home / "bentos").resolve() == (config.state_dir / "bentoml" / "bentos").resolve()
        assert env["BENTOML_DO_NOT_TRACK"] == "True"
        # BentoML's workers run in sessions of their own: a kill -9 of the manager
        # orphans them, still answering on the port (why stop_server tracks a marker)
        os.kill(handle.pid, signal.SIGKILL)
        wait_exited(handle.pid)  # the kill took effect (not a fixed sleep)
        assert server_health(handle.pid, handle.url) == f"NotRunning: process {handle.pid} exited"
        assert any(w.is_running() and w.status() != psutil.STATUS_ZOMBIE for w in workers)
    finally:
        assert stop_server(handle, grace_s=15)
    assert not any(w.is_running() and w.status() != psutil.STATUS_ZOMBIE for w in workers)
    assert not is_bentoml_server(handle.pid)
    assert port_is_free(handle.port)
    assert stop_server(handle) is False  # stopping twice is harmless


@pytest.mark.slow
def test_port_taken_raises_exit_3_and_starts_nothing(built, no_leftovers):
    config, _, artifact = built
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        with pytest.raises(ServeError) as err:
            start_server(artifact, config, port=port)
    assert err.value.exit_code == EXIT_APPLY_FAILED == 3
    assert f"port {port} on 127.0.0.1 is already in use" in err.value.message
    assert not servers_under(config.state_dir)


@pytest.mark.slow
def test_timeout_stops_the_server_and_shows_the_log(built, no_leftovers):
    config, _, artifact = built
    started = time.monotonic()
    with model_never_loads(config, artifact), pytest.raises(ServeError) as err:
        start_server(artifact, config, timeout_s=1.0, log_name="timeout-test")
    assert time.monotonic() - started < HANG_GUARD_S  # hang guard: it gave up by itself
    msg = err.value.message
    assert err.value.exit_code == 3
    assert "did not become ready (GET /readyz) within 1 s; it was stopped" in msg
    assert "--- last lines of .modelops/logs/timeout-test.log" in msg
    assert "bentoml serve fraud-detector:" in msg  # the log tail starts at this start
    assert not servers_under(config.state_dir)


@pytest.mark.slow
def test_process_that_exits_is_reported_with_its_log(built, no_leftovers):
    config, _, artifact = built
    missing = Artifact(bento_tag="fraud-detector:doesnotexist0000", digest="0" * 64)
    with pytest.raises(ServeError) as err:
        start_server(missing, config, timeout_s=60)
    msg = err.value.message
    assert "exited with code" in msg and "before it became ready" in msg
    assert "doesnotexist0000" in msg
    assert not servers_under(config.state_dir)
    assert artifact.bento_tag  # the good artifact is untouched


def test_stop_server_refuses_a_pid_that_is_not_a_bentoml_server():
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(3600)"])
    try:
        assert stop_server(proc.pid) is False
        assert proc.poll() is None  # untouched
        assert server_health(proc.pid, "http://127.0.0.1:9") == (
            f"NotRunning: process {proc.pid} exited (the pid now belongs to another program)"
        )
    finally:
        proc.kill()
        proc.wait()


def test_start_server_without_a_tag_is_an_error(tmp_path):
    config = load_config(make_repo(tmp_path / "repo", policies=False).root)
    with pytest.raises(ServeError, match="has no bento tag"):
        start_server(Artifact(bento_tag="", digest=""), config)
    with pytest.raises(ServeError, match="not a TCP port"):
        start_server(Artifact(bento_tag="x:y", digest=""), config, port=70000)


@pytest.mark.slow
def test_two_servers_of_one_state_directory_keep_their_own_metrics(built, no_leftovers):
    # BentoML empties its Prometheus multiprocess directory when a server starts and every
    # server of one BENTOML_HOME aggregates it: with a shared home the second start wiped
    # the first server's counts and both answered /metrics with the same figures
    config, _dep, artifact = built
    first = start_server(artifact, config, timeout_s=120, log_name="first-staging")
    second = None
    try:
        body = {"instances": [[1.0] * 30]}
        for _ in range(3):
            assert httpx.post(f"{first.url}/predict", json=body, timeout=30).status_code == 200
        second = start_server(artifact, config, timeout_s=120, log_name="second-staging")
        assert httpx.post(f"{second.url}/predict", json=body, timeout=30).status_code == 200
        assert read_metrics(first.url).requests == 3
        assert read_metrics(second.url).requests == 1
    finally:
        if second is not None:
            stop_server(second)
        stop_server(first)


def test_the_metrics_directory_is_off_the_state_disk_and_pruned_with_its_home(tmp_path):
    """build/serve.metrics_dir: the Prometheus multiprocess files of a server home live in
    RAM (tests/faults/test_fault_served.py shows why: a full state disk), emptied at each
    start, and removed once their home is gone."""
    homes = [tmp_path / name / "bentoml" for name in ("a", "b")]
    for home in homes:
        home.mkdir(parents=True)
    first = metrics_dir(homes[0])
    assert not first.is_relative_to(tmp_path)
    assert (homes[0] / "prometheus_multiproc_dir").resolve() == first
    (first / "counter_123.db").write_bytes(b"left over")
    assert metrics_dir(homes[0]) == first and not any(first.iterdir())  # emptied
    shutil.rmtree(tmp_path / "a")
    second = metrics_dir(homes[1])
    assert second != first and not first.exists()  # the home went: so did its metrics
    shutil.rmtree(tmp_path / "b")
    prune_metrics_dirs(second.parent)
    assert not second.exists()

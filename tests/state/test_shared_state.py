"""Shared state on S3 (``MODELOPS_STATE_URL`` / ``state_url``): the lock taken with
``If-None-Match: *``, records written with ``If-Match``, stale-lock recovery.

S3 cannot be reached from here, so it is moto's S3 server on loopback, a fake named as
such (``tests/support/s3.py``); lock holders are real second processes that hold the lock
until told (never a timer), and "a record changed under our feet" is a real second
writer run between our read and our write by a backend that calls it there.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from support.cli import invoke
from support.repo import make_repo
from support.s3 import use_fake_s3

from reconciler.core.config import load_config
from reconciler.core.diagnostics import ModelopsError
from reconciler.spec.model import Deployment, Spec
from reconciler.state import status
from reconciler.state.backend import (
    ABSENT,
    LocalBackend,
    S3Backend,
    StateConflict,
    StateStoreError,
    open_backend,
)
from reconciler.state.ledger import Ledger
from reconciler.state.lock import LockError, StateLock, break_lock, read_lock

BUCKET = "team-state"
URL = f"s3://{BUCKET}/modelops"
HANG_GUARD_S = 120  # only reached when something is broken

# Holds the S3 lock until it reads a line on stdin (never by a timer).
HOLDER = """
import sys
from pathlib import Path
from reconciler.state.backend import S3Backend
from reconciler.state.lock import StateLock
lock = StateLock(Path(sys.argv[1]), "modelops apply --env prod", 0, S3Backend(sys.argv[2]))
with lock:
    print("locked", flush=True)
    sys.stdin.readline()
print("released", flush=True)
"""


@pytest.fixture
def fake_s3(fake_s3_endpoint, monkeypatch):
    """The session's fake S3 (moto, on loopback), empty but for the state bucket; boto3
    pointed at it."""
    return use_fake_s3(fake_s3_endpoint, monkeypatch, BUCKET)


def _holder(tmp_path: Path) -> subprocess.Popen:
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(tmp_path), URL],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout.readline().strip() == "locked"
    return proc


def _dep(name: str = "fraud") -> Deployment:
    data = {"metadata": {"name": name}, "spec": {"target": {"platform": "local"}}}
    spec = Spec(file=f"specs/{name}.yaml", path=Path(f"/repo/specs/{name}.yaml"), data=data)
    return Deployment(spec=spec, env="prod", data=data)


def test_state_url_from_the_environment_or_modelops_yaml(tmp_path, monkeypatch):
    monkeypatch.delenv("MODELOPS_STATE_URL", raising=False)
    monkeypatch.delenv("PULUMI_BACKEND_URL", raising=False)
    assert load_config(tmp_path).state_url == ""
    assert isinstance(open_backend(load_config(tmp_path)), LocalBackend)
    (tmp_path / "modelops.yaml").write_text(f"specs: specs\nstate_url: {URL}/\n")
    config = load_config(tmp_path)
    assert config.state_url == URL and config.pulumi_backend == f"{URL}/pulumi"
    assert open_backend(config).describe("lock") == f"{URL}/lock"
    monkeypatch.setenv("MODELOPS_STATE_URL", "s3://other-bucket")
    assert load_config(tmp_path).state_url == "s3://other-bucket"

    monkeypatch.delenv("MODELOPS_STATE_URL")
    (tmp_path / "modelops.yaml").write_text("specs: specs\nstate_url: /srv/state\n")
    with pytest.raises(ModelopsError) as err:
        load_config(tmp_path)
    assert "modelops.yaml:2:" in err.value.message and "state_url" in err.value.message
    assert "s3://<bucket>/<prefix>" in err.value.message
    (tmp_path / "modelops.yaml").write_text("specs: specs\n")
    monkeypatch.setenv("MODELOPS_STATE_URL", "s3://Bad_Bucket/x")
    with pytest.raises(ModelopsError, match="MODELOPS_STATE_URL: .*not a valid S3 bucket name"):
        load_config(tmp_path)


@pytest.mark.parametrize("kind", ["local", "s3"])
def test_conditional_writes_refuse_a_changed_or_existing_key(kind, tmp_path, request):
    if kind == "s3":
        request.getfixturevalue("fake_s3")
    backend = LocalBackend(tmp_path) if kind == "local" else S3Backend(URL)
    first = backend.write("ledger/a.json", b"1", expect=ABSENT)
    with pytest.raises(StateConflict, match="exists already"):
        backend.write("ledger/a.json", b"2", expect=ABSENT)
    second = backend.write("ledger/a.json", b"2", expect=first)
    with pytest.raises(StateConflict, match="changed since it was read"):
        backend.write("ledger/a.json", b"3", expect=first)  # the ETag of a version gone
    with pytest.raises(StateConflict):
        backend.delete("ledger/a.json", expect=first)
    assert backend.read("ledger/a.json").data == b"2"
    assert backend.keys("ledger/") == ["ledger/a.json"]
    assert backend.delete("ledger/a.json", expect=second) is True
    assert backend.read("ledger/a.json") is None and backend.keys("ledger/") == []


class SecondWriterFirst(S3Backend):
    """A real :class:`S3Backend` that runs ``other`` (another writer, with its own ledger)
    just before each of its next ``times`` writes: the record changes under our feet."""

    def __init__(self, url: str, other, times: int) -> None:
        super().__init__(url)
        self.other, self.times = other, times

    def write(self, key, data, *, expect=None):
        if self.times:
            self.times -= 1
            self.other()
        return super().write(key, data, expect=expect)


def test_a_record_changed_under_our_feet_is_read_again_and_both_changes_kept(fake_s3, tmp_path):
    dep = _dep()
    status.labels_result(Ledger(tmp_path, S3Backend(URL)), dep, "ok", "first ingest")

    def other_writer() -> None:  # e.g. a monitor job on another runner
        status.labels_result(Ledger(tmp_path, S3Backend(URL)), dep, "ok", "concurrent ingest")

    ours = Ledger(tmp_path, SecondWriterFirst(URL, other_writer, times=2))
    status.drift_result(ours, dep, {"status": "ok"}, "ok", "drift checked")

    record = Ledger(tmp_path, S3Backend(URL)).get("fraud", "prod")
    messages = [entry["message"] for entry in record.history]
    # our write was refused twice (ETag mismatch), re-read, and merged over both others
    assert messages == ["first ingest", "concurrent ingest", "concurrent ingest", "drift checked"]
    assert record.drift == {"status": "ok"}


def test_a_record_that_never_stops_changing_fails_clearly_and_is_not_overwritten(fake_s3, tmp_path):
    dep = _dep()
    status.labels_result(Ledger(tmp_path, S3Backend(URL)), dep, "ok", "first ingest")

    def other_writer() -> None:
        status.labels_result(Ledger(tmp_path, S3Backend(URL)), dep, "ok", "other")

    ours = Ledger(tmp_path, SecondWriterFirst(URL, other_writer, times=100))
    with pytest.raises(StateConflict) as err:
        status.drift_result(ours, dep, {"status": "ok"}, "ok", "drift checked")
    assert f"{URL}/ledger/fraud-prod.json" in err.value.message
    assert "ETag mismatch" in err.value.message and err.value.exit_code == 2
    record = Ledger(tmp_path, S3Backend(URL)).get("fraud", "prod")
    assert record.drift == {} and record.history[-1]["message"] == "other"


def test_two_runs_contending_for_the_s3_lock_serialize(fake_s3, tmp_path):
    proc = _holder(tmp_path)
    try:
        holder = read_lock(S3Backend(URL))
        assert holder.pid == proc.pid and holder.command == "modelops apply --env prod"
        with pytest.raises(LockError) as err:
            StateLock(tmp_path, timeout_s=0, backend=S3Backend(URL)).acquire()
        assert f"the shared state {URL} is locked by pid {proc.pid}" in err.value.message

        refused = threading.Event()

        class Watched(StateLock):
            def _try(self) -> bool:
                taken = super()._try()
                if not taken:
                    refused.set()
                return taken

        waiter = Watched(tmp_path, timeout_s=HANG_GUARD_S, backend=S3Backend(URL))
        got: list[object] = []
        thread = threading.Thread(target=lambda: got.append(waiter.acquire()), daemon=True)
        thread.start()
        assert refused.wait(HANG_GUARD_S)  # the second run found it held, and waits
        assert thread.is_alive() and not got
        proc.stdin.write("release\n")
        proc.stdin.flush()
        thread.join(HANG_GUARD_S)
        assert got and read_lock(S3Backend(URL)).pid == waiter.info.pid
        assert proc.stdout.readline().strip() == "released"
        waiter.release()
        assert read_lock(S3Backend(URL)) is None
    finally:
        proc.kill()
        proc.wait()


def test_a_stale_s3_lock_is_reported_and_recovered_by_unlock(fake_s3, tmp_path, monkeypatch):
    proc = _holder(tmp_path)
    proc.send_signal(signal.SIGKILL)  # a runner killed mid-apply: its lock stays in S3
    proc.wait()
    with pytest.raises(LockError, match="a stale lock") as err:
        StateLock(tmp_path, timeout_s=HANG_GUARD_S, backend=S3Backend(URL)).acquire()
    assert err.value.holder.pid == proc.pid

    monkeypatch.setenv("MODELOPS_STATE_URL", URL)
    code, out, _ = invoke(tmp_path, "unlock")
    assert code == 0 and f"removed the lock held by pid {proc.pid}" in out
    with StateLock(tmp_path, timeout_s=0, backend=S3Backend(URL)) as lock:
        assert read_lock(S3Backend(URL)).pid == lock.info.pid
    code, out, _ = invoke(tmp_path, "unlock")
    assert code == 0 and f"{URL} is not locked" in out


def test_unlock_never_removes_a_lock_taken_meanwhile(fake_s3, tmp_path):
    stale = StateLock(tmp_path, timeout_s=0, backend=S3Backend(URL))
    stale.acquire()

    class TakenBetween(S3Backend):
        """Between unlock's read and its delete, another run takes the lock anew."""

        def delete(self, key, *, expect=None):
            S3Backend(URL).delete(key)
            StateLock(tmp_path, "modelops apply --env dev", 0, S3Backend(URL)).acquire()
            return super().delete(key, expect=expect)

    with pytest.raises(LockError, match="changed while it was being removed"):
        break_lock(TakenBetween(URL), force=True)
    assert read_lock(S3Backend(URL)).command == "modelops apply --env dev"


def test_a_missing_state_bucket_is_exit_2_naming_the_uri(fake_s3, tmp_path, monkeypatch):
    url = "s3://no-such-bucket/state"
    with pytest.raises(StateStoreError) as err:
        Ledger(tmp_path, S3Backend(url)).all()
    assert url in err.value.message and "does not exist" in err.value.message
    monkeypatch.setenv("MODELOPS_STATE_URL", url)
    (tmp_path / "specs").mkdir()  # a spec repository (status refuses any other directory)
    code, out, err_text = invoke(tmp_path, "status", "--env", "prod")
    assert code == 2 and url in out + err_text and "Traceback" not in out + err_text


def test_two_runners_with_their_own_checkouts_share_one_ledger_and_one_lock(
    fake_s3, tmp_path, monkeypatch
):
    # two CI runners: separate checkouts and state directories (thrown away after each
    # job), one MODELOPS_STATE_URL
    first = make_repo(tmp_path / "runner-1", specs=()).root
    second = make_repo(tmp_path / "runner-2", specs=()).root
    monkeypatch.setenv("MODELOPS_STATE_URL", URL)
    status.labels_result(Ledger.of(load_config(first)), _dep(), "ok", "ingested on runner 1")
    code, out, _ = invoke(second, "history", "fraud", "--env", "prod", "--format", "json")
    assert code == 0 and "ingested on runner 1" in out

    proc = _holder(first)  # an apply running on runner 1
    try:
        code, out, err = invoke(second, "apply", "--env", "prod", "--lock-timeout", "0")
        assert code == 2 and f"{URL} is locked by pid {proc.pid}" in out + err
        assert not (second / ".modelops/lock").exists()  # the lock is in S3, not here
        proc.stdin.write("release\n")
        proc.stdin.flush()
        assert proc.stdout.readline().strip() == "released"
        code, out, err = invoke(second, "apply", "--env", "prod", "--lock-timeout", "0")
        assert code == 0, out + err
        assert read_lock(S3Backend(URL)) is None  # released after its run
    finally:
        proc.kill()
        proc.wait()

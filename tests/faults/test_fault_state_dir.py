"""Fault: the state directory is full or read-only (issue 16, items 7 and 8).

A real small tmpfs, filled up or mounted read-only (needs the privilege to mount; the
test is skipped with that reason where it is missing, e.g. an unprivileged container).
Every write of the state (the lock, a ledger record) must end in a clear error naming
the directory, exit 2, and leave the files as they were.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import pytest
from support.cli import invoke
from support.faults import Tally, fill, tmpfs
from support.repo import make_repo

from reconciler.state.ledger import Ledger, LedgerRecord, StateWriteError


@contextlib.contextmanager
def _tmpfs(where: Path, *options: str):
    with tmpfs(where, *options) as why_not:
        if why_not:
            pytest.skip(why_not)
        yield where


def test_full_and_read_only_state_dirs_are_clear_errors(tmp_path, monkeypatch):
    repo = make_repo(tmp_path / "repo", specs=["fraud-detector"], git=True)
    tally = Tally()
    with _tmpfs(tmp_path / "full") as full:
        state = full / "state"
        ledger = Ledger(state)
        ledger.put(LedgerRecord("fraud-detector", "staging", platform="local"))
        before = ledger.path("fraud-detector", "staging").read_bytes()
        fill(full)
        changed = LedgerRecord("fraud-detector", "staging", platform="local", failures=1)
        tally.cases += 1
        with pytest.raises(StateWriteError, match="no space left on the device") as exc:
            ledger.put(changed)
        assert str(state / "ledger") in exc.value.message and exc.value.exit_code == 2
        if ledger.path("fraud-detector", "staging").read_bytes() != before:
            tally.data_lost.append("a failed write changed the record")
        monkeypatch.setenv("MODELOPS_STATE_DIR", str(state))
        tally.cases += 1
        code, out, err = invoke(repo.root, "apply", "--env", "staging")
        if code != 2 or "Traceback" in out + err or "internal error" in out + err:
            tally.crashes.append(f"apply on a full state dir: exit {code}: {err[-300:]}")
        assert f"cannot write the state directory {state}" in err
        assert "no space left on the device" in err
    with _tmpfs(tmp_path / "ro", "ro") as ro:
        monkeypatch.setenv("MODELOPS_STATE_DIR", str(ro))
        tally.cases += 1
        code, _, err = invoke(repo.root, "apply", "--env", "staging")
        if code != 2:
            tally.crashes.append(f"apply on a read-only state dir: exit {code}")
        assert f"cannot write the state directory {ro}: the file system is read-only" in err
    tally.report("full and read-only state directories")
    assert tally.problems == []


def test_a_lock_path_that_is_a_directory_and_a_model_symlink_loop(tmp_path):
    repo = make_repo(tmp_path / "repo", specs=["fraud-detector"], git=True)
    (repo.root / ".modelops" / "lock").mkdir(parents=True)
    code, out, err = invoke(repo.root, "apply", "--env", "staging")
    assert code == 2 and ".modelops/lock" in err and "internal error" not in out + err
    assert (repo.root / ".modelops" / "lock").is_dir()  # left as it was
    (repo.root / "models").mkdir()
    (repo.root / "models" / "loop").symlink_to(repo.root / "models" / "loop")
    path = repo.root / "specs" / "fraud-detector.yaml"
    path.write_text(
        path.read_text().replace("uri: examples/fraud/model.joblib", "uri: models/loop/m.joblib")
    )
    code, out, err = invoke(repo.root, "validate")
    assert code == 1 and "internal error" not in out + err
    assert "spec.model.uri" in out + err and "symbolic link loop" in out + err

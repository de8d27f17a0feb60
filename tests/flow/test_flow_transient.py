"""Transient failures (throttling, network, a stack locked by another update) are retried
with backoff and never count toward Stalled; real failures still do."""

from __future__ import annotations

import pytest

from reconciler.build.artifact import Artifact
from reconciler.core.config import load_config
from reconciler.core.diagnostics import ModelopsError
from reconciler.engine.base import ApplyError
from reconciler.flow import apply as apply_flow
from reconciler.flow.transient import is_transient, with_retries
from reconciler.spec.repo import load_all
from reconciler.state.ledger import Ledger
from reconciler.state.reasons import APPLY_FAILED, READY, TRANSIENT_FAILURE


class ConcurrentUpdateError(Exception):
    """Named as pulumi.automation's: another update holds the stack."""


@pytest.mark.parametrize(
    ("exc", "transient"),
    [
        (ConnectionResetError(104, "Connection reset by peer"), True),
        (TimeoutError("timed out"), True),
        (ConcurrentUpdateError("[409] Conflict: Another update is currently in progress."), True),
        (ModelopsError("update failed: ThrottlingException: Rate exceeded", 3), True),
        (ModelopsError("update failed: TooManyRequestsException", 3), True),
        (ModelopsError("error: the stack is currently locked by 1 lock(s)", 3), True),
        (ModelopsError("update failed: AccessDenied", 3), False),
        (ApplyError("did not become ready (GET /readyz) within 60 s"), False),
        (ValueError("model file is not a pickle"), False),
    ],
)
def test_what_is_transient(exc, transient):
    assert is_transient(exc) is transient


def test_an_engine_verdict_raised_while_handling_a_refused_connection_is_not_transient():
    try:
        try:
            raise ConnectionRefusedError(111, "Connection refused")
        except ConnectionRefusedError:
            raise ApplyError("server exited with code 1 before it became ready") from None
    except ApplyError as exc:
        assert not is_transient(exc)
    wrapped = ModelopsError("update failed", 3)
    wrapped.__cause__ = ConnectionResetError("reset")
    assert is_transient(wrapped)


def test_retries_back_off_and_stop_at_a_real_failure():
    waits: list[float] = []
    calls = iter([ConnectionResetError("reset"), TimeoutError("slow"), "done"])

    def action():
        item = next(calls)
        if isinstance(item, Exception):
            raise item
        return item

    assert with_retries(action, sleep=waits.append) == "done"
    assert waits == [2.0, 4.0]
    waits.clear()
    with pytest.raises(ValueError):
        with_retries(lambda: (_ for _ in ()).throw(ValueError("bad")), sleep=waits.append)
    assert waits == []


class FlakyEngine:
    """A fake engine (the Pulumi CLI cannot run here) that fails with ``errors`` in turn."""

    def __init__(self, errors):
        self.errors = list(errors)
        self.calls = 0

    def apply(self, dep, artifact, revision, record=None):
        self.calls += 1
        raise self.errors[min(self.calls, len(self.errors)) - 1]


def _dep(spec_repo):
    config = load_config(spec_repo)
    result = load_all(config, ["fraud-detector"], "prod")
    return result.deployments[0], config


def test_a_persistent_throttle_is_retried_and_never_stalls(spec_repo, monkeypatch):
    monkeypatch.setattr(apply_flow, "_sleep", lambda s: None)
    dep, config = _dep(spec_repo)
    ledger = Ledger(config.state_dir)
    artifact = Artifact("fraud-detector:abc", "abc")
    throttled = ModelopsError("update failed: ThrottlingException: Rate exceeded", 3)
    for _ in range(config.stalled_after + 2):
        engine = FlakyEngine([throttled])
        with pytest.raises(ModelopsError):
            apply_flow.converge(dep, artifact, config, ledger, engine, "rev1")
        assert engine.calls == 3  # retried with backoff within the run
    rec = ledger.get(dep.name, dep.env)
    assert rec.failures == 0 and not rec.stalled
    assert rec.condition(READY)["reason"] == TRANSIENT_FAILURE
    assert all(h["message"].startswith("transient: ") for h in rec.history)
    # a real failure still counts toward Stalled
    for i in range(1, config.stalled_after + 1):
        engine = FlakyEngine([ModelopsError("update failed: AccessDenied", 3)])
        with pytest.raises(ModelopsError):
            apply_flow.converge(dep, artifact, config, ledger, engine, "rev1")
        assert engine.calls == 1
        rec = ledger.get(dep.name, dep.env)
        assert rec.failures == i and rec.condition(READY)["reason"] == APPLY_FAILED
    assert rec.stalled

"""Ledger semantics: history, last good revision, stalled after N failures, corrupt files."""

from __future__ import annotations

import json

import pytest

from reconciler.report.ledger import history_footer
from reconciler.state.ledger import HISTORY_LIMIT, Ledger, LedgerError, LedgerRecord


def test_success_records_revision_history_and_last_good(tmp_path):
    ledger = Ledger(tmp_path)
    rec = LedgerRecord("fraud", "prod")
    rec.record_success("rev1", "d1", artifact={"bento_tag": "fraud:1"}, outputs={"url": "u"})
    rec.record_success("rev2", "d2", artifact={"bento_tag": "fraud:2"})
    ledger.put(rec)
    back = ledger.get("fraud", "prod")
    assert back.lastAppliedRevision == "rev2" and back.lastGoodRevision == "rev1"
    assert back.inputsDigest == "d2" and back.artifact == {"bento_tag": "fraud:2"}
    assert back.outputs == {"url": "u"}  # kept when the engine gives none
    assert [(h["action"], h["revision"], h["result"]) for h in back.history] == [
        ("apply", "rev1", "succeeded"),
        ("apply", "rev2", "succeeded"),
    ]
    assert all(h["actor"] and h["time"].endswith("Z") for h in back.history)
    assert back.condition("Ready")["status"] == "True"


def test_failure_keeps_what_was_applied(tmp_path):
    rec = LedgerRecord("fraud", "prod")
    rec.record_success("rev1", "d1", artifact={"bento_tag": "fraud:1"})
    rec.record_failure("rev2", "d2", "model cannot load")
    assert rec.lastAppliedRevision == "rev1" and rec.lastAttemptedRevision == "rev2"
    assert rec.artifact == {"bento_tag": "fraud:1"} and rec.inputsDigest == "d1"
    assert rec.condition("Ready") | {"lastTransitionTime": ""} == {
        "type": "Ready",
        "status": "False",
        "reason": "ApplyFailed",
        "message": "model cannot load",
        "lastTransitionTime": "",
    }
    assert rec.history[-1]["result"] == "failed" and not rec.stalled


def test_stalled_after_n_failures_with_the_same_inputs_and_cleared_by_a_change():
    rec = LedgerRecord("fraud", "staging")
    for i in range(2):
        rec.record_failure(f"rev{i}", "same", "boom", stalled_after=3)
    assert rec.failures == 2 and not rec.stalled
    rec.record_failure("rev2", "same", "boom", stalled_after=3)
    assert rec.stalled and "3 consecutive failed applies" in rec.stalled_reason
    assert "boom" in rec.stalled_reason
    # the spec or an input changed: the count starts again, no longer stalled
    rec.record_failure("rev3", "other", "boom", stalled_after=3)
    assert rec.failures == 1 and not rec.stalled
    rec.record_success("rev4", "other")
    assert rec.failures == 0 and rec.condition("Stalled") is None


def test_history_is_bounded():
    rec = LedgerRecord("a", "dev")
    for i in range(HISTORY_LIMIT + 5):
        rec.add_history("apply", f"r{i}", "succeeded")
    assert (
        len(rec.history) == HISTORY_LIMIT and rec.history[-1]["revision"] == f"r{HISTORY_LIMIT + 4}"
    )


def test_corrupt_or_newer_records_are_reported_and_left_untouched(tmp_path):
    ledger = Ledger(tmp_path)
    ledger.dir.mkdir(parents=True)
    bad = ledger.path("a", "dev")
    bad.write_text("{not json")
    with pytest.raises(LedgerError, match="corrupt"):
        ledger.get("a", "dev")
    assert bad.read_text() == "{not json"
    newer = ledger.path("b", "dev")
    newer.write_text(json.dumps({"name": "b", "environment": "dev", "schemaVersion": 99}))
    with pytest.raises(LedgerError, match="newer"):
        ledger.all()


@pytest.mark.parametrize(
    ("fields", "needle"),
    [
        ({"outputs": [1, 2]}, "field 'outputs' is of type list, expected a JSON object"),
        ({"conditions": 5}, "field 'conditions' is of type int, expected a JSON list"),
        ({"conditions": [5]}, "field 'conditions' holds an entry that is not an object"),
        ({"failures": "3"}, "field 'failures' is of type str, expected a whole number"),
        ({"failures": True}, "field 'failures' is of type bool, expected a whole number"),
        ({"drift": "x"}, "field 'drift' is of type str, expected a JSON object"),
        ({"desiredState": 3}, "field 'desiredState' is of type int, expected a JSON object"),
        ({"platform": "local", "outputs": {"pid": "abc"}}, "'outputs.pid' is 'abc'"),
    ],
)
def test_a_record_with_a_field_of_the_wrong_type_is_an_error_naming_the_file(
    tmp_path, fields, needle
):
    """status and apply used to end in "internal error" (AttributeError, TypeError,
    ValueError) on such a record; now every reader gets a LedgerError (exit 2) that names
    the file and the field, and the file is left as it was."""
    ledger = Ledger(tmp_path)
    ledger.dir.mkdir(parents=True)
    path = ledger.path("a", "dev")
    text = json.dumps({"name": "a", "environment": "dev", **fields})
    path.write_text(text)
    with pytest.raises(LedgerError) as info:
        ledger.get("a", "dev")
    assert str(path) in info.value.message and needle in info.value.message
    assert info.value.exit_code == 2 and path.read_text() == text
    path.write_bytes(b"\xff\xfe{}")  # not UTF-8: the same kind of error, not a crash
    with pytest.raises(LedgerError, match="corrupt"):
        ledger.all()


def test_old_records_without_new_fields_still_load(tmp_path):
    ledger = Ledger(tmp_path)
    ledger.dir.mkdir(parents=True)
    ledger.path("a", "dev").write_text(json.dumps({"name": "a", "environment": "dev"}))
    rec = ledger.get("a", "dev")
    assert rec.suspended == {} and rec.lastAttemptedDigest == ""
    assert rec.destroyed == {} and ledger.all() == [rec]  # an old record is live


def test_destroy_keeps_the_history_and_clears_what_was_live(tmp_path):
    ledger = Ledger(tmp_path)
    rec = LedgerRecord("fraud", "prod", platform="kubernetes", specFile="specs/fraud.yaml")
    rec.record_success("rev1", "d1", artifact={"bento_tag": "fraud:1"}, outputs={"url": "u"})
    rec.record_success("rev2", "d2", artifact={"bento_tag": "fraud:2"}, desired_state={"a": 1})
    rec.drift = {"status": "ok"}
    rec.record_destroyed("rev3", "modelops destroy")
    ledger.put(rec)

    back = ledger.get("fraud", "prod")  # still there, with its history
    assert [(h["action"], h["revision"], h["result"]) for h in back.history] == [
        ("apply", "rev1", "succeeded"),
        ("apply", "rev2", "succeeded"),
        ("destroy", "rev3", "succeeded"),
    ]
    last = back.history[-1]
    assert last["actor"] and last["time"].endswith("Z")
    assert last["lastAppliedRevision"] == "rev2" and last["artifact"] == "fraud:2"
    assert last["message"] == "destroyed (modelops destroy); was live at rev2 (fraud:2)"
    assert back.destroyed == {
        "time": last["time"],
        "actor": last["actor"],
        "revision": "rev3",
        "lastAppliedRevision": "rev2",
        "artifact": "fraud:2",
    }
    # nothing reads as live any more
    assert back.lastAppliedRevision == back.lastGoodRevision == back.inputsDigest == ""
    assert back.artifact == back.outputs == back.desiredState == back.drift == {}
    assert back.conditions == [] and back.failures == 0
    assert (back.platform, back.specFile) == ("kubernetes", "specs/fraud.yaml")
    # left out of the live records, listed on request
    assert ledger.all() == []
    assert [r.key for r in ledger.all(include_destroyed=True)] == ["fraud-prod"]


def test_apply_after_destroy_continues_the_history(tmp_path):
    ledger = Ledger(tmp_path)
    rec = LedgerRecord("fraud", "prod")
    rec.record_success("rev1", "d1", artifact={"bento_tag": "fraud:1"})
    rec.record_destroyed("rev1")
    assert rec.history[-1]["message"] == "destroyed; was live at rev1 (fraud:1)"
    # monitoring a destroyed deployment does not bring it back
    rec.add_history("monitor", rec.lastAppliedRevision, "ok", "no drift")
    assert rec.destroyed
    rec.record_success("rev4", "d4", artifact={"bento_tag": "fraud:4"})
    ledger.put(rec)
    back = ledger.get("fraud", "prod")
    assert not back.destroyed and [r.key for r in ledger.all()] == ["fraud-prod"]
    assert [h["action"] for h in back.history] == ["apply", "destroy", "monitor", "apply"]
    # the revision before the destroy is not a "last good" one to roll back to
    assert back.lastAppliedRevision == "rev4" and back.lastGoodRevision == ""
    # a failed attempt also makes it managed again (status shows the failure)
    back.record_destroyed("rev5")
    back.record_failure("rev6", "d6", "model cannot load")
    assert not back.destroyed and back.lastAppliedRevision == ""
    assert back.condition("Ready")["reason"] == "ApplyFailed"


def test_destroy_of_a_record_that_was_never_applied():
    rec = LedgerRecord("fraud", "prod")
    rec.record_failure("rev1", "d1", "boom")
    rec.record_destroyed("rev2", "spec deleted, --prune")
    assert rec.history[-1]["message"] == "destroyed (spec deleted, --prune); never applied"
    assert rec.destroyed["lastAppliedRevision"] == "" and rec.lastAttemptedRevision == ""
    assert [h["result"] for h in rec.history] == ["failed", "succeeded"]


def test_destroy_of_a_record_applied_from_uncommitted_specs_says_it_was_live():
    # a repository without a commit yet: apply records no revision, but it was live
    rec = LedgerRecord("iris", "dev")
    rec.record_success("", "d1", artifact={"bento_tag": "iris:1"})
    rec.record_destroyed("", "modelops destroy")
    message = rec.history[-1]["message"]
    assert "never applied" not in message
    assert message == (
        "destroyed (modelops destroy); was live as iris:1 "
        "(applied from uncommitted specs: no Git revision)"
    )
    assert "was live as iris:1" in history_footer(rec)

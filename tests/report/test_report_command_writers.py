"""The text writers of the commands other than plan: exact lines from real stage values.

The plan writers are checked through real plans (test_flow_plan, test_plan_*,
test_pr_comment_escaping); these cover the lines ``build``, ``status``, ``history``,
``policy test`` and ``retrain`` print, and the lookup from format name to plan writer.
"""

from __future__ import annotations

import io
import json

import pytest
from rich.console import Console

from reconciler.core.config import load_config
from reconciler.core.diagnostics import ModelopsError, Position
from reconciler.engine.metrics import ServiceMetrics
from reconciler.flow.run import Outcome, RunReport
from reconciler.monitor.retrain import RetrainResult
from reconciler.policy import testing as policy_testing
from reconciler.report import (
    build_text,
    drift_text,
    ledger,
    plan_json,
    plan_markdown,
    plan_text,
    policy_tests_text,
)
from reconciler.report.plan import PLAN_WRITERS, plan_writer_for
from reconciler.state.ledger import LedgerRecord


def test_one_table_from_format_name_to_plan_writer():
    assert PLAN_WRITERS == {
        "text": plan_text.write,
        "json": plan_json.write,
        "markdown": plan_markdown.write,
    }
    assert plan_writer_for("markdown") is plan_markdown.write
    with pytest.raises(ModelopsError) as info:
        plan_writer_for("xml")
    assert info.value.message == "unknown format 'xml'; valid formats: text, json, markdown"
    assert info.value.exit_code == 2


def test_plan_json_is_the_plan_data_with_one_line_per_outcome():
    report = RunReport("plan", "prod", "abc123", envs=["prod"])
    for name in ("a", "b", "c"):
        report.outcomes.append(Outcome(f"{name}-prod", name, "prod", "local", "planned"))
        report.plans.append(None)
    report.notes.append('a note with "quotes", a comma, and a\nnewline')
    text = plan_json.write(report)
    assert json.loads(text) == json.loads(json.dumps(plan_json.data(report)))
    assert text.endswith("}\n")
    lines = text.splitlines()
    assert [line for line in lines if line.startswith('    {"key": ')] == [
        line for line in lines if '"status": "planned"' in line
    ]  # each outcome is whole on one line
    assert len([line for line in lines if '"status": "planned"' in line]) == 3
    assert json.loads(plan_json.write(RunReport("plan", "prod", "")))["outcomes"] == []


def test_build_rows_and_summary():
    built = {
        "deployment": "fraud-detector-staging",
        "status": "built",
        "seconds": 1.5,
        "artifact": {
            "bento_tag": "fraud-detector-staging:abc",
            "image": "registry.example.com/ml/fraud-detector:abc",
            "image_built": False,
            "image_note": "docker is not running",
        },
    }
    failed = {"deployment": "d-staging", "status": "failed", "seconds": 0.2, "error": "no file"}
    assert build_text.row_text(built) == (
        "fraud-detector-staging: built fraud-detector-staging:abc (1.5 s); image "
        "registry.example.com/ml/fraud-detector:abc (not built)\n  docker is not running\n"
    )
    built["artifact"]["image_note"] = "not built (without --image)"
    assert build_text.row_text(built).count("\n") == 1  # the usual note is left out
    assert build_text.row_failure(built) == ""
    assert build_text.row_text(failed) == ""
    assert build_text.row_failure(failed) == "d-staging: failed (0.2 s): no file\n"
    assert build_text.summary([built, failed], ["old:1"], "staging") == (
        "build --env staging: 1 built, 0 reused (unchanged inputs), 1 failed\n"
        "garbage-collected 1 Bento(s): old:1\n"
    )


def test_status_row_and_history_footer_from_a_real_ledger_record():
    rec = LedgerRecord("fraud-detector", "prod", platform="kubernetes")
    rec.record_success("a" * 40, "d1", outputs={"url": "https://ml.example.com"})
    rec.drift = {"drifted": True}
    row = ledger.status_row(rec, "Ready=True ApplySucceeded")
    assert row == {
        "deployment": "fraud-detector-prod",
        "platform": "kubernetes",
        "revision": "a" * 12,
        "model": "-",  # no artifact recorded
        "applied": row["applied"],  # the current time: checked below
        "health": "Ready=True ApplySucceeded",
        "stalled": "no",
        "failures": 0,
        "drift": "drifted",
        "service": "-",
        "service_metrics": None,
        "quality": "-",
        "url": "https://ml.example.com",
        "bundle": "",  # an edge deployment's bundle file name; none here
        "model_sha256": "",
        "bento_tag": "",
        "applied_at": rec.history[-1]["time"],
        "age_s": row["age_s"],
        "last_failure": None,  # no failed apply since the last success
    }
    assert row["applied"].startswith(rec.history[-1]["time"] + " (")
    rec.quality = {
        "status": "quality alert",
        "metric": "accuracy",
        "metrics": {"accuracy": {"value": 0.71}},
        "estimated_labelled": {"accuracy": 0.962},
        "drift_kind": "concept drift",
    }
    row = ledger.status_row(rec, "Ready=True ApplySucceeded")
    assert row["quality"] == "quality alert (accuracy 0.710, est. 0.962, concept drift)"
    figures = ServiceMetrics(requests=200, errors=3, p50_ms=2.5, p99_ms=9.0, uptime_s=100.0)
    row = ledger.status_row(rec, "Healthy", figures)
    assert row["service"] == "p50 2.5 ms, p99 9 ms, 2 req/s, 1.5% 5xx (200 requests)"
    assert row["service_metrics"]["error_rate"] == 0.015
    unknown = ledger.status_row(rec, "Healthy", "unavailable: GET /metrics answered HTTP 404")
    assert unknown["service"] == "unavailable: GET /metrics answered HTTP 404"
    assert unknown["service_metrics"] is None
    assert ledger.history_footer(rec) == f"applied: {'a' * 12}  last good: -\n"
    assert ledger.status_footer([], None) == ""
    assert ledger.status_footer(["x-prod"], None) == (
        "destroyed (not live; history kept, see `modelops history NAME --env ENV`): x-prod\n"
    )


def test_policy_test_summary():
    case = policy_testing.CaseResult("compliant", Position("policies/tests/a.yaml", 3, 1), [], [])
    run = policy_testing.TestRun(cases=[case], coverage={"MDL-001": {"fires": 1, "passes": 1}})
    assert policy_tests_text.summary(run) == (
        "1/1 case(s) passed; 1/1 policies proven to fire and to pass: ok\n"
    )
    run.not_compiled = {"MDL-001": "line 1 col 1: bad"}
    case.not_compiled = ["MDL-001"]
    assert policy_tests_text.summary(run) == (
        "1 policy(ies) do not compile (MDL-001), so no case could check them; 1/1 case(s) "
        "agree on the 0 policies that compile; 1/1 policies proven to fire and to pass: FAILED\n"
    )


def test_retraining_outcome(tmp_path):
    config = load_config(tmp_path)
    res = RetrainResult(
        "fraud-detector",
        "prod",
        "proposed",
        message="roc_auc 0.97 > 0.95",
        branch="modelops/retrain-1",
        commit="c" * 40,
        report=str(tmp_path / "runs" / "candidate.json"),
    )
    assert drift_text.retraining("fraud-detector-prod", res, config) == (
        "retrain fraud-detector-prod: proposed: roc_auc 0.97 > 0.95\n"
        f"branch: modelops/retrain-1\ncommit: {'c' * 40}\n"
        "candidate report: runs/candidate.json\n"
    )


def test_status_table_shows_ledger_values_as_text_not_markup():
    """A failure message is text: "[red]" stays visible, a stray "[/x]" cannot crash."""
    rec = LedgerRecord("fraud-detector", "prod", platform="kubernetes")
    rec.record_success("a" * 40, "d1")
    rec.record_failure("b" * 40, "d2", "[Errno 2] [red]quota[/red] [/x]", stalled_after=1)
    console = Console(file=io.StringIO(), width=400, highlight=False)
    console.print(ledger.status_table([ledger.status_row(rec, "Ready=False ApplyFailed")]))
    assert "[Errno 2] [red]quota[/red] [/x]" in console.file.getvalue()

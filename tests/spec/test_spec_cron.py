"""Schedules checked in the dialect of the target that runs them (reconciler.spec.cron)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from support.cli import invoke

from reconciler.core.config import load_config
from reconciler.spec import cron
from reconciler.spec.repo import load_all

K8S, EB = cron.KUBERNETES, cron.EVENTBRIDGE


@pytest.mark.parametrize(
    ("platform", "needle", "absent"),
    [
        ("local", "refused for the local target: the local target's", "Kubernetes"),
        ("kubernetes", "for the kubernetes target: the Kubernetes CronJob controller", "AWS"),
        ("aws-sagemaker", "for the aws-sagemaker target: modelops renders", "Kubernetes"),
        ("edge", "for the edge target: the edge target's jobs", "Kubernetes"),
    ],
)
def test_day_of_week_seven_names_the_target_the_spec_uses(platform, needle, absent):
    (finding,) = cron.check("0 3 * * 0,7", cron.DIALECTS[platform], platform)
    assert needle in finding.message and absent not in finding.message
    assert "write 0 (or SUN) for Sunday" in finding.message


@pytest.mark.parametrize(
    ("expr", "dialect", "severity", "needle"),
    [
        ("0 3 * * 7", K8S, "error", "write 0 (or SUN) for Sunday"),
        ("0 3 * * 5-7", K8S, "error", "refused for the kubernetes target: the Kubernetes"),
        ("61 * * * *", K8S, "error", "minute 61 is out of range 0-59"),
        ("0 24 * * *", EB, "error", "hour 24 is out of range 0-23"),
        ("0 3 0 * *", K8S, "error", "day-of-month 0 is out of range 1-31"),
        ("0 3 * 13 *", K8S, "error", "month 13 is out of range 1-12"),
        ("0 3 * FOO *", K8S, "error", "month 'FOO' is not a value (1-12 or JAN-DEC)"),
        ("0 3 ? * MON", K8S, "error", "'?' is EventBridge syntax"),
        ("0 3 * * 5-1", K8S, "error", "starts after it ends"),
        ("*/0 * * * *", K8S, "error", "step /0 must be 1 or more"),
        ("0 3 * *", K8S, "error", "has 4 field(s); write 5"),
        ("0 3 * * 0 2027", EB, "error", "has 6 field(s)"),
        ("0 0 31 2,4 *", K8S, "error", "never runs"),
        ("0 0 30 2 *", EB, "error", "never runs"),
        ("0 0 31 4,6,9,11 *", K8S, "error", "never runs"),
        ("0 0 1,15 * MON", K8S, "warning", "EITHER matches"),
        ("0 0 1,15 * MON", EB, "error", "EventBridge Scheduler cannot express"),
        ("0 0 * * */2", EB, "error", "has a step"),
        ("0 0 * * MON-FRI/2", EB, "error", "has a step"),
    ],
)
def test_findings_per_dialect(expr, dialect, severity, needle):
    findings = cron.check(expr, dialect)
    assert findings and findings[0].severity == severity, findings
    assert needle in " | ".join(f.message for f in findings)


@pytest.mark.parametrize(
    ("expr", "dialect"),
    [
        ("0 3 * * 0", K8S),
        ("0 3 * * SUN", EB),
        ("30 */6 * * *", EB),
        ("0 0 29 2 *", K8S),  # leap years only: it does run
        ("0 0 31 1-3 *", K8S),  # January and March have a 31st
        ("5/15 9-17 * JAN-MAR mon-fri", K8S),
        ("0 0 */2 * *", EB),  # a step in day-of-month is fine on EventBridge
        ("0 0 * * */2", K8S),
    ],
)
def test_valid_schedules_have_no_findings(expr, dialect):
    assert cron.check(expr, dialect) == []


def test_next_runs_are_in_utc_and_never_firing_is_refused():
    start = datetime(2027, 1, 30, 12, 0, tzinfo=UTC)
    runs = cron.next_runs("0 0 31 * *", 3, start)
    assert [r.date().isoformat() for r in runs] == ["2027-01-31", "2027-03-31", "2027-05-31"]
    with pytest.raises(cron.CronError, match="never runs"):
        cron.next_runs("0 0 31 2,4 *", 3, start)


def _edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new, 1))


def test_each_schedule_is_checked_for_the_target_it_is_rendered_for(spec_repo):
    # diabetes-progression: prod on aws-sagemaker (EventBridge), staging on local
    path = spec_repo / "specs" / "diabetes-progression.yaml"
    _edit(path, 'schedule: "0 4 1 * *"', 'schedule: "0 4 1 * MON"')
    result = load_all(load_config(spec_repo))
    found = {(d.severity, d.message.rsplit("[env ", 1)[1]) for d in result.diagnostics}
    assert found == {("error", "prod]"), ("warning", "staging]")}
    diag = next(d for d in result.diagnostics if d.severity == "error")
    assert diag.field == "spec.retraining.schedule" and "aws-sagemaker target" in diag.message
    assert (diag.position.file, diag.position.line) == ("specs/diabetes-progression.yaml", 53)


def test_prod_monitoring_with_a_never_firing_schedule_does_not_pass(spec_repo):
    path = spec_repo / "specs" / "fraud-detector.yaml"
    _edit(path, 'schedule: "0 * * * *"', 'schedule: "0 0 31 2,4 *"')
    code, out, err = invoke(spec_repo, "validate")
    assert code == 1 and "specs/fraud-detector.yaml:57:" in out + err and "never runs" in out + err
    code, out, err = invoke(spec_repo, "policy", "check", "--env", "prod")
    assert code == 1 and "never runs" in out + err
    assert "Traceback" not in out + err


def test_a_spec_warning_is_advisory_in_every_policy_check_format(spec_repo):
    # day-of-month and day-of-week together is a validate warning ("either"), not an error:
    # policy check passes (exit 0) and no writer shows it as an error or as blocking
    path = spec_repo / "specs" / "fraud-detector.yaml"
    _edit(path, 'schedule: "0 3 * * 0"', 'schedule: "0 3 1 * 1"')
    code, out, err = invoke(spec_repo, "validate")
    assert code == 0 and "warning" in out + err
    code, out, err = invoke(spec_repo, "policy", "check", "--env", "prod")
    assert code == 0, out + err
    assert "BLOCKED" not in out and "ERROR" not in out and "WARN [cron]" in out
    code, out, _ = invoke(spec_repo, "policy", "check", "--env", "prod", "--format", "json")
    report = json.loads(out)
    assert code == 0 and report["blocking"] is False
    code, out, _ = invoke(spec_repo, "policy", "check", "--env", "prod", "--format", "sarif")
    levels = {r["ruleId"]: r["level"] for r in json.loads(out)["runs"][0]["results"]}
    assert code == 0 and "error" not in {lvl for rid, lvl in levels.items() if "cron" in rid}
    code, out, _ = invoke(spec_repo, "policy", "check", "--env", "prod", "--format", "github")
    assert code == 0 and not any(
        line.startswith("::error") and "cron" in line for line in out.splitlines()
    )

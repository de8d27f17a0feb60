"""Waivers: applied and reported as waived, and every bad waiver is a finding."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from support.repo import PROJECT

from reconciler.core.config import load_config
from reconciler.policy.check import check_policies
from reconciler.spec.repo import load_all

TODAY = dt.date(2026, 11, 29)


def make_violation(root: Path) -> None:
    """fraud-detector prod: a plain rolling update (MDL-011, advisory) and a batching window
    of 150 ms against a 200 ms SLO (MDL-024, advisory)."""
    path = root / "specs" / "fraud-detector.yaml"
    text = path.read_text()
    text = text.replace(
        "rollout: {strategy: canary, steps: [10, 50, 100], step: 0}", "rollout: {strategy: rolling}"
    )
    path.write_text(text)


def write_waivers(root: Path, body: str) -> None:
    (root / "policies" / "waivers.yaml").write_text("waivers:\n" + body)


def run(root: Path, env: str = "prod"):
    config = load_config(root)
    loaded = load_all(config, None, env)
    assert not loaded.errors, loaded.errors
    return check_policies(config, loaded.deployments, today=TODAY)


WAIVER = """  - policy: MDL-011
    deployment: fraud-detector
    environment: prod
    reason: Rolling update until the canary controller is installed on the new cluster.
    approver: security@example.com
    ticket: SEC-42
    expires: {expires}
"""


def test_valid_waiver_marks_the_violation_waived_not_hidden(spec_repo):
    make_violation(spec_repo)
    unwaived = run(spec_repo)
    assert [r.status for r in unwaived.results if r.policy_id == "MDL-011"].count("warn") == 1
    write_waivers(spec_repo, WAIVER.format(expires="2027-01-15"))
    report = run(spec_repo)
    waived = [r for r in report.results if r.status == "waived"]
    assert len(waived) == 1 and waived[0].policy_id == "MDL-011"
    assert waived[0].waiver.approver == "security@example.com"
    assert not report.blocking
    diag = next(d for d in report.diagnostics() if d.code == "MDL-011")
    assert diag.severity == "warning" and "waived until 2027-01-15" in diag.message
    assert report.expiring_waivers() == []  # 47 days ahead


def test_waiver_expiring_soon_is_listed(spec_repo):
    make_violation(spec_repo)
    write_waivers(spec_repo, WAIVER.format(expires="2026-12-10"))
    report = run(spec_repo)
    assert [w.policy for w in report.expiring_waivers()] == ["MDL-011"]


def test_expired_waiver_is_a_finding_and_waives_nothing(spec_repo):
    make_violation(spec_repo)
    write_waivers(spec_repo, WAIVER.format(expires="2026-11-01"))
    report = run(spec_repo)
    assert report.blocking
    assert not [r for r in report.results if r.status == "waived"]
    (d,) = report.waiver_diagnostics
    assert d.position.file == "policies/waivers.yaml" and d.position.line == 8
    assert "expired on 2026-11-01" in d.message


def test_wrong_date_far_expiry_missing_approver_and_reason(spec_repo):
    make_violation(spec_repo)
    write_waivers(
        spec_repo,
        """  - policy: MDL-011
    deployment: fraud-detector
    reason: ok
    approver: security@example.com
    expires: next tuesday
  - policy: MDL-011
    deployment: fraud-detector
    reason: ok
    approver: security@example.com
    expires: 2027-06-01
  - policy: MDL-011
    deployment: fraud-detector
    expires: 2026-12-01
""",
    )
    report = run(spec_repo)
    messages = [(d.field, d.message) for d in report.waiver_diagnostics]
    assert any(
        f == "waivers.0.expires" and "not a date; write YYYY-MM-DD" in m for f, m in messages
    )
    assert any(f == "waivers.1.expires" and "more than 90 days ahead" in m for f, m in messages)
    assert any(f == "waivers.2.reason" for f, _ in messages)
    assert any(f == "waivers.2.approver" for f, _ in messages)
    assert report.blocking
    assert not [r for r in report.results if r.status == "waived"]


def test_unused_waiver_is_a_finding(spec_repo):
    write_waivers(spec_repo, WAIVER.format(expires="2027-01-15"))  # nothing violates MDL-011
    report = run(spec_repo)
    (d,) = report.waiver_diagnostics
    assert "matches no violation" in d.message
    assert report.blocking
    # not judged when its deployment was not checked at all
    assert not run(spec_repo, env="staging").waiver_diagnostics


def test_non_waivable_policy_cannot_be_waived(spec_repo):
    path = spec_repo / "specs" / "fraud-detector.yaml"
    path.write_text(
        path.read_text().replace(
            '    sha256: "cc8cd22265aa7df3578322bf234a37cbbc80e683a07aafd1b290e0b9c8233267"\n',
            "",
            1,
        )
    )
    write_waivers(spec_repo, WAIVER.replace("MDL-011", "MDL-013").format(expires="2027-01-15"))
    report = run(spec_repo)
    assert any("not waivable" in d.message for d in report.waiver_diagnostics)
    assert [
        r.status
        for r in report.results
        if r.policy_id == "MDL-013" and r.deployment == "fraud-detector-prod"
    ] == ["fail"]


def test_impossible_calendar_date_is_a_finding_with_its_line(spec_repo):
    write_waivers(spec_repo, WAIVER.format(expires="2027-02-30"))
    report = run(spec_repo)
    (d,) = report.waiver_diagnostics
    assert (d.position.line, d.field) == (8, "waivers.0.expires")
    assert "2027-02-30" in d.message and "cannot be read as timestamp" in d.message
    assert report.blocking


def test_unknown_policy_and_not_a_list(spec_repo):
    write_waivers(spec_repo, WAIVER.replace("MDL-011", "MDL-999").format(expires="2027-01-15"))
    assert "unknown policy id 'MDL-999'" in run(spec_repo).waiver_diagnostics[0].message
    (spec_repo / "policies" / "waivers.yaml").write_text("waivers: {policy: x}\n")
    assert (
        "expected a mapping with a `waivers` list" in run(spec_repo).waiver_diagnostics[0].message
    )


@pytest.mark.parametrize(
    ("old", "new", "field", "needle"),
    [
        ("deployment: fraud-detector", "deployment: ghost", "deployment", "no spec defines"),
        ("deployment: fraud-detector", 'deployment: "*"', "deployment", "wildcards"),
        ("environment: prod", "environment: prdo", "environment", "does not exist"),
    ],
)
def test_waiver_for_a_scope_that_does_not_exist_is_a_finding(spec_repo, old, new, field, needle):
    write_waivers(spec_repo, WAIVER.replace(old, new).format(expires="2027-01-15"))
    report = run(spec_repo, env="staging")
    (d,) = report.waiver_diagnostics
    assert d.field == f"waivers.0.{field}"
    assert needle in d.message
    assert report.blocking


def test_waiver_without_ticket_is_a_finding_at_its_entry(spec_repo):
    make_violation(spec_repo)
    write_waivers(
        spec_repo, WAIVER.replace("    ticket: SEC-42\n", "").format(expires="2027-01-15")
    )
    report = run(spec_repo)
    (d,) = report.waiver_diagnostics
    assert (d.position.file, d.position.line, d.field) == (
        "policies/waivers.yaml",
        2,
        "waivers.0.ticket",
    )
    assert "ticket is missing" in d.message
    assert report.blocking
    assert not [r for r in report.results if r.status == "waived"]
    # an empty ticket is no ticket either, and points at its own line
    write_waivers(spec_repo, WAIVER.replace("SEC-42", '""').format(expires="2027-01-15"))
    (d,) = run(spec_repo).waiver_diagnostics
    assert (d.position.line, d.field) == (7, "waivers.0.ticket")


@pytest.mark.parametrize(
    "approver",
    [
        "payments-risk@example.com",
        "  Payments-Risk@Example.com ",
        "Risk Team <payments-risk@example.com>",
    ],
)
def test_self_approved_waiver_is_a_finding_and_waives_nothing(spec_repo, approver):
    # fraud-detector's metadata.owner is payments-risk@example.com
    make_violation(spec_repo)
    write_waivers(
        spec_repo,
        WAIVER.replace("security@example.com", f"'{approver}'").format(expires="2027-01-15"),
    )
    report = run(spec_repo)
    (d,) = report.waiver_diagnostics
    assert (d.position.file, d.position.line, d.field) == (
        "policies/waivers.yaml",
        6,
        "waivers.0.approver",
    )
    assert "owns fraud-detector (metadata.owner in specs/fraud-detector.yaml)" in d.message
    assert "no self-approval" in d.message
    assert report.blocking
    assert not [r for r in report.results if r.status == "waived"]
    assert [
        r.status
        for r in report.results
        if r.policy_id == "MDL-011" and r.deployment == "fraud-detector-prod"
    ] == ["warn"]


def test_self_approval_is_judged_even_when_the_deployment_is_not_checked(spec_repo):
    write_waivers(
        spec_repo,
        WAIVER.replace("security@example.com", "payments-risk@example.com").format(
            expires="2027-01-15"
        ),
    )
    config = load_config(spec_repo)
    loaded = load_all(config, ["diabetes-progression"], "prod")
    report = check_policies(config, loaded.deployments, today=TODAY)
    assert [d.field for d in report.waiver_diagnostics] == ["waivers.0.approver"]


def test_shipped_waivers_file_passes():
    from reconciler.policy.library import load_library
    from reconciler.policy.waivers import load_waivers

    pol = PROJECT / "policies"
    library = load_library(pol, pol / "organization.yaml", PROJECT)
    known = {p.id: p.waivable for p in library.policies if p.id}
    waivers = load_waivers(pol / "waivers.yaml", PROJECT, known, dt.date.today())
    assert waivers.diagnostics == []

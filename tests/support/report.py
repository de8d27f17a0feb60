"""The shared report input of the findings writers' tests (no tests here).

:func:`sample_report` is a :class:`PolicyReport` assembled from real values (policies
parsed from the shipped library, a waiver, positions) with characters that each format
must escape; :func:`sample_diagnostics` are spec diagnostics of each severity.
"""

from __future__ import annotations

import datetime as dt

from reconciler.core.diagnostics import Diagnostic, Position
from reconciler.policy.check import PolicyReport, PolicyResult
from reconciler.policy.library import load_library
from reconciler.policy.waivers import Waiver
from support.repo import PROJECT

TRICKY = 'a|b, c: 50% <x & "y">\nsecond line'


def sample_report() -> PolicyReport:
    pol = PROJECT / "policies"
    lib = load_library(pol, pol / "organization.yaml", PROJECT)
    by_id = {p.id: p for p in lib.policies}
    waiver = Waiver(
        policy="MDL-011",
        deployment="fraud-detector",
        environment="prod",
        reason="Canary controller lands next sprint",
        approver="sec@example.com",
        ticket="SEC-1",
        expires=dt.date(2026, 12, 10),
        position=Position("policies/waivers.yaml", 2, 5),
    )

    def result(pid, status, message="", path="", line=0, dep="fraud-detector-prod", w=None):
        p = by_id[pid]
        return PolicyResult(
            deployment=dep,
            name=dep.rsplit("-", 1)[0],
            env=dep.rsplit("-", 1)[1],
            policy_id=pid,
            title=p.title,
            severity=p.severity,
            enforcement="advisory" if status == "warn" else "mandatory",
            status=status,
            message=message,
            path=path,
            position=Position("specs/fraud-detector.yaml", line, 5 if line else 0),
            waiver=w,
        )

    return PolicyReport(
        results=[
            result("MDL-001", "fail", TRICKY, "spec.exposure.public", 47),
            result("MDL-024", "warn", "batching may wait 150 ms", "spec.serving.batching", 30),
            result("MDL-011", "waived", "rollout is rolling", "spec.target.rollout", 40, w=waiver),
            result("MDL-013", "error", "policy engine crashed while evaluating MDL-013"),
            result("MDL-002", "pass"),
            result("MDL-002", "pass", dep="diabetes-progression-prod"),
        ],
        policies=lib.policies,
        waiver_diagnostics=[
            Diagnostic(
                Position("policies/waivers.yaml", 9, 5),
                "waivers.1.expires",
                "waiver expired on 2026-11-01",
                code="waiver",
            )
        ],
        waivers=[waiver],
        deployments=["fraud-detector-prod", "diabetes-progression-prod"],
        today=dt.date(2026, 11, 29),
    )


def sample_diagnostics() -> list[Diagnostic]:
    return [
        Diagnostic(
            Position("specs/a.yaml", 3, 7),
            "spec.target.platform",
            "unknown platform 'k8s'; valid: kubernetes, local",
            code="schema",
        ),
        Diagnostic(Position("specs/b.yaml"), "", "file is empty", code="yaml"),
        Diagnostic(Position("specs/c.yaml", 1, 1), "metadata.team", "odd", "warning", "spec"),
    ]

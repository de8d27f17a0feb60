"""Policies: Rego evaluation (regopy) in a worker, metadata, waivers, policy tests.

Public API (used by the pipeline)::

    from reconciler.policy import check_policies, PolicyReport
    report = check_policies(config, deployments)   # list[Deployment] -> PolicyReport
    report.blocking, report.results, report.diagnostics(), report.to_dict()
"""

from reconciler.policy.check import PolicyReport, PolicyResult, check_policies, evaluate_deployments
from reconciler.policy.library import Policy, PolicyLibrary, load_library, parse_policy

__all__ = [
    "Policy",
    "PolicyLibrary",
    "PolicyReport",
    "PolicyResult",
    "check_policies",
    "evaluate_deployments",
    "load_library",
    "parse_policy",
]

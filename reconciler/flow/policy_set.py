"""``plan --base`` when the pull request changes the policy set (``docs/flow.md``).

The specs are checked against the base's policies, waivers and organisation settings
and against the pull request's own; what the change does to the policy set is listed.
"""

from __future__ import annotations

import posixpath
from dataclasses import replace

from reconciler.core import git as g
from reconciler.core.config import Config
from reconciler.flow.gates import (
    policy_gate,
)
from reconciler.flow.run import RunReport
from reconciler.gitops.policyset import WAIVERS_FILE, diff_policy_sets, policy_set_paths
from reconciler.policy.check import check_policies


def policy_set_touched(config: Config, changes, base_rev, notes: list[str]):
    """``(base paths, head paths)`` of the policy set when the change touches it, else None.

    Touched: a changed file under the policies directory or the organisation file, at
    either revision (``modelops.yaml`` may move them). A policy set outside the
    repository cannot be read from Git: then ``None`` too, and a line in ``notes``
    says so.
    """
    head_paths = policy_set_paths(config)
    base_paths = policy_set_paths(config, base_rev)
    if head_paths is None or base_paths is None:
        notes.append(
            "the policies directory or the organisation settings file is outside the "
            "repository: the specs were checked against it as it is on disk, and what "
            "this change does to it is not compared"
        )
        return None
    for f in changes.files:
        for p in (f.path, f.old_path):
            if p and (head_paths.contains(p) or base_paths.contains(p)):
                return base_paths, head_paths
    return None


def policy_set_files(base_rev, paths) -> list[str]:
    """Root-relative files of the base's policy set (``*.rego``, waivers, organisation)."""
    out = [paths.organization, posixpath.join(paths.policies, WAIVERS_FILE)]
    pre = base_rev.pre
    for full in g.list_files(base_rev.commit, pre + paths.policies):
        rel = full[len(pre) :]
        if paths.evaluated(rel):
            out.append(rel)
    return out


def policy_set_diff(config: Config, head_cfg: Config, base_cfg: Config, changes, paths):
    """The :class:`~reconciler.gitops.policyset.PolicySetDiff` of a plan (base vs head)."""
    base_paths, head_paths = paths
    return diff_policy_sets(
        base_cfg.root, base_paths, head_cfg.root, head_paths, config.environments, changes.files
    )


def plan_policies(
    report: RunReport, head_cfg: Config, base_cfg: Config, deployments, paths, extra=None
):
    """Police the planned deployments; with the base's policy set when the PR changes it.

    When :attr:`RunReport.policy_changes` says the pull request changes what is enforced,
    :attr:`RunReport.policy` is the check against the policies, waivers and organisation
    settings at the merge base and :attr:`RunReport.policy_head` the check against the
    pull request's own set; either blocking blocks (why: ``docs/flow.md``, "Policies at
    the merge base"). Findings about the base's ``waivers.yaml`` are left out when the
    pull request changes that file; where the two sets disagree goes to
    ``policy_changes.effects``. Otherwise the head's set is checked, as ``apply`` does.

    Args:
        report: the plan; ``policy``, ``policy_head``, ``notes`` and
            ``policy_changes.effects`` are set.
        head_cfg, base_cfg: the two revisions on disk (``pr_plan._revision_roots``).
        deployments: the valid deployments at the head.
        paths: ``(base, head)`` :class:`~reconciler.gitops.policyset.PolicySetPaths`, or
            ``None`` when the change does not touch the policy set.
        extra: per deployment key, keys added to its policy input (``input.cost``), the
            same for both policy sets.
    """
    diff = report.policy_changes
    if diff is None or not diff.changes_enforcement:
        policy_gate(head_cfg, deployments, report, extra)
        return
    base_paths, _head_paths = paths
    base_policy_cfg = replace(
        head_cfg,
        root=base_cfg.root,
        policies_dir=base_cfg.root / base_paths.policies,
        organization=base_cfg.root / base_paths.organization,
    )
    if not deployments:
        return
    diff.evaluated_at_base = True
    report.notes.append(
        f"policies, waivers and organisation settings: as at the merge base {report.base[:12]}"
        ", because this change modifies them (see the policy changes); the change's own "
        "policy set was checked too and applies after the merge"
    )
    policy_gate(base_policy_cfg, deployments, report, extra)
    report.policy_head = check_policies(head_cfg, deployments, extra=extra)
    waivers = posixpath.join(base_paths.policies, WAIVERS_FILE)
    if waivers in diff.files and report.policy.waiver_diagnostics:
        report.policy.waiver_diagnostics = []
        report.notes.append(
            f"findings about the base's {waivers} are not reported: this change replaces "
            "that file, and its own version was checked"
        )
    diff.effects = _policy_effects(report.policy, report.policy_head)


def _policy_effects(base_report, head_report) -> list[dict]:
    """Where the base's and the head's policy sets judge a deployment differently.

    Returns ``{"deployment", "policy", "base", "head"}`` per (deployment, policy) whose
    statuses differ; a status is ``fail``, ``error``, ``warn``, ``waived``, ``pass``
    (several joined with ``+``) or ``not evaluated`` (the policy is absent or disabled
    on that side).
    """
    order = {s: i for i, s in enumerate(("fail", "error", "warn", "waived", "pass"))}

    def statuses(rep) -> dict:
        out: dict = {}
        for r in rep.results:
            out.setdefault((r.deployment, r.policy_id), set()).add(r.status)
        return {k: "+".join(sorted(v, key=lambda x: order.get(x, 9))) for k, v in out.items()}

    a, b = statuses(base_report), statuses(head_report)
    return [
        {
            "deployment": key[0],
            "policy": key[1],
            "base": a.get(key, "not evaluated"),
            "head": b.get(key, "not evaluated"),
        }
        for key in sorted(set(a) | set(b))
        if a.get(key) != b.get(key)
    ]

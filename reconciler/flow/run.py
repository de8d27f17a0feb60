"""The run report: what one plan/apply/destroy/rollback run found and did (:class:`RunReport`).

One :class:`Outcome` per deployment × environment; the writers in ``report/`` and the
commands read these values (``to_dict()`` is the JSON form).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

from reconciler.build.artifact import Artifact
from reconciler.build.smoke import SmokeResult
from reconciler.core.diagnostics import (
    EXIT_APPLY_FAILED,
    EXIT_FINDINGS,
    EXIT_OK,
    Diagnostic,
)
from reconciler.engine.plan import Plan
from reconciler.gitops.changes import ChangeSet
from reconciler.gitops.policyset import PolicySetDiff
from reconciler.policy.check import PolicyReport

#: Outcome statuses that make a run exit 3.
FAILED_STATUSES = ("failed", "stalled")


@dataclass
class Outcome:
    """What happened to one deployment × environment in a run.

    Attributes:
        key: ``<name>-<env>``.
        name, env, platform: the deployment.
        status: ``planned``, ``delete`` (planned deletion), ``applied``, ``unchanged``,
            ``failed``, ``stalled`` (skipped: failed ``stalled_after`` times with the same
            inputs), ``held`` (skipped: rolled back, see ``modelops rollback``),
            ``destroyed``, ``orphaned`` (spec gone, not pruned), ``invalid`` (planned, but
            it cannot be rendered: a finding), ``blocked`` (planned, shown with its diff,
            but a policy blocks it) or ``skipped``.
        message: one line for humans.
        artifact: the build's :class:`Artifact` (``None`` when not built).
        plan: the infrastructure :class:`Plan` (``None`` when not computed).
        outputs: engine outputs after an apply (url, port, endpoint names).
        smoke: the smoke/SLO :class:`SmokeResult` (``None`` when not run; a smoke test
            that could not run is a result with one failure and no cases).
        change: why it is in a ``--base`` run: ``{"status", "path", "old_path",
            "reasons"}`` (:class:`~reconciler.gitops.changes.SpecChange`), ``{}`` otherwise.
        model: ``{"old": {...}, "new": {...}}`` with framework, uri, sha256 and version
            of the model at base and head (``None`` for a side that does not exist).
        build: ``{"status": "built"|"reused"|"failed"|"not run", "message"}``.
        revision: the Git revision applied or planned (head).
        spec_diff: for a ``--base`` plan of a deployment that exists at both revisions,
            what changed in its resolved spec (:func:`spec_diff`): ``{"fields": [{"path",
            "old", "new"}], "files", "rebuild", "build_inputs", "decided_by"}``; ``{}``
            otherwise.
        cost: for a plan, the monthly estimate before and after and the difference
            (:func:`reconciler.flow.costs.cost_change`); ``{}`` when not estimated.
        experiment: for a plan of a deployment running an A/B experiment, the last verdict
            the quality job recorded (the ledger's ``quality.experiment``:
            ``reconciler.monitor.experiment.run_experiment``); ``{}`` otherwise.
    """

    key: str
    name: str
    env: str
    platform: str
    status: str
    message: str = ""
    artifact: Artifact | None = None
    plan: Plan | None = None
    outputs: dict = field(default_factory=dict)
    smoke: SmokeResult | None = None
    change: dict = field(default_factory=dict)
    model: dict = field(default_factory=dict)
    build: dict = field(default_factory=dict)
    revision: str = ""
    spec_diff: dict = field(default_factory=dict)
    cost: dict = field(default_factory=dict)
    experiment: dict = field(default_factory=dict)

    @property
    def failed(self) -> bool:
        """True for ``failed`` and ``stalled`` outcomes."""
        return self.status in FAILED_STATUSES

    @property
    def build_failed(self) -> bool:
        """True when the plan-time build or smoke test failed (it blocks a merge)."""
        return self.build.get("status") == "failed" or (
            self.smoke is not None and not self.smoke.passed
        )

    def to_dict(self) -> dict:
        """JSON-ready mapping; a value that is not there is ``{}``."""
        objects = {
            "artifact": self.artifact.to_dict() if self.artifact is not None else {},
            "plan": self.plan.to_dict() if self.plan is not None else {},
            "smoke": self.smoke.to_dict() if self.smoke is not None else {},
        }
        # the objects are not deep-copied first (a plan's changes were, each time)
        return {
            k: objects[k] if k in objects else copy.deepcopy(v) for k, v in self.__dict__.items()
        }


@dataclass
class RunReport:
    """Everything one ``plan``/``apply``/``destroy``/``rollback`` run found and did.

    Attributes:
        action: ``plan``, ``apply``, ``destroy`` or ``rollback``.
        env: the environment (``"all"`` when a plan covers every environment).
        envs: the environments covered.
        revision: Git revision of the specs (``""`` outside Git; ``-dirty`` suffix when
            applying with uncommitted changes allowed).
        base: the merge base SHA of a ``--base`` run (``""`` otherwise).
        diagnostics: spec findings (any error blocks the run) and change warnings.
        policy: the policy report (``None`` when the run stopped before policies).
        outcomes: one :class:`Outcome` per deployment × environment, sorted by key.
        plans: the infrastructure plans (``reconciler.engine.plan.Plan``), same order.
        offline: True when plans were computed offline (Pulumi mocks).
        changes: the :class:`~reconciler.gitops.changes.ChangeSet` of a ``--base`` run.
        guards: messages of safety guards that block the run (mass delete...).
        notes: lines for humans (what was compared with what, what was not run).
        revert: for a rollback, the commits to revert in Git (``{"sha", "summary"}``).
        policy_changes: for a ``--base`` plan whose pull request touches the policy set,
            what it changes (:class:`~reconciler.gitops.policyset.PolicySetDiff`);
            ``None`` otherwise.
        policy_head: when the plan evaluated :attr:`policy` with the base's policy set
            (the pull request changes what is enforced), the policy report with the pull
            request's own policy set, which ``apply`` uses after the merge; it blocks
            too. ``None`` otherwise.
        guard_changes: for a ``--base`` run, the guard settings of ``modelops.yaml`` that
            differ between the merge base and the head (``{"setting", "base", "head",
            "loosens"}``, :func:`reconciler.flow.gates.guard_settings_gate`).
    """

    action: str
    env: str
    revision: str = ""
    envs: list[str] = field(default_factory=list)
    base: str = ""
    diagnostics: list[Diagnostic] = field(default_factory=list)
    policy: PolicyReport | None = None
    outcomes: list[Outcome] = field(default_factory=list)
    plans: list[Plan | None] = field(default_factory=list)
    offline: bool = True
    changes: ChangeSet | None = None
    guards: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    revert: list[dict] = field(default_factory=list)
    policy_changes: PolicySetDiff | None = None
    policy_head: PolicyReport | None = None
    guard_changes: list[dict] = field(default_factory=list)

    @property
    def spec_errors(self) -> list[Diagnostic]:
        """Diagnostics with severity ``error``."""
        return [d for d in self.diagnostics if d.severity == "error"]

    @property
    def blocked(self) -> bool:
        """True when a spec error, a blocking policy result or a guard stops the run.

        A plan that checked the specs against the base's policy set also blocks when the
        pull request's own policy set would (:attr:`policy_head`): ``apply`` after the
        merge uses that one.
        """
        return (
            bool(self.spec_errors)
            or bool(self.policy is not None and self.policy.blocking)
            or bool(self.policy_head is not None and self.policy_head.blocking)
            or bool(self.guards)
        )

    @property
    def needs_security_review(self) -> bool:
        """True when the pull request changes what the policy check enforces, or a guard
        setting of ``modelops.yaml`` (:attr:`guard_changes`).

        Not blocking by itself (a loosened guard setting blocks through :attr:`guards`):
        the plan says so, and never "ready to merge".
        """
        return bool(
            self.policy_changes is not None and self.policy_changes.changes_enforcement
        ) or bool(self.guard_changes)

    @property
    def failures(self) -> list[Outcome]:
        """Outcomes with status ``failed`` or ``stalled``."""
        return [o for o in self.outcomes if o.failed]

    @property
    def build_failures(self) -> list[Outcome]:
        """Plan outcomes whose build or smoke test failed (they block a merge)."""
        return [o for o in self.outcomes if o.build_failed]

    @property
    def exit_code(self) -> int:
        """0 clean, 1 findings (spec, policy, guard, plan-time build/smoke), 3 apply failed."""
        if self.blocked or (self.action == "plan" and self.build_failures):
            return EXIT_FINDINGS
        if self.failures:
            return EXIT_APPLY_FAILED
        return EXIT_OK

    def to_dict(self) -> dict:
        """JSON-ready mapping of the whole run."""
        return {
            "action": self.action,
            "environment": self.env,
            "environments": list(self.envs),
            "revision": self.revision,
            "base": self.base,
            "offline": self.offline,
            "blocked": self.blocked,
            "exit_code": self.exit_code,
            "guards": list(self.guards),
            "notes": list(self.notes),
            "diagnostics": [d.to_dict() for d in self.diagnostics],
            "policy": self.policy.to_dict() if self.policy is not None else None,
            "changes": self.changes.to_dict() if self.changes is not None else None,
            "outcomes": [o.to_dict() for o in self.outcomes],
            "revert": list(self.revert),
            "needs_security_review": self.needs_security_review,
            "guard_changes": list(self.guard_changes),
            "policy_changes": (
                self.policy_changes.to_dict() if self.policy_changes is not None else None
            ),
            "policy_with_pr_changes": (
                self.policy_head.to_dict() if self.policy_head is not None else None
            ),
        }


def sort_report(report: RunReport) -> None:
    """Sort the outcomes by key, keeping each plan next to its outcome."""
    pairs = sorted(zip(report.outcomes, report.plans, strict=False), key=lambda p: p[0].key)
    if len(pairs) == len(report.outcomes):
        report.outcomes = [p[0] for p in pairs]
        report.plans = [p[1] for p in pairs]
    else:
        report.outcomes.sort(key=lambda o: o.key)


def experiment_of(dep, record) -> dict:
    """The last A/B verdict recorded for ``dep`` (``record``: its ledger record or ``None``)
    while its spec runs an experiment; ``{}`` otherwise."""
    if record is None or dep.get("spec.target.rollout.strategy") != "experiment":
        return {}
    return dict((record.quality or {}).get("experiment") or {})

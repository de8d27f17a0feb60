"""The reconcile pipeline: validate → police → build → render → plan → apply.

Each stage is a module that takes the previous stage's value (``shared/DESIGN.md``);
this module only sequences them for the ``plan``, ``apply`` and ``destroy`` commands and
collects one :class:`RunReport`.

Gates, in order, all fail closed:

1. any spec with an error (YAML, schema, semantic) stops the run before anything is
   built: exit 1;
2. any blocking policy result (a mandatory failure or a policy error) stops the run
   before anything is built: exit 1;
3. each deployment is then built and applied on its own; one failing deployment does
   not stop the others, and the run exits 3 naming each failure.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from reconciler.build.artifact import Artifact
from reconciler.config import Config
from reconciler.diagnostics import (
    EXIT_APPLY_FAILED,
    EXIT_FINDINGS,
    EXIT_OK,
    EXIT_USAGE,
    Diagnostic,
    ModelopsError,
)
from reconciler.gitops.git import head_revision
from reconciler.gitops.ledger import Ledger
from reconciler.spec.model import Deployment
from reconciler.spec.repo import load_all


@dataclass
class Outcome:
    """What happened to one deployment × environment in a run.

    Attributes:
        key: ``<name>-<env>``.
        name, env, platform: the deployment.
        status: ``planned``, ``applied``, ``unchanged``, ``failed``, ``destroyed``,
            ``orphaned`` (spec gone, not pruned) or ``skipped``.
        message: one line for humans.
        artifact: the build's :class:`Artifact` as a dict (``{}`` when not built).
        plan: the infrastructure plan as a dict (``{}`` when not computed).
        outputs: engine outputs after an apply (url, port, endpoint names).
        smoke: smoke/SLO result as a dict (``{}`` when not run).
    """

    key: str
    name: str
    env: str
    platform: str
    status: str
    message: str = ""
    artifact: dict = field(default_factory=dict)
    plan: dict = field(default_factory=dict)
    outputs: dict = field(default_factory=dict)
    smoke: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        """JSON-ready mapping."""
        return dict(self.__dict__)


@dataclass
class RunReport:
    """Everything one ``plan``/``apply``/``destroy`` run found and did.

    Attributes:
        action: ``plan``, ``apply`` or ``destroy``.
        env: the environment.
        revision: Git revision of the specs (``""`` outside Git; ``-dirty`` suffix when the
            working tree has uncommitted changes).
        diagnostics: spec findings (any error blocks the run).
        policy: the policy report (``None`` when the run stopped before policies).
        outcomes: one :class:`Outcome` per deployment, sorted by key.
        plans: the infrastructure plans (``reconciler.engine.plan.Plan``) per deployment.
        offline: True when plans were computed offline (Pulumi mocks vs the ledger).
    """

    action: str
    env: str
    revision: str = ""
    diagnostics: list[Diagnostic] = field(default_factory=list)
    policy: object | None = None
    outcomes: list[Outcome] = field(default_factory=list)
    plans: list = field(default_factory=list)
    offline: bool = True

    @property
    def spec_errors(self) -> list[Diagnostic]:
        """Diagnostics with severity ``error``."""
        return [d for d in self.diagnostics if d.severity == "error"]

    @property
    def blocked(self) -> bool:
        """True when a spec error or a blocking policy result stops the run."""
        return bool(self.spec_errors) or bool(self.policy is not None and self.policy.blocking)

    @property
    def failures(self) -> list[Outcome]:
        """Outcomes with status ``failed``."""
        return [o for o in self.outcomes if o.status == "failed"]

    @property
    def exit_code(self) -> int:
        """0 clean, 1 findings (invalid spec or blocking policy), 3 an apply failed."""
        if self.blocked:
            return EXIT_FINDINGS
        if self.failures:
            return EXIT_APPLY_FAILED
        return EXIT_OK

    def to_dict(self) -> dict:
        """JSON-ready mapping of the whole run."""
        return {
            "action": self.action,
            "environment": self.env,
            "revision": self.revision,
            "offline": self.offline,
            "blocked": self.blocked,
            "exit_code": self.exit_code,
            "diagnostics": [d.to_dict() for d in self.diagnostics],
            "policy": self.policy.to_dict() if self.policy is not None else None,
            "outcomes": [o.to_dict() for o in self.outcomes],
        }


def _gate(config: Config, targets: list[str] | None, env: str, report: RunReport):
    """Load, validate and police; returns the deployments that may proceed."""
    from reconciler.policy import check_policies

    loaded = load_all(config, targets, env)
    report.diagnostics = loaded.diagnostics
    if loaded.errors:
        return []
    deployments = loaded.deployments
    report.policy = check_policies(config, deployments)
    if report.policy.blocking:
        return []
    return deployments


def _orphans(config: Config, env: str, live: set[str], targets: list[str] | None):
    """Ledger records for ``env`` whose spec no longer exists (only on full runs)."""
    if targets:
        return []
    return [r for r in Ledger(config.state_dir).all() if r.environment == env and r.key not in live]


def plan(
    config: Config,
    env: str,
    targets: list[str] | None = None,
    *,
    build: bool = False,
) -> RunReport:
    """Compute what ``apply`` would change, without changing anything.

    Args:
        config: repository configuration.
        env: environment to plan.
        targets: spec files/dirs/names; ``None`` = every spec with an overlay for ``env``.
        build: also build the Bentos (so the plan carries real image tags); default off,
            in which case image references are derived and marked not built.

    Returns:
        A :class:`RunReport` whose ``plans`` diff each deployment's rendered DesiredState
        against the last applied DesiredState in the ledger. Deployments in the ledger
        whose spec is gone are planned for deletion and reported as ``orphaned``.

    Raises:
        ModelopsError: unknown environment or target (exit 2); corrupt ledger (exit 2).
    """
    from reconciler.engine.plan import diff
    from reconciler.engine.render import render

    report = RunReport("plan", env, head_revision(config.root))
    deployments = _gate(config, targets, env, report)
    ledger = Ledger(config.state_dir)
    for dep in deployments:
        artifact = _build(dep, config, report.revision) if build else None
        record = ledger.get(dep.name, env)
        state = render(dep, artifact, config)
        change = diff(record.desiredState if record else None, state, dep.key)
        report.plans.append(change)
        report.outcomes.append(
            Outcome(
                dep.key,
                dep.name,
                env,
                dep.platform,
                "planned",
                change.summary(),
                artifact=artifact.to_dict() if artifact else {},
                plan=change.to_dict(),
            )
        )
    if not report.blocked:
        for record in _orphans(config, env, {d.key for d in deployments}, targets):
            change = diff(record.desiredState, None, record.key)
            report.plans.append(change)
            report.outcomes.append(
                Outcome(
                    record.key,
                    record.name,
                    env,
                    record.platform,
                    "orphaned",
                    "spec deleted; destroyed only by `modelops apply --prune`",
                    plan=change.to_dict(),
                )
            )
    report.outcomes.sort(key=lambda o: o.key)
    return report


def _build(dep: Deployment, config: Config, revision: str) -> Artifact:
    from reconciler.build.bento import build

    return build(dep, config, revision=revision)


def apply(config: Config, env: str, targets: list[str] | None = None) -> RunReport:
    """Converge ``env``: validate, police, then build and apply each deployment.

    Local targets go to the local engine (``bentoml serve`` on loopback); every other
    target goes to the Pulumi Automation API engine, which needs the ``pulumi`` CLI.

    Returns:
        A :class:`RunReport`; ``exit_code`` is 1 when the gates blocked (nothing was
        built), 3 when at least one deployment failed (the others were still applied).

    Raises:
        ModelopsError: (exit 2) a cloud target without the ``pulumi`` CLI, unknown
            environment or target, corrupt ledger. Raised before anything is applied.
    """
    from reconciler.engine.local import LocalEngine

    report = RunReport("apply", env, head_revision(config.root))
    deployments = _gate(config, targets, env, report)
    if not deployments:
        return report
    cloud = [d for d in deployments if d.platform != "local"]
    pulumi_engine = None
    if cloud:
        from reconciler.engine.pulumi_engine import PulumiEngine, pulumi_available

        if not pulumi_available():
            names = ", ".join(d.key for d in cloud)
            raise ModelopsError(
                f"apply needs the Pulumi CLI for {names} (platforms: "
                f"{', '.join(sorted({d.platform for d in cloud}))}), and `pulumi` is not on PATH. "
                "Install it (https://www.pulumi.com/docs/install/), or run `modelops plan "
                f"--env {env}` for an offline plan.",
                EXIT_USAGE,
            )
        pulumi_engine = PulumiEngine(config)
    local = LocalEngine(config)
    for dep in deployments:
        outcome = Outcome(dep.key, dep.name, env, dep.platform, "failed")
        try:
            artifact = _build(dep, config, report.revision)
            outcome.artifact = artifact.to_dict()
            engine = local if dep.platform == "local" else pulumi_engine
            result = engine.apply(dep, artifact, report.revision)
            outcome.status = "applied" if getattr(result, "changed", True) else "unchanged"
            outcome.outputs = dict(getattr(result, "outputs", {}) or {})
            outcome.message = getattr(result, "message", "") or outcome.status
            smoke = getattr(result, "smoke", None)
            if smoke is not None:
                outcome.smoke = smoke.to_dict() if hasattr(smoke, "to_dict") else dict(smoke)
            plan_value = getattr(result, "plan", None)
            if plan_value is not None and hasattr(plan_value, "to_dict"):
                outcome.plan = plan_value.to_dict()
        except ModelopsError as exc:
            outcome.message = exc.message
        report.outcomes.append(outcome)
    report.outcomes.sort(key=lambda o: o.key)
    report.offline = False
    return report


def destroy(config: Config, env: str, names: list[str]) -> RunReport:
    """Tear down deployments by name in ``env`` and remove their ledger records.

    Raises:
        ModelopsError: (exit 2) a name with no ledger record; a cloud target without the
            ``pulumi`` CLI.
    """
    from reconciler.engine.local import LocalEngine

    report = RunReport("destroy", env, head_revision(config.root))
    ledger = Ledger(config.state_dir)
    records = ledger.all()
    chosen = [r for r in records if r.environment == env and (not names or r.name in names)]
    missing = sorted(set(names) - {r.name for r in chosen})
    if missing:
        raise ModelopsError(
            f"nothing recorded for {', '.join(missing)} in {env}; `modelops status` lists "
            "what is deployed"
        )
    local = LocalEngine(config)
    for record in chosen:
        outcome = Outcome(record.key, record.name, env, record.platform, "failed")
        try:
            if record.platform == "local":
                local.destroy(record.name, env)
            else:
                from reconciler.engine.pulumi_engine import PulumiEngine

                PulumiEngine(config).destroy_record(record)
                ledger.delete(record.name, env)
            outcome.status, outcome.message = "destroyed", "destroyed"
        except ModelopsError as exc:
            outcome.message = exc.message
        report.outcomes.append(outcome)
    report.offline = False
    return report

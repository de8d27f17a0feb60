"""``modelops plan``: what ``apply`` would change, without changing anything."""

from __future__ import annotations

from reconciler.build.artifact import Artifact, artifact_of
from reconciler.core import git as g
from reconciler.core.config import Config
from reconciler.core.diagnostics import (
    ModelopsError,
)
from reconciler.engine.plan import diff
from reconciler.flow.costs import (
    POLICY_INPUT_KEY,
    Prepared,
    cost_diagnostic,
    deletion_cost,
    policy_input,
    prepare_one,
)
from reconciler.flow.digests import inputs_digest, model_info
from reconciler.flow.gates import (
    envs_of,
    gate,
    orphans,
    protected_note,
)
from reconciler.flow.pr_plan import plan_changes
from reconciler.flow.run import Outcome, RunReport, experiment_of, sort_report
from reconciler.flow.sources import pin_remote_models
from reconciler.flow.stages import (
    build_and_smoke,
    render_failed,
    render_plan,
)
from reconciler.gitops.review import Review
from reconciler.state.ledger import Ledger


def applied_unchanged(record, dep, config: Config) -> Artifact | None:
    """The applied build of ``dep`` when nothing that determines it changed, else ``None``.

    The flow's inputs digest (:func:`~reconciler.flow.digests.inputs_digest`) equal to
    that of the last attempt, when that attempt succeeded (``lastAttemptedDigest``, no
    failure since), means ``apply`` would reuse the applied Bento: the plan renders with
    it, not with an ``unbuilt`` placeholder tag (which would show a replacement that
    ``apply`` never makes).
    """
    if not _applied_as_is(record, dep, config):
        return None
    return artifact_of(record.artifact)


def _applied_as_is(record, dep, config: Config) -> bool:
    if record is None or not record.lastAppliedRevision or record.destroyed:
        return False
    if record.failures or not record.lastAttemptedDigest:
        return False
    return record.lastAttemptedDigest == inputs_digest(dep, config)


def applied_model(record, dep, config: Config) -> dict | None:
    """The model of the last successful apply as :func:`model_info` shapes it, or ``None``
    when nothing is applied (then the plan calls the model new here)."""
    if record is None or not record.lastAppliedRevision or record.destroyed:
        return None
    if _applied_as_is(record, dep, config):
        return model_info(dep, config)
    art = record.artifact or {}
    new = model_info(dep, config) or {}
    out = {
        "framework": art.get("framework") or new.get("framework", ""),
        "uri": new.get("uri", ""),
        "sha256": art.get("model_sha256") or "",
        "version": new.get("version", ""),
    }
    source = art.get("model_source") or {}
    if "resolved" in new:  # a remote model: what was resolved when it was applied
        out["resolved"] = source.get("resolved", "") if source.get("uri") == out["uri"] else ""
    return out


def plan(
    config: Config,
    env: str | None,
    targets: list[str] | None = None,
    *,
    build: bool = False,
    smoke: bool = False,
    base: str | None = None,
    head: str | None = None,
    all_specs: bool = False,
    allow_mass_delete: bool = False,
    allow_guard_change: bool = False,
    reviews: list[Review] | None = None,
) -> RunReport:
    """Compute what ``apply`` would change, without changing anything.

    Args:
        config: repository configuration.
        env: environment to plan; ``None`` plans every environment of the configuration.
        targets: spec files/dirs/names; ``None`` = every spec (ignored with ``base``).
        build: also build the Bentos (so the plan carries real image tags and the build
            result); default off, in which case image references are derived.
        smoke: also serve each built Bento locally and run its smoke and SLO check
            (implies ``build``).
        base: Git revision to compare with (a pull request's base). Only specs changed or
            affected since the merge base are planned, each against its own state at the
            merge base; deleted specs are planned for deletion.
        head: the head revision (default: the working tree).
        all_specs: with ``base``, plan every spec, changed or not.
        allow_mass_delete: with ``base``, do not block a change that deletes more than
            ``config.max_delete_share`` of an environment's deployments.
        allow_guard_change: with ``base``, a security reviewer approved loosening a
            guard setting of ``modelops.yaml`` (otherwise it blocks; the stricter value
            is used either way: :func:`reconciler.flow.gates.guard_settings_gate`).
        reviews: with ``base``, the pull request's reviews (``--reviews``): an approval
            of the planned commit by one of ``guard_reviewers`` approves it too.

    Returns:
        A :class:`RunReport`. Without ``base``, each deployment's rendered DesiredState
        is diffed against the last applied one in the ledger, and ledger records whose
        spec is gone are reported as ``orphaned``. Each outcome carries the monthly cost
        estimate of the ledger's state and of the rendered one (``Outcome.cost``), which
        the policies also see (``input.cost``); a cost that cannot be estimated is a
        spec finding at the field it names.

    Raises:
        ModelopsError: (exit 2) unknown environment or target; a revision that does not
            exist or is missing from a shallow clone; corrupt ledger.
    """
    build = build or smoke
    envs = envs_of(config, env)
    if base is not None:
        return plan_changes(
            config,
            envs,
            base,
            head,
            build,
            smoke,
            all_specs,
            allow_mass_delete,
            allow_guard_change=allow_guard_change,
            reviews=reviews,
        )
    report = RunReport("plan", env or "all", g.head_revision(config.root), envs=envs)
    ledger = Ledger.of(config)
    prepared: dict[str, Prepared] = {}

    def prepare(deployments: list) -> dict[str, dict]:
        # Render each deployment once, before the policy check, so that its cost estimate
        # is in the policy input; the plan below diffs the same DesiredState.
        extra = {}
        for dep in deployments:
            record = ledger.get(dep.name, dep.env)
            prepared[dep.key] = p = prepare_one(
                dep, record.desiredState if record else None, config
            )
            if p.cost and p.cost_error is None:
                extra[dep.key] = {POLICY_INPUT_KEY: policy_input(p.cost)}
        return extra

    deployments = gate(config, targets, env, report, keep_blocked=True, prepare=prepare)
    # the remote models this plan shows are the ones apply may deploy (flow/sources.py)
    report.notes.extend(pin_remote_models(deployments, config, ledger, report.revision))
    cost_findings = []
    if report.blocked:
        build = smoke = False  # a blocked plan shows the diff; nothing is built
    for dep in deployments:
        outcome = Outcome(dep.key, dep.name, dep.env, dep.platform, "planned")
        outcome.revision = report.revision
        artifact = build_and_smoke(outcome, dep, config, report.revision, smoke) if build else None
        record = ledger.get(dep.name, dep.env)
        unchanged = applied_unchanged(record, dep, config)
        if artifact is None and unchanged is not None:
            artifact = unchanged  # the applied build is the one apply would reuse
        outcome.model = {"old": applied_model(record, dep, config), "new": model_info(dep, config)}
        outcome.experiment = experiment_of(dep, record)
        p = prepared.get(dep.key)
        try:
            old = record.desiredState if record else None
            if artifact is None and p is not None:
                if p.error is not None:
                    raise p.error
                change = diff(old, p.rendered, dep.key)
            else:  # built: the image tag differs from the derived one (the cost does not)
                change, _ = render_plan(dep, old, config, artifact)
        except ModelopsError as exc:
            render_failed(report, outcome, dep, exc)
            report.outcomes.append(outcome)
            continue
        if p is not None:
            outcome.cost = p.cost or {}
            if p.cost_error is not None:
                cost_findings.append(cost_diagnostic(dep, p.cost_error))
        report.plans.append(change)
        outcome.message = change.summary()
        if report.blocked:
            outcome.status = "blocked"
            outcome.message += " (blocked by policy: apply would not make these changes)"
        outcome.plan = change
        report.outcomes.append(outcome)
    report.diagnostics.extend(cost_findings)  # after the loop: not a policy block
    if not report.blocked:
        live = {d.key for d in deployments}
        for record in orphans(config, envs, live, targets):
            change, _ = render_plan(None, record.desiredState, config)
            report.plans.append(change)
            report.outcomes.append(
                Outcome(
                    record.key,
                    record.name,
                    record.environment,
                    record.platform,
                    "orphaned",
                    "spec deleted; destroyed only by `modelops apply --prune`"
                    + protected_note(config, record.environment),
                    plan=change,
                    cost=deletion_cost(record.desiredState, config),
                )
            )
    sort_report(report)
    report.notes.append("infrastructure plan: rendered under Pulumi mocks, diffed with the ledger")
    return report

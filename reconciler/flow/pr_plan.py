"""``modelops plan --base``: the plan of a pull request (``docs/flow.md``).

Each changed deployment is rendered at the merge base and at the head and diffed; the
resolved-spec fields that changed and whether they make a new Bento are listed; specs
deleted since the base are planned for deletion.
"""

from __future__ import annotations

import contextlib

from reconciler.build.bento import build_inputs
from reconciler.build.edge_bundle import edge_build_inputs
from reconciler.core import git as g
from reconciler.core.config import Config
from reconciler.core.diagnostics import (
    ModelopsError,
)
from reconciler.engine.plan import diff, unchanged
from reconciler.flow.costs import (
    POLICY_INPUT_KEY,
    Prepared,
    cost_diagnostic,
    deletion_cost,
    policy_input,
    prepare_one,
)
from reconciler.flow.digests import model_info
from reconciler.flow.gates import (
    guard_settings_gate,
    mass_delete_guard,
    protected_note,
)
from reconciler.flow.policy_set import (
    plan_policies,
    policy_set_diff,
    policy_set_files,
    policy_set_touched,
)
from reconciler.flow.run import Outcome, RunReport, experiment_of, sort_report
from reconciler.flow.sources import as_applied, moved_models, pin_remote_models
from reconciler.flow.stages import (
    build_and_smoke,
    build_artifact,
    edge_budget_text,
    error_message,
    render_failed,
    render_live,
    render_plan,
    smoke_test,
    state_dict,
)
from reconciler.gitops.changes import RevisionFiles, detect_changes, name_conflicts
from reconciler.gitops.fields import field_changes, touches_build
from reconciler.gitops.review import Review
from reconciler.spec.files import quick_load, spec_dependencies
from reconciler.spec.model import Deployment
from reconciler.spec.repo import load_files
from reconciler.spec.source import SpecSource, revision_source
from reconciler.state.ledger import Ledger


def plan_changes(
    config: Config,
    envs: list[str],
    base: str,
    head: str | None,
    build: bool,
    smoke: bool,
    all_specs: bool,
    allow_mass_delete: bool,
    *,
    allow_guard_change: bool = False,
    reviews: list[Review] | None = None,
) -> RunReport:
    """The plan of a pull request: ``plan(..., base=...)`` (see :func:`reconciler.flow.plan.plan`).

    Only the specs changed or affected since the merge base (every spec with
    ``all_specs``) are planned, each rendered at the base and at the head and diffed;
    specs deleted since the base, and deployments whose environment overlay was removed,
    are planned for deletion (``delete`` outcomes), and the mass-delete guard applies
    unless ``allow_mass_delete``. The guard settings are the stricter of the base's and
    the head's, and loosening one blocks unless ``allow_guard_change`` or one of the
    guard reviewers approved it in ``reviews``
    (:func:`~reconciler.flow.gates.guard_settings_gate`). Builds (and smoke tests) run
    only when ``build`` and the gates pass.

    Raises:
        ModelopsError: (exit 2) not a Git repository, a revision that does not exist or is
            missing from a shallow clone; corrupt ledger.
    """
    changes = detect_changes(config, base, head, all_specs=all_specs)
    repo = g.require_repo(config.root, "--base")
    revision = changes.head or g.head_revision(config.root) or "working tree"
    report = RunReport(
        "plan",
        envs[0] if len(envs) == 1 else "all",
        revision,
        envs=envs,
        base=changes.base,
        changes=changes,
    )
    report.diagnostics.extend(changes.diagnostics)
    base_rev = RevisionFiles(repo, config.root, repo.commit(changes.base))
    head_files = RevisionFiles(repo, config.root, repo.commit(changes.head) if head else None)
    if head is None:  # the working tree: a moved alias of a spec the change does not touch
        report.notes.extend(moved_models(config, changes, envs, head_files, Ledger.of(config)))
    config = guard_settings_gate(report, config, base_rev, head_files, allow_guard_change, reviews)
    base_paths: list[str] = []
    for s in changes.specs:
        if s.old_path and s.status != "unchanged":
            base_paths.append(s.old_path)
            base_paths.extend(spec_dependencies(quick_load(base_rev.read(s.old_path)) or {}))
    policy_paths = policy_set_touched(config, changes, base_rev, report.notes)
    if policy_paths is not None:
        base_paths.extend(policy_set_files(base_rev, policy_paths[0]))
    changed_files = {p for f in changes.files for p in (f.path, f.old_path) if p}
    with _revision_roots(config, changes, head, sorted(set(base_paths))) as (head_cfg, base_cfg):
        if policy_paths is not None:
            report.policy_changes = policy_set_diff(
                config, head_cfg, base_cfg, changes, policy_paths
            )
        planned = changes.planned
        loaded = load_files(head_cfg, [head_cfg.root / s.path for s in planned], envs)
        report.diagnostics.extend(loaded.diagnostics)
        specs_rel = config.rel(config.specs_dir).rstrip("/") + "/"
        names = {s.name: s.file for s in loaded.specs if s.name}
        positions = {s.name: s.locate("metadata.name") for s in loaded.specs if s.name}
        exported = head_cfg is not config
        head_rev = RevisionFiles(repo, config.root, repo.commit(changes.head) if exported else None)
        conflicts = name_conflicts(head_rev, specs_rel, names, positions)
        report.diagnostics.extend(conflicts)
        bad = {d.position.file for d in conflicts}
        deployments = [d for d in loaded.deployments if d.spec.file not in bad]
        report.diagnostics.sort(key=lambda d: (d.position.file, d.position.line, d.position.col))
        by_path = {s.path: s for s in planned}
        old_deps = SpecSource(base_cfg, changes.base).deployments(
            [s.old_path for s in changes.specs if s.old_path and s.status != "unchanged"],
            envs,
        )
        mass_delete_guard(report, changes, base_rev, envs, config, allow_mass_delete)
        # Planning is read-only, so every valid deployment is rendered and policed even
        # when something blocks; only building (which loads untrusted model files) waits
        # for the gates to pass.
        # Each deployment is rendered at both revisions and priced once, here, so that the
        # policies see the estimate (input.cost); the loop below diffs the same states.
        prepared: dict[str, Prepared] = {}
        extra: dict[str, dict] = {}
        for dep in deployments:
            change = by_path.get(dep.spec.file)
            prepared[dep.key] = p = prepare_one(
                dep,
                None,
                head_cfg,
                old=old_deps.get((dep.name, dep.env)),
                base_config=base_cfg,
                same=change is not None and change.status == "unchanged",
            )
            if p.cost and p.cost_error is None:
                extra[dep.key] = {POLICY_INPUT_KEY: policy_input(p.cost)}
        plan_policies(report, head_cfg, base_cfg, deployments, policy_paths, extra)
        may_build = build and not report.blocked
        if build and not may_build:
            report.notes.append("builds and smoke tests not run: the gates blocked")
        ledger = Ledger.of(config)
        # the remote models this plan shows are the ones apply may deploy (flow/sources.py)
        report.notes.extend(pin_remote_models(deployments, head_cfg, ledger, revision))
        for dep in deployments:
            change = by_path.get(dep.spec.file)
            old = old_deps.get((dep.name, dep.env))
            outcome = Outcome(dep.key, dep.name, dep.env, dep.platform, "planned")
            outcome.revision = revision
            outcome.change = change.to_dict() if change else {}
            outcome.model = {
                "old": as_applied(model_info(old, base_cfg), ledger.get(dep.name, dep.env)),
                "new": model_info(dep, head_cfg),
            }
            outcome.experiment = experiment_of(dep, ledger.get(dep.name, dep.env))
            if change is None or change.status != "unchanged":
                outcome.spec_diff = spec_diff(old, dep, base_cfg, head_cfg, changed_files)
            artifact = None
            if may_build:
                artifact = build_and_smoke(outcome, dep, head_cfg, revision, False)
            else:
                why = "the gates blocked" if build else "plan --build"
                outcome.build = {"status": "not run", "message": f"not run ({why})"}
            p = prepared[dep.key]
            outcome.cost = p.cost or {}
            if p.cost_error is not None:
                report.diagnostics.append(cost_diagnostic(dep, p.cost_error))
            try:
                old_state = None
                if change is not None and change.status == "unchanged":
                    # --all: same spec bytes, same inputs, no shared input changed, so the
                    # base renders exactly as the head does; render once.
                    if artifact is None and p.error is not None:
                        raise p.error
                    rendered = p.rendered if artifact is None else None
                    rendered = rendered or render_live(dep, artifact, head_cfg)
                    plan_value = unchanged(rendered, dep.key)
                    if "resolved" not in (outcome.model["new"] or {}):  # not remote
                        outcome.model["old"] = outcome.model["new"]
                elif artifact is None:  # rendered and priced above, without a build
                    if p.error is not None:
                        raise p.error
                    old_state = p.old_state
                    if p.old_error is not None:
                        report.notes.append(
                            f"{dep.key}: the base revision does not render ({p.old_error})"
                        )
                    plan_value, rendered = diff(old_state, p.rendered, dep.key), p.rendered
                else:
                    # Image tags must come from the same kind of source on both sides: the
                    # base is built too (cached by digest), or neither side uses a build.
                    old_artifact = None
                    if artifact is not None and old is not None:
                        try:
                            old_artifact = build_artifact(old, base_cfg, changes.base)
                        except Exception:  # noqa: BLE001 - then compare derived tags
                            artifact = None
                    if old is not None:
                        try:
                            old_state = state_dict(
                                render_plan(old, None, base_cfg, old_artifact)[1]
                            )
                        except ModelopsError as exc:
                            report.notes.append(
                                f"{dep.key}: the base revision does not render ({exc})"
                            )
                    plan_value, rendered = render_plan(dep, old_state, head_cfg, artifact)
                    built = outcome.artifact
                    if built is not None and built.edge and old_artifact is not None:
                        # the budget before -> after: the base's bundle against the head's
                        budget = edge_budget_text(dep, old_artifact.edge, built.edge)
                        outcome.build["message"] = f"built {built.edge['bundle']} ({budget})"
                    if smoke and built is not None and not built.edge:
                        same = old_artifact is not None and (
                            old_artifact.bento_tag == built.bento_tag
                        )
                        if same:
                            outcome.build["smoke"] = "not needed: the Bento is the base's"
                        else:
                            outcome.smoke = smoke_test(dep, head_cfg, built)
                report.plans.append(plan_value)
                outcome.plan = plan_value
                outcome.message = plan_value.summary()
                record = ledger.get(dep.name, dep.env)
                if record is not None and record.desiredState and old_state is not None:
                    live = diff(record.desiredState, rendered, dep.key)
                    if live.to_dict() != plan_value.to_dict():
                        outcome.message += (
                            f"; against what is live (ledger, {record.lastAppliedRevision[:12]}): "
                            f"{live.summary()}"
                        )
            except ModelopsError as exc:  # the head does not render: a finding, not a crash
                render_failed(report, outcome, dep, exc)
            report.outcomes.append(outcome)
        for s in changes.deleted:
            _plan_deletion(report, s, old_deps, envs, config, base_cfg)
        for env in envs:
            for s in changes.removed(env):
                _plan_deletion(report, s, old_deps, [env], config, base_cfg)
    sort_report(report)
    at_head = f"head {revision[:12]}" if changes.head else "the working tree"
    report.notes.append(
        "infrastructure plan: each deployment rendered under Pulumi mocks at the merge base "
        f"{changes.base[:12]} and at {at_head}, and diffed"
    )
    return report


@contextlib.contextmanager
def _revision_roots(config: Config, changes, head: str | None, base_paths: list[str]):
    """(head config, base config) with the files of each revision on disk.

    The head is the working tree when ``head`` is omitted or names the checked-out
    commit and the spec repository has no uncommitted changes; otherwise the head
    revision is written out to a temp directory. Only ``base_paths`` of the merge base
    are written out (the changed specs and their inputs).
    """
    repo = g.require_repo(config.root, "--base")
    with contextlib.ExitStack() as stack:
        head_cfg = config
        if changes.head:
            current = g.head_commit(repo)
            if (
                current is None
                or current.hexsha != changes.head
                or g.dirty_paths(repo, config.root)
            ):
                at_head = revision_source(config, repo, repo.commit(changes.head))
                head_cfg = stack.enter_context(at_head).config
        at_base = revision_source(config, repo, repo.commit(changes.base), base_paths)
        yield head_cfg, stack.enter_context(at_base).config


def spec_diff(
    old: Deployment | None,
    dep: Deployment,
    base_cfg: Config,
    head_cfg: Config,
    changed_files: set[str],
) -> dict:
    """What changed in one deployment's resolved spec between the base and the head.

    Args:
        old: the deployment at the merge base (``None`` when it is new: nothing to
            compare, ``{}`` is returned).
        dep: the deployment at the head (same environment).
        base_cfg, head_cfg: the two revisions on disk.
        changed_files: root-relative paths the change touches.

    Returns:
        ``{"fields": [{"path", "old", "new"}], "files": [...], "rebuild": bool,
        "build_inputs": [...], "decided_by": str}`` (plus ``"artifact": "edge bundle"``
        for an edge deployment, whose inputs are
        :func:`reconciler.build.edge_bundle.edge_build_inputs`): the resolved-spec fields
        that differ (overlay merged, for ``dep.env``;
        :func:`~reconciler.gitops.fields.field_changes`),
        the changed files the spec names (model, smoke requests), and whether the Bento's
        build digest changes, i.e. whether ``apply`` builds a new Bento and rolls it out.
        That is decided by comparing :func:`reconciler.build.bento.build_inputs` at both
        revisions (``build_inputs`` lists the keys that differ: ``model``, ``serving``,
        ``capture``, ``model_file``...); when they cannot be computed (a missing model
        file, a digest mismatch: findings of their own), by the spec fields the digest
        covers (:func:`~reconciler.gitops.fields.touches_build`) and ``decided_by`` says
        why.
    """
    if old is None:
        return {}
    fields = field_changes(old.data, dep.data)
    deps = spec_dependencies({"spec": old.data.get("spec", {})}) | spec_dependencies(
        {"spec": dep.data.get("spec", {})}
    )
    out = {
        "fields": [{"path": p, "old": a, "new": b} for p, a, b in fields],
        "files": sorted(deps & changed_files),
        "rebuild": False,
        "build_inputs": [],
        "decided_by": "",
    }
    if not fields and not out["files"]:
        return out
    try:
        if "edge" in (old.platform, dep.platform):  # an edge bundle, not a Bento
            out["artifact"] = "edge bundle"
            before = edge_build_inputs(old, base_cfg)
            after = edge_build_inputs(dep, head_cfg)
        else:
            before, after = build_inputs(old, base_cfg), build_inputs(dep, head_cfg)
        keys = sorted(k for k in set(before) | set(after) if before.get(k) != after.get(k))
        out.update(rebuild=bool(keys), build_inputs=keys, decided_by="build inputs")
    except Exception as exc:  # noqa: BLE001 - the cause is reported elsewhere; decide from fields
        labels = {
            "metadata.name": "deployment",
            "spec.model": "model",
            "spec.serving": "serving",
            "spec.monitoring": "capture",
            "spec.data": "sensitive_fields",
        }
        keys = {
            label
            for p, _a, _b in fields
            if touches_build(p)
            for prefix, label in labels.items()
            if p == prefix or p.startswith(prefix + ".")
        }
        models = {old.get("spec.model.uri"), dep.get("spec.model.uri")}
        if any(f in models for f in out["files"]):
            keys.add("model_file")
        why = error_message(exc)
        out.update(
            rebuild=bool(keys),
            build_inputs=sorted(keys),
            decided_by=f"spec fields (the build inputs could not be computed: {why})",
        )
    return out


def _plan_deletion(report, change, old_deps: dict, envs, config: Config, base_cfg: Config):
    """Outcomes ``delete`` for every environment in ``envs`` of a spec deleted since the
    base, or whose overlay for the environment was removed (``change.removed_envs``)."""
    for env in envs:
        old = old_deps.get((change.name, env))
        if old is None:
            continue
        try:
            state = state_dict(render_plan(old, None, base_cfg)[1])
        except ModelopsError:
            state = None
        record = Ledger.of(config).get(change.name, env)
        if record is not None and record.desiredState:
            state = record.desiredState
        plan_value, _ = render_plan(None, state, config) if state else (None, None)
        what = (
            f"spec {change.old_path} deleted"
            if change.status == "deleted"
            else f"environment overlay {env} removed from {change.path}"
        )
        outcome = Outcome(
            old.key,
            old.name,
            env,
            old.platform,
            "delete",
            f"{what}: on merge, `modelops apply --prune` destroys it"
            + protected_note(config, env)
            + "; without --prune it is reported as orphaned",
            change=change.to_dict(),
            model={"old": model_info(old, base_cfg), "new": None},
            revision=report.revision,
            cost=deletion_cost(state, config, old),
        )
        if plan_value is not None:
            outcome.plan = plan_value
            report.plans.append(plan_value)
        else:
            report.plans.append(None)
        report.outcomes.append(outcome)

"""The gates of a run, all fail closed (``docs/flow.md``).

Spec errors and blocking policies stop a run before anything is built; a dirty tree, a
missing ``pulumi`` CLI, a protected environment and a mass delete stop ``apply`` before
anything is changed.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from reconciler.core import git as g
from reconciler.core.config import (
    CONFIG_FILE,
    GUARD_SETTINGS,
    Config,
    guard_settings,
    loosened,
    stricter_guards,
)
from reconciler.core.diagnostics import (
    EXIT_USAGE,
    ModelopsError,
)
from reconciler.engine.pulumi_engine import pulumi_available
from reconciler.engine.render import PROGRAMS
from reconciler.flow.run import Outcome, RunReport
from reconciler.gitops.changes import overlay_envs
from reconciler.gitops.review import Review, guard_approval
from reconciler.policy.check import check_policies
from reconciler.spec.files import quick_load, spec_dependencies
from reconciler.spec.model import Deployment
from reconciler.spec.repo import SPEC_SUFFIXES, load_all
from reconciler.state.ledger import Ledger


def envs_of(config: Config, env: str | None) -> list[str]:
    """The environments a run covers: ``env``, or every configured one when ``None``.

    Raises:
        ModelopsError: (exit 2) an environment the configuration does not name.
    """
    if env is None:
        return list(config.environments)
    if env not in config.environments:
        raise ModelopsError(
            f"unknown environment {env!r}; known environments: {', '.join(config.environments)}"
        )
    return [env]


def policy_gate(
    config: Config,
    deployments: list[Deployment],
    report: RunReport,
    extra: dict[str, dict] | None = None,
) -> bool:
    """Run the policy check; True when the deployments may proceed.

    ``extra``: per deployment key, keys added to its policy input (the cost estimate).
    """
    if not deployments:
        return True
    report.policy = check_policies(config, deployments, extra=extra)
    return not report.policy.blocking


def gate(
    config: Config,
    targets: list[str] | None,
    env: str | None,
    report: RunReport,
    *,
    keep_blocked: bool = False,
    prepare=None,
):
    """Load, validate and police; returns the deployments that may proceed.

    With ``keep_blocked`` (``plan``), deployments that a policy blocks are returned too
    (``report.blocked`` says so), so that the plan still shows their infrastructure diff
    beside the findings, marked blocked; spec errors still return ``[]``.
    ``prepare``: called with the valid deployments before the policy check; returns the
    keys to add to each one's policy input, by deployment key (the plan renders and
    prices them there: ``input.cost``).
    """
    loaded = load_all(config, targets, env)
    report.diagnostics = loaded.diagnostics
    if loaded.errors:
        return []
    deployments = [d for d in loaded.deployments if d.env in report.envs]
    extra = prepare(deployments) if prepare is not None and deployments else None
    if not policy_gate(config, deployments, report, extra) and not keep_blocked:
        return []
    return deployments


def orphans(config: Config, envs: list[str], live: set[str], targets: list[str] | None):
    """Ledger records in ``envs`` whose spec no longer exists (only on full runs)."""
    if targets:
        return []
    return [r for r in Ledger.of(config).all() if r.environment in envs and r.key not in live]


def protected_note(config: Config, env: str) -> str:
    """`` (environment X is protected: ...)`` for a protected environment, else ``""``."""
    if env in config.protected_environments:
        return f" (environment {env} is protected: also --allow-destroy-protected)"
    return ""


def pulumi_gate(platforms: dict[str, str], env: str) -> None:
    """Raise before anything is applied when a cloud target needs the missing CLI.

    Only platforms with a Pulumi program (:data:`~reconciler.engine.render.PROGRAMS`)
    need it: ``local`` and ``edge`` have engines of their own.
    """
    cloud = {k: p for k, p in platforms.items() if p in PROGRAMS}
    if not cloud:
        return
    if not pulumi_available():
        raise ModelopsError(
            f"apply needs the Pulumi CLI for {', '.join(sorted(cloud))} (platforms: "
            f"{', '.join(sorted(set(cloud.values())))}), and `pulumi` is not on PATH. "
            "Install it (https://www.pulumi.com/docs/install/), or run `modelops plan "
            f"--env {env}` for an offline plan.",
            EXIT_USAGE,
        )


def check_dirty(
    config: Config, deployments: list[Deployment], allow_dirty: bool, report: RunReport
) -> None:
    """Refuse to apply uncommitted changes to what this run deploys.

    Relevant: what apply reads: the spec files (``*.yaml``/``*.yml``) under the specs
    directory, every file under the policies directory, ``modelops.yaml``, the
    organisation settings file, and every file the deployments' specs name (model files,
    smoke requests), whether modified, staged, deleted or untracked (never committed:
    ``git status`` ``??``, minus what ``.gitignore`` excludes). Other uncommitted files (a
    README, notes) and anything under the state directory (``.modelops/``: ledger, lock,
    BentoML home) do not matter to what is deployed.

    Raises:
        ModelopsError: (exit 2) relevant uncommitted files and not ``allow_dirty``; the
            message lists them, the untracked ones separately. With ``allow_dirty`` the
            revision gets ``-dirty`` and a note lists them instead.
    """
    repo = g.open_repo(config.root)
    if repo is None or g.head_commit(repo) is None:
        return

    def under(directory: Path) -> str:  # "" for the root itself, else "<rel>/"
        rel = config.rel(directory).rstrip("/")
        return "" if rel == "." else rel + "/"

    specs, policies = under(config.specs_dir), under(config.policies_dir)
    state = under(config.state_dir)
    inputs = {"modelops.yaml"}
    if config.organization is not None:
        inputs.add(config.rel(config.organization))
    for dep in deployments:
        inputs |= spec_dependencies(dep.spec.data)
    dirty = g.dirty_paths(repo, config.root, [specs, policies, *sorted(inputs)])
    relevant = [
        p
        for p in dirty
        if (
            p in inputs
            or p.startswith(policies)
            or (p.startswith(specs) and p.endswith(SPEC_SUFFIXES))
        )
        and not (state and p.startswith(state))
    ]
    if not relevant:
        return
    pre = g.prefix(repo, config.root)
    tracked = {path for path, _stage in repo.index.entries}
    untracked = [p for p in relevant if pre + p not in tracked]
    changed = [p for p in relevant if pre + p in tracked]

    def listed(paths: list[str]) -> str:
        return ", ".join(paths[:10]) + (f" and {len(paths) - 10} more" if len(paths) > 10 else "")

    shown = "; ".join(
        part
        for part in (
            f"changed: {listed(changed)}" if changed else "",
            f"untracked (never committed): {listed(untracked)}" if untracked else "",
        )
        if part
    )
    if not allow_dirty:
        raise ModelopsError(
            f"the working tree has uncommitted changes that apply would deploy ({shown}); "
            "the ledger records Git revisions, so commit them first (git add, git commit; "
            "or pass --allow-dirty to record the revision as <sha>-dirty). Nothing was "
            "applied."
        )
    if report.revision and not report.revision.endswith("-dirty"):
        report.revision += "-dirty"
    report.notes.append(f"applied with uncommitted changes: {shown}")


def _planned_commits(head_rev) -> set[str]:
    """The commit(s) a plan is of, for review approvals: the head (the working tree's
    ``HEAD``), and for a merge commit (GitHub's ``refs/pull/N/merge``, which
    ``actions/checkout`` checks out) its second parent, the pull request's head."""
    commit = head_rev.commit
    if commit is None:
        commit = g.head_commit(head_rev.repo)
    if commit is None:
        return set()
    commits = {commit.hexsha}
    if len(commit.parents) == 2:
        commits.add(commit.parents[1].hexsha)
    return commits


def guard_settings_gate(
    report, config: Config, base_rev, head_rev, allow: bool, reviews: list[Review] | None = None
) -> Config:
    """Plan a change under the stricter of the base's and the head's guard settings.

    The settings that guard a change (:data:`~reconciler.core.config.GUARDS`, one table:
    ``max_delete_share``, ``protected_environments``, ``stalled_after``,
    ``guard_reviewers``) are read from ``modelops.yaml`` at the merge base and at the
    head, as the policy set is: a pull request must not switch off the guard that checks
    it. Every setting that differs is listed in ``report.guard_changes`` (``{"setting",
    "base", "head", "loosens"}``; the plan then needs a security review). One that the
    head loosens blocks (a line in ``report.guards``) until approved: by ``allow``
    (``--allow-guard-change``), or by ``reviews`` when one of the stricter
    ``guard_reviewers`` approved the planned commit
    (:func:`~reconciler.gitops.review.guard_approval`); then it is a note.

    Args:
        report: the run report (``guards``, ``notes``, ``guard_changes`` are added to).
        config: the configuration read from the working tree.
        base_rev, head_rev: :class:`~reconciler.gitops.changes.RevisionFiles` of the merge
            base and of the head (working tree when its ``commit`` is ``None``).
        allow: a reviewer approved loosening the guard settings.
        reviews: the pull request's reviews (``plan --reviews``); ``None``: not given.

    Returns:
        ``config`` with the stricter guard settings (the one to plan or apply with).

    Raises:
        ModelopsError: (exit 2) ``modelops.yaml`` at either revision is invalid.
    """
    base = guard_settings(base_rev.read(CONFIG_FILE), f"{CONFIG_FILE} (merge base)")
    head = guard_settings(head_rev.read(CONFIG_FILE), CONFIG_FILE)
    loose = loosened(base, head)
    for key in GUARD_SETTINGS:
        if base[key] != head[key]:
            report.guard_changes.append(
                {"setting": key, "base": base[key], "head": head[key], "loosens": key in loose}
            )
    strict = stricter_guards(base, head)
    approval = None
    if loose and not allow and reviews is not None:
        approval = guard_approval(reviews, strict["guard_reviewers"], _planned_commits(head_rev))
    for key in loose:
        what = (
            f"this change loosens the guard setting {key} in {CONFIG_FILE} "
            f"({base[key]!r} at the merge base → {head[key]!r})"
        )
        if allow:
            report.notes.append(f"{what} (allowed by --allow-guard-change)")
        elif approval is not None and approval.approved:
            report.notes.append(f"{what} ({approval.reason}, a guard reviewer)")
        else:
            why = approval.reason if approval is not None else "no reviews were given"
            report.guards.append(
                f"{what}: a change to a guard setting needs an approving review by one of "
                f"guard_reviewers; until then it blocks ({why}; or --allow-guard-change "
                f"after review). This plan used the stricter value {strict[key]!r}"
            )
    if base != head:
        shown = "; ".join(f"{key} {_shown(strict[key])}" for key in GUARD_SETTINGS)
        report.notes.append(
            f"guard settings: the stricter of the merge base's and this change's: {shown}"
        )
    return replace(config, **strict)


def _shown(value) -> str:
    """A guard setting's value in a note (``-`` for an empty list)."""
    if isinstance(value, list):
        return ", ".join(value) or "-"
    return f"{value:g}" if isinstance(value, float) else str(value)


def mass_delete_guard(report, changes, base_rev, envs, config: Config, allow: bool) -> None:
    """Block a change that deletes more than ``config.max_delete_share`` of an env.

    A deployment is deleted when its spec is deleted (and had the env's overlay at the
    base) or when its env overlay is removed from a spec that stays
    (:meth:`~reconciler.gitops.changes.ChangeSet.removed`); both count. The total is
    the number of specs with an overlay for the env at the merge base.
    """
    if not changes.deleted and not any(changes.removed(env) for env in envs):
        return
    specs_rel = config.rel(config.specs_dir).rstrip("/") + "/"
    per_env_total = dict.fromkeys(envs, 0)
    for path in base_rev.spec_files(specs_rel):
        have = overlay_envs(quick_load(base_rev.read(path)))
        for env in envs:
            per_env_total[env] += env in have
    for env in envs:
        gone = len(changes.removed(env))
        for s in changes.deleted:
            gone += env in overlay_envs(quick_load(base_rev.read(s.old_path)))
        total = per_env_total[env]
        if total and gone / total > config.max_delete_share:
            msg = (
                f"this change deletes {gone} of {total} deployment(s) in {env} "
                f"({gone / total:.0%}, above max_delete_share {config.max_delete_share:.0%}; "
                "deleted specs and removed environment overlays both count); "
                "`modelops apply` will refuse to prune them without --allow-mass-delete"
            )
            if allow:
                report.notes.append(msg + " (allowed by --allow-mass-delete)")
            else:
                report.guards.append(msg)


def prune_plan(config, env, candidates, prune, allow_protected, allow_mass, report):
    """Decide which orphaned records to destroy; the others become ``orphaned`` outcomes."""
    if not candidates:
        return []

    def orphaned(message_for) -> list:
        """Record every candidate as ``orphaned`` with ``message_for(record)``."""
        for r in candidates:
            report.outcomes.append(
                Outcome(
                    r.key,
                    r.name,
                    r.environment,
                    r.platform,
                    "orphaned",
                    message_for(r),
                    revision=r.lastAppliedRevision,
                )
            )
        return []

    if not prune:
        return orphaned(
            lambda r: (
                "spec or its environment overlay removed; destroyed only by "
                "`modelops apply --prune`" + protected_note(config, r.environment)
            )
        )
    if env in config.protected_environments and not allow_protected:
        return orphaned(
            lambda r: (
                f"spec or overlay removed, but {env} is a protected environment: destroying it "
                "needs --prune --allow-destroy-protected"
            )
        )
    total = len([r for r in Ledger.of(config).all() if r.environment == env])
    share = len(candidates) / total if total else 0.0
    if share > config.max_delete_share and not allow_mass:
        raise ModelopsError(
            f"--prune would destroy {len(candidates)} of {total} deployment(s) in {env} "
            f"({share:.0%}, above max_delete_share {config.max_delete_share:.0%}): "
            f"{', '.join(r.key for r in candidates[:10])}. Nothing was applied or destroyed. "
            "If this is intended, run again with --allow-mass-delete."
        )
    pulumi_gate({r.key: r.platform for r in candidates}, env)
    return candidates

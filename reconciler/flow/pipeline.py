"""The reconcile pipeline: validate → police → build → render → plan → apply.

Each stage is a module that takes the previous stage's value (``shared/DESIGN.md``);
this module only sequences them for the ``plan``, ``apply``, ``destroy`` and
``rollback`` commands and collects one :class:`RunReport`.

Gates, in order, all fail closed:

1. any spec with an error (YAML, schema, semantic, a name used twice) stops the run
   before anything is built: exit 1;
2. any blocking policy result (a mandatory failure or a policy error) stops the run
   before anything is built: exit 1;
3. each deployment is then built and applied on its own; one failing deployment does
   not stop the others, and the run exits 3 naming each failure.

GitOps modes (``--base``): ``plan`` diffs the rendered DesiredState of each changed
deployment at the merge base against the one at head (what the pull request changes),
lists the resolved-spec fields that changed and whether they make a new Bento, and,
when the pull request changes the policy set, checks its specs against the base's
policies, waivers and organisation settings (and against its own) and lists what it
changes in the policy set (:func:`_plan_policies`);
``apply`` converges only the deployments whose spec or inputs changed since ``base``
and plans the deletion of those whose spec was deleted. Deletion needs ``--prune``,
protected environments also ``--allow-destroy-protected``, and deleting more than
``config.max_delete_share`` of an environment's deployments at once
``--allow-mass-delete``.

Ledger bookkeeping (per deployment × environment, :mod:`reconciler.state.ledger`):
the pipeline computes an *inputs digest* before building (resolved spec plus the bytes
of its model and smoke files), records every attempt, counts consecutive failures with
the same digest, and marks the record ``Stalled`` after ``config.stalled_after`` of
them. A stalled deployment is skipped (and reported as failed) until its digest
changes. Engines that keep their own ledger entries (the local engine does) are
detected and not double-counted. ``destroy`` and ``apply --prune`` keep the record and
its history, marked destroyed (``LedgerRecord.record_destroyed``); a later apply of the
same deployment continues that history.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import json
import posixpath
import tempfile
from dataclasses import dataclass, field, replace
from pathlib import Path

from reconciler.build.artifact import Artifact
from reconciler.core import git as g
from reconciler.core.config import Config
from reconciler.core.diagnostics import (
    EXIT_APPLY_FAILED,
    EXIT_FINDINGS,
    EXIT_OK,
    EXIT_USAGE,
    Diagnostic,
    ModelopsError,
)
from reconciler.spec.model import Deployment, Spec
from reconciler.spec.repo import load_all, load_files
from reconciler.state.ledger import Ledger, LedgerRecord

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
            it cannot be rendered: a finding) or ``skipped``.
        message: one line for humans.
        artifact: the build's :class:`Artifact` as a dict (``{}`` when not built).
        plan: the infrastructure plan as a dict (``{}`` when not computed).
        outputs: engine outputs after an apply (url, port, endpoint names).
        smoke: smoke/SLO result as a dict (``{}`` when not run).
        change: why it is in a ``--base`` run: ``{"status", "path", "old_path",
            "reasons"}`` (:class:`~reconciler.gitops.changes.SpecChange`), ``{}`` otherwise.
        model: ``{"old": {...}, "new": {...}}`` with framework, uri, sha256 and version
            of the model at base and head (``None`` for a side that does not exist).
        build: ``{"status": "built"|"reused"|"failed"|"not run", "message"}``.
        revision: the Git revision applied or planned (head).
        spec_diff: for a ``--base`` plan of a deployment that exists at both revisions,
            what changed in its resolved spec (:func:`_spec_diff`): ``{"fields": [{"path",
            "old", "new"}], "files", "rebuild", "build_inputs", "decided_by"}``; ``{}``
            otherwise.
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
    change: dict = field(default_factory=dict)
    model: dict = field(default_factory=dict)
    build: dict = field(default_factory=dict)
    revision: str = ""
    spec_diff: dict = field(default_factory=dict)

    @property
    def failed(self) -> bool:
        """True for ``failed`` and ``stalled`` outcomes."""
        return self.status in FAILED_STATUSES

    def to_dict(self) -> dict:
        """JSON-ready mapping."""
        return copy.deepcopy(dict(self.__dict__))


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
            what it changes (:class:`~reconciler.gitops.changes.PolicySetDiff`);
            ``None`` otherwise.
        policy_head: when the plan evaluated :attr:`policy` with the base's policy set
            (the pull request changes what is enforced), the policy report with the pull
            request's own policy set, which ``apply`` uses after the merge; it blocks
            too. ``None`` otherwise.
    """

    action: str
    env: str
    revision: str = ""
    envs: list[str] = field(default_factory=list)
    base: str = ""
    diagnostics: list[Diagnostic] = field(default_factory=list)
    policy: object | None = None
    outcomes: list[Outcome] = field(default_factory=list)
    plans: list = field(default_factory=list)
    offline: bool = True
    changes: object | None = None
    guards: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    revert: list[dict] = field(default_factory=list)
    policy_changes: object | None = None
    policy_head: object | None = None

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
        """True when the pull request changes what the policy check enforces.

        Not blocking by itself: the plan says so, and never "ready to merge".
        """
        return bool(self.policy_changes is not None and self.policy_changes.changes_enforcement)

    @property
    def failures(self) -> list[Outcome]:
        """Outcomes with status ``failed`` or ``stalled``."""
        return [o for o in self.outcomes if o.failed]

    @property
    def build_failures(self) -> list[Outcome]:
        """Plan outcomes whose build or smoke test failed (they block a merge)."""
        return [
            o
            for o in self.outcomes
            if o.build.get("status") == "failed" or o.smoke.get("passed") is False
        ]

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
            "policy_changes": (
                self.policy_changes.to_dict() if self.policy_changes is not None else None
            ),
            "policy_with_pr_changes": (
                self.policy_head.to_dict() if self.policy_head is not None else None
            ),
        }


# -- helpers ---------------------------------------------------------------------------


def _state_dict(state) -> dict | None:
    if state is None:
        return None
    return state.to_dict() if hasattr(state, "to_dict") else dict(state)


def _envs(config: Config, env: str | None) -> list[str]:
    if env is None:
        return list(config.environments)
    if env not in config.environments:
        raise ModelopsError(
            f"unknown environment {env!r}; known environments: {', '.join(config.environments)}"
        )
    return [env]


def file_digest(path: Path | None) -> str:
    """SHA-256 hex of a file's bytes, or ``"missing"`` when it cannot be read."""
    if path is None:
        return "missing"
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return "missing"


def inputs_digest(dep: Deployment, config: Config) -> str:
    """SHA-256 hex of everything in the repository that determines one deployment.

    Covers the resolved document (overlay merged), the environment, and the bytes of
    each repository file it names (model file, smoke request files), computed before
    anything is built so that a failed build still has a digest. Equal digest ⇒ the
    spec and its inputs did not change (used for stalled detection and rollback holds).
    """
    from reconciler.gitops.changes import spec_dependencies

    files = {}
    for rel in sorted(spec_dependencies({"spec": dep.data.get("spec", {})})):
        files[rel] = file_digest(config.repo_path(rel))
    doc = {"deployment": dep.data, "environment": dep.env, "files": files}
    blob = json.dumps(doc, sort_keys=True, separators=(",", ":"), default=str).encode()
    return hashlib.sha256(blob).hexdigest()


def model_info(dep: Deployment | None, config: Config | None) -> dict | None:
    """``{"framework", "uri", "sha256", "version"}`` of a deployment's model, or None.

    ``sha256`` is the spec's digest when it gives one, else the file's (repository
    paths), else ``""``.
    """
    if dep is None:
        return None
    uri = dep.get("spec.model.uri", "")
    digest = dep.get("spec.model.sha256") or ""
    if not digest and config is not None and isinstance(uri, str):
        path = config.repo_path(uri)
        if path is not None and path.is_file():
            digest = file_digest(path)
    return {
        "framework": dep.get("spec.model.framework", ""),
        "uri": uri,
        "sha256": digest,
        "version": str(dep.get("spec.model.version", "") or ""),
    }


def _rebased(config: Config, root: Path, *, keep_policies: bool = False) -> Config:
    """``config`` with its repository paths moved under ``root`` (same state directory)."""

    def move(path: Path | None) -> Path | None:
        if path is None:
            return None
        try:
            return root / Path(path).resolve().relative_to(config.root)
        except ValueError:
            return path

    return replace(
        config,
        root=root,
        specs_dir=move(config.specs_dir),
        policies_dir=config.policies_dir if keep_policies else move(config.policies_dir),
        organization=config.organization if keep_policies else move(config.organization),
    )


def _render_plan(dep: Deployment | None, old_state: dict | None, config: Config, artifact=None):
    """(plan, rendered DesiredState or None) of ``dep`` against ``old_state`` (a dict)."""
    from reconciler.engine.plan import diff
    from reconciler.engine.render import render

    rendered = render(dep, artifact, config) if dep is not None else None
    key = dep.key if dep is not None else (old_state or {}).get("deployment", "")
    return diff(old_state or None, rendered, key), rendered


def _policy_gate(config: Config, deployments: list[Deployment], report: RunReport) -> bool:
    """Run the policy check; True when the deployments may proceed."""
    from reconciler.policy.check import check_policies

    if not deployments:
        return True
    report.policy = check_policies(config, deployments)
    return not report.policy.blocking


def _gate(config: Config, targets: list[str] | None, env: str | None, report: RunReport):
    """Load, validate and police; returns the deployments that may proceed."""
    loaded = load_all(config, targets, env)
    report.diagnostics = loaded.diagnostics
    if loaded.errors:
        return []
    deployments = [d for d in loaded.deployments if d.env in report.envs]
    if not _policy_gate(config, deployments, report):
        return []
    return deployments


def _orphans(config: Config, envs: list[str], live: set[str], targets: list[str] | None):
    """Ledger records in ``envs`` whose spec no longer exists (only on full runs)."""
    if targets:
        return []
    return [
        r for r in Ledger(config.state_dir).all() if r.environment in envs and r.key not in live
    ]


def _build(dep: Deployment, config: Config, revision: str) -> Artifact:
    from reconciler.build.bento import build

    return build(dep, config, revision=revision)


def _smoke(dep: Deployment, config: Config, artifact: Artifact) -> dict:
    """Serve the Bento on loopback, run the smoke and SLO check, stop it (plan --smoke)."""
    from reconciler.build.serve import start_server, stop_server
    from reconciler.build.smoke import run_smoke

    handle = start_server(artifact, config, log_name=f"{dep.key}-plan-smoke")
    try:
        return run_smoke(dep, config, handle.url).to_dict()
    finally:
        stop_server(handle)


def _run_smoke(outcome: Outcome, dep: Deployment, config: Config, artifact: dict) -> None:
    try:
        outcome.smoke = _smoke(dep, config, Artifact(**artifact))
    except Exception as exc:  # noqa: BLE001 - reported per deployment, the plan goes on
        outcome.smoke = {"passed": False, "failures": [getattr(exc, "message", str(exc))]}


def _build_and_smoke(outcome: Outcome, dep: Deployment, config: Config, revision: str, smoke):
    try:
        artifact = _build(dep, config, revision)
    except Exception as exc:  # noqa: BLE001 - reported per deployment, the plan goes on
        outcome.build = {"status": "failed", "message": getattr(exc, "message", str(exc))}
        return None
    outcome.artifact = artifact.to_dict()
    outcome.build = {
        "status": "reused" if artifact.reused else "built",
        "message": f"{'reused' if artifact.reused else 'built'} {artifact.bento_tag}",
    }
    if smoke:
        try:
            outcome.smoke = _smoke(dep, config, artifact)
        except Exception as exc:  # noqa: BLE001
            outcome.smoke = {"passed": False, "failures": [getattr(exc, "message", str(exc))]}
    return artifact


# -- plan ------------------------------------------------------------------------------


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

    Returns:
        A :class:`RunReport`. Without ``base``, each deployment's rendered DesiredState
        is diffed against the last applied one in the ledger, and ledger records whose
        spec is gone are reported as ``orphaned``.

    Raises:
        ModelopsError: (exit 2) unknown environment or target; a revision that does not
            exist or is missing from a shallow clone; corrupt ledger.
    """
    build = build or smoke
    envs = _envs(config, env)
    if base is not None:
        return _plan_changes(config, envs, base, head, build, smoke, all_specs, allow_mass_delete)
    report = RunReport("plan", env or "all", g.head_revision(config.root), envs=envs)
    deployments = _gate(config, targets, env, report)
    ledger = Ledger(config.state_dir)
    for dep in deployments:
        outcome = Outcome(dep.key, dep.name, dep.env, dep.platform, "planned")
        outcome.revision = report.revision
        artifact = _build_and_smoke(outcome, dep, config, report.revision, smoke) if build else None
        record = ledger.get(dep.name, dep.env)
        outcome.model = {"old": None, "new": model_info(dep, config)}
        try:
            change, _ = _render_plan(dep, record.desiredState if record else None, config, artifact)
        except ModelopsError as exc:
            _render_failed(report, outcome, dep, exc)
            report.outcomes.append(outcome)
            continue
        report.plans.append(change)
        outcome.message = change.summary()
        outcome.plan = change.to_dict()
        report.outcomes.append(outcome)
    if not report.blocked:
        live = {d.key for d in deployments}
        for record in _orphans(config, envs, live, targets):
            change, _ = _render_plan(None, record.desiredState, config)
            report.plans.append(change)
            report.outcomes.append(
                Outcome(
                    record.key,
                    record.name,
                    record.environment,
                    record.platform,
                    "orphaned",
                    "spec deleted; destroyed only by `modelops apply --prune`"
                    + _protected_note(config, record.environment),
                    plan=change.to_dict(),
                )
            )
    _sort(report)
    report.notes.append("infrastructure plan: rendered under Pulumi mocks, diffed with the ledger")
    return report


def _render_failed(report: RunReport, outcome: Outcome, dep: Deployment, exc: ModelopsError):
    """Record a deployment that cannot be rendered as a spec finding (it blocks)."""
    diags = list(exc.diagnostics) or [
        Diagnostic(dep.spec.locate(()), "", exc.message, code="render")
    ]
    report.diagnostics.extend(d for d in diags if d not in report.diagnostics)
    outcome.status = "invalid"
    outcome.message = f"cannot render: {exc.message}"
    report.plans.append(None)


def _protected_note(config: Config, env: str) -> str:
    if env in config.protected_environments:
        return f" (environment {env} is protected: also --allow-destroy-protected)"
    return ""


def _sort(report: RunReport) -> None:
    pairs = sorted(zip(report.outcomes, report.plans, strict=False), key=lambda p: p[0].key)
    if len(pairs) == len(report.outcomes):
        report.outcomes = [p[0] for p in pairs]
        report.plans = [p[1] for p in pairs]
    else:
        report.outcomes.sort(key=lambda o: o.key)


@contextlib.contextmanager
def _revision_roots(config: Config, changes, head: str | None, base_paths: list[str]):
    """(head config, base config) with the files of each revision on disk.

    The head is the working tree when ``head`` is omitted or names the checked-out
    commit and the spec repository has no uncommitted changes; otherwise the head
    revision is written out to a temp directory. Only ``base_paths`` of the merge base
    are written out (the changed specs and their inputs).
    """
    repo = g.require_repo(config.root, "--base")
    pre = g.prefix(repo, config.root)
    with tempfile.TemporaryDirectory(prefix="modelops-revs-") as tmp:
        head_cfg = config
        if changes.head:
            current = g.head_commit(repo)
            if (
                current is None
                or current.hexsha != changes.head
                or g.dirty_paths(repo, config.root)
            ):
                dest = Path(tmp) / "head"
                commit = repo.commit(changes.head)
                g.export_tree(repo, commit, dest, [pre] if pre else None)
                head_cfg = _rebased(config, dest / pre if pre else dest)
        base_dest = Path(tmp) / "base"
        base_root = base_dest / pre if pre else base_dest
        g.export_tree(repo, repo.commit(changes.base), base_dest, [pre + p for p in base_paths])
        base_cfg = _rebased(config, base_root)
        yield head_cfg, base_cfg


def _base_deployments(base_cfg: Config, paths: list[str], envs: list[str]) -> dict:
    """``{(name, env): Deployment}`` of the specs at the merge base (best effort)."""
    from reconciler.core.yaml import YamlLoadError
    from reconciler.spec.loader import load_spec
    from reconciler.spec.resolve import resolve

    out = {}
    for rel in paths:
        path = base_cfg.root / rel
        if not path.is_file():
            continue
        try:
            spec = load_spec(path, base_cfg.root)
        except YamlLoadError:
            continue
        for env in envs:
            dep, _diags = resolve(spec, env, base_cfg)
            if dep is not None:
                out[(dep.name, env)] = dep
    return out


def _plan_changes(
    config: Config,
    envs: list[str],
    base: str,
    head: str | None,
    build: bool,
    smoke: bool,
    all_specs: bool,
    allow_mass_delete: bool,
) -> RunReport:
    from reconciler.gitops.changes import (
        RevisionFiles,
        detect_changes,
        name_conflicts,
        quick_load,
        spec_dependencies,
    )

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
    base_paths: list[str] = []
    for s in changes.specs:
        if s.old_path and s.status != "unchanged":
            base_paths.append(s.old_path)
            base_paths.extend(spec_dependencies(quick_load(base_rev.read(s.old_path)) or {}))
    policy_paths = _policy_set_touched(config, changes, base_rev, report.notes)
    if policy_paths is not None:
        base_paths.extend(_policy_set_files(base_rev, policy_paths[0]))
    changed_files = {p for f in changes.files for p in (f.path, f.old_path) if p}
    with _revision_roots(config, changes, head, sorted(set(base_paths))) as (head_cfg, base_cfg):
        if policy_paths is not None:
            report.policy_changes = _policy_set_diff(
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
        old_deps = _base_deployments(
            base_cfg,
            [s.old_path for s in changes.specs if s.old_path and s.status != "unchanged"],
            envs,
        )
        _mass_delete_guard(report, changes, base_rev, envs, config, allow_mass_delete)
        # Planning is read-only, so every valid deployment is rendered and policed even
        # when something blocks; only building (which loads untrusted model files) waits
        # for the gates to pass.
        _plan_policies(report, head_cfg, base_cfg, deployments, policy_paths)
        may_build = build and not report.blocked
        if build and not may_build:
            report.notes.append("builds and smoke tests not run: the gates blocked")
        ledger = Ledger(config.state_dir)
        for dep in deployments:
            change = by_path.get(dep.spec.file)
            old = old_deps.get((dep.name, dep.env))
            outcome = Outcome(dep.key, dep.name, dep.env, dep.platform, "planned")
            outcome.revision = revision
            outcome.change = change.to_dict() if change else {}
            outcome.model = {"old": model_info(old, base_cfg), "new": model_info(dep, head_cfg)}
            if change is None or change.status != "unchanged":
                outcome.spec_diff = _spec_diff(old, dep, base_cfg, head_cfg, changed_files)
            artifact = None
            if may_build:
                artifact = _build_and_smoke(outcome, dep, head_cfg, revision, False)
            else:
                why = "the gates blocked" if build else "plan --build"
                outcome.build = {"status": "not run", "message": f"not run ({why})"}
            try:
                old_state = None
                if change is not None and change.status == "unchanged":
                    # --all: same spec bytes, same inputs, no shared input changed, so the
                    # base renders exactly as the head does; render once.
                    from reconciler.engine.plan import diff
                    from reconciler.engine.render import render

                    rendered = render(dep, artifact, head_cfg)
                    plan_value = diff(rendered.to_dict(), rendered, dep.key)
                    outcome.model["old"] = outcome.model["new"]
                else:
                    # Image tags must come from the same kind of source on both sides: the
                    # base is built too (cached by digest), or neither side uses a build.
                    old_artifact = None
                    if artifact is not None and old is not None:
                        try:
                            old_artifact = _build(old, base_cfg, changes.base)
                        except Exception:  # noqa: BLE001 - then compare derived tags
                            artifact = None
                    if old is not None:
                        try:
                            old_state = _state_dict(
                                _render_plan(old, None, base_cfg, old_artifact)[1]
                            )
                        except ModelopsError as exc:
                            report.notes.append(
                                f"{dep.key}: the base revision does not render ({exc})"
                            )
                    plan_value, rendered = _render_plan(dep, old_state, head_cfg, artifact)
                    if smoke and outcome.build.get("status") in ("built", "reused"):
                        same = old_artifact is not None and (
                            old_artifact.bento_tag == outcome.artifact.get("bento_tag")
                        )
                        if same:
                            outcome.build["smoke"] = "not needed: the Bento is the base's"
                        else:
                            _run_smoke(outcome, dep, head_cfg, outcome.artifact)
                report.plans.append(plan_value)
                outcome.plan = plan_value.to_dict()
                outcome.message = plan_value.summary()
                record = ledger.get(dep.name, dep.env)
                if record is not None and record.desiredState and old_state is not None:
                    from reconciler.engine.plan import diff

                    live = diff(record.desiredState, rendered, dep.key)
                    if live.to_dict() != plan_value.to_dict():
                        outcome.message += (
                            f"; against what is live (ledger, {record.lastAppliedRevision[:12]}): "
                            f"{live.summary()}"
                        )
            except ModelopsError as exc:  # the head does not render: a finding, not a crash
                _render_failed(report, outcome, dep, exc)
            report.outcomes.append(outcome)
        for s in changes.deleted:
            _plan_deletion(report, s, old_deps, envs, config, base_cfg)
    _sort(report)
    at_head = f"head {revision[:12]}" if changes.head else "the working tree"
    report.notes.append(
        "infrastructure plan: each deployment rendered under Pulumi mocks at the merge base "
        f"{changes.base[:12]} and at {at_head}, and diffed"
    )
    return report


def _policy_set_touched(config: Config, changes, base_rev, notes: list[str]):
    """``(base paths, head paths)`` of the policy set when the change touches it, else None.

    Touched: a changed file under the policies directory or the organisation file, at
    either revision (``modelops.yaml`` may move them). A policy set outside the
    repository cannot be read from Git: then ``None`` too, and a line in ``notes``
    says so.
    """
    from reconciler.gitops.policyset import policy_set_paths

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


def _policy_set_files(base_rev, paths) -> list[str]:
    """Root-relative files of the base's policy set (``*.rego``, waivers, organisation)."""
    from reconciler.gitops.policyset import WAIVERS_FILE

    out = [paths.organization, posixpath.join(paths.policies, WAIVERS_FILE)]
    pre = base_rev.pre
    for full in g.list_files(base_rev.commit, pre + paths.policies):
        rel = full[len(pre) :]
        if paths.evaluated(rel):
            out.append(rel)
    return out


def _policy_set_diff(config: Config, head_cfg: Config, base_cfg: Config, changes, paths):
    """The :class:`~reconciler.gitops.changes.PolicySetDiff` of a plan (base vs head)."""
    from reconciler.gitops.policyset import diff_policy_sets

    base_paths, head_paths = paths
    return diff_policy_sets(
        base_cfg.root, base_paths, head_cfg.root, head_paths, config.environments, changes.files
    )


def _plan_policies(report: RunReport, head_cfg: Config, base_cfg: Config, deployments, paths):
    """Police the planned deployments; with the base's policy set when the PR changes it.

    A pull request's own policy change has not been reviewed yet, so it may not approve
    its own specs (the practice of Atlantis and Conftest: policies from the base
    branch). When :attr:`RunReport.policy_changes` says the pull request changes what is
    enforced (a policy, its metadata, a waiver, an organisation setting), the
    deployments are checked against the policies, waivers and organisation settings as
    they are at the merge base (written out by :func:`_revision_roots`): that is
    :attr:`RunReport.policy`. They are also checked against the pull request's own set,
    which ``apply`` uses after the merge (:attr:`RunReport.policy_head`); either
    blocking blocks. Waiver-file findings of the base's ``waivers.yaml`` (unused,
    expired, unknown scope) are left out when the pull request changes that file: its
    head version is the one checked. Where the two sets disagree is recorded in
    ``policy_changes.effects``. Both checks fail closed: a base policy that does not
    compile or load blocks, also in the pull request that repairs it (merge such a fix
    after the security review, with the repository's override).

    Args:
        report: the plan; ``policy``, ``policy_head``, ``notes`` and
            ``policy_changes.effects`` are set.
        head_cfg, base_cfg: the two revisions on disk (:func:`_revision_roots`).
        deployments: the valid deployments at the head.
        paths: ``(base, head)`` :class:`~reconciler.gitops.changes.PolicySetPaths`, or
            ``None`` when the change does not touch the policy set.
    """
    diff = report.policy_changes
    if diff is None or not diff.changes_enforcement:
        _policy_gate(head_cfg, deployments, report)
        return
    from reconciler.gitops.policyset import WAIVERS_FILE
    from reconciler.policy.check import check_policies

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
    _policy_gate(base_policy_cfg, deployments, report)
    report.policy_head = check_policies(head_cfg, deployments)
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


def _spec_diff(
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
        "build_inputs": [...], "decided_by": str}``: the resolved-spec fields that differ
        (overlay merged, for ``dep.env``; :func:`~reconciler.gitops.changes.field_changes`),
        the changed files the spec names (model, smoke requests), and whether the Bento's
        build digest changes, i.e. whether ``apply`` builds a new Bento and rolls it out.
        That is decided by comparing :func:`reconciler.build.bento.build_inputs` at both
        revisions (``build_inputs`` lists the keys that differ: ``model``, ``serving``,
        ``capture``, ``model_file``...); when they cannot be computed (a missing model
        file, a digest mismatch: findings of their own), by the spec fields the digest
        covers (:func:`~reconciler.gitops.changes.touches_build`) and ``decided_by`` says
        why.
    """
    from reconciler.gitops.changes import spec_dependencies
    from reconciler.gitops.fields import field_changes, touches_build

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
        from reconciler.build.bento import build_inputs

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
        why = getattr(exc, "message", None) or f"{type(exc).__name__}: {exc}"
        out.update(
            rebuild=bool(keys),
            build_inputs=sorted(keys),
            decided_by=f"spec fields (the build inputs could not be computed: {why})",
        )
    return out


def _plan_deletion(report, change, old_deps: dict, envs, config: Config, base_cfg: Config):
    """Outcomes ``delete`` for every environment of a spec deleted since the base."""
    for env in envs:
        old = old_deps.get((change.name, env))
        if old is None:
            continue
        try:
            state = _state_dict(_render_plan(old, None, base_cfg)[1])
        except ModelopsError:
            state = None
        record = Ledger(config.state_dir).get(change.name, env)
        if record is not None and record.desiredState:
            state = record.desiredState
        plan_value, _ = _render_plan(None, state, config) if state else (None, None)
        outcome = Outcome(
            old.key,
            old.name,
            env,
            old.platform,
            "delete",
            f"spec {change.old_path} deleted: on merge, `modelops apply --prune` destroys it"
            + _protected_note(config, env)
            + "; without --prune it is reported as orphaned",
            change=change.to_dict(),
            model={"old": model_info(old, base_cfg), "new": None},
            revision=report.revision,
        )
        if plan_value is not None:
            outcome.plan = plan_value.to_dict()
            report.plans.append(plan_value)
        else:
            report.plans.append(None)
        report.outcomes.append(outcome)


def _mass_delete_guard(report, changes, base_rev, envs, config: Config, allow: bool) -> None:
    """Block a change that deletes more than ``config.max_delete_share`` of an env."""
    from reconciler.gitops.changes import quick_load

    deleted = changes.deleted
    if not deleted:
        return
    specs_rel = config.rel(config.specs_dir).rstrip("/") + "/"
    per_env_total = dict.fromkeys(envs, 0)
    for path in base_rev.spec_files(specs_rel):
        data = quick_load(base_rev.read(path)) or {}
        overlays = (data.get("spec") or {}).get("environments") or {}
        for env in envs:
            if isinstance(overlays, dict) and env in overlays:
                per_env_total[env] += 1
    for env in envs:
        gone = 0
        for s in deleted:
            data = quick_load(base_rev.read(s.old_path)) or {}
            overlays = (data.get("spec") or {}).get("environments") or {}
            gone += isinstance(overlays, dict) and env in overlays
        total = per_env_total[env]
        if total and gone / total > config.max_delete_share:
            msg = (
                f"this change deletes {gone} of {total} deployment(s) in {env} "
                f"({gone / total:.0%}, above max_delete_share {config.max_delete_share:.0%}); "
                "`modelops apply` will refuse to prune them without --allow-mass-delete"
            )
            if allow:
                report.notes.append(msg + " (allowed by --allow-mass-delete)")
            else:
                report.guards.append(msg)


# -- apply -----------------------------------------------------------------------------


class _Engines:
    """Engines created on first use: local, and Pulumi for every other platform."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self._local = None
        self._pulumi = None

    def for_platform(self, platform: str):
        if platform == "local":
            if self._local is None:
                from reconciler.engine.local import LocalEngine

                self._local = LocalEngine(self.config)
            return self._local
        if self._pulumi is None:
            from reconciler.engine.pulumi_engine import PulumiEngine

            self._pulumi = PulumiEngine(self.config)
        return self._pulumi


def _require_pulumi(platforms: dict[str, str], env: str) -> None:
    """Raise before anything is applied when a cloud target needs the missing CLI."""
    cloud = {k: p for k, p in platforms.items() if p != "local"}
    if not cloud:
        return
    from reconciler.engine.pulumi_engine import pulumi_available

    if not pulumi_available():
        raise ModelopsError(
            f"apply needs the Pulumi CLI for {', '.join(sorted(cloud))} (platforms: "
            f"{', '.join(sorted(set(cloud.values())))}), and `pulumi` is not on PATH. "
            "Install it (https://www.pulumi.com/docs/install/), or run `modelops plan "
            f"--env {env}` for an offline plan.",
            EXIT_USAGE,
        )


def _check_dirty(
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
    from reconciler.gitops.changes import spec_dependencies
    from reconciler.spec.repo import SPEC_SUFFIXES

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


def apply(
    config: Config,
    env: str,
    targets: list[str] | None = None,
    *,
    base: str | None = None,
    prune: bool = False,
    allow_destroy_protected: bool = False,
    allow_mass_delete: bool = False,
    allow_dirty: bool = True,
    lock_timeout_s: float = 60.0,
) -> RunReport:
    """Converge ``env``: validate, police, then build and apply each deployment.

    Local targets go to the local engine (``bentoml serve`` on loopback); every other
    target goes to the Pulumi Automation API engine, which needs the ``pulumi`` CLI.
    The whole run holds the state-directory lock (:class:`~reconciler.state.lock.StateLock`).

    Args:
        config: repository configuration.
        env: the environment.
        targets: spec files/dirs/names; ``None`` = every spec with an overlay for ``env``.
        base: only the specs changed or affected since this revision (apply on merge);
            specs deleted since then are the deletion candidates.
        prune: destroy deployments whose spec is gone (otherwise they are ``orphaned``).
        allow_destroy_protected: with ``prune``, also in a protected environment.
        allow_mass_delete: with ``prune``, allow deleting more than
            ``config.max_delete_share`` of the environment's deployments.
        allow_dirty: apply uncommitted changes, recording ``<sha>-dirty``; when False,
            uncommitted changes to specs, policies or model files stop the run.
        lock_timeout_s: seconds to wait for another apply holding the lock.

    Returns:
        A :class:`RunReport`; ``exit_code`` is 1 when the gates blocked (nothing was
        built), 3 when at least one deployment failed or is stalled (the others were
        still applied).

    Raises:
        ModelopsError: (exit 2) a cloud target without the ``pulumi`` CLI; unknown
            environment or target; corrupt ledger; dirty tree (see ``allow_dirty``); a
            mass delete without ``allow_mass_delete``; the lock is held. Raised before
            anything is applied.
    """
    from reconciler.state.lock import StateLock

    envs = _envs(config, env)
    report = RunReport("apply", env, g.head_revision(config.root).removesuffix("-dirty"), envs=envs)
    with StateLock(config.state_dir, timeout_s=lock_timeout_s):
        if base is not None:
            from reconciler.gitops.changes import detect_changes

            changes = detect_changes(config, base, None)
            report.changes, report.base = changes, changes.base
            report.diagnostics.extend(changes.diagnostics)
            files = [config.root / s.path for s in changes.planned]
            loaded = load_files(config, files, envs)
            report.diagnostics.extend(loaded.diagnostics)
            deployments = [] if loaded.errors else loaded.deployments
            if deployments and not _policy_gate(config, deployments, report):
                deployments = []
            gone = {s.name for s in changes.deleted}
            candidates = [
                r for r in Ledger(config.state_dir).all() if r.environment == env and r.name in gone
            ]
        else:
            deployments = _gate(config, targets, env, report)
            candidates = []
            if not report.blocked:
                candidates = _orphans(config, envs, {d.key for d in deployments}, targets)
        if report.blocked:
            return report
        _check_dirty(config, deployments, allow_dirty, report)
        _require_pulumi({d.key: d.platform for d in deployments}, env)
        destroy_list = _prune_plan(
            config, env, candidates, prune, allow_destroy_protected, allow_mass_delete, report
        )
        engines = _Engines(config)
        ledger = Ledger(config.state_dir)
        for dep in deployments:
            report.outcomes.append(_apply_one(dep, config, ledger, engines, report.revision))
        for record in destroy_list:
            report.outcomes.append(
                _destroy_record(record, engines, ledger, report.revision, PRUNED)
            )
    _sort(report)
    report.offline = False
    return report


def _prune_plan(config, env, candidates, prune, allow_protected, allow_mass, report):
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
                "spec deleted; destroyed only by `modelops apply --prune`"
                + _protected_note(config, r.environment)
            )
        )
    if env in config.protected_environments and not allow_protected:
        return orphaned(
            lambda r: (
                f"spec deleted, but {env} is a protected environment: destroying it "
                "needs --prune --allow-destroy-protected"
            )
        )
    total = len([r for r in Ledger(config.state_dir).all() if r.environment == env])
    share = len(candidates) / total if total else 0.0
    if share > config.max_delete_share and not allow_mass:
        raise ModelopsError(
            f"--prune would destroy {len(candidates)} of {total} deployment(s) in {env} "
            f"({share:.0%}, above max_delete_share {config.max_delete_share:.0%}): "
            f"{', '.join(r.key for r in candidates[:10])}. Nothing was applied or destroyed. "
            "If this is intended, run again with --allow-mass-delete."
        )
    _require_pulumi({r.key: r.platform for r in candidates}, env)
    return candidates


#: Why ``apply --prune`` destroys a deployment (outcome and history message).
PRUNED = "spec deleted, --prune"


def _destroy_record(
    record: LedgerRecord, engines: _Engines, ledger: Ledger, revision: str, reason: str
) -> Outcome:
    """Tear down one deployment and mark its ledger record destroyed; never raises.

    What was live is torn down by its engine (a record that was never applied has
    nothing live). The record is kept with its history and a ``destroy`` entry at
    ``revision`` saying ``reason`` (:meth:`LedgerRecord.record_destroyed`), so
    ``modelops history`` still shows what was live and when. A teardown that fails
    leaves the record live and adds a failed ``destroy`` entry; the outcome is
    ``failed`` with the engine's message; otherwise ``destroyed``, message
    ``destroyed (<reason>)``.
    """
    outcome = Outcome(record.key, record.name, record.environment, record.platform, "failed")
    name, env = record.name, record.environment
    try:
        if record.lastAppliedRevision or record.outputs:
            if record.platform == "local":
                engines.for_platform("local").destroy(name, env, revision, reason)
            else:
                engines.for_platform(record.platform).destroy_record(record)
        rec = ledger.get(name, env) or record
        if not rec.destroyed:  # the local engine marks its own records
            rec.record_destroyed(revision, reason)
            ledger.put(rec)
        outcome.status, outcome.message = "destroyed", f"destroyed ({reason})"
    except Exception as exc:  # noqa: BLE001 - one failure does not stop the others
        outcome.message = getattr(exc, "message", None) or f"{type(exc).__name__}: {exc}"
        try:
            rec = ledger.get(name, env)
            if rec is not None and not rec.destroyed:
                rec.add_history("destroy", revision, "failed", outcome.message[:2000])
                ledger.put(rec)
        except Exception as ledger_exc:  # noqa: BLE001 - reported with the teardown error
            why = getattr(ledger_exc, "message", None) or f"{type(ledger_exc).__name__}"
            outcome.message += f" (the failed destroy could not be recorded: {why})"
    return outcome


def _apply_one(
    dep: Deployment, config: Config, ledger: Ledger, engines: _Engines, revision: str
) -> Outcome:
    """Build and apply one deployment and record it; never raises for its own failure."""
    outcome = Outcome(dep.key, dep.name, dep.env, dep.platform, "failed", revision=revision)
    digest = inputs_digest(dep, config)
    record = ledger.get(dep.name, dep.env)
    if record is not None and record.suspended:
        if record.suspended.get("headDigest") == digest:
            outcome.status = "held"
            outcome.message = (
                f"rolled back to {record.suspended.get('revision', '')[:12]}; left alone until "
                "its spec or inputs change in Git (revert: "
                f"{', '.join(c['sha'][:12] for c in record.suspended.get('revert', [])) or '-'})"
            )
            return outcome
    if record is not None and record.stalled and record.lastAttemptedDigest == digest:
        outcome.status = "stalled"
        outcome.message = f"stalled, not retried: {record.stalled_reason}"
        return outcome
    before = record.to_dict() if record is not None else None
    history_len = len(record.history) if record is not None else 0
    try:
        artifact = _build(dep, config, revision)
        outcome.artifact = artifact.to_dict()
        outcome.build = {"status": "reused" if artifact.reused else "built"}
        engine = engines.for_platform(dep.platform)
        result = engine.apply(dep, artifact, revision)
    except Exception as exc:  # noqa: BLE001 - one failing deployment does not stop the others
        message = getattr(exc, "message", None) or f"{type(exc).__name__}: {exc}"
        outcome.message = message
        smoke = getattr(exc, "smoke", None)
        if smoke is not None and hasattr(smoke, "to_dict"):
            outcome.smoke = smoke.to_dict()
        _record_failure(dep, config, ledger, revision, digest, message, record)
        return outcome
    changed = bool(getattr(result, "changed", True))
    outcome.status = "applied" if changed else "unchanged"
    outcome.outputs = dict(getattr(result, "outputs", {}) or {})
    outcome.message = getattr(result, "message", "") or outcome.status
    smoke = getattr(result, "smoke", None)
    if smoke is not None:
        outcome.smoke = smoke.to_dict() if hasattr(smoke, "to_dict") else dict(smoke)
    plan_value = getattr(result, "plan", None)
    if plan_value is not None and hasattr(plan_value, "to_dict"):
        outcome.plan = plan_value.to_dict()
    state = None
    try:
        from reconciler.engine.render import render

        state = _state_dict(render(dep, artifact, config))
    except Exception:  # noqa: BLE001 - the apply succeeded; the offline plan is a nicety
        state = None
    rec = ledger.get(dep.name, dep.env) or LedgerRecord(dep.name, dep.env)
    engine_recorded = len(rec.history) > history_len
    if changed and not engine_recorded:
        rec.record_success(
            revision,
            digest,
            message=outcome.message,
            artifact=outcome.artifact,
            outputs=outcome.outputs,
            platform=dep.platform,
            spec_file=dep.spec.file,
        )
    # The pipeline's digest goes to lastAttemptedDigest; inputsDigest stays the engine's
    # own (the local engine compares it to decide that a re-apply is a no-op).
    rec.lastAttemptedDigest = digest
    rec.failures = 0
    rec.conditions = [
        c for c in rec.conditions if not (c.get("type") == "Stalled" and c.get("status") != "True")
    ]
    if rec.stalled:
        rec.conditions = [c for c in rec.conditions if c.get("type") != "Stalled"]
    rec.suspended = {}
    rec.destroyed = {}  # applied again after a destroy: live, the history goes on
    rec.specFile = dep.spec.file
    rec.platform = dep.platform
    if state is not None:
        rec.desiredState = state
    if rec.to_dict() != before:
        ledger.put(rec)
    return outcome


def _record_failure(dep, config, ledger, revision, digest, message, before) -> None:
    """Record a failed attempt once, with the pipeline's digest and failure count.

    ``before`` is the record as it was before the engine ran (``None`` if there was
    none). An engine that records failures itself (the local and Pulumi engines do, with
    their own digests) is undone first, so each attempt is counted exactly once and the
    consecutive-failure count follows the pipeline's inputs digest.
    """
    rec = ledger.get(dep.name, dep.env) or LedgerRecord(dep.name, dep.env)
    if before is not None and len(rec.history) > len(before.history):
        rec.history = rec.history[: len(before.history)]
        rec.failures = before.failures
        rec.lastAttemptedDigest = before.lastAttemptedDigest
        rec.conditions = [c for c in before.conditions]
    elif before is None and rec.history:  # the engine created the record for this attempt
        rec = LedgerRecord(dep.name, dep.env)
    rec.record_failure(
        revision,
        digest,
        message,
        stalled_after=config.stalled_after,
        platform=dep.platform,
        spec_file=dep.spec.file,
    )
    ledger.put(rec)


# -- destroy ---------------------------------------------------------------------------


def destroy(config: Config, env: str, names: list[str], *, lock_timeout_s: float = 60.0):
    """Tear down deployments by name in ``env`` (all live ones when ``names`` is empty).

    Each ledger record is kept with its history and marked destroyed, with a
    ``destroy`` history entry at the current revision (:func:`_destroy_record`):
    ``status`` no longer lists it, ``history`` still shows what was live and when, and a
    later apply continues the same history.

    Returns:
        A :class:`RunReport` (action ``destroy``); exit 3 when one failed.

    Raises:
        ModelopsError: (exit 2) a name with no live ledger record (never deployed in
            ``env``, or already destroyed: the message says when and by whom); a cloud
            target without the ``pulumi`` CLI; the lock is held.
    """
    from reconciler.state.lock import StateLock

    report = RunReport("destroy", env, g.head_revision(config.root), envs=[env])
    with StateLock(config.state_dir, timeout_s=lock_timeout_s):
        ledger = Ledger(config.state_dir)
        records = [r for r in ledger.all(include_destroyed=True) if r.environment == env]
        chosen = [r for r in records if not r.destroyed and (not names or r.name in names)]
        missing = sorted(set(names) - {r.name for r in chosen})
        if missing:
            gone = {r.name: r.destroyed for r in records if r.destroyed}
            raise ModelopsError(
                "; ".join(
                    f"{n} in {env} was already destroyed ({gone[n].get('time', '?')} by "
                    f"{gone[n].get('actor', '?')}); `modelops history {n} --env {env}` shows "
                    "its history"
                    if n in gone
                    else f"nothing recorded for {n} in {env}"
                    for n in missing
                )
                + "; `modelops status` lists what is deployed"
            )
        _require_pulumi({r.key: r.platform for r in chosen}, env)
        engines = _Engines(config)
        for record in chosen:
            outcome = _destroy_record(record, engines, ledger, report.revision, "modelops destroy")
            if outcome.status == "destroyed":
                outcome.message = (
                    f"destroyed; history kept: `modelops history {record.name} --env {env}`"
                )
            report.outcomes.append(outcome)
    report.offline = False
    return report


# -- rollback --------------------------------------------------------------------------


def rollback(
    config: Config, name: str, env: str, to: str, *, lock_timeout_s: float = 60.0
) -> RunReport:
    """Re-apply deployment ``name`` in ``env`` as its spec was at revision ``to``.

    The spec file and the files it names (model, smoke requests) are read from Git at
    ``to`` (``git archive``); validation, the *current* policies (a rollback may not
    bring back what policy now forbids), build and apply run as for ``apply``. The ledger
    records the rollback in history and holds the deployment (``suspended``): later
    applies leave it alone until its spec or inputs change in Git. The report lists the
    commits since ``to`` that changed the spec or its inputs: revert them in Git so the
    repository says what is live.

    Raises:
        ModelopsError: (exit 2) not a Git repository; ``to`` does not exist; no spec
            named ``name`` at ``to``, or it has no overlay for ``env``; the lock is held.
    """
    from reconciler.core.yaml import YamlLoadError
    from reconciler.gitops.changes import RevisionFiles, quick_load, spec_dependencies, spec_name
    from reconciler.spec.loader import load_spec
    from reconciler.spec.resolve import resolve
    from reconciler.state.lock import StateLock

    _envs(config, env)
    repo = g.require_repo(config.root, "rollback")
    commit = g.resolve_revision(repo, to)
    report = RunReport("rollback", env, commit.hexsha, envs=[env])
    ledger = Ledger(config.state_dir)
    record = ledger.get(name, env)
    at = RevisionFiles(repo, config.root, commit)
    specs_rel = config.rel(config.specs_dir).rstrip("/") + "/"
    candidates = ([record.specFile] if record and record.specFile else []) + at.spec_files(
        specs_rel
    )
    spec_path, data = "", None
    for path in candidates:
        data = quick_load(at.read(path))
        if spec_name(data) == name:
            spec_path = path
            break
    if not spec_path:
        raise ModelopsError(
            f"no spec named {name!r} at {commit.hexsha[:12]} (looked in {specs_rel}); "
            f"`git log --oneline -- {specs_rel}` shows where it existed"
        )
    deps = sorted(spec_dependencies(data))
    with tempfile.TemporaryDirectory(prefix="modelops-rollback-") as tmp:
        pre = g.prefix(repo, config.root)
        g.export_tree(repo, commit, Path(tmp), [pre + p for p in [spec_path, *deps]])
        rev_cfg = _rebased(config, Path(tmp) / pre if pre else Path(tmp), keep_policies=True)
        try:
            spec: Spec = load_spec(rev_cfg.root / spec_path, rev_cfg.root)
        except YamlLoadError as exc:
            report.diagnostics.append(exc.diagnostic)
            return report
        from reconciler.spec.validate import spec_diagnostics

        report.diagnostics.extend(spec_diagnostics(spec, rev_cfg))
        dep, diags = resolve(spec, env, rev_cfg) if not report.spec_errors else (None, [])
        report.diagnostics.extend(diags)
        if report.spec_errors:
            return report
        if dep is None:
            raise ModelopsError(
                f"{spec_path} at {commit.hexsha[:12]} has no overlay for {env} "
                f"(spec.environments.{env}); it was not deployed there at that revision"
            )
        if not _policy_gate(rev_cfg, [dep], report):
            return report
        _require_pulumi({dep.key: dep.platform}, env)
        report.revert = _commits_to_revert(repo, config, commit, spec_path, deps)
        head_digest = _head_digest(config, name, env)
        with StateLock(config.state_dir, timeout_s=lock_timeout_s):
            rec = ledger.get(name, env)
            before_len = len(rec.history) if rec else 0
            outcome = _apply_one(dep, rev_cfg, ledger, _Engines(rev_cfg), commit.hexsha)
            rec = ledger.get(name, env)
            if rec is not None and outcome.status in ("applied", "unchanged"):
                if len(rec.history) > before_len and rec.history[-1].get("action") == "apply":
                    rec.history[-1]["action"] = "rollback"
                elif len(rec.history) == before_len:
                    rec.add_history("rollback", commit.hexsha, "succeeded", outcome.message)
                rec.set_condition(
                    "Ready", "True", "RollbackSucceeded", f"rolled back to {commit.hexsha[:12]}"
                )
                rec.suspended = {
                    "reason": "rollback",
                    "revision": commit.hexsha,
                    "headDigest": head_digest,
                    "since": rec.history[-1]["time"] if rec.history else "",
                    "revert": report.revert,
                }
                ledger.put(rec)
                outcome.status = "applied"
            report.outcomes.append(outcome)
    report.offline = False
    return report


def _head_digest(config: Config, name: str, env: str) -> str:
    """Inputs digest of ``name`` × ``env`` as the working tree has it ('' if absent/invalid)."""
    try:
        loaded = load_all(config, [name], env)
    except ModelopsError:
        return ""
    dep = next((d for d in loaded.deployments if d.name == name and d.env == env), None)
    return inputs_digest(dep, config) if dep is not None else ""


def _commits_to_revert(repo, config: Config, commit, spec_path: str, deps: list[str]):
    """Commits after ``commit`` up to HEAD that touched the spec (any name) or its inputs."""
    pre = g.prefix(repo, config.root)
    paths = [pre + p for p in [spec_path, *deps]]
    out = []
    for c in repo.iter_commits(f"{commit.hexsha}..HEAD", paths=paths):
        out.append({"sha": c.hexsha, "summary": c.summary})
    return out

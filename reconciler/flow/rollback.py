"""``modelops rollback``: re-apply a deployment as its spec was at an older revision.

The deployment is then held (``suspended``) until its spec or inputs change in Git.
"""

from __future__ import annotations

from reconciler.core import git as g
from reconciler.core.config import Config
from reconciler.core.diagnostics import (
    ModelopsError,
)
from reconciler.flow.apply import Hold, apply_one
from reconciler.flow.digests import inputs_digest
from reconciler.flow.gates import (
    envs_of,
    policy_gate,
    pulumi_gate,
)
from reconciler.flow.run import RunReport
from reconciler.flow.stages import (
    Engines,
)
from reconciler.gitops.changes import RevisionFiles
from reconciler.spec.files import quick_load, spec_dependencies, spec_name
from reconciler.spec.repo import load_all
from reconciler.spec.source import revision_source
from reconciler.state.ledger import Ledger
from reconciler.state.lock import StateLock


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
    envs_of(config, env)
    repo = g.require_repo(config.root, "rollback")
    commit = g.resolve_revision(repo, to)
    report = RunReport("rollback", env, commit.hexsha, envs=[env])
    ledger = Ledger.of(config)
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
    with revision_source(config, repo, commit, [spec_path, *deps], keep_policies=True) as source:
        rev_cfg = source.config
        dep, diags = source.deployment(spec_path, env)
        report.diagnostics.extend(diags)
        if report.spec_errors:
            return report
        if dep is None:
            raise ModelopsError(
                f"{spec_path} at {commit.hexsha[:12]} has no overlay for {env} "
                f"(spec.environments.{env}); it was not deployed there at that revision"
            )
        if not policy_gate(rev_cfg, [dep], report):
            return report
        pulumi_gate({dep.key: dep.platform}, env)
        report.revert = _commits_to_revert(repo, config, commit, spec_path, deps)
        head_digest = _head_digest(config, name, env)
        with StateLock.of(config, timeout_s=lock_timeout_s):
            hold = Hold(head_digest, report.revert)
            outcome = apply_one(
                dep, rev_cfg, ledger, Engines(rev_cfg, immediate=True), commit.hexsha, hold=hold
            )
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

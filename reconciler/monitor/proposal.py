"""A retrained model proposed through Git: a branch whose one commit swaps the model.

The commit is made in a temporary detached ``git worktree`` of HEAD, so the user's
checkout, index and current branch are never touched (checked before returning).
"""

from __future__ import annotations

import dataclasses
import json
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import git

from reconciler.core.config import Config
from reconciler.core.diagnostics import ModelopsError
from reconciler.core.git import open_repo
from reconciler.monitor.data import field_origin
from reconciler.monitor.specedit import edit_scalars
from reconciler.runtime.uris import URI_SCHEMES
from reconciler.spec.model import Deployment
from reconciler.spec.paths import spec_path
from reconciler.spec.repo import load_all


@dataclass
class Proposal:
    """A committed proposal.

    Attributes:
        branch: ``modelops/retrain/<name>-<UTC time>`` (``-2``, ``-3``... if taken).
        commit: the commit SHA the branch points at.
        model_uri: the proposed model's path, relative to the config root.
    """

    branch: str
    commit: str
    model_uri: str


def proposal_repo(config: Config, repo: git.Repo | None) -> git.Repo:
    """``repo``, or the Git repository at or above ``config.root``.

    Raises:
        ModelopsError: ``config.root`` is not in a Git repository.
    """
    if repo is not None:
        return repo
    found = open_repo(config.root)
    if found is None:
        raise ModelopsError(
            f"{config.root} is not in a Git repository; retraining proposes the new model "
            "on a Git branch, so the spec repository must be a Git checkout"
        )
    return found


def _new_model_path(dep: Deployment, config: Config, sha: str) -> str:
    """Repository-relative path (from the config root) for the proposed model file."""
    uri = dep.get("spec.model.uri")
    out = dep.get("spec.retraining.output")
    name = Path(uri).name if isinstance(uri, str) else "model.joblib"
    stem, suffix = Path(name).stem, Path(name).suffix
    stem = re.sub(r"-[0-9a-f]{12}$", "", stem)  # model-<old digest> -> model
    filename = f"{stem}-{sha[:12]}{suffix}"
    if isinstance(out, str):
        spec_path(
            dep,
            config,
            "spec.retraining.output",
            out,
            valid="a directory relative to the repository root that stays inside it (the "
            "proposed model is committed there)",
        )
        return (Path(out) / filename).as_posix()
    if uri.startswith(URI_SCHEMES):
        raise ModelopsError(
            f"{field_origin(dep, 'spec.model.uri')}: {uri} is not a repository path; set "
            "spec.retraining.output to the directory where proposed models go"
        )
    return (Path(uri).parent / filename).as_posix()


def _edit_paths(dep: Deployment) -> tuple[tuple, tuple]:
    """Where ``uri`` and ``sha256`` are written for this environment (base or overlay)."""
    base = ("spec", "model")
    over = ("spec", "environments", dep.env, "model")
    uri_path = (*over, "uri") if (*over, "uri") in dep.spec.positions else (*base, "uri")
    if (*over, "sha256") in dep.spec.positions:
        sha_path = (*over, "sha256")
    elif (*base, "sha256") in dep.spec.positions and uri_path[:-1] == base:
        sha_path = (*base, "sha256")
    else:
        sha_path = (*uri_path[:-1], "sha256")
    return uri_path, sha_path


def _repo_state(repo) -> tuple:
    """What must not change in the user's checkout: HEAD, its branch, the status."""
    branch = "" if repo.head.is_detached else repo.active_branch.name
    return (repo.head.commit.hexsha, branch, repo.git.status("--porcelain", "--untracked-files=no"))


def propose(
    dep: Deployment,
    config: Config,
    repo: git.Repo,
    *,
    candidate_file: Path,
    sha256: str,
    reason: str,
    compare: str,
    stamp: str,
    argv: list[str],
) -> Proposal:
    """Commit ``candidate_file`` and the spec edit on a new branch ``modelops/retrain/...``.

    The model is copied next to the live one as ``<stem>-<sha256[:12]><suffix>`` (or into
    ``spec.retraining.output``) and ``uri``/``sha256`` are replaced where the spec text
    writes them (base spec or this environment's overlay, :func:`edit_scalars`). The
    edited repository is validated with the normal loader in the worktree before the
    commit; the commit message carries ``reason``, ``compare`` (the metric line), the
    digest, ``argv`` and the edited fields. ``stamp`` is the run's UTC time
    (``%Y%m%dT%H%M%SZ``) used in the branch name.

    Returns:
        The :class:`Proposal` (branch, commit, model path).

    Raises:
        ModelopsError: the spec is outside the repository or not committed at HEAD, the
            repository has no commit, the model path is not a repository path and no
            ``spec.retraining.output`` is set, the edited spec does not validate or does
            not resolve to the new model, or the user's checkout changed meanwhile.
    """
    repo_root = Path(repo.working_tree_dir).resolve()
    try:
        spec_rel = dep.spec.path.resolve().relative_to(repo_root).as_posix()
        root_rel = config.root.resolve().relative_to(repo_root)
    except ValueError:
        raise ModelopsError(
            f"{dep.spec.file}: the spec file is not inside the Git repository {repo_root}"
        ) from None
    try:
        head = repo.head.commit
    except ValueError:
        raise ModelopsError(f"{repo_root}: the repository has no commit yet") from None
    try:
        head.tree / spec_rel
    except KeyError:
        raise ModelopsError(
            f"{dep.spec.file}: not committed at HEAD ({head.hexsha[:12]}); commit the spec "
            "first, the proposal branch starts from HEAD"
        ) from None
    before = _repo_state(repo)
    model_rel = _new_model_path(dep, config, sha256)
    branch = f"modelops/retrain/{dep.name}-{stamp}"
    n = 1
    while branch in repo.heads:
        n += 1
        branch = f"modelops/retrain/{dep.name}-{stamp}-{n}"
    wt = Path(tempfile.mkdtemp(prefix="modelops-retrain-"))
    try:
        repo.git.worktree("add", "--detach", str(wt), head.hexsha)
        wt_root = wt / root_rel
        target = wt_root / model_rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(candidate_file, target)
        spec_file = wt / spec_rel
        text = spec_file.read_text(encoding="utf-8")
        uri_path, sha_path = _edit_paths(dep)
        edited = edit_scalars(
            text, dep.spec.file, {uri_path: model_rel, sha_path: sha256}, {sha_path}
        )
        spec_file.write_text(edited, encoding="utf-8")
        wt_config = dataclasses.replace(
            config,
            root=wt_root.resolve(),
            specs_dir=wt_root.resolve() / config.specs_dir.relative_to(config.root),
            policies_dir=wt_root.resolve() / config.policies_dir.relative_to(config.root),
        )
        loaded = load_all(wt_config, [str(spec_file)], dep.env)
        errors = [d for d in loaded.errors if d.position.file == dep.spec.file]
        if errors:
            raise ModelopsError(
                "the edited spec does not validate; nothing committed:\n  "
                + "\n  ".join(str(d) for d in errors[:5])
            )
        new = next((d for d in loaded.deployments if d.name == dep.name), None)
        if (
            new is None
            or new.get("spec.model.uri") != model_rel
            or (new.get("spec.model.sha256") != sha256)
        ):
            raise ModelopsError(
                f"{dep.spec.file}: after the edit, {dep.env} does not resolve to the new model "
                f"{model_rel}; nothing committed"
            )
        wt_repo = git.Repo(wt)
        model_in_repo = (root_rel / model_rel).as_posix()
        wt_repo.index.add([spec_rel, model_in_repo])
        reader = repo.config_reader()
        name = reader.get_value("user", "name", "modelops")
        email = reader.get_value("user", "email", "modelops@localhost")
        actor = git.Actor(str(name), str(email))
        message = (
            f"retrain {dep.name}: propose {model_rel} for {dep.env}\n\n"
            f"Reason: {reason}\n"
            f"Metric {compare}\n"
            f"Model sha256: {sha256}\n"
            f"Command: {json.dumps(argv)}\n"
            f"Spec fields: {'.'.join(uri_path)}, {'.'.join(sha_path)}\n"
        )
        commit = wt_repo.index.commit(message, author=actor, committer=actor)
        repo.create_head(branch, commit.hexsha)
    finally:
        try:
            repo.git.worktree("remove", "--force", str(wt))
        except git.GitCommandError:
            shutil.rmtree(wt, ignore_errors=True)
            repo.git.worktree("prune")
    after = _repo_state(repo)
    if after != before:
        raise ModelopsError(
            f"{repo_root}: the checkout changed while proposing (HEAD/branch/status before "
            f"{before[:2]}, after {after[:2]}); inspect it"
        )
    return Proposal(branch=branch, commit=commit.hexsha, model_uri=model_rel)

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
from reconciler.monitor.publish import Published
from reconciler.monitor.specedit import set_entries
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
        model_uri: the proposed ``spec.model.uri``: the model file's path relative to
            the config root (committed on the branch), or the published reference
            (``s3://...``, ``models:/<name>/<version>``; nothing binary committed).
        version: the proposed ``spec.model.version`` (:func:`bump_version`).
        edited: the mapping the proposal wrote ``uri``, ``sha256`` and ``version`` into
            (``spec.environments.<env>.model``, or ``spec.model`` with ``base``).
    """

    branch: str
    commit: str
    model_uri: str
    version: str = ""
    edited: str = ""


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
            f"{field_origin(dep, 'spec.model.uri')}: {uri} is not a repository path nor a "
            "model store modelops publishes to (s3://, models:/); set "
            "spec.retraining.output to the directory where proposed models go"
        )
    return (Path(uri).parent / filename).as_posix()


def bump_version(version: object) -> str:
    """The next ``spec.model.version``: the last number in it plus one (``1.0.0`` →
    ``1.0.1``, ``7`` → ``8``, ``v2`` → ``v3``); ``1`` when there is none; ``.1`` appended
    when it ends in no number (``2024-rc`` → ``2024-rc.1``)."""
    if not isinstance(version, str) or not version.strip():
        return "1"
    m = re.search(r"(\d+)(\D*)$", version)
    if m is None or m.group(2):
        return f"{version}.1"
    return f"{version[: m.start(1)]}{int(m.group(1)) + 1}"


def edit_mapping(dep: Deployment, base: bool) -> tuple:
    """Where the proposal writes the model: this environment's overlay
    (``spec.environments.<env>.model``, so that other environments keep their model) or,
    with ``base``, the base ``spec.model``."""
    return ("spec", "model") if base else ("spec", "environments", dep.env, "model")


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
    published: Published | None = None,
    base: bool = False,
) -> Proposal:
    """Commit the spec edit (and the model file, unless published) on a new branch
    ``modelops/retrain/...``.

    With ``published`` (the candidate is in the spec's model store:
    :func:`reconciler.monitor.publish.publish_candidate`) only the reference changes;
    otherwise the model is copied next to the live one as
    ``<stem>-<sha256[:12]><suffix>`` (or into ``spec.retraining.output``) and committed.
    ``uri``, ``sha256`` and the bumped ``version`` (:func:`bump_version`) are written
    into this environment's overlay, or the base ``spec.model`` with ``base``
    (:func:`edit_mapping`, :func:`~reconciler.monitor.specedit.set_entries`). The
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
    model_rel = published.uri if published else _new_model_path(dep, config, sha256)
    version = bump_version(dep.get("spec.model.version"))
    mapping = edit_mapping(dep, base)
    branch = f"modelops/retrain/{dep.name}-{stamp}"
    n = 1
    while branch in repo.heads:
        n += 1
        branch = f"modelops/retrain/{dep.name}-{stamp}-{n}"
    wt = Path(tempfile.mkdtemp(prefix="modelops-retrain-"))
    try:
        repo.git.worktree("add", "--detach", str(wt), head.hexsha)
        wt_root = wt / root_rel
        if published is None:
            target = wt_root / model_rel
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(candidate_file, target)
        spec_file = wt / spec_rel
        text = spec_file.read_text(encoding="utf-8")
        values = {"uri": model_rel, "sha256": sha256, "version": version}
        edited = set_entries(text, dep.spec.file, mapping, values, {"sha256", "version"})
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
        if new is None or (
            new.get("spec.model.uri"),
            new.get("spec.model.sha256"),
            new.get("spec.model.version"),
        ) != (model_rel, sha256, version):
            raise ModelopsError(
                f"{dep.spec.file}: after the edit, {dep.env} does not resolve to the new model "
                f"{model_rel}; nothing committed"
            )
        wt_repo = git.Repo(wt)
        added = [spec_rel]
        if published is None:
            added.append((root_rel / model_rel).as_posix())
        wt_repo.index.add(added)
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
            f"Spec fields: {'.'.join(mapping)}.uri, .sha256, .version ({version})\n"
            + (f"Published: {published.store} {published.uri}\n" if published else "")
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
    return Proposal(
        branch=branch,
        commit=commit.hexsha,
        model_uri=model_rel,
        version=version,
        edited=".".join(mapping),
    )

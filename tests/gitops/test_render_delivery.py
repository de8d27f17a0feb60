"""``render --format kustomize|argocd|flux`` and ``render --commit BRANCH``, on real Git
repositories. The Argo CD and Flux objects are checked strictly against their CRD schemas
(vendored from npm, support.crds); the kustomization files against the files they list.
"""

from __future__ import annotations

from pathlib import Path

import git
import pytest
import yaml
from support.cli import invoke
from support.crds import assert_valid_manifest
from support.repo import make_repo

BRANCH = "rendered/prod"
URL = "https://git.example.com/ml/specs.git"


@pytest.fixture
def repo(tmp_path):
    """The fraud-detector spec (kubernetes in prod) and the diabetes one (SageMaker), in
    a real repository on ``main`` whose ``origin`` has Git's scp-like URL form."""
    r = make_repo(tmp_path / "repo", specs=["fraud-detector", "diabetes-progression"], git=True)
    r.git.create_remote("origin", "git@git.example.com:ml/specs.git")
    return r


def load(path: Path) -> dict:
    return yaml.safe_load(path.read_text())


def check_kustomization(directory: Path) -> list[dict]:
    """The documents a kustomization.yaml lists (each file exists inside its directory)."""
    doc = load(directory / "kustomization.yaml")
    assert doc["apiVersion"] == "kustomize.config.k8s.io/v1beta1"
    assert doc["kind"] == "Kustomization"
    listed = []
    for rel in doc["resources"]:
        path = (directory / rel).resolve()
        assert path.is_relative_to(directory.resolve()) and path.is_file(), rel
        listed.append(load(path))
    return listed


def test_argocd_and_flux_objects_validate_and_point_at_the_rendered_tree(repo, tmp_path):
    out = tmp_path / "out"
    for fmt in ("argocd", "flux"):
        code, text, err = invoke(
            repo.root, "render", "--env", "prod", "-f", fmt, "-o", str(out), "--branch", BRANCH
        )
        assert code == 0, text + err
        assert f"{fmt}: not for diabetes-progression-prod" in text
    # The deployment's kustomization lists exactly its manifests.
    dep_dir = out / "fraud-detector-prod"
    manifests = check_kustomization(dep_dir)
    assert len(manifests) == len(list((dep_dir / "manifests").glob("*.yaml"))) == 10
    namespaces = {m["metadata"]["namespace"] for m in manifests}
    assert namespaces == {"ml"}
    assert not (out / "diabetes-progression-prod" / "kustomization.yaml").exists()

    (app,) = check_kustomization(out / "argocd" / "prod")
    assert_valid_manifest(app)
    source = app["spec"]["source"]
    assert source == {
        "repoURL": "git@git.example.com:ml/specs.git",
        "targetRevision": BRANCH,
        "path": "fraud-detector-prod",
    }
    assert (out / source["path"] / "kustomization.yaml").is_file()
    assert app["spec"]["destination"]["namespace"] in namespaces
    assert app["spec"]["syncPolicy"]["automated"] == {"prune": True, "selfHeal": True}

    gitrepo, kustomization = check_kustomization(out / "flux" / "prod")
    for obj in (gitrepo, kustomization):
        assert_valid_manifest(obj)
    assert gitrepo["kind"] == "GitRepository" and gitrepo["spec"]["ref"] == {"branch": BRANCH}
    # Flux takes http(s) and ssh URLs only: the scp-like form in its ssh:// spelling.
    assert gitrepo["spec"]["url"] == "ssh://git@git.example.com/ml/specs.git"
    assert kustomization["spec"]["sourceRef"] == {
        "kind": "GitRepository",
        "name": gitrepo["metadata"]["name"],
    }
    assert kustomization["spec"]["path"] == "./fraud-detector-prod"
    assert kustomization["spec"]["prune"] is True


def test_repo_path_and_stale_objects(repo, tmp_path):
    out = tmp_path / "out"
    args = ("render", "--env", "prod", "-f", "argocd", "-o", str(out), "--branch", BRANCH)
    code, text, err = invoke(repo.root, *args, "--repo-url", URL, "--repo-path", "clusters/eu/")
    assert code == 0, text + err
    app = load(out / "argocd" / "prod" / "application-fraud-detector.yaml")
    assert app["spec"]["source"]["path"] == "clusters/eu/fraud-detector-prod"
    assert app["spec"]["source"]["repoURL"] == URL
    # The deployment leaves prod: its Application and kustomization go with the next render.
    repo.rm("specs/fraud-detector.yaml")
    repo.commit("retire the fraud detector")
    code, text, err = invoke(repo.root, *args)
    assert code == 0, text + err
    assert not (out / "argocd" / "prod" / "application-fraud-detector.yaml").exists()
    assert check_kustomization(out / "argocd" / "prod") == []


def test_formats_that_write_files_need_a_destination_and_a_source(repo, tmp_path):
    code, _, err = invoke(repo.root, "render", "--env", "prod", "-f", "kustomize")
    assert code == 2 and "--out DIR or --commit BRANCH" in err
    # every option Argo CD needs is named at once; a local-path origin is no repoURL
    origin = repo.git.remotes.origin.url
    repo.git.remotes.origin.set_url(str(tmp_path / "specs.git"))
    code, _, err = invoke(repo.root, "render", "--env", "prod", "-f", "argocd")
    assert code == 2 and "--format argocd needs: --out DIR or --commit BRANCH" in err
    assert "--branch BRANCH or --commit BRANCH" in err and "`origin` remote's URL" in err
    assert "Argo CD clones Git over http(s) or ssh" in err
    repo.git.remotes.origin.set_url(origin)
    out = tmp_path / "out"
    code, _, err = invoke(repo.root, "render", "--env", "prod", "-f", "flux", "-o", str(out))
    assert code == 2 and "--branch" in err
    args = ("render", "--env", "prod", "-f", "flux", "-o", str(out), "--branch", BRANCH)
    code, _, err = invoke(repo.root, *args, "--repo-url", str(tmp_path / "specs.git"))
    assert code == 2 and "http(s) or ssh only" in err
    repo.git.delete_remote("origin")
    code, _, err = invoke(repo.root, "render", "--env", "prod", "-f", "argocd", *args[5:])
    assert code == 2 and "--repo-url" in err
    assert not out.exists()
    code, text, err = invoke(
        repo.root, "render", "--env", "prod", "-f", "kustomize", "-o", str(out)
    )
    assert code == 0, text + err
    check_kustomization(out / "fraud-detector-prod")
    assert not (out / "argocd").exists() and not (out / "flux").exists()
    # the delivery files are named, beside the per-deployment manifest counts
    assert "kustomize: fraud-detector-prod/kustomization.yaml (beside the manifests" in text


def tree_files(commit: git.Commit) -> set[str]:
    return {b.path for b in commit.tree.traverse() if b.type == "blob"}


def test_commit_puts_the_rendered_tree_on_the_environment_branch(repo):
    main = repo.git.head.commit
    repo.git.create_head(BRANCH, main)
    args = ("render", "--env", "prod", "-f", "flux", "--commit", BRANCH)
    # offline, every image is tagged 'unbuilt': the sync branch is refused it by default
    code, text, err = invoke(repo.root, *args)
    assert code == 2, text + err
    assert "2 deployment(s) would be committed with images tagged 'unbuilt'" in err
    assert "diabetes-progression-prod" in err and "--allow-unbuilt" in err
    assert repo.git.commit(BRANCH) == main  # nothing committed
    args = (*args, "--allow-unbuilt")
    code, text, err = invoke(repo.root, *args)
    assert code == 0, text + err
    tip = repo.git.commit(BRANCH)
    assert f"committed {tip.hexsha[:12]} to {BRANCH}" in text
    assert tip.parents == (main,)
    assert f"Modelops-Rendered-From: {main.hexsha}" in tip.message
    files = tree_files(tip)
    assert "flux/prod/gitrepository.yaml" in files
    assert "fraud-detector-prod/kustomization.yaml" in files
    assert "diabetes-progression-prod/desired-state.json" in files
    assert "specs/fraud-detector.yaml" not in files  # the branch holds the rendered tree only
    source = yaml.safe_load(tip.tree["flux/prod/gitrepository.yaml"].data_stream.read())
    assert source["spec"]["ref"] == {"branch": BRANCH}
    # The working tree, the index and HEAD are untouched.
    assert repo.git.head.commit == main and repo.git.active_branch.name == "main"
    assert not repo.git.is_dirty(untracked_files=True)

    # Nothing new to render: no commit.
    code, text, _ = invoke(repo.root, *args)
    assert code == 0 and "nothing committed" in text
    assert repo.git.commit(BRANCH) == tip

    # A spec change on main: one commit on top, touching only that deployment's files.
    spec = repo.root / "specs/fraud-detector.yaml"
    spec.write_text(spec.read_text().replace("min_replicas: 3", "min_replicas: 4"))
    head = repo.commit("prod: four replicas")
    code, text, err = invoke(repo.root, *args)
    assert code == 0, text + err
    new = repo.git.commit(BRANCH)
    assert new.parents == (tip,) and f"Modelops-Rendered-From: {head}" in new.message
    changed = {d.b_path for d in tip.diff(new)}
    assert changed and all(p.startswith("fraud-detector-prod/") for p in changed), changed


@pytest.mark.parametrize(
    "case, message",
    [
        ("missing", "does not exist"),
        ("unrelated", "unrelated"),
        ("checked-out", "checked out here"),
        ("dirty", "uncommitted changes"),
        ("targets", "name no deployments"),
        ("bad-name", "not a valid branch name"),
    ],
)
def test_commit_refuses_a_branch_it_cannot_write_and_writes_nothing(repo, case, message):
    branch = BRANCH
    args = ["render", "--env", "prod", "-f", "argocd"]
    if case == "unrelated":  # an orphan commit, as a branch fetched from another repository
        orphan = git.Commit.create_from_tree(
            repo.git, repo.git.index.write_tree(), "elsewhere", parent_commits=[]
        )
        repo.git.create_head(branch, orphan)
    elif case == "checked-out":
        branch = "main"
    elif case == "bad-name":
        branch = "rendered..prod"
    elif case != "missing":
        repo.git.create_head(branch, repo.git.head.commit)
    if case == "dirty":
        (repo.root / "specs/fraud-detector.yaml").write_text("changed but not committed\n")
    if case == "targets":
        args.append("fraud-detector")
    before = {h.name: h.commit.hexsha for h in repo.git.heads}
    code, text, err = invoke(repo.root, *args, "--commit", branch)
    assert code == 2, text + err
    assert message in err
    assert {h.name: h.commit.hexsha for h in repo.git.heads} == before
    assert repo.git.active_branch.name == "main"

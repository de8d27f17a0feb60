"""`modelops apply`'s dirty-tree check and untracked files, on real Git repositories.

Untracked files that apply reads (modelops.yaml, spec files, policy files, model and smoke
files named by a spec) make the tree dirty; other untracked files (notes, a README next
to the specs, the ``.modelops/`` state directory) do not. As in
``test_flow_apply.test_dirty_tree_on_apply_is_refused``, the ``prod`` environment of
the fraud example (platform kubernetes) is used, so nothing is deployed here.
"""

from __future__ import annotations

import pytest
from support.cli import invoke

from reconciler.core.config import load_config
from reconciler.core.diagnostics import ModelopsError
from reconciler.flow import apply as apply_flow
from reconciler.flow.gates import check_dirty
from reconciler.flow.run import RunReport
from reconciler.spec.repo import load_all
from reconciler.state.ledger import Ledger


class PastTheDirtyCheck(Exception):
    """Raised by the fake Pulumi CLI check: apply got past the dirty-tree check."""


@pytest.fixture
def no_pulumi_past_dirty_check(monkeypatch):
    """FAKE for the Pulumi CLI check (the CLI and a cluster cannot run here).

    ``pulumi_gate`` is the step right after the dirty-tree check in ``apply``; the
    fake stops the run there, so reaching it means the tree was accepted as clean.
    """

    def fake_require_pulumi(platforms, env):
        raise PastTheDirtyCheck(env)

    monkeypatch.setattr(apply_flow, "pulumi_gate", fake_require_pulumi)


def _untrack(repo, *paths: str) -> None:
    """Remove ``paths`` from Git (kept on disk, so they are untracked) and commit."""
    repo.git.git.rm("--cached", "-q", *paths)
    repo.git.index.commit(f"untrack {', '.join(paths)}")


@pytest.mark.parametrize(
    "path",
    [
        "modelops.yaml",  # the configuration
        "policies/waivers.yaml",  # a policy file
        "examples/fraud/model.joblib",  # spec.model.uri
        "examples/fraud/request.json",  # spec.serving.smoke.request
    ],
)
def test_untracked_file_that_apply_reads_is_dirty(git_repo, path):
    repo = git_repo
    _untrack(repo, path)
    assert f"?? {path}" in repo.git.git.status("--short", "--untracked-files=all")
    code, _, err = invoke(repo.root, "apply", "--env", "prod")
    assert code == 2, err
    assert "uncommitted changes that apply would deploy" in err
    assert f"untracked (never committed): {path}" in err
    assert "Nothing was applied" in err and "Traceback" not in err
    assert Ledger(load_config(repo.root).state_dir).all() == []


def test_new_untracked_spec_is_dirty(git_repo):
    repo = git_repo
    text = (repo.root / "specs/fraud-detector.yaml").read_text()
    repo.write("specs/fraud-copy.yaml", text.replace("name: fraud-detector", "name: fraud-copy"))
    code, _, err = invoke(repo.root, "apply", "--env", "prod")
    assert code == 2, err
    assert "untracked (never committed): specs/fraud-copy.yaml" in err


def test_changed_and_untracked_are_listed_apart(git_repo):
    repo = git_repo
    _untrack(repo, "modelops.yaml")
    spec = repo.root / "specs/fraud-detector.yaml"
    spec.write_text(spec.read_text().replace("min_replicas: 3}", "min_replicas: 4}"))
    with pytest.raises(ModelopsError) as info:
        apply_flow.apply(load_config(repo.root), "prod", allow_dirty=False)
    assert (
        "(changed: specs/fraud-detector.yaml; untracked (never committed): modelops.yaml)"
        in info.value.message
    )


def test_other_untracked_files_do_not_count(git_repo, no_pulumi_past_dirty_check):
    repo = git_repo
    # the state directory must not count even when .gitignore does not exclude it
    repo.write(".gitignore", "")
    repo.commit("no .gitignore entries")
    repo.write("notes.txt", "todo\n")
    repo.write("examples/fraud/NOTES.md", "ideas\n")
    repo.write("specs/README.md", "how to write a spec\n")  # not a spec file
    config = load_config(repo.root)
    (config.state_dir / "capture").mkdir(parents=True)
    (config.state_dir / "capture" / "x.yaml").write_text("a: 1\n")
    status = repo.git.git.status("--short", "--untracked-files=all")
    assert "?? notes.txt" in status and "?? .modelops/capture/x.yaml" in status
    with pytest.raises(PastTheDirtyCheck):
        apply_flow.apply(config, "prod", allow_dirty=False)


def test_allow_dirty_records_untracked_files(git_repo):
    repo = git_repo
    _untrack(repo, "examples/fraud/request.json")
    config = load_config(repo.root)
    deployments = load_all(config, None, "prod").deployments
    head = repo.git.head.commit.hexsha
    report = RunReport("apply", "prod", head)
    check_dirty(config, deployments, True, report)
    assert report.revision == f"{head}-dirty"
    assert report.notes == [
        "applied with uncommitted changes: untracked (never committed): examples/fraud/request.json"
    ]

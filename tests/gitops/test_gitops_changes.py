"""Change detection between two revisions, on real Git repositories in temp directories."""

from __future__ import annotations

import subprocess

import pytest
from support.cli import invoke
from support.repo import small_repo, small_spec

from reconciler.core.config import load_config
from reconciler.core.diagnostics import ModelopsError
from reconciler.gitops import changes as changes_mod
from reconciler.gitops.changes import RevisionFiles, detect_changes, name_conflicts
from reconciler.gitops.policyset import read_waiver_entries
from reconciler.spec.files import spec_dependencies


def _by_status(changes) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for s in changes.specs:
        out.setdefault(s.status, []).append(s.name)
    return {k: sorted(v) for k, v in out.items()}


@pytest.fixture
def repo(tmp_path):
    return small_repo(tmp_path)


def _detect(repo, base, head=None, **kw):
    return detect_changes(load_config(repo.root), base, head, **kw)


def test_add_modify_delete(repo):
    base = repo.git.head.commit.hexsha
    repo.write("specs/delta.yaml", small_spec("delta"))
    repo.write("specs/alpha.yaml", small_spec("alpha", extra="  target: {platform: local}\n"))
    repo.rm("specs/beta.yaml")
    head = repo.commit("add delta, edit alpha, delete beta")
    changes = _detect(repo, base, head)
    assert _by_status(changes) == {"added": ["delta"], "modified": ["alpha"], "deleted": ["beta"]}
    deleted = changes.deleted[0]
    assert deleted.old_path == "specs/beta.yaml" and deleted.path == ""
    assert changes.head == head and changes.base == base
    assert [s.name for s in changes.planned] == ["alpha", "delta"]


def test_pure_rename_is_the_same_deployment(repo):
    base = repo.git.head.commit.hexsha
    repo.mv("specs/alpha.yaml", "specs/team/alpha.yaml")
    head = repo.commit("move alpha")
    changes = _detect(repo, base, head)
    assert _by_status(changes) == {"renamed": ["alpha"]}
    (s,) = changes.specs
    assert (s.old_path, s.path) == ("specs/alpha.yaml", "specs/team/alpha.yaml")
    assert not changes.diagnostics


def test_rename_and_heavy_edit_in_one_commit_is_matched_by_name(repo):
    base = repo.git.head.commit.hexsha
    repo.rm("specs/alpha.yaml")
    # rewritten enough that Git no longer sees a rename (similarity < 50%)
    repo.write(
        "specs/renamed-alpha.yaml",
        "# rewritten\n" + small_spec("alpha", "models/b.joblib", extra="  x: " + "y" * 400 + "\n"),
    )
    head = repo.commit("rename and rewrite alpha")
    statuses = {d.change_type for d in repo.git.commit(base).diff(head)}
    assert statuses == {"A", "D"}, "the test needs Git to miss the rename"
    changes = _detect(repo, base, head)
    assert _by_status(changes) == {"renamed": ["alpha"]}
    assert changes.specs[0].old_path == "specs/alpha.yaml"
    assert "moved from specs/alpha.yaml and edited" in changes.specs[0].reasons[0]


def test_rename_that_changes_the_name_warns_and_plans_delete_plus_create(repo):
    base = repo.git.head.commit.hexsha
    repo.mv("specs/alpha.yaml", "specs/omega.yaml")
    repo.write("specs/omega.yaml", small_spec("omega"))
    head = repo.commit("rename alpha to omega")
    changes = _detect(repo, base, head)
    assert _by_status(changes) == {"added": ["omega"], "deleted": ["alpha"]}
    (warning,) = changes.diagnostics
    assert warning.severity == "warning" and warning.field == "metadata.name"
    assert "'alpha' to 'omega'" in warning.message and "--prune" in warning.message


def test_model_file_change_affects_only_specs_that_use_it(repo):
    base = repo.git.head.commit.hexsha
    repo.write("models/b.joblib", b"model-b-v2")
    head = repo.commit("retrain b")
    changes = _detect(repo, base, head)
    # beta uses it in its base spec, gamma only in its prod overlay; alpha does not
    assert _by_status(changes) == {"affected": ["beta", "gamma"]}
    assert all(s.reasons == ["input models/b.joblib changed"] for s in changes.specs)


def test_smoke_request_change_affects_every_spec_using_it(repo):
    base = repo.git.head.commit.hexsha
    repo.write("requests/req.json", '{"instances": [[3, 4]]}\n')
    head = repo.commit("new smoke request")
    assert _by_status(_detect(repo, base, head)) == {"affected": ["alpha", "beta", "gamma"]}


def test_policy_or_waiver_change_affects_every_spec(repo):
    base = repo.git.head.commit.hexsha
    repo.write("policies/waivers.yaml", "waivers: [] # reviewed\n")
    head = repo.commit("touch waivers")
    changes = _detect(repo, base, head)
    assert _by_status(changes) == {"affected": ["alpha", "beta", "gamma"]}
    assert "policies/waivers.yaml" in changes.specs[0].reasons[0]


def test_unrelated_file_affects_nothing_and_all_lists_everything(repo):
    base = repo.git.head.commit.hexsha
    repo.write("README.md", "docs\n")
    head = repo.commit("docs")
    assert _detect(repo, base, head).specs == []
    everything = _detect(repo, base, head, all_specs=True)
    assert _by_status(everything) == {"unchanged": ["alpha", "beta", "gamma"]}


def test_working_tree_includes_uncommitted_and_untracked_specs(repo):
    base = repo.git.head.commit.hexsha
    repo.write("specs/alpha.yaml", small_spec("alpha", extra="  target: {platform: local}\n"))
    repo.write("specs/new.yaml", small_spec("newcomer"))
    changes = _detect(repo, base)  # head = working tree
    assert _by_status(changes) == {"added": ["newcomer"], "modified": ["alpha"]}
    assert changes.head == ""


def test_diff_starts_at_the_merge_base(repo):
    base_branch = repo.git.head.commit.hexsha
    repo.git.git.checkout("-q", "-b", "feature")
    repo.write("specs/alpha.yaml", small_spec("alpha", extra="  x: 1\n"))
    repo.commit("feature edits alpha")
    repo.git.git.checkout("-q", "main")
    repo.write("specs/beta.yaml", small_spec("beta", extra="  x: 2\n"))
    main_tip = repo.commit("main edits beta after the branch point")
    repo.git.git.checkout("-q", "feature")
    changes = _detect(repo, "main", "feature")
    assert _by_status(changes) == {"modified": ["alpha"]}  # not beta: that is main's change
    assert changes.base == base_branch != main_tip


def test_unknown_base_revision(repo):
    with pytest.raises(ModelopsError, match="revision 'no-such-branch' does not exist"):
        _detect(repo, "no-such-branch")


def test_shallow_clone_lacking_the_base_says_so(repo, tmp_path):
    old = repo.git.head.commit.hexsha
    repo.write("specs/alpha.yaml", small_spec("alpha", extra="  x: 1\n"))
    repo.commit("second")
    clone = tmp_path / "shallow"
    subprocess.run(
        ["git", "clone", "-q", "--depth", "1", f"file://{repo.root}", str(clone)], check=True
    )
    with pytest.raises(ModelopsError) as err:
        detect_changes(load_config(clone), old)
    assert "shallow" in err.value.message and "fetch-depth: 0" in err.value.message
    # a relative base resolves through HEAD's parent SHA, which the clone does not hold
    for relative in ("HEAD~1", "HEAD^"):
        with pytest.raises(ModelopsError) as err:
            detect_changes(load_config(clone), relative)
        message = err.value.message
        assert f"revision {relative!r} names commit {old[:12]}" in message
        assert "shallow" in message and "git fetch --deepen" in message
    code, _, stderr = invoke(clone, "plan", "--base", "HEAD~1")
    assert code == 2 and "git fetch --deepen" in stderr and "internal error" not in stderr


def test_not_a_git_repository(tmp_path):
    (tmp_path / "modelops.yaml").write_text("state_dir: .modelops\n")
    with pytest.raises(ModelopsError, match="needs a Git repository"):
        detect_changes(load_config(tmp_path), "HEAD")


@pytest.mark.parametrize("limit", [16, 0])  # byte search first; each file's name (full plan)
def test_two_specs_with_the_same_name(repo, limit, monkeypatch):
    monkeypatch.setattr(changes_mod, "NAME_SEARCH_LIMIT", limit)
    repo.write("specs/alpha-copy.yaml", small_spec("alpha"))
    head = RevisionFiles(repo.git, repo.root, None)
    found = name_conflicts(head, "specs/", {"alpha": "specs/alpha-copy.yaml"})
    assert len(found) == 1
    assert found[0].code == "duplicate-name" and "specs/alpha.yaml" in found[0].message
    # a name that merely appears as a substring elsewhere is not a conflict
    assert name_conflicts(head, "specs/", {"alph": "specs/x.yaml"}) == []


def test_spec_dependencies_from_base_and_overlays():
    data = {
        "spec": {
            "model": {"uri": "./models/m.joblib"},
            "serving": {"smoke": {"request": "r.json", "requests": [{"request": "r2.json"}]}},
            "environments": {
                "prod": {"model": {"uri": "models/prod.joblib"}},
                "dev": None,
                "x": {"model": {"uri": "s3://b/m"}},
                "y": {"model": {"uri": "../outside.joblib"}},
            },
        }
    }
    assert spec_dependencies(data) == {
        "models/m.joblib",
        "models/prod.joblib",
        "r.json",
        "r2.json",
    }


def test_waivers_for_the_policy_set_diff_go_through_the_one_yaml_reader(tmp_path):
    path = tmp_path / "waivers.yaml"
    entry = "  - policy: MDL-001\n    deployment: a\n    expires: 2027-01-01\n"
    path.write_text("waivers:\n" + entry + "    deployment: b\n", encoding="utf-8")
    entries, problem = read_waiver_entries(path)
    assert entries == [] and "duplicate key 'deployment'" in problem and ":5:5" in problem
    path.write_text(
        "base: &w {policy: MDL-001, deployment: a}\nwaivers:\n  - <<: *w\n    deployment: b\n"
    )
    entries, problem = read_waiver_entries(path)
    assert problem == "" and entries[0]["deployment"] == "b"

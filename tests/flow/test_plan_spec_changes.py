"""`plan --base`: spec changes that no infrastructure resource shows, and the delete guard.

Serving settings (workers, access log, batching) are built into the Bento, so the
offline plan (derived image tag) shows no resource change, yet `apply` rolls out a new
Bento. The plan lists the resolved spec fields that changed (for the environment
planned) and says whether the build digest changes. And when a guard trips, every
format still prints the plan, then the guard. Real Git repositories in temp dirs, the
real spec loader and the real build inputs (`reconciler.build.bento.build_inputs`).
"""

from __future__ import annotations

import copy
import json
from dataclasses import replace

import pytest
from support.cli import invoke
from support.repo import replace_in_file

from reconciler.build.bento import build_digest, build_inputs
from reconciler.core.config import load_config
from reconciler.flow.plan import plan
from reconciler.flow.pr_plan import spec_diff
from reconciler.report.plan_markdown import write as render_pr_comment

SPEC = "specs/fraud-detector.yaml"


@pytest.fixture
def repo(git_repo):
    return git_repo


def _edit(repo, old: str, new: str, rel: str = SPEC) -> None:
    replace_in_file(repo.root / rel, old, new)


def _serving_change(repo) -> tuple[str, str]:
    base = repo.git.head.commit.hexsha
    _edit(repo, "workers: 1", "workers: 8")
    _edit(repo, "access_log: false", "access_log: true")
    _edit(repo, "max_latency_ms: 500}", "max_latency_ms: 90}")  # 500: the RELAXED example
    return base, repo.commit("more workers, access log, longer batching window")


def test_serving_only_change_shows_the_fields_and_a_new_bento(repo):
    base, head = _serving_change(repo)
    report = plan(load_config(repo.root), "prod", base=base, head=head)
    (outcome,) = report.outcomes
    assert report.plans[0].empty  # offline, the image tag is derived: no resource change
    spec = outcome.spec_diff
    assert spec["fields"] == [
        {"path": "spec.serving.access_log", "old": False, "new": True},
        {"path": "spec.serving.batching.max_latency_ms", "old": 500, "new": 90},
        {"path": "spec.serving.workers", "old": 1, "new": 8},
    ]
    assert spec["rebuild"] is True and spec["build_inputs"] == ["serving"]
    assert spec["decided_by"] == "build inputs"

    code, md, _ = invoke(
        repo.root, "plan", "--base", base, "--head", head, "--env", "prod", "-f", "markdown"
    )
    assert code == 0
    assert "no infrastructure change" not in md
    assert "### `fraud-detector` · prod · kubernetes — 🔁 new Bento (rebuild and rollout)" in md
    assert "- `spec.serving.workers`: `1` → `8`" in md
    assert "- `spec.serving.access_log`: `false` → `true`" in md
    assert "- `spec.serving.batching.max_latency_ms`: `500` → `90`" in md
    assert "🔁 new Bento: the service will be rebuilt and rolled out" in md
    assert "spec changed: 1, new Bentos: 1" in md

    code, out, _ = invoke(repo.root, "plan", "--base", base, "--head", head, "--env", "prod")
    assert code == 0
    assert "fraud-detector-prod: no changes" not in out
    assert "spec: spec.serving.workers: 1 → 8" in out
    assert "new Bento: the service will be rebuilt and rolled out" in out
    assert "new Bentos: 1" in out

    code, out, _ = invoke(
        repo.root, "plan", "--base", base, "--head", head, "--env", "prod", "-f", "json"
    )
    (data,) = json.loads(out)["outcomes"]
    assert data["spec_diff"]["rebuild"] is True and len(data["spec_diff"]["fields"]) == 3


def test_the_new_bento_verdict_agrees_with_the_build_digest(repo):
    """Cross-check with the real digest: serving changes it, an SLO or replicas do not."""
    base = repo.git.head.commit.hexsha
    _edit(repo, "p99_latency_ms: 5000}", "p99_latency_ms: 4000}")
    _edit(repo, "load: {requests: 20, concurrency: 2}", "load: {requests: 30, concurrency: 2}")
    _edit(repo, "autoscaling: {min_replicas: 3}", "autoscaling: {min_replicas: 4}")
    head = repo.commit("slo, smoke load and replicas: the service itself is the same")
    config = load_config(repo.root)
    report = plan(config, "prod", base=base, head=head)
    (outcome,) = report.outcomes
    paths = [f["path"] for f in outcome.spec_diff["fields"]]
    assert paths == [
        "spec.serving.slo.p99_latency_ms",
        "spec.serving.smoke.load.requests",
        "spec.target.autoscaling.min_replicas",
    ]
    assert outcome.spec_diff["rebuild"] is False
    md = render_pr_comment(report)
    assert "Bento unchanged: no build input changed" in md and "✏️ change" in md

    # the same judgement from the real digests of both revisions
    from reconciler.spec.repo import load_all

    head_dep = next(d for d in load_all(config, None, "prod").deployments)
    repo.git.git.checkout("-q", base)
    base_dep = next(d for d in load_all(config, None, "prod").deployments)
    same = build_digest(build_inputs(base_dep, config)) == build_digest(
        build_inputs(head_dep, config)
    )
    assert same
    repo.git.git.checkout("-q", "main")
    _edit(repo, "workers: 1", "workers: 3")
    head2 = repo.commit("workers")
    moved = next(d for d in load_all(config, None, "prod").deployments)
    assert build_digest(build_inputs(moved, config)) != build_digest(build_inputs(head_dep, config))
    (outcome,) = plan(config, "prod", base=head, head=head2).outcomes
    assert outcome.spec_diff["rebuild"] is True


def test_fields_are_those_of_the_environment_planned(repo):
    base = repo.git.head.commit.hexsha
    _edit(repo, "    prod:\n      target:", "    prod:\n      serving: {workers: 4}\n      target:")
    head = repo.commit("4 workers in prod only")
    config = load_config(repo.root)
    prod = plan(config, "prod", base=base, head=head)
    (outcome,) = prod.outcomes
    assert outcome.spec_diff["fields"] == [{"path": "spec.serving.workers", "old": 1, "new": 4}]
    assert outcome.spec_diff["rebuild"] is True
    staging = plan(config, "staging", base=base, head=head)
    (outcome,) = staging.outcomes
    assert outcome.spec_diff["fields"] == [] and outcome.spec_diff["rebuild"] is False
    md = render_pr_comment(staging)
    assert "**Spec changes**" not in md and "new Bento" not in md
    assert "no infrastructure change" in md


def test_without_build_inputs_the_verdict_comes_from_the_spec_fields(repo, tmp_path):
    """A base whose model file cannot be read: the fields the digest covers decide."""
    from reconciler.spec.model import Deployment
    from reconciler.spec.repo import load_all

    config = load_config(repo.root)
    dep = next(iter(load_all(config, None, "prod").deployments))
    empty = tmp_path / "no-model-here"
    empty.mkdir()
    base_cfg = replace(config, root=empty)

    def old_with(path: tuple[str, ...], value) -> Deployment:
        data = copy.deepcopy(dep.data)
        node = data
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = value
        return Deployment(spec=dep.spec, env=dep.env, data=data)

    old = old_with(("spec", "serving", "workers"), 3)
    diff = spec_diff(old, dep, base_cfg, config, set())
    assert diff["fields"] == [{"path": "spec.serving.workers", "old": 3, "new": 1}]
    assert diff["rebuild"] is True and diff["build_inputs"] == ["serving"]
    assert diff["decided_by"].startswith("spec fields (the build inputs could not be computed")
    assert "model file" in diff["decided_by"]

    slo = dict(dep.get("spec.serving.slo"), p99_latency_ms=1)
    old = old_with(("spec", "serving", "slo"), slo)
    diff = spec_diff(old, dep, base_cfg, config, set())
    assert (
        diff["rebuild"] is False and diff["fields"][0]["path"] == "spec.serving.slo.p99_latency_ms"
    )

    old = old_with(("spec", "target", "namespace"), "other")
    model = dep.get("spec.model.uri")
    diff = spec_diff(old, dep, base_cfg, config, {model})
    assert diff["files"] == [model] and diff["build_inputs"] == ["model_file"]
    assert diff["rebuild"] is True


def test_text_plan_prints_the_plan_then_the_delete_guard(repo):
    base = repo.git.head.commit.hexsha
    repo.rm(SPEC)
    head = repo.commit("delete the only spec")
    args = ("plan", "--base", base, "--head", head, "--env", "prod")
    code, out, err = invoke(repo.root, *args)
    assert code == 1
    assert out.count("- delete  kubernetes:") == 10
    assert "0 to create, 0 to update, 0 to replace, 10 to delete" in out
    assert "blocks the merge" in out
    assert "error: this change deletes 1 of 1 deployment(s) in prod" in err
    code_md, md, _ = invoke(repo.root, *args, "-f", "markdown")
    code_json, js, _ = invoke(repo.root, *args, "-f", "json")
    assert code_md == code_json == 1
    assert md.count("- delete  kubernetes:") == 10 and "max_delete_share" in md
    data = json.loads(js)
    assert data["outcomes"][0]["plan"]["counts"]["delete"] == 10
    assert "max_delete_share" in data["guards"][0]
    # allowed: the same plan, exit 0, the guard as a note
    code, out, err = invoke(repo.root, *args, "--allow-mass-delete")
    assert code == 0 and out.count("- delete  kubernetes:") == 10 and "error:" not in err


def test_field_changes_walks_mappings_and_lists_of_mappings():
    from reconciler.gitops.fields import field_changes, touches_build

    old = {"spec": {"secrets": [{"name": "A", "from": "k8s:x/a"}], "tags": [1, 2], "n": 1}}
    new = {"spec": {"secrets": [{"name": "A", "from": "k8s:x/b"}], "tags": [1, 3], "n": "1"}}
    assert field_changes(old, new) == [
        ("spec.n", 1, "1"),
        ("spec.secrets.0.from", "k8s:x/a", "k8s:x/b"),
        ("spec.tags", [1, 2], [1, 3]),
    ]
    assert field_changes({"spec": {}}, {"spec": {"x": {"y": 1}}}) == [
        ("spec.x.y", None, 1),
    ]
    assert touches_build("spec.serving.workers") and touches_build("spec.model.uri")
    assert not touches_build("spec.serving.slo.p99_latency_ms")
    assert not touches_build("spec.serving.smoke") and not touches_build("spec.modelx")


def test_the_base_revisions_jobs_clone_the_same_repository_as_the_heads(repo, monkeypatch):
    # outside GitHub Actions the jobs' clone URL is the remote origin, which the base
    # revision written out to a temp directory has no Git metadata to tell: the plan
    # showed every CronJob changed (a checkout added) for a one-line replica change
    for name in ("GITHUB_SERVER_URL", "GITHUB_REPOSITORY"):
        monkeypatch.delenv(name, raising=False)
    repo.git.create_remote("origin", "https://git.example.com/ml/specs.git")
    base = repo.git.head.commit.hexsha
    _edit(repo, "min_replicas: 3}", "min_replicas: 4}")
    head = repo.commit("4 replicas")
    report = plan(load_config(repo.root), "prod", base=base, head=head)
    changes = report.plans[0].to_dict()["changes"]
    assert [(c["type"], [f["path"] for f in c["fields"]]) for c in changes] == [
        ("kubernetes:autoscaling/v2:HorizontalPodAutoscaler", ["spec.minReplicas"])
    ]

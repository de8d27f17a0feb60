"""Offline plans: real renders (Pulumi mocks) diffed against recorded DesiredStates."""

from __future__ import annotations

import copy
import json

import pytest
import yaml

from reconciler.build.artifact import Artifact
from reconciler.core.config import load_config
from reconciler.core.diagnostics import ModelopsError
from reconciler.engine.plan import (
    Plan,
    diff,
    field_diff,
    render_plan_json,
    render_plan_markdown,
    render_plan_text,
    replace_paths,
    same_quantity,
    unchanged,
)
from reconciler.engine.render import render
from reconciler.flow.stages import render_live
from reconciler.spec.repo import load_all
from reconciler.state.ledger import Ledger, LedgerError, LedgerRecord


def dep_of(root, name="fraud-detector", env="prod"):
    config = load_config(root)
    result = load_all(config, [name], env)
    assert not result.errors, [str(d) for d in result.errors]
    return result.deployments[0], config


def set_min_replicas(root, n):
    path = root / "specs" / "fraud-detector.yaml"
    doc = yaml.safe_load(path.read_text())
    doc["spec"]["environments"]["prod"]["target"]["autoscaling"]["min_replicas"] = n
    path.write_text(yaml.safe_dump(doc, sort_keys=False))


def test_first_plan_creates_everything(spec_repo):
    dep, config = dep_of(spec_repo)
    plan = diff(None, render(dep, None, config), dep.key)
    assert {c.action for c in plan.changes} == {"create"}
    assert plan.summary() == "10 to create, 0 to update, 0 to replace, 0 to delete"
    assert not plan.empty and plan.offline and plan.platform == "kubernetes"


def test_same_state_plans_no_changes(spec_repo):
    dep, config = dep_of(spec_repo)
    old = render(dep, None, config).to_dict()
    plan = diff(old, render(dep, None, config), dep.key)
    assert plan.empty and plan.summary() == "no changes"
    assert plan.unchanged == 10
    assert render_plan_text([plan]) == f"{dep.key}: no changes\n"


@pytest.mark.parametrize(
    ("name", "env"),
    [
        ("fraud-detector", "prod"),
        ("fraud-detector", "staging"),
        ("diabetes-progression", "prod"),
        ("fraud-scorer-serverless", "prod"),
    ],
)
def test_a_state_against_itself_is_the_diff_of_its_own_copy(spec_repo, name, env):
    dep, config = dep_of(spec_repo, name, env)
    state = render(dep, None, config)
    assert unchanged(state, dep.key).to_dict() == diff(state.to_dict(), state, dep.key).to_dict()


def test_update_lists_changed_paths_with_old_and_new(spec_repo):
    dep, config = dep_of(spec_repo)
    old = render(dep, None, config).to_dict()
    set_min_replicas(spec_repo, 4)
    dep, config = dep_of(spec_repo)
    plan = diff(old, render(dep, None, config), dep.key)
    assert plan.summary() == "0 to create, 1 to update, 0 to replace, 0 to delete"
    (change,) = plan.changes
    assert (change.action, change.type) == (
        "update",
        "kubernetes:autoscaling/v2:HorizontalPodAutoscaler",
    )
    assert change.fields == [("spec.minReplicas", 3, 4)]
    text = render_plan_text([plan])
    assert "~ update  kubernetes:autoscaling/v2:HorizontalPodAutoscaler fraud-detector" in text
    assert "spec.minReplicas: 3 → 4" in text


def test_new_image_updates_deployment_and_cronjobs(spec_repo):
    dep, config = dep_of(spec_repo)
    a1 = Artifact("fraud-detector:v1", "1" * 64, "registry.example.com/ml/fraud-detector:v1")
    a2 = Artifact("fraud-detector:v2", "2" * 64, "registry.example.com/ml/fraud-detector:v2")
    old = render(dep, a1, config).to_dict()
    plan = diff(old, render(dep, a2, config), dep.key)
    kinds = sorted(c.type.rsplit(":", 1)[-1] for c in plan.changes)
    assert kinds == ["CronJob", "CronJob", "Deployment"]
    deploy = next(c for c in plan.changes if c.type.endswith("Deployment"))
    assert (
        "spec.template.spec.containers[0].image",
        a1.image,
        a2.image,
    ) in deploy.fields


def test_namespace_change_forces_replacement(spec_repo):
    dep, config = dep_of(spec_repo)
    old = render(dep, None, config).to_dict()
    path = spec_repo / "specs" / "fraud-detector.yaml"
    path.write_text(path.read_text().replace("namespace: ml", "namespace: ml-risk"))
    dep, config = dep_of(spec_repo)
    plan = diff(old, render(dep, None, config), dep.key)
    assert {c.action for c in plan.changes} == {"replace"}
    assert all("metadata.namespace" in c.replace_paths for c in plan.changes)
    assert "(forces replacement)" in render_plan_text([plan])


def test_delete_everything_when_new_is_none(spec_repo):
    dep, config = dep_of(spec_repo)
    old = render(dep, None, config).to_dict()
    plan = diff(old, None, dep.key)
    assert plan.summary() == "0 to create, 0 to update, 0 to replace, 10 to delete"
    assert plan.platform == "kubernetes"


def test_platform_switch_deletes_local_and_creates_cluster_resources(spec_repo):
    staging, config = dep_of(spec_repo, env="staging")
    prod, _ = dep_of(spec_repo, env="prod")
    old = render(staging, None, config).to_dict()
    plan = diff(old, render(prod, None, config), prod.key)
    deletes = [c for c in plan.changes if c.action == "delete"]
    assert [(c.type, c.name) for c in deletes] == [("modelops:local:BentoServer", "fraud-detector")]
    assert plan.counts()["create"] == 10


def test_local_bento_change_is_a_replace():
    old = {
        "platform": "local",
        "resources": [
            {
                "type": "modelops:local:BentoServer",
                "name": "m",
                "inputs": {"bento_tag": "m:1", "host": "127.0.0.1", "workers": 1},
            }
        ],
    }
    new = copy.deepcopy(old)
    new["resources"][0]["inputs"]["bento_tag"] = "m:2"
    from reconciler.engine.render import DesiredState

    plan = diff(old, DesiredState.from_dict(new), "m-dev")
    assert plan.changes[0].action == "replace"
    assert plan.changes[0].replace_paths == ["bento_tag"]


def test_replace_rules():
    assert replace_paths("aws:sagemaker/model:Model", ["primaryContainer.image"]) == [
        "primaryContainer.image"
    ]
    assert replace_paths("aws:sagemaker/model:Model", ["tags.team"]) == []
    assert replace_paths("kubernetes:apps/v1:Deployment", ["spec.replicas"]) == []
    assert replace_paths("kubernetes:apps/v1:Deployment", ["spec.selector.matchLabels.a"]) == [
        "spec.selector.matchLabels.a"
    ]


def test_field_diff_paths():
    old = {"a": {"b": [1, {"c": 2}]}, "gone": 1}
    new = {"a": {"b": [1, {"c": 3}, 4]}, "added": "x"}
    assert field_diff(old, new) == [
        ("a.b[1].c", 2, 3),
        ("a.b[2]", None, 4),
        ("added", None, "x"),
        ("gone", 1, None),
    ]


def test_markdown_and_json_carry_the_same_plan(spec_repo):
    dep, config = dep_of(spec_repo)
    old = render(dep, None, config).to_dict()
    set_min_replicas(spec_repo, 5)
    dep, config = dep_of(spec_repo)
    plan = diff(old, render(dep, None, config), dep.key)
    md = render_plan_markdown([plan])
    assert "| ~ update | `kubernetes:autoscaling/v2:HorizontalPodAutoscaler`" in md
    assert "`spec.minReplicas`: `3` → `5`" in md
    assert "0 to create, 1 to update, 0 to replace, 0 to delete" in md
    data = json.loads(render_plan_json([plan]))
    assert data["plans"][0]["changes"][0]["fields"] == [
        {"path": "spec.minReplicas", "old": 3, "new": 5}
    ]
    assert Plan.from_dict(data["plans"][0]).to_dict() == plan.to_dict()


def test_newer_desired_state_in_ledger_is_refused(spec_repo):
    dep, config = dep_of(spec_repo)
    old = render(dep, None, config).to_dict()
    old["schemaVersion"] = 99
    with pytest.raises(ModelopsError, match="newer"):
        diff(old, render(dep, None, config), dep.key)


def test_corrupt_ledger_is_reported_and_left_untouched(spec_repo):
    dep, config = dep_of(spec_repo)
    ledger = Ledger(config.state_dir)
    ledger.dir.mkdir(parents=True)
    path = ledger.path(dep.name, dep.env)
    path.write_text("{not json")
    with pytest.raises(LedgerError, match="corrupt"):
        render_live(dep, None, config)
    assert path.read_text() == "{not json"


def test_ledger_from_a_newer_modelops_is_reported(spec_repo):
    dep, config = dep_of(spec_repo)
    ledger = Ledger(config.state_dir)
    record = LedgerRecord(name=dep.name, environment=dep.env)
    ledger.put(record)
    path = ledger.path(dep.name, dep.env)
    data = json.loads(path.read_text())
    data["schemaVersion"] = 99
    path.write_text(json.dumps(data))
    with pytest.raises(LedgerError, match="newer"):
        render_live(dep, None, config)
    assert json.loads(path.read_text())["schemaVersion"] == 99


def test_plan_shows_the_next_runs_of_each_schedule():
    plan = Plan("fraud-detector-prod", platform="kubernetes")
    plan.schedules = {"monitor": ["2027-01-31T00:00:00+00:00", "2027-03-31T00:00:00+00:00"]}
    text = render_plan_text([plan])
    assert "next runs (monitor, UTC): 2027-01-31 00:00, 2027-03-31 00:00" in text
    assert Plan.from_dict(plan.to_dict()).schedules == plan.schedules


@pytest.mark.parametrize(
    ("old", "new", "changed"),
    [
        ("requests: {cpu: 500m, memory: 1Gi}", "requests: {cpu: '0.5', memory: 1024Mi}", False),
        ('limits: {cpu: "2", memory: 2Gi}', "limits: {cpu: 2000m, memory: 2048Mi}", False),
        ('limits: {cpu: "2", memory: 2Gi}', 'limits: {cpu: "2", memory: 2G}', True),
        ("requests: {cpu: 500m, memory: 1Gi}", "requests: {cpu: 250m, memory: 1Gi}", True),
    ],
)
def test_equal_quantities_in_other_units_are_not_an_update(spec_repo, old, new, changed):
    dep, config = dep_of(spec_repo)
    before = render(dep, None, config).to_dict()
    path = spec_repo / "specs" / "fraud-detector.yaml"
    path.write_text(path.read_text().replace(old, new, 1))
    dep, config = dep_of(spec_repo)
    plan = diff(before, render(dep, None, config), dep.key)
    assert plan.empty is not changed, render_plan_text([plan])
    if changed:
        assert {c.action for c in plan.changes} == {"update"}  # the Deployment and CronJobs


@pytest.mark.parametrize(
    ("a", "b", "same"),
    [
        ("1.5Gi", "1536Mi", True),
        ("0.25", "250m", True),
        (0.25, "250m", True),
        ("1e3", "1k", True),
        ("1E3", "1000", True),
        ("1Ki", "1024", True),
        ("1k", "1Ki", False),
        ("1M", "1Mi", False),
        ("100m", "0.1", True),
        ("abc", "abc1", False),
        (True, 1, False),
    ],
)
def test_quantity_equality_is_exact(a, b, same):
    assert same_quantity(a, b) is same

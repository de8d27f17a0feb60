"""Argo Rollouts on Kubernetes (stacks/rollouts.py), rendered under Pulumi's mocks.

A canary with ``rollout.analysis`` (or an experiment) renders a ``Rollout`` with
``workloadRef`` to the Deployment and an ``AnalysisTemplate`` whose Prometheus queries
read the new pods' BentoML request metrics and model signals; every manifest is checked
strictly against the Kubernetes 1.30 schemas and the vendored Argo Rollouts CRD schemas
(support.crds, from the npm package @kubernetes-models/argo-rollouts). A canary without
analysis stays the per-commit replica split (the exact kinds of
test_stacks_kubernetes.py::test_prod_manifests_validate_and_have_the_expected_kinds).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from support.crds import assert_valid_manifest
from support.repo import make_repo

from reconciler.core.config import load_config
from reconciler.engine.plan import diff, render_plan_text
from reconciler.engine.render import render
from reconciler.spec.experiment import sample_size
from reconciler.spec.repo import load_all
from stacks.common import REQUEST_DURATION_METRIC, REQUEST_TOTAL_METRIC
from stacks.rollouts import HASH_LABEL, MESH_NOTE, STABLE_URL_ENV

ANALYSIS = {
    "interval_seconds": 30,
    "pause_seconds": 120,
    "failure_limit": 2,
    "metrics": {
        "error_rate": 0.01,
        "p99_latency_ms": "from_slo",
        "agreement": 0.95,
        "estimated_quality": 0.8,
    },
}


def edit_spec(root: Path, name: str, change) -> None:
    path = root / "specs" / f"{name}.yaml"
    doc = yaml.safe_load(path.read_text())
    change(doc)
    path.write_text(yaml.safe_dump(doc, sort_keys=False))


def deployment(root: Path):
    config = load_config(root)
    result = load_all(config, ["fraud-detector"], "prod")
    assert not result.errors, [str(d) for d in result.errors]
    (dep,) = result.deployments
    return dep, config


def by_kind(state, kind):
    return [m for m in state.manifests() if m["kind"] == kind]


def validate_all(state) -> None:
    for manifest in state.manifests():
        assert_valid_manifest(manifest)


def _rollout(root, **rollout):
    edit_spec(root, "fraud-detector", lambda d: d["spec"]["target"].update(rollout=rollout))
    dep, config = deployment(root)
    state = render(dep, None, config, cache=False)
    validate_all(state)
    return state


@pytest.fixture(scope="module")
def analysed(tmp_path_factory):
    """fraud-detector prod with a canary over [10, 50, 100] judged by every metric (one
    render, about 2 s, shared by the tests that read it)."""
    root = make_repo(tmp_path_factory.mktemp("rollouts") / "repo", specs=["fraud-detector"]).root
    return _rollout(root, strategy="canary", steps=[10, 50, 100], analysis=ANALYSIS)


def test_canary_with_analysis_renders_a_valid_rollout_and_analysis_template(analysed):
    state = analysed
    (rollout,) = by_kind(state, "Rollout")
    (template,) = by_kind(state, "AnalysisTemplate")
    (deploy,) = by_kind(state, "Deployment")  # no second, per-commit canary Deployment
    spec = rollout["spec"]
    assert spec["workloadRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": deploy["metadata"]["name"],
    }
    assert deploy["spec"]["replicas"] == 0  # the Rollout runs the pods
    assert spec["selector"]["matchLabels"] == deploy["spec"]["selector"]["matchLabels"]
    canary = spec["strategy"]["canary"]
    assert canary["steps"] == [
        {"setWeight": 10},
        {"pause": {"duration": "120s"}},
        {"setWeight": 50},
        {"pause": {"duration": "120s"}},
    ]
    assert canary["analysis"]["templates"] == [{"templateName": template["metadata"]["name"]}]
    assert canary["analysis"]["args"][0]["valueFrom"] == {"podTemplateHashValue": "Latest"}
    services = {s["metadata"]["name"] for s in by_kind(state, "Service")}
    assert {canary["stableService"], canary["canaryService"]} < services
    metrics = {m["name"]: m for m in template["spec"]["metrics"]}
    assert sorted(metrics) == ["agreement", "error-rate", "estimated-quality", "p99-latency"]
    for metric in metrics.values():
        assert metric["interval"] == "30s" and metric["failureLimit"] == 2
        assert (
            'rollouts_pod_template_hash="{{args.canary-hash}}"'
            in metric["provider"]["prometheus"]["query"]
        )
    assert REQUEST_TOTAL_METRIC in metrics["error-rate"]["provider"]["prometheus"]["query"]
    assert metrics["error-rate"]["successCondition"] == "result[0] <= 0.01"
    latency = metrics["p99-latency"]
    assert f"{REQUEST_DURATION_METRIC}_bucket" in latency["provider"]["prometheus"]["query"]
    assert latency["successCondition"] == "result[0] <= 0.2"  # serving.slo.p99_latency_ms 200
    assert metrics["agreement"]["successCondition"] == "result[0] >= 0.95"
    # the series carry the pods' hash, from the main Service only
    (monitor,) = by_kind(state, "ServiceMonitor")
    assert monitor["spec"]["podTargetLabels"] == [HASH_LABEL]
    (hpa,) = by_kind(state, "HorizontalPodAutoscaler")
    assert hpa["spec"]["scaleTargetRef"]["kind"] == "Rollout"
    env = {
        e["name"]: e.get("value")
        for e in deploy["spec"]["template"]["spec"]["containers"][0]["env"]
    }
    assert env[STABLE_URL_ENV].startswith(f"http://{canary['stableService']}.ml.svc")
    assert state.outputs["rollout_note"] == MESH_NOTE


def test_the_plan_says_weights_fall_back_to_replica_counts(analysed):
    plan = diff(None, analysed, "fraud-detector-prod")
    assert f"note: {MESH_NOTE}" in render_plan_text([plan])
    assert plan.to_dict()["notes"] == [MESH_NOTE]


def test_only_the_metrics_the_spec_names_are_queried(spec_repo):
    analysis = {**ANALYSIS, "metrics": {"p99_latency_ms": 150}}
    state = _rollout(spec_repo, strategy="canary", steps=[25, 100], analysis=analysis)
    (template,) = by_kind(state, "AnalysisTemplate")
    (metric,) = template["spec"]["metrics"]
    assert metric["name"] == "p99-latency" and metric["successCondition"] == "result[0] <= 0.15"
    (deploy,) = by_kind(state, "Deployment")
    env = [e["name"] for e in deploy["spec"]["template"]["spec"]["containers"][0]["env"]]
    assert STABLE_URL_ENV not in env  # no agreement, no comparison copies


def test_an_experiment_holds_a_50_50_split_until_promoted(spec_repo):
    state = _rollout(
        spec_repo,
        strategy="experiment",
        experiment={"primary_metric": "error_rate", "minimum_detectable_effect": 0.005},
    )
    (rollout,) = by_kind(state, "Rollout")
    assert rollout["spec"]["strategy"]["canary"]["steps"] == [{"setWeight": 50}, {"pause": {}}]
    assert "analysis" not in rollout["spec"]["strategy"]["canary"]
    assert not by_kind(state, "AnalysisTemplate")
    # the plan shows the sample size fixed before the start (baseline: slo max_error_rate)
    planned = sample_size(0.01, 0.005)
    assert f"{planned:,} requests per arm" in state.outputs["rollout_note"]

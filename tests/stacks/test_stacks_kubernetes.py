"""The Kubernetes stack, run for real under Pulumi's mocks through the offline renderer.

Every manifest is checked against the Kubernetes 1.30 OpenAPI schemas with
kubernetes-validate in strict mode (unknown fields fail), and every custom resource
(PrometheusRule, ServiceMonitor) against its vendored CRD schema, as strictly
(support.crds).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
import yaml
from support.crds import assert_valid_manifest, crd_errors

from reconciler.build.artifact import Artifact
from reconciler.core.config import load_config
from reconciler.engine.render import RenderError, render
from reconciler.flow.stages import render_live
from reconciler.spec.repo import load_all
from reconciler.state.ledger import Ledger, LedgerRecord
from stacks.kubernetes import replica_split


def edit_spec(root: Path, name: str, change) -> None:
    """Load ``specs/<name>.yaml``, let ``change(doc)`` edit it, write it back."""
    path = root / "specs" / f"{name}.yaml"
    doc = yaml.safe_load(path.read_text())
    change(doc)
    path.write_text(yaml.safe_dump(doc, sort_keys=False))


def deployment(root: Path, name: str = "fraud-detector", env: str = "prod"):
    config = load_config(root)
    result = load_all(config, [name], env)
    assert not result.errors, [str(d) for d in result.errors]
    (dep,) = result.deployments
    return dep, config


def by_kind(state, kind):
    return [m for m in state.manifests() if m["kind"] == kind]


def validate_all(state) -> None:
    for manifest in state.manifests():
        assert_valid_manifest(manifest)


def test_prod_manifests_validate_and_have_the_expected_kinds(spec_repo):
    dep, config = deployment(spec_repo)
    state = render(dep, None, config)
    validate_all(state)
    kinds = sorted(m["kind"] for m in state.manifests())
    assert kinds == [
        "CronJob",
        "CronJob",
        "Deployment",
        "HorizontalPodAutoscaler",
        "NetworkPolicy",
        "PodDisruptionBudget",
        "PrometheusRule",
        "Service",
        "ServiceAccount",
        "ServiceMonitor",
    ]
    assert not state.image["built"] and state.image["ref"].endswith(":unbuilt")


def test_labels_follow_recommended_labels_plus_team_and_cost_center(spec_repo):
    dep, config = deployment(spec_repo)
    for manifest in render(dep, None, config).manifests():
        labels = manifest["metadata"]["labels"]
        assert labels["app.kubernetes.io/name"] == "fraud-detector"
        assert labels["app.kubernetes.io/version"] == "1.0.0"
        assert labels["app.kubernetes.io/managed-by"] == "modelops"
        assert labels["modelops.dev/team"] == "payments-risk"
        assert labels["cost-center"] == "cc-1234"
        assert manifest["metadata"]["namespace"] == "ml"


def test_deployment_is_restricted_probed_and_uses_secret_refs(spec_repo):
    dep, config = deployment(spec_repo)
    (deploy,) = by_kind(render(dep, None, config), "Deployment")
    pod = deploy["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod["automountServiceAccountToken"] is False
    sc = container["securityContext"]
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"] == {"drop": ["ALL"]}
    assert {"name": "tmp", "mountPath": "/tmp"} in container["volumeMounts"]
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/livez"
    assert container["resources"] == {
        "requests": {"cpu": "500m", "memory": "1Gi"},
        "limits": {"cpu": "2", "memory": "2Gi"},
    }
    secret = next(e for e in container["env"] if e["name"] == "FEATURE_STORE_TOKEN")
    assert secret == {
        "name": "FEATURE_STORE_TOKEN",
        "valueFrom": {
            "secretKeyRef": {"name": "fraud-detector-secrets", "key": "FEATURE_STORE_TOKEN"}
        },
    }
    assert "value" not in secret
    # With an HPA the autoscaler owns the replica count.
    assert "replicas" not in deploy["spec"]


def test_hpa_pdb_and_network_policy_follow_the_spec(spec_repo):
    dep, config = deployment(spec_repo)
    state = render(dep, None, config)
    (hpa,) = by_kind(state, "HorizontalPodAutoscaler")
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (3, 10)
    assert hpa["spec"]["metrics"][0]["resource"]["target"]["averageUtilization"] == 70
    (pdb,) = by_kind(state, "PodDisruptionBudget")
    assert pdb["spec"]["maxUnavailable"] == 1
    (netpol,) = by_kind(state, "NetworkPolicy")
    # The allowed namespaces, then Prometheus (the spec sets SLO alert targets).
    rule, scrape = netpol["spec"]["ingress"]
    expr = rule["from"][0]["namespaceSelector"]["matchExpressions"][0]
    assert expr["values"] == ["payments"]
    assert scrape["from"] == [
        {
            "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}},
            "podSelector": {"matchLabels": {"app.kubernetes.io/name": "prometheus"}},
        }
    ]
    assert scrape["ports"] == [{"protocol": "TCP", "port": 3000}]
    (svc,) = by_kind(state, "Service")
    assert svc["spec"]["type"] == "ClusterIP"


def test_no_pdb_below_two_replicas_and_fixed_replicas_without_autoscaling(spec_repo):
    def change(doc):
        doc["spec"]["target"].pop("autoscaling")
        prod = doc["spec"]["environments"]["prod"]
        doc["spec"]["environments"]["prod"] = {"monitoring": prod["monitoring"]}  # S3 capture

    edit_spec(spec_repo, "fraud-detector", change)
    dep, config = deployment(spec_repo)
    state = render(dep, None, config)
    validate_all(state)
    assert not by_kind(state, "PodDisruptionBudget")
    assert not by_kind(state, "HorizontalPodAutoscaler")
    (deploy,) = by_kind(state, "Deployment")
    assert deploy["spec"]["replicas"] == 1


def test_pii_deployment_never_gets_an_ingress(spec_repo):
    dep, config = deployment(spec_repo)
    assert not by_kind(render(dep, None, config), "Ingress")

    edit_spec(spec_repo, "fraud-detector", lambda d: d["spec"]["exposure"].update(public=True))
    dep, config = deployment(spec_repo)
    with pytest.raises(RenderError) as err:
        render(dep, None, config)
    (diag,) = err.value.diagnostics
    assert diag.field == "spec.exposure.public"
    assert diag.position.file == "specs/fraud-detector.yaml" and diag.position.line > 0
    assert "pii" in diag.message


def test_public_internal_deployment_gets_a_valid_ingress(spec_repo):
    def change(doc):
        doc["spec"]["exposure"].update(public=True, host="fraud.example.com", tls=True)
        doc["spec"]["data"]["classification"] = "internal"

    edit_spec(spec_repo, "fraud-detector", change)
    dep, config = deployment(spec_repo)
    state = render(dep, None, config)
    validate_all(state)
    (ingress,) = by_kind(state, "Ingress")
    assert ingress["spec"]["rules"][0]["host"] == "fraud.example.com"
    assert ingress["spec"]["tls"][0]["secretName"] == "fraud-detector-tls"
    assert state.outputs["public_url"] == "https://fraud.example.com"
    # The ingress controller's namespace is admitted next to the allowed ones.
    (netpol,) = by_kind(state, "NetworkPolicy")
    expr = netpol["spec"]["ingress"][0]["from"][0]["namespaceSelector"]["matchExpressions"][0]
    assert expr["values"] == ["ingress-nginx", "payments"]


def test_cronjobs_run_monitor_and_retrain_in_the_model_image(spec_repo):
    dep, config = deployment(spec_repo)
    state = render(dep, None, config)
    jobs = {m["metadata"]["name"]: m for m in by_kind(state, "CronJob")}
    monitor = jobs["fraud-detector-monitor"]["spec"]
    retrain = jobs["fraud-detector-retrain"]["spec"]
    assert monitor["schedule"] == "0 * * * *"
    assert retrain["schedule"] == "0 3 * * 0"
    m_container = monitor["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]
    r_container = retrain["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]
    assert m_container["command"] == [
        "modelops",
        "monitor",
        "run",
        "fraud-detector",
        "--env",
        "prod",
    ]
    assert r_container["command"] == ["modelops", "retrain", "fraud-detector", "--env", "prod"]
    assert m_container["image"] == state.image["ref"] == r_container["image"]
    assert retrain["jobTemplate"]["spec"]["activeDeadlineSeconds"] == 600


def test_batch_mode_renders_a_cronjob_instead_of_a_server(spec_repo):
    def change(doc):
        doc["spec"]["serving"]["mode"] = "batch"
        doc["spec"]["serving"]["batch"] = {
            "schedule": "0 2 * * *",
            "input": "s3://in/",
            "output": "s3://out/",
        }

    edit_spec(spec_repo, "fraud-detector", change)
    dep, config = deployment(spec_repo)
    state = render(dep, None, config)
    validate_all(state)
    assert not by_kind(state, "Deployment") and not by_kind(state, "Service")
    batch = next(m for m in by_kind(state, "CronJob") if m["metadata"]["name"].endswith("batch"))
    container = batch["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]
    assert container["command"][:3] == ["modelops", "batch", "fraud-detector"]


def _record_stable(config, image: str) -> None:
    record = LedgerRecord(name="fraud-detector", environment="prod", platform="kubernetes")
    record.desiredState = {"outputs": {"stable_image": image}, "resources": []}
    Ledger(config.state_dir).put(record)


def test_canary_splits_replicas_between_stable_and_canary(spec_repo):
    dep, config = deployment(spec_repo)
    old = "registry.example.com/ml/fraud-detector:old"
    _record_stable(config, old)
    artifact = Artifact(
        "fraud-detector:new", "d" * 64, "registry.example.com/ml/fraud-detector:new"
    )
    state = render_live(dep, artifact, config)
    validate_all(state)
    deploys = {m["metadata"]["name"]: m for m in by_kind(state, "Deployment")}
    stable, canary = deploys["fraud-detector"], deploys["fraud-detector-canary"]
    assert stable["spec"]["template"]["spec"]["containers"][0]["image"] == old
    assert canary["spec"]["template"]["spec"]["containers"][0]["image"] == artifact.image
    # step 0 of [10, 50, 100] over 3 replicas: round(0.3) → at least 1 canary, 2 stable.
    assert canary["spec"]["replicas"] == 1
    (hpa,) = by_kind(state, "HorizontalPodAutoscaler")
    assert hpa["spec"]["minReplicas"] == 2 and hpa["spec"]["maxReplicas"] == 9
    # Both tracks sit behind the one Service.
    (svc,) = by_kind(state, "Service")
    for d in (stable, canary):
        labels = d["spec"]["template"]["metadata"]["labels"]
        assert all(labels[k] == v for k, v in svc["spec"]["selector"].items())
    assert state.outputs["canary_weight"] == 10 and state.outputs["stable_image"] == old


def test_canary_at_100_percent_promotes_the_new_image(spec_repo):
    edit_spec(spec_repo, "fraud-detector", lambda d: d["spec"]["target"]["rollout"].update(step=2))
    dep, config = deployment(spec_repo)
    _record_stable(config, "registry.example.com/ml/fraud-detector:old")
    artifact = Artifact(
        "fraud-detector:new", "d" * 64, "registry.example.com/ml/fraud-detector:new"
    )
    state = render_live(dep, artifact, config)
    (deploy,) = by_kind(state, "Deployment")
    assert deploy["spec"]["template"]["spec"]["containers"][0]["image"] == artifact.image
    assert state.outputs["stable_image"] == artifact.image


@pytest.mark.parametrize(
    "total,weight,expected",
    [(3, 10, (2, 1)), (10, 50, (5, 5)), (4, 25, (3, 1)), (1, 10, (1, 1)), (2, 90, (1, 2))],
)
def test_replica_split(total, weight, expected):
    assert replica_split(total, weight) == expected


def test_long_names_are_cut_to_kubernetes_limits(spec_repo):
    long_name = "a" * 60
    path = spec_repo / "specs" / "fraud-detector.yaml"
    path.write_text(path.read_text().replace("name: fraud-detector", f"name: {long_name}"))
    dep, config = deployment(spec_repo, long_name)
    state = render(dep, None, config)
    validate_all(state)
    for job in by_kind(state, "CronJob"):
        assert len(job["metadata"]["name"]) <= 52


def test_blue_green_is_refused_on_kubernetes(spec_repo):
    edit_spec(
        spec_repo,
        "fraud-detector",
        lambda d: d["spec"]["target"].update(rollout={"strategy": "blue-green"}),
    )
    dep, config = deployment(spec_repo)
    with pytest.raises(RenderError) as err:
        render(dep, None, config)
    assert err.value.diagnostics[0].field == "spec.target.rollout.strategy"


def test_slo_becomes_a_prometheus_rule_per_target_and_a_service_monitor(spec_repo):
    edit_spec(
        spec_repo,
        "fraud-detector",
        lambda d: d["spec"]["serving"].update(
            slo={"p99_latency_ms": 250, "max_error_rate": 0.02, "min_throughput_rps": 5}
        ),
    )
    dep, config = deployment(spec_repo)
    state = render(dep, None, config)
    validate_all(state)
    (rule,) = by_kind(state, "PrometheusRule")
    (group,) = rule["spec"]["groups"]
    alerts = {r["alert"]: r for r in group["rules"]}
    assert sorted(alerts) == ["ModelopsErrorRateSLO", "ModelopsLatencySLO", "ModelopsThroughputSLO"]
    series = '{namespace="ml",service="fraud-detector",endpoint!~"/livez|/readyz|/healthz"'
    latency = alerts["ModelopsLatencySLO"]["expr"]
    assert latency.startswith("histogram_quantile(0.99, sum by (le) (rate(")
    assert f"bentoml_service_request_duration_seconds_bucket{series}}}[5m]" in latency
    assert latency.endswith(") > 0.25")  # 250 ms in seconds, the histogram's unit
    errors = alerts["ModelopsErrorRateSLO"]["expr"]
    assert f'bentoml_service_request_total{series},http_response_code=~"5.."}}' in errors
    assert errors.endswith(") > 0.02")
    throughput = alerts["ModelopsThroughputSLO"]
    assert throughput["expr"].endswith(" or vector(0)) < 5")
    assert throughput["for"] == "10m" and throughput["labels"]["severity"] == "warning"
    for r in group["rules"]:
        assert r["labels"]["deployment"] == "fraud-detector"
        assert r["labels"]["environment"] == "prod"

    # The ServiceMonitor selects the Service by its own labels and scrapes its port.
    (monitor,) = by_kind(state, "ServiceMonitor")
    (svc,) = by_kind(state, "Service")
    selector = monitor["spec"]["selector"]["matchLabels"]
    assert selector.items() <= svc["metadata"]["labels"].items()
    assert monitor["spec"]["namespaceSelector"] == {"matchNames": ["ml"]}
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint["port"] in [p["name"] for p in svc["spec"]["ports"]]
    assert endpoint["path"] == "/metrics"


def test_only_the_slo_targets_the_spec_sets_become_rules(spec_repo):
    edit_spec(
        spec_repo,
        "fraud-detector",
        lambda d: d["spec"]["serving"].update(slo={"max_error_rate": 0}),
    )
    dep, config = deployment(spec_repo)
    (rule,) = by_kind(render(dep, None, config), "PrometheusRule")
    assert [r["alert"] for r in rule["spec"]["groups"][0]["rules"]] == ["ModelopsErrorRateSLO"]


def test_no_slo_no_monitoring_objects_and_no_scrape_rule(spec_repo):
    edit_spec(spec_repo, "fraud-detector", lambda d: d["spec"]["serving"].pop("slo"))
    dep, config = deployment(spec_repo)
    state = render(dep, None, config)
    assert not by_kind(state, "PrometheusRule") and not by_kind(state, "ServiceMonitor")
    (netpol,) = by_kind(state, "NetworkPolicy")
    assert len(netpol["spec"]["ingress"]) == 1  # the allowed namespaces only


def test_the_crd_check_is_strict(spec_repo):
    """The strict check fails on what an API server would prune or refuse."""
    dep, config = deployment(spec_repo)
    state = render(dep, None, config)
    (rule,) = by_kind(state, "PrometheusRule")
    assert crd_errors(rule) == []
    rule["spec"]["groups"][0]["rules"][0]["fore"] = "5m"  # a misspelt field
    rule["spec"]["groups"][0]["name"] = 3  # a wrong type
    del rule["spec"]["groups"][0]["rules"][1]["expr"]  # a required field
    errors = crd_errors(rule)
    assert len(errors) == 3, errors
    assert any("'fore' was unexpected" in e for e in errors)
    (monitor,) = by_kind(state, "ServiceMonitor")
    monitor["metadata"]["labelz"] = {}
    assert crd_errors(monitor)


def test_vendored_crd_schemas_match_their_sources():
    """The files are the ones scripts/fetch_crds.py wrote (SOURCES.json digests)."""
    crds = Path(__file__).parent.parent / "support" / "crds"
    sources = json.loads((crds / "SOURCES.json").read_text())
    assert {p["package"] for p in sources["packages"]} == {
        "@kubernetes-models/argo-cd",
        "@kubernetes-models/argo-rollouts",
        "@kubernetes-models/flux-cd",
        "@kubernetes-models/prometheus-operator",
    }
    on_disk = {p.name for p in crds.glob("*.json")} - {"SOURCES.json"}
    assert on_disk == set(sources["files"])
    for name, digest in sources["files"].items():
        assert hashlib.sha256((crds / name).read_bytes()).hexdigest() == digest, name

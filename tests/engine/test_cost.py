"""Cost estimates (reconciler.engine.cost) against prices computed by hand.

The DesiredStates are the real renders of the example specs (Pulumi mocks); the
per-instance-type cases change the instance type in the rendered endpoint configuration,
which is the value the estimate reads. Expected figures are computed here from the
snapshot file read with ``json`` (not through the module) and a few literal ones by hand.
"""

from __future__ import annotations

import copy
import json
import math
import re

import pytest
from support.repo import make_repo

from reconciler.core.config import DEFAULT_KUBERNETES_RATES, load_config
from reconciler.engine.cost import (
    DEFAULT_USAGE,
    HOURS_PER_MONTH,
    PRICES_FILE,
    CostError,
    KubernetesRates,
    PriceSnapshotError,
    estimate,
    load_prices,
    parse_prices,
    runs_per_month,
)
from reconciler.engine.render import DesiredState, Resource, render
from reconciler.spec.repo import load_all
from reconciler.spec.validate import SAGEMAKER_INSTANCE_TYPES

SNAPSHOT = json.loads(PRICES_FILE.read_text())


@pytest.fixture(scope="module")
def states(tmp_path_factory):
    root = make_repo(tmp_path_factory.mktemp("cost") / "repo").root
    config = load_config(root)
    deps = {d.key: d for d in load_all(config, None, None).deployments}
    return {key: render(dep, None, config) for key, dep in deps.items()}, deps


def _with(state: DesiredState, kind: str, edit) -> DesiredState:
    doc = copy.deepcopy(state.to_dict())
    for r in doc["resources"]:
        if r["type"].rsplit(":", 1)[-1] == kind:
            edit(r["inputs"])
    return DesiredState.from_dict(doc)


def _line(est, prefix: str):
    found = [line for line in est.lines if line.item.startswith(prefix)]
    assert len(found) == 1, [line.item for line in est.lines]
    return found[0]


def test_shipped_snapshot_prices_every_allowed_instance_type_in_four_regions():
    prices = load_prices()
    assert prices.publication_date == SNAPSHOT["publication_date"]
    assert len(prices.regions) >= 4
    for region, sections in prices.regions.items():
        # every type `validate` accepts for a real-time endpoint, in every region
        assert set(sections["sagemaker_hosting"]) == SAGEMAKER_INSTANCE_TYPES, region
        assert "ml.m5.large" in sections["sagemaker_processing"]  # the jobs' type


@pytest.mark.parametrize("region", sorted(SNAPSHOT["regions"]))
def test_every_hosting_instance_type_priced_by_hand(states, region):
    state = states[0]["diabetes-progression-prod"]  # 2-4 instances (autoscaling)

    for itype, price in SNAPSHOT["regions"][region]["sagemaker_hosting"].items():

        def edit(inputs, itype=itype):
            inputs["region"] = region
            inputs["productionVariants"][0]["instanceType"] = itype

        changed = _with(state, "EndpointConfiguration", edit)
        for kind in ("Target", "Schedule", "MetricAlarm", "Key"):
            changed = _with(changed, kind, lambda i: i.update(region=region))
        line = _line(estimate(changed), "SageMaker endpoint")
        assert line.expected == pytest.approx(price * 2 * 730), itype
        assert line.max == pytest.approx(price * 4 * 730), itype
        assert f"{itype} × 2-4 instance(s)" in line.item and region in line.rate


def test_sagemaker_example_by_hand(states):
    est = estimate(states[0]["diabetes-progression-prod"])
    # eu-west-1 ml.m5.large 0.1277 USD/h: 2 instances (min) and 4 (max), 730 h.
    assert _line(est, "SageMaker endpoint").expected == pytest.approx(186.442)
    assert _line(est, "SageMaker endpoint").max == pytest.approx(372.884)
    # Two alarms at 0.10; the retrain job: once a month (cron(0 4 1 * ? *)), 600 s expected
    # and 3600 s (MaxRuntimeInSeconds) at most on ml.m5.large Processing (0.1277).
    retrain = _line(est, "SageMaker processing job diabetes-progression-prod-retrain")
    assert retrain.expected == pytest.approx(0.1277 * 600 / 3600)
    assert retrain.max == pytest.approx(0.1277)
    alarms = [line for line in est.lines if line.item.startswith("CloudWatch alarm")]
    assert [a.expected for a in alarms] == [0.1, 0.1]
    assert est.team == "clinical-ml" and est.prices_date == SNAPSHOT["publication_date"]
    assert est.expected == pytest.approx(sum(line.expected for line in est.lines))


def test_kubernetes_rates_by_hand(states):
    state = states[0]["fraud-detector-prod"]  # 500m + 1Gi per replica, HPA 3-10
    est = estimate(state)
    line = _line(est, "kubernetes Deployment fraud-detector")
    hourly = 0.5 * 0.031611 + 1 * 0.004237
    assert line.expected == pytest.approx(hourly * 3 * 730)
    assert line.max == pytest.approx(hourly * 10 * 730)
    assert "3-10 replica(s)" in line.item and "0.031611 USD/vCPU-h" in line.rate
    # The hourly monitor CronJob (no deadline): 730 runs of the assumed 600 s.
    monitor = _line(est, "kubernetes CronJob fraud-detector-monitor")
    assert monitor.expected == pytest.approx(hourly * 730 * 600 / 3600)
    # Rates from modelops.yaml replace the defaults, and the line says where they come from.
    rates = KubernetesRates(0.05, 0.01, None, "modelops.yaml kubernetes_rates")
    line = _line(estimate(state, rates=rates), "kubernetes Deployment")
    assert line.expected == pytest.approx((0.5 * 0.05 + 0.01) * 3 * 730)
    assert "modelops.yaml" in line.rate


def test_gpu_without_rate_names_the_field(states):
    def gpu(inputs):
        c = inputs["spec"]["template"]["spec"]["containers"][0]
        c["resources"]["requests"]["nvidia.com/gpu"] = "1"

    state = _with(states[0]["fraud-detector-prod"], "Deployment", gpu)
    est = estimate(state)  # default rate 0.95 USD/GPU-h
    hourly = 0.5 * 0.031611 + 0.004237 + 0.95
    assert _line(est, "kubernetes Deployment").expected == pytest.approx(hourly * 3 * 730)
    with pytest.raises(CostError) as err:
        estimate(state, rates=KubernetesRates(0.03, 0.004, None))
    assert err.value.path == "spec.target.resources.requests.gpu"
    assert "gpu_hour" in err.value.message and "cpu_hour 0.03" in err.value.message


def test_unknown_instance_type_and_region_are_findings_not_zero(states):
    state = states[0]["diabetes-progression-prod"]

    def itype(inputs):
        inputs["productionVariants"][0]["instanceType"] = "ml.z9.huge"

    with pytest.raises(CostError) as err:
        estimate(_with(state, "EndpointConfiguration", itype))
    assert err.value.path == "spec.target.instance_type"
    assert "ml.z9.huge" in err.value.message and "ml.m5.large" in err.value.message
    moved = _with(state, "EndpointConfiguration", lambda i: i.update(region="sa-east-1"))
    with pytest.raises(CostError) as err:
        estimate(moved)
    assert err.value.path == "spec.target.region" and "eu-west-1" in err.value.message


def test_serverless_usage_default_stated_and_bad_usage_refused(states):
    state = states[0]["fraud-scorer-serverless-prod"]  # 2048 MB, eu-west-1
    gb_s = SNAPSHOT["regions"]["eu-west-1"]["sagemaker_serverless"]["gb_second"]
    line = _line(estimate(state), "SageMaker serverless")
    expected = DEFAULT_USAGE["requests_per_month"] * DEFAULT_USAGE["mean_duration_ms"] / 1000 * 2
    assert line.expected == pytest.approx(expected * gb_s)
    assert "default usage" in line.item
    usage = {"requests_per_month": 2_000_000, "mean_duration_ms": 8}
    line = _line(estimate(state, usage=usage), "SageMaker serverless")
    assert line.expected == pytest.approx(2_000_000 * 0.008 * 2 * gb_s)
    for bad in (-1, math.nan, "many", True):
        with pytest.raises(CostError) as err:
            estimate(state, usage={"requests_per_month": bad, "mean_duration_ms": 8})
        assert err.value.path == "spec.cost.usage.requests_per_month"


def test_local_is_a_stated_zero_and_unpriced_kinds_are_counted(states):
    est = estimate(states[0]["fraud-detector-staging"])
    assert est.expected == est.max == 0 and "local" in est.lines[0].item
    assert estimate(states[0]["fraud-detector-prod"]).unpriced["Service"] == 1


@pytest.mark.parametrize(
    ("expr", "runs"),
    [
        ("0 * * * *", 730),
        ("*/15 * * * *", 4 * 730),
        ("0 3 * * 0", 730 / 24 / 7),
        ("0 3 * * MON-FRI", 730 / 24 * 5 / 7),
        ("@daily", 730 / 24),
        ("0 0 1 * *", 1),
        ("0 0 1 1 *", 1 / 12),
        ("cron(0 4 1 * ? *)", 1),
        ("cron(30 */6 * * ? *)", 4 * 730 / 24),
        ("rate(2 hours)", 365),
        ("at(2030-01-01T00:00:00)", 0),
        # EventBridge numbers weekdays from SUN=1: cron(... ? * 1 *) is the Unix '* * 0'
        ("cron(0 3 ? * 1 *)", 730 / 24 / 7),
        ("cron(0 3 ? * 2-6 *)", 730 / 24 * 5 / 7),
        ("cron(0 3 L * ? *)", 1),  # the last day: once a month
        ("cron(0 3 ? * MON#2 *)", 730 / 24 / 7),  # read as every Monday: an upper bound
        # a field starting with '*' is no restriction for cron's either-or rule: both apply
        ("0 0 * * MON", 730 / 24 / 7),
        ("0 0 1 * MON", 1 + 730 / 24 / 7 - 1 / 7),  # both restricted: either
    ],
)
def test_runs_per_month(expr, runs):
    assert runs_per_month(expr) == pytest.approx(runs)


@pytest.mark.parametrize(
    ("expr", "needle"),
    [
        ("0 3 * * 7", "day-of-week 7"),  # validate's parser, validate's message
        ("0 3 * *", "has 4 field(s)"),
        ("cron(0 3 * * ?)", "EventBridge has 6"),
        ("rate(0 hours)", "rate(N minutes|hours|days)"),
        ("rate(2 weeks)", "rate(N minutes|hours|days)"),
        ("cron(0 3 ? * 9 *)", "day-of-week 9 is out of range 0-6"),
    ],
)
def test_runs_per_month_refuses_what_the_spec_parser_refuses(expr, needle):
    with pytest.raises(ValueError, match=re.escape(needle)):
        runs_per_month(expr)


@pytest.mark.parametrize(
    ("edit", "key"),
    [
        (lambda d: d.pop("publication_date"), "publication_date"),
        (lambda d: d.update(publication_date="06/12/2026"), "publication_date"),
        (lambda d: d["regions"]["eu-west-1"]["sagemaker_hosting"].update({"m5": 1}), "'m5'"),
        (
            lambda d: d["regions"]["eu-west-1"]["sagemaker_hosting"].update({"ml.m5.large": -1}),
            "ml.m5.large",
        ),
        (
            lambda d: d["regions"]["us-east-1"]["sagemaker_serverless"].pop("gb_second"),
            "gb_second",
        ),
        (lambda d: d["regions"]["us-east-1"].pop("cloudwatch_alarm"), "cloudwatch_alarm"),
        (lambda d: d["regions"]["us-east-1"]["s3"].update(put_request="0.005"), "put_request"),
    ],
)
def test_malformed_snapshot_fails(edit, key):
    doc = copy.deepcopy(SNAPSHOT)
    edit(doc)
    with pytest.raises(PriceSnapshotError) as err:
        parse_prices(doc)
    assert key in err.value.message


def test_config_kubernetes_rates(tmp_path):
    (tmp_path / "modelops.yaml").write_text("kubernetes_rates: {cpu_hour: 0.05, gpu_hour: null}\n")
    config = load_config(tmp_path)
    rates = KubernetesRates.from_config(config)
    assert (rates.cpu_hour, rates.memory_gib_hour, rates.gpu_hour) == (
        0.05,
        DEFAULT_KUBERNETES_RATES["memory_gib_hour"],
        None,
    )
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "modelops.yaml").write_text("state_dir: .modelops\n")
    assert KubernetesRates.from_config(load_config(tmp_path / "other")).gpu_hour == 0.95
    for bad in ("{cpu_hour: -1}", "{cpu_hour: .nan}", "{cpu: 1}", "[1]"):
        (tmp_path / "modelops.yaml").write_text(f"kubernetes_rates: {bad}\n")
        with pytest.raises(Exception) as err:
            load_config(tmp_path)
        assert "kubernetes_rates" in str(err.value) and "modelops.yaml:1" in str(err.value)


def test_a_limit_stands_in_for_a_missing_request():
    state = DesiredState(
        "x-prod",
        "x",
        "prod",
        "kubernetes",
        resources=[
            Resource(
                "kubernetes:apps/v1:Deployment",
                "x",
                {
                    "metadata": {"name": "x", "labels": {"modelops.dev/team": "t"}},
                    "spec": {
                        "replicas": 2,
                        "template": {
                            "spec": {"containers": [{"resources": {"limits": {"cpu": "1"}}}]}
                        },
                    },
                },
            )
        ],
    )
    est = estimate(state)
    # A missing request is the limit (Kubernetes defaults it): 1 vCPU × 2 replicas.
    assert est.expected == est.max == pytest.approx(0.031611 * 2 * HOURS_PER_MONTH)
    assert est.team == "t"


def test_a_state_of_an_unknown_shape_is_a_cost_error_not_a_traceback(states):
    # A ledger record edited by hand: a replica count that is not a number.
    state = _with(
        states[0]["fraud-detector-prod"],
        "HorizontalPodAutoscaler",
        lambda i: i["spec"].update(minReplicas="many"),
    )
    with pytest.raises(CostError) as err:
        estimate(state)
    assert "fraud-detector-prod" in err.value.message and "many" in err.value.message

"""Argo Rollouts objects for a Kubernetes deployment whose rollout is judged by metrics.

With ``spec.target.rollout.analysis`` (strategy ``canary``) or strategy ``experiment``,
the whole rollout runs in the cluster after one merge: a ``Rollout`` (``workloadRef`` to
the Deployment, which is kept at zero replicas as the pod template's holder) walks the
steps, and an ``AnalysisTemplate`` checks the new version's pods every interval with
Prometheus queries over BentoML's request metrics and the service's model signals.
Without a service mesh Argo Rollouts weights traffic by replica counts (a canary at 10 %
of 3 pods is one pod in four); the plan says so (output ``rollout_note``).
Rationale and the query forms: ``docs/rollout.md``.
"""

from __future__ import annotations

from reconciler.spec.experiment import design_of
from reconciler.spec.model import Deployment
from stacks.common import (
    ENDPOINT_LABEL,
    HEALTH_PATHS,
    REQUEST_DURATION_METRIC,
    REQUEST_TOTAL_METRIC,
    STATUS_LABEL,
    k8s_name,
)

ROLLOUTS_API = "argoproj.io/v1alpha1"
#: kube-prometheus's Prometheus Service (the operator's governing service ``prometheus-operated``
#: in namespace ``monitoring``, port 9090), which the AnalysisTemplate queries.
PROMETHEUS_ADDRESS = "http://prometheus-operated.monitoring.svc.cluster.local:9090"
#: The pod label Argo Rollouts puts on each ReplicaSet's pods; the ServiceMonitor copies
#: it onto every scraped series (``podTargetLabels``), where Prometheus spells it with
#: underscores.
HASH_LABEL = "rollouts-pod-template-hash"
HASH_SERIES_LABEL = HASH_LABEL.replace("-", "_")
#: The model signals the generated service exposes on /metrics (``runtime/signals.py``):
#: counters of rows compared with the stable version and of equal labels among them, and
#: of scored rows and the sum of their top-class probabilities (a confidence-based accuracy
#: estimate: the mean top-class probability).
AGREEMENT_ROWS_METRIC = "modelops_agreement_rows_total"
AGREEMENT_EQUAL_METRIC = "modelops_agreement_equal_total"
CONFIDENCE_ROWS_METRIC = "modelops_confidence_rows_total"
CONFIDENCE_SUM_METRIC = "modelops_confidence_sum_total"
#: Where the service sends a copy of a request to compare labels: the stable Service.
STABLE_URL_ENV = "MODELOPS_STABLE_URL"
#: experiment: the new version's share of traffic while the experiment runs.
EXPERIMENT_WEIGHT = 50

MESH_NOTE = (
    "Argo Rollouts without a service mesh: traffic weights are approximated by replica "
    "counts of the stable and new ReplicaSets"
)


def rollout_note(dep: Deployment) -> str:
    """What the plan says about an Argo-managed rollout: :data:`MESH_NOTE`, and for an
    experiment its sample size (:func:`reconciler.spec.experiment.design_of`)."""
    design = design_of(dep)
    return MESH_NOTE + (f"; {design.note()}" if design is not None else "")


def argo_managed(dep: Deployment) -> bool:
    """Whether Argo Rollouts runs this deployment's rollout: a canary with analysis, or an
    experiment (``spec.target.rollout``)."""
    rollout = dep.get("spec.target.rollout") or {}
    strategy = rollout.get("strategy")
    return (strategy == "canary" and bool(rollout.get("analysis"))) or strategy == "experiment"


def _duration(seconds: int) -> str:
    return f"{int(seconds)}s"


def steps(dep: Deployment) -> list[dict]:
    """The Rollout's canary steps.

    canary: ``setWeight`` to each weight of ``rollout.steps`` below 100, each followed by
    a pause of ``analysis.pause_seconds`` (Argo's promotion to 100 % ends the rollout).
    experiment: ``setWeight`` :data:`EXPERIMENT_WEIGHT` and a pause without a duration,
    which holds the split until the verdict (``modelops`` status) is acted on with
    ``kubectl argo rollouts promote`` or ``abort``.
    """
    rollout = dep.get("spec.target.rollout") or {}
    if rollout.get("strategy") == "experiment":
        return [{"setWeight": EXPERIMENT_WEIGHT}, {"pause": {}}]
    analysis = rollout.get("analysis") or {}
    pause = analysis.get("pause_seconds")
    out: list[dict] = []
    for weight in rollout.get("steps") or [100]:
        if int(weight) >= 100:
            break
        out.append({"setWeight": int(weight)})
        out.append({"pause": {"duration": _duration(pause)}} if pause else {"pause": {}})
    return out


def _match(ns: str, service: str, requests: bool) -> str:
    """The label matchers of the new version's series (``requests``: BentoML's request
    metrics, health checks left out; the model signals have no endpoint label)."""
    match = f'namespace="{ns}",service="{service}",{HASH_SERIES_LABEL}="{{{{args.canary-hash}}}}"'
    if requests:
        match += f',{ENDPOINT_LABEL}!~"{"|".join(HEALTH_PATHS)}"'
    return match


def analysis_metrics(dep: Deployment, ns: str, service: str) -> list[dict]:
    """The AnalysisTemplate's metrics, one per ``rollout.analysis.metrics`` entry.

    Each reads the new version's pods only (``rollouts_pod_template_hash`` equal to the
    ``canary-hash`` argument), health checks left out, over a window of one interval:

    * ``error-rate``: share of 5xx answers, at most the threshold (no 5xx series: 0);
    * ``p99-latency``: ``histogram_quantile(0.99, …)`` of BentoML's request duration (s),
      at most the threshold in ms / 1000 (``from_slo``: ``serving.slo.p99_latency_ms``);
    * ``agreement``: equal labels / rows compared with the stable version, at least the
      threshold;
    * ``estimated-quality``: the mean top-class probability, at least the threshold.

    Every metric fails the analysis after ``failure_limit`` failed measurements.
    """
    analysis = dep.get("spec.target.rollout.analysis") or {}
    metrics = analysis.get("metrics") or {}
    interval = int(analysis.get("interval_seconds", 60))
    window = _duration(max(interval, 60))  # rate() needs two scrapes (30 s apart)
    match = _match(ns, service, True)

    def rate(metric: str, extra: str = "") -> str:
        selected = match if metric == REQUEST_TOTAL_METRIC else _match(ns, service, False)
        return f"sum(rate({metric}{{{selected}{extra}}}[{window}]))"

    out = []
    if "error_rate" in metrics:
        errors = rate(REQUEST_TOTAL_METRIC, f',{STATUS_LABEL}=~"5.."')
        out.append(
            (
                "error-rate",
                f"({errors} or vector(0)) / {rate(REQUEST_TOTAL_METRIC)}",
                f"result[0] <= {float(metrics['error_rate']):g}",
            )
        )
    if "p99_latency_ms" in metrics:
        ms = metrics["p99_latency_ms"]
        if ms == "from_slo":
            ms = dep.get("spec.serving.slo.p99_latency_ms")
        buckets = f"rate({REQUEST_DURATION_METRIC}_bucket{{{match}}}[{window}])"
        out.append(
            (
                "p99-latency",
                f"histogram_quantile(0.99, sum by (le) ({buckets}))",
                f"result[0] <= {float(ms) / 1000:g}",
            )
        )
    if "agreement" in metrics:
        out.append(
            (
                "agreement",
                f"{rate(AGREEMENT_EQUAL_METRIC)} / {rate(AGREEMENT_ROWS_METRIC)}",
                f"result[0] >= {float(metrics['agreement']):g}",
            )
        )
    if "estimated_quality" in metrics:
        out.append(
            (
                "estimated-quality",
                f"{rate(CONFIDENCE_SUM_METRIC)} / {rate(CONFIDENCE_ROWS_METRIC)}",
                f"result[0] >= {float(metrics['estimated_quality']):g}",
            )
        )
    limit = int(analysis.get("failure_limit", 0))
    return [
        {
            "name": name,
            "interval": _duration(interval),
            "failureLimit": limit,
            "successCondition": condition,
            "provider": {"prometheus": {"address": PROMETHEUS_ADDRESS, "query": query}},
        }
        for name, query, condition in out
    ]


def template_name(dep: Deployment) -> str:
    """The AnalysisTemplate's name: ``<name>-analysis``."""
    return k8s_name(dep.name, "analysis")


def rollout_spec(
    dep: Deployment,
    selector: dict,
    stable_service: str,
    canary_service: str,
    replicas: int | None,
    analysed: bool,
) -> dict:
    """The Rollout's ``spec``: ``workloadRef`` to the Deployment named like the deployment,
    the canary steps (:func:`steps`), the stable and canary Services (Argo Rollouts adds
    each ReplicaSet's hash to their selectors, so the stable one reaches the stable pods
    only), and, when ``analysed``, a background analysis from the first step with the new
    pods' hash as ``canary-hash``. ``replicas`` ``None`` leaves them to the autoscaler."""
    canary: dict = {
        "stableService": stable_service,
        "canaryService": canary_service,
        "maxSurge": "25%",
        "maxUnavailable": 0,
        "steps": steps(dep),
    }
    if analysed:
        canary["analysis"] = {
            "templates": [{"templateName": template_name(dep)}],
            "startingStep": 1,
            "args": [{"name": "canary-hash", "valueFrom": {"podTemplateHashValue": "Latest"}}],
        }
    spec: dict = {
        "revisionHistoryLimit": 5,
        "selector": {"matchLabels": dict(selector)},
        "workloadRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": dep.name},
        "strategy": {"canary": canary},
    }
    if replicas is not None:
        spec["replicas"] = replicas
    return spec


def template_spec(dep: Deployment, ns: str, service: str) -> dict:
    """The AnalysisTemplate's ``spec``: the ``canary-hash`` argument and the metrics."""
    return {"args": [{"name": "canary-hash"}], "metrics": analysis_metrics(dep, ns, service)}


__all__ = [
    "MESH_NOTE",
    "ROLLOUTS_API",
    "analysis_metrics",
    "argo_managed",
    "rollout_note",
    "rollout_spec",
    "steps",
    "template_name",
    "template_spec",
]

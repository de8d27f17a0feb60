"""What ``spec.target.rollout`` must say, checked at validate time.

A rollout is carried out by the target: on Kubernetes by Argo Rollouts (a ``Rollout`` and
an ``AnalysisTemplate`` whose Prometheus queries read the served model's metrics), on
SageMaker by the endpoint's deployment guardrails (CloudWatch alarms, shadow variants),
locally by the weighted router. Each target can measure only some signals and run only
some strategies; a spec that asks for more would be accepted here and then silently not
enforced, so every such request is an error at its own file:line:col, naming what would
be valid (rationale: ``docs/rollout.md``).
"""

from __future__ import annotations

from reconciler.core.diagnostics import Diagnostic
from reconciler.spec.experiment import BASELINE_FIELDS, MAX_SAMPLE, design_of
from reconciler.spec.model import Deployment

ROLLOUT = "spec.target.rollout"
ANALYSIS = f"{ROLLOUT}.analysis"
METRICS = f"{ANALYSIS}.metrics"

#: Targets that can copy live traffic to a second version and capture its answers:
#: SageMaker shadow variants (``ShadowProductionVariants``). Kubernetes would need a
#: service mesh (Argo Rollouts mirrors only through one), which modelops does not render.
SHADOW_TARGETS = ("aws-sagemaker",)

#: Targets that can hold a weighted A/B split for the duration of an experiment: an Argo
#: Rollout paused at 50 percent until the verdict promotes or aborts it.
EXPERIMENT_TARGETS = ("kubernetes",)

#: Analysis metric -> the targets that can measure it during a canary. Kubernetes: Argo
#: Rollouts queries Prometheus (BentoML's request metrics, the service's model-signal
#: gauges); local: the router reads both servers; SageMaker: CloudWatch alarms on the
#: endpoint's 5xx and latency metrics and the quality metric the service emits
#: (agreement needs the stable version's answer to the same request, which a SageMaker
#: canary variant never sees).
METRIC_TARGETS: dict[str, tuple[str, ...]] = {
    "error_rate": ("kubernetes", "local", "aws-sagemaker"),
    "p99_latency_ms": ("kubernetes", "local", "aws-sagemaker"),
    "agreement": ("kubernetes", "local"),
    "estimated_quality": ("kubernetes", "local", "aws-sagemaker"),
    # labels joined to the new version's captured predictions while the canary runs: the
    # local engine reads the capture and the label store at each check; Argo Rollouts'
    # Prometheus queries and SageMaker's CloudWatch alarms see no labels
    "realized_quality": ("local",),
}

#: Metrics that compare predicted labels: classifiers only.
CLASSIFIER_METRICS = ("agreement", "estimated_quality")

#: ``realized_quality.metric`` -> the model task that has it (``monitoring.quality``'s
#: names; the metrics where higher is better); ``roc_auc`` also needs a binary classifier
#: with probabilities, which only the served answers show (not judged: no value).
REALIZED_METRICS = {
    "accuracy": "classification",
    "precision": "classification",
    "recall": "classification",
    "f1": "classification",
    "roc_auc": "classification",
    "r2": "regression",
}


def rollout_diagnostics(dep: Deployment) -> list[Diagnostic]:
    """The rollout rules of one resolved deployment.

    Checks: ``analysis`` only with ``strategy: canary`` (metrics the target can measure
    per interval) or ``shadow`` (metrics the shadow report computes:
    :func:`_shadow_analysis`), ``pause_seconds >= interval_seconds``, each metric one the target can
    measure (and the model can give: agreement and the quality estimate need a
    classifier, the estimate also ``monitoring.reference``; ``p99_latency_ms: from_slo``
    needs ``serving.slo.p99_latency_ms``; ``realized_quality`` needs labels, capture and a
    metric of the model's task: :func:`_realized`); ``shadow`` only on :data:`SHADOW_TARGETS`,
    ``experiment`` only on :data:`EXPERIMENT_TARGETS` with a primary metric, a minimum
    detectable effect and a baseline (given or defaulted, :data:`BASELINE_FIELDS`);
    warnings: ``shadow:``/``experiment:`` settings without their strategy, canary
    ``steps`` with a strategy that has none (an overlay may switch the strategy for one
    environment: the base's settings are then unused, not wrong), ``step`` or
    ``wait_minutes`` beside an ``analysis`` (which walks the steps and sets the pauses).

    Returns:
        Diagnostics (code ``rollout``), each at the offending field with what would be valid.
    """
    rollout = dep.get(ROLLOUT)
    if not isinstance(rollout, dict):
        return []
    out: list[Diagnostic] = []

    def err(path: str, message: str, severity: str = "error") -> None:
        out.append(
            Diagnostic(
                dep.locate(path), path, f"{message} [env {dep.env}]", severity, code="rollout"
            )
        )

    strategy = rollout.get("strategy")
    platform = dep.platform
    for section, wanted in (("shadow", "shadow"), ("experiment", "experiment")):
        if section in rollout and strategy != wanted:
            err(
                f"{ROLLOUT}.{section}",
                f"rollout.{section} applies only to strategy: {wanted} (strategy is "
                f"{strategy!r}), so it is not used here; set strategy: {wanted} or remove "
                f"rollout.{section}",
                "warning",
            )
    if strategy in ("shadow", "experiment") and "steps" in rollout:
        err(
            f"{ROLLOUT}.steps",
            f"strategy {strategy} has no traffic steps (steps are canary weights); "
            "they are not used; remove steps or use strategy: canary",
            "warning",
        )
    if strategy == "shadow" and platform not in SHADOW_TARGETS:
        err(
            f"{ROLLOUT}.strategy",
            f"a shadow rollout needs a target that can mirror traffic; {platform} cannot; "
            f"targets that can: {', '.join(SHADOW_TARGETS)}",
        )
    if strategy == "experiment":
        _experiment(dep, rollout, err)
    if "analysis" in rollout:
        _analysis(dep, rollout, err)
        for field, why in (
            ("step", "the steps are walked after one merge, each gated by the analysis"),
            ("wait_minutes", "analysis.pause_seconds is the time at each step"),
        ):
            if field in rollout:
                err(
                    f"{ROLLOUT}.{field}",
                    f"rollout.{field} is not used with rollout.analysis ({why}); remove it",
                    "warning",
                )
    return out


def _experiment(dep: Deployment, rollout: dict, err) -> None:
    platform = dep.platform
    if platform not in EXPERIMENT_TARGETS:
        err(
            f"{ROLLOUT}.strategy",
            f"an experiment needs a target that holds an A/B split until the verdict; "
            f"{platform} cannot; targets that can: {', '.join(EXPERIMENT_TARGETS)}",
        )
    experiment = rollout.get("experiment")
    where = f"{ROLLOUT}.experiment" if isinstance(experiment, dict) else f"{ROLLOUT}.strategy"
    experiment = experiment if isinstance(experiment, dict) else {}
    metric = experiment.get("primary_metric")
    if metric is None:
        err(
            where,
            "an experiment needs rollout.experiment.primary_metric (accuracy or error_rate), "
            "the per-request outcome the verdict compares",
        )
    if "minimum_detectable_effect" not in experiment:
        err(
            where,
            "an experiment needs rollout.experiment.minimum_detectable_effect (e.g. 0.01: one "
            "percentage point), from which its sample size is computed before it starts",
        )
    if metric == "accuracy":
        if dep.get("spec.monitoring.labels") is None:
            err(
                f"{ROLLOUT}.experiment.primary_metric",
                "primary_metric accuracy compares predictions with labels, and this "
                "deployment receives none; set monitoring.labels or use error_rate",
            )
        if dep.get("spec.model.task") == "regression":
            err(
                f"{ROLLOUT}.experiment.primary_metric",
                "primary_metric accuracy needs a classifier (model.task is regression); "
                "use error_rate",
            )
    if metric == "error_rate":
        err(
            f"{ROLLOUT}.experiment.primary_metric",
            "the split and the sample size are rendered, but the quality job judges only "
            "accuracy experiments (captured answers hold no 5xx): read the per-version 5xx "
            "counts from the target's request metrics for the verdict",
            "warning",
        )
    if metric in BASELINE_FIELDS and "baseline" not in experiment:
        if not isinstance(dep.get(BASELINE_FIELDS[metric]), int | float):
            err(
                f"{ROLLOUT}.experiment.primary_metric",
                f"the sample size needs the stable version's {metric}: set "
                f"rollout.experiment.baseline (a share between 0 and 1) or "
                f"{BASELINE_FIELDS[metric].removeprefix('spec.')}",
            )
    design = design_of(dep)
    if design is not None and design.sample_size >= MAX_SAMPLE:
        err(
            f"{ROLLOUT}.experiment.minimum_detectable_effect",
            f"an effect of {design.mde:g} on a baseline of {design.baseline:g} needs more "
            f"than {MAX_SAMPLE:,} requests per arm; give a larger minimum_detectable_effect",
        )


def _analysis(dep: Deployment, rollout: dict, err) -> None:
    analysis = rollout.get("analysis")
    if not isinstance(analysis, dict):
        return
    strategy = rollout.get("strategy")
    platform = dep.platform
    if strategy not in ("canary", "shadow"):
        err(
            ANALYSIS,
            f"rollout.analysis gates the steps of a canary (or judges a shadow); strategy "
            f"{strategy!r} has neither: set strategy: canary or shadow, or remove analysis",
        )
        return
    if strategy == "shadow":
        _shadow_analysis(dep, analysis, err)
        return
    if dep.get("spec.serving.mode") == "batch":
        err(
            ANALYSIS,
            "serving.mode batch serves no traffic to analyse; remove analysis or serve realtime",
        )
        return
    interval = analysis.get("interval_seconds")
    pause = analysis.get("pause_seconds")
    if isinstance(interval, int) and isinstance(pause, int) and pause < interval:
        err(
            f"{ANALYSIS}.pause_seconds",
            f"pause_seconds {pause} is shorter than interval_seconds {interval}, so a step "
            f"would end before its first check; give at least {interval}",
        )
    metrics = analysis.get("metrics")
    if not isinstance(metrics, dict):
        return
    classifier = dep.get("spec.model.task") != "regression"
    for name, value in metrics.items():
        path = f"{METRICS}.{name}"
        targets = METRIC_TARGETS.get(name, ())
        if platform not in targets:
            err(
                path,
                f"metric {name} cannot be measured on a {platform} target; targets that can: "
                f"{', '.join(targets)}",
            )
            continue
        if name in CLASSIFIER_METRICS and not classifier:
            err(
                path,
                f"metric {name} compares predicted labels and this model is a regressor "
                "(model.task: regression); use error_rate or p99_latency_ms",
            )
            continue
        if name == "estimated_quality" and not dep.get("spec.monitoring.reference"):
            err(
                path,
                "metric estimated_quality needs monitoring.reference (the data the "
                "model's confidence is judged against by the monitoring job) and it is not "
                "set; set it or remove the metric",
            )
        if value == "from_slo" and dep.get("spec.serving.slo.p99_latency_ms") is None:
            err(
                path,
                "p99_latency_ms: from_slo reads serving.slo.p99_latency_ms, which is not set; "
                "set it or give a number of ms",
            )
        if name == "realized_quality" and isinstance(value, dict):
            _realized(dep, path, value, err)


def _realized(dep: Deployment, path: str, value: dict, err) -> None:
    """``realized_quality`` needs labels to join (``monitoring.labels``), the new version's
    predictions captured (``monitoring.capture`` on), and a metric of the model's task."""
    task = "regression" if dep.get("spec.model.task") == "regression" else "classification"
    metric = value.get("metric")
    wanted = REALIZED_METRICS.get(metric) if isinstance(metric, str) else None
    if wanted is not None and wanted != task:
        valid = ", ".join(m for m, t in REALIZED_METRICS.items() if t == task)
        err(
            f"{path}.metric",
            f"realized_quality metric {metric} is for a {wanted} model and this one is a "
            f"{task} model; use one of {valid}",
        )
    monitoring = dep.get("spec.monitoring")
    if isinstance(monitoring, dict) and monitoring.get("enabled") is False:
        err(
            path,
            "metric realized_quality joins labels to captured predictions and monitoring is "
            "disabled (monitoring.enabled: false); enable it or remove the metric",
        )
        return
    if not dep.get("spec.monitoring.labels.sink"):
        err(
            path,
            "metric realized_quality needs monitoring.labels (where the labels arrive, "
            "joined to the predictions by id) and it is not set; set monitoring.labels.sink "
            "or remove the metric",
        )
    capture = dep.get("spec.monitoring.capture")
    if not isinstance(capture, dict) or capture.get("enabled") is False:
        err(
            path,
            "metric realized_quality joins labels to the new version's captured predictions "
            "and monitoring.capture is not enabled; set monitoring.capture (sink, "
            "sample_rate) or remove the metric",
        )


def _shadow_analysis(dep: Deployment, analysis: dict, err) -> None:
    """A shadow is judged by its report (``reconciler.monitor.shadow``) on captured pairs:
    agreement, the shadow's p99 latency and its quality estimate; a shadow's errors
    never reach a client, and nothing is checked per interval."""
    for key in ("interval_seconds", "pause_seconds", "failure_limit"):
        if key in analysis:
            err(
                f"{ANALYSIS}.{key}",
                f"a shadow has no steps to pause or checks to count, so {key} is not used; "
                "remove it",
                "warning",
            )
    metrics = analysis.get("metrics")
    classifier = dep.get("spec.model.task") != "regression"
    for name, value in (metrics or {}).items():
        path = f"{METRICS}.{name}"
        if name == "error_rate":
            err(
                path,
                "the shadow report compares the answers both versions gave to the same "
                "requests, and a shadow's errors reach no client; judge it by agreement, "
                "p99_latency_ms or estimated_quality",
            )
        elif name == "realized_quality":
            err(
                path,
                "the shadow report judges captured pairs without labels; realized_quality "
                "gates a canary only; judge a shadow by agreement, p99_latency_ms or "
                "estimated_quality",
            )
        elif name in CLASSIFIER_METRICS and not classifier:
            err(path, f"metric {name} compares predicted labels and this model is a regressor")
        elif value == "from_slo" and dep.get("spec.serving.slo.p99_latency_ms") is None:
            err(path, "p99_latency_ms: from_slo reads serving.slo.p99_latency_ms, which is not set")

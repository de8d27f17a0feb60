"""Hostile rollouts: steps, analysis, shadow and experiment settings no target can honour.

``fraud-detector`` is a classifier with monitoring.reference, on Kubernetes in prod and
local in staging; ``diabetes-progression`` a regressor on SageMaker in prod, local in
staging. Each case replaces the spec's one-line ``rollout`` with a block (the block starts
on the rollout's own line, so the positions below are the block's lines).
"""

from __future__ import annotations

from hostile.base import DIABETES, FRAUD, VALIDATE_DIABETES, VALIDATE_FRAUD, edit
from hostile.case import Case

FRAUD_ROLLOUT = "    rollout: {strategy: canary, steps: [10, 50, 100], step: 0}\n"
FRAUD_LINE = 44
DIABETES_ROLLOUT = "    rollout: {strategy: canary, steps: [10, 100]}\n"
DIABETES_LINE = 36


def _block(strategy="canary", steps="[10, 50, 100]", analysis=None, extra=None) -> str:
    """A rollout block: line +0 ``rollout:``, +1 strategy, +2 steps (when given), then
    analysis (interval, pause, failure_limit, metrics...) and any extra lines."""
    lines = ["    rollout:", f"      strategy: {strategy}"]
    if steps:
        lines.append(f"      steps: {steps}")
    if analysis is not None:
        interval, pause, metrics = analysis
        lines += [
            "      analysis:",
            f"        interval_seconds: {interval}",
            f"        pause_seconds: {pause}",
            "        failure_limit: 1",
            "        metrics:",
        ]
        lines += [f"          {name}: {value}" for name, value in metrics]
    lines += extra or []
    return "\n".join(lines) + "\n"


def _fraud(block: str, *more: tuple[str, str]) -> str:
    body = edit(FRAUD, FRAUD_ROLLOUT, block)
    for old, new in more:
        body = body.replace(old, new, 1)
    return body


def _diabetes(block: str) -> str:
    return edit(DIABETES, DIABETES_ROLLOUT, block)


GOOD_METRICS = [
    ("error_rate", 0.01),
    ("p99_latency_ms", "from_slo"),
    ("agreement", 0.95),
    ("estimated_quality", 0.8),
]


def cases() -> list[Case]:
    """Every rollout case."""
    line = FRAUD_LINE
    rows = [
        # (name, files, argv, exit, contains)
        (
            "steps-not-ending-at-100",
            {FRAUD: _fraud(_block(steps="[10, 50, 90]"))},
            VALIDATE_FRAUD,
            1,
            (f"{FRAUD}:{line + 2}:", "spec.target.rollout.steps", "end at 100"),
        ),
        (
            "steps-descending",
            {FRAUD: _fraud(_block(steps="[50, 10, 100]"))},
            VALIDATE_FRAUD,
            1,
            (f"{FRAUD}:{line + 2}:", "ascending"),
        ),
        (
            "pause-shorter-than-interval",
            {FRAUD: _fraud(_block(analysis=(30, 10, [("error_rate", 0.01)])))},
            VALIDATE_FRAUD,
            1,
            (f"{FRAUD}:{line + 5}:", "analysis.pause_seconds", "at least 30"),
        ),
        (
            "interval-zero",
            {FRAUD: _fraud(_block(analysis=(0, 10, [("error_rate", 0.01)])))},
            VALIDATE_FRAUD,
            1,
            (f"{FRAUD}:{line + 4}:", "interval_seconds", "at least 1"),
        ),
        (
            "error-rate-above-one",
            {FRAUD: _fraud(_block(analysis=(30, 60, [("error_rate", 5)])))},
            VALIDATE_FRAUD,
            1,
            (f"{FRAUD}:{line + 8}:", "metrics.error_rate", "at most 1"),
        ),
        (
            "latency-word-not-from-slo",
            {FRAUD: _fraud(_block(analysis=(30, 60, [("p99_latency_ms", "slo")])))},
            VALIDATE_FRAUD,
            1,
            (f"{FRAUD}:{line + 8}:", "from_slo"),
        ),
        (
            "unknown-metric",
            {FRAUD: _fraud(_block(analysis=(30, 60, [("accuracy", 0.9)])))},
            VALIDATE_FRAUD,
            1,
            (f"{FRAUD}:{line + 8}:", "unknown field 'accuracy'", "agreement"),
        ),
        (
            "latency-from-slo-without-slo",
            {
                FRAUD: _fraud(
                    _block(analysis=(30, 60, [("p99_latency_ms", "from_slo")])),
                    (", p99_latency_ms: 200}", "}"),
                )
            },
            VALIDATE_FRAUD,
            1,
            (f"{FRAUD}:{line + 8}:", "serving.slo.p99_latency_ms"),
        ),
        (
            "estimated-quality-without-reference",
            {
                FRAUD: _fraud(
                    _block(analysis=(30, 60, [("estimated_quality", 0.8)])),
                    ("    reference: examples/fraud/reference.parquet\n", ""),
                )
            },
            VALIDATE_FRAUD,
            1,
            (f"{FRAUD}:{line + 8}:", "monitoring.reference"),
        ),
        (
            "agreement-on-a-regressor",
            {
                DIABETES: _diabetes(
                    _block(steps="[10, 100]", analysis=(30, 60, [("agreement", 0.9)]))
                )
            },
            VALIDATE_DIABETES,
            1,
            (f"{DIABETES}:{DIABETES_LINE + 8}:", "regressor", "[env staging]"),
        ),
        (
            "agreement-on-sagemaker",
            {
                DIABETES: _diabetes(
                    _block(steps="[10, 100]", analysis=(30, 60, [("agreement", 0.9)]))
                )
            },
            VALIDATE_DIABETES,
            1,
            ("cannot be measured on a aws-sagemaker target", "kubernetes, local", "[env prod]"),
        ),
        (
            "realized-quality-without-labels",
            {
                FRAUD: _fraud(
                    _block(
                        analysis=(30, 60, [("realized_quality", "{metric: accuracy, min: 0.9}")])
                    )
                )
            },
            VALIDATE_FRAUD,
            1,
            (
                f"{FRAUD}:{line + 8}:",
                "needs monitoring.labels",
                "[env staging]",
                "cannot be measured on a kubernetes target; targets that can: local [env prod]",
            ),
        ),
        (
            "realized-quality-metric-of-another-task",
            {
                DIABETES: _diabetes(
                    _block(
                        steps="[10, 100]",
                        analysis=(30, 60, [("realized_quality", "{metric: accuracy, min: 0.9}")]),
                    )
                )
            },
            VALIDATE_DIABETES,
            1,
            (f"{DIABETES}:{DIABETES_LINE + 8}:", "is a regression model; use one of r2"),
        ),
        (
            "analysis-without-canary",
            {FRAUD: _fraud(_block(strategy="blue-green", analysis=(30, 60, GOOD_METRICS)))},
            VALIDATE_FRAUD,
            1,
            (f"{FRAUD}:{line + 3}:", "set strategy: canary"),
        ),
        (
            "experiment-without-primary-metric",
            {
                FRAUD: _fraud(
                    _block(
                        strategy="experiment",
                        steps=None,
                        extra=["      experiment: {minimum_detectable_effect: 0.01}"],
                    )
                )
            },
            VALIDATE_FRAUD,
            1,
            (f"{FRAUD}:{line + 2}:", "primary_metric", "accuracy or error_rate"),
        ),
        (
            "experiment-accuracy-without-labels",
            {
                FRAUD: _fraud(
                    _block(
                        strategy="experiment",
                        steps=None,
                        extra=[
                            "      experiment: {primary_metric: accuracy, "
                            "minimum_detectable_effect: 0.01, baseline: 0.9}"
                        ],
                    )
                )
            },
            VALIDATE_FRAUD,
            1,
            ("monitoring.labels", "use error_rate"),
        ),
        (
            "experiment-effect-too-small",
            {
                FRAUD: _fraud(
                    _block(
                        strategy="experiment",
                        steps=None,
                        extra=[
                            "      experiment: {primary_metric: error_rate, "
                            "minimum_detectable_effect: 0.0000001}"
                        ],
                    )
                )
            },
            VALIDATE_FRAUD,
            1,
            ("experiment.minimum_detectable_effect", "requests per arm", "prod]"),
        ),
        (
            "experiment-on-local",
            {
                FRAUD: _fraud(
                    _block(
                        strategy="experiment",
                        steps=None,
                        extra=[
                            "      experiment: {primary_metric: error_rate, "
                            "minimum_detectable_effect: 0.005}"
                        ],
                    )
                )
            },
            VALIDATE_FRAUD,
            1,
            (f"{FRAUD}:{line + 1}:", "targets that can: kubernetes", "[env staging]"),
        ),
        (
            "shadow-on-kubernetes",
            {
                FRAUD: _fraud(
                    _block(
                        strategy="shadow", steps=None, extra=["      shadow: {sample_percent: 20}"]
                    )
                )
            },
            VALIDATE_FRAUD,
            1,
            (f"{FRAUD}:{line + 1}:", "cannot", "targets that can: aws-sagemaker"),
        ),
        (
            "shadow-judged-by-error-rate",
            {
                DIABETES: _diabetes(
                    _block(strategy="shadow", steps=None, analysis=(30, 60, [("error_rate", 0.01)]))
                )
            },
            VALIDATE_DIABETES,
            1,
            (f"{DIABETES}:{DIABETES_LINE + 7}:", "reach no client", "agreement"),
        ),
        (
            "shadow-sample-zero",
            {
                DIABETES: _diabetes(
                    _block(
                        strategy="shadow", steps=None, extra=["      shadow: {sample_percent: 0}"]
                    )
                )
            },
            VALIDATE_DIABETES,
            1,
            (f"{DIABETES}:{DIABETES_LINE + 2}:", "sample_percent", "greater than 0"),
        ),
    ]
    out = [
        Case(
            name=f"rollout-{name}",
            klass="rollout",
            files=files,
            argv=argv,
            exit=code,
            contains=needles,
        )
        for name, files, argv, code, needles in rows
    ]
    # accepted: a full canary analysis on both of fraud-detector's targets, and a shadow on
    # diabetes-progression's SageMaker prod (its staging keeps the base's canary)
    out.append(
        Case(
            name="rollout-valid-canary-analysis",
            klass="rollout-valid",
            files={FRAUD: _fraud(_block(analysis=(30, 60, GOOD_METRICS)))},
            argv=VALIDATE_FRAUD,
            exit=0,
            positioned=False,
        )
    )
    # accepted with a warning each: the one-commit-per-step fields beside an analysis,
    # which walks the steps and sets the pauses itself
    out.append(
        Case(
            name="rollout-step-and-wait-minutes-beside-an-analysis",
            klass="rollout-valid",
            files={
                FRAUD: _fraud(
                    _block(
                        analysis=(30, 60, [("error_rate", 0.01)]),
                        extra=["      step: 1", "      wait_minutes: 5"],
                    )
                )
            },
            argv=VALIDATE_FRAUD,
            exit=0,
            contains=(
                f"{FRAUD}:{line + 9}:",
                "spec.target.rollout.step: rollout.step is not used with rollout.analysis",
                f"{FRAUD}:{line + 10}:",
                "rollout.wait_minutes is not used with rollout.analysis",
            ),
        )
    )
    out.append(
        Case(
            name="rollout-valid-shadow-on-sagemaker",
            klass="rollout-valid",
            files={
                DIABETES: edit(
                    DIABETES,
                    "    prod: {}\n",
                    "    prod:\n      target:\n        rollout: {strategy: shadow, "
                    "shadow: {sample_percent: 20}}\n",
                )
            },
            argv=VALIDATE_DIABETES,
            exit=0,
            positioned=False,
            contains=("warning", "no traffic steps"),
        )
    )
    return out

"""Hostile schedules: each checked in the dialect of the target that runs it.

``fraud-detector`` runs on Kubernetes in prod and locally in staging (Unix cron, day of
week 0-6); ``diabetes-progression`` on SageMaker in prod (EventBridge Scheduler).
"""

from __future__ import annotations

from hostile.base import DIABETES, FRAUD, POLICY_PROD, VALIDATE_DIABETES, VALIDATE_FRAUD, edit
from hostile.case import Case

FRAUD_MONITOR = 'schedule: "0 * * * *"'
DIABETES_RETRAIN = 'schedule: "0 4 1 * *"'

# refused by every target: (expression, what the message must say)
INVALID = [
    ("0 3 * * 7", "write 0 (or SUN)"),
    ("0 3 * * 1-7", "day-of-week 7"),
    ("0 3 * * 0,7", "day-of-week 7"),
    ("60 * * * *", "minute 60 is out of range"),
    ("-1 * * * *", "minute"),
    ("0 24 * * *", "hour 24 is out of range"),
    ("0 0 0 * *", "day-of-month 0"),
    ("0 0 32 * *", "day-of-month 32"),
    ("0 0 * 0 *", "month 0"),
    ("0 0 * 13 *", "month 13"),
    ("0 0 * JANUARY *", "month 'JANUARY'"),
    ("0 0 * * FUNDAY", "day-of-week 'FUNDAY'"),
    ("0 0 * * 5-1", "starts after it ends"),
    ("*/0 * * * *", "step /0"),
    ("0 0 * *", "too short"),  # the schema's minimum length, before the cron check
    ("0 0 * * * *", "has 6 field(s)"),
    ("", "too short"),
    ("@daily", "too short"),
    ("every hour", "has 2 field(s)"),
    ("0 0 ? * MON", "EventBridge syntax"),
    ("0 0 L * *", "day-of-month 'L'"),
    ("0 0 * * 1#2", "day-of-week"),
    ("0 0 31 2 *", "never runs"),
    ("0 0 30 2 *", "never runs"),
    ("0 0 31 2,4 *", "never runs"),
    ("0 0 31 4,6,9,11 *", "never runs"),
    ("0 0 30,31 FEB *", "never runs"),
    ("0 0 31 */2 *", ""),  # Jan, Mar, May...: valid (runs) - see VALID
]
INVALID = [(e, n) for e, n in INVALID if n]
# accepted (exit 0) on both dialects
VALID = ["0 0 31 */2 *", "0 0 29 2 *", "15 */6 * * *", "0 9-17 * * MON-FRI", "5/15 * * * *"]
# EventBridge only (diabetes-progression prod): refused there, a warning or fine elsewhere
EVENTBRIDGE = [
    ("0 4 1 * MON", "cannot express"),
    ("0 4 1,15 * 1-5", "cannot express"),
    ("0 4 * * */2", "has a step"),
    ("0 4 * * MON-FRI/2", "has a step"),
]


def cases() -> list[Case]:
    """Every cron case."""
    out = []
    for index, (expr, needle) in enumerate(INVALID):
        out.append(
            Case(
                name=f"cron-k8s-{index:02d}",
                klass="cron",
                files={FRAUD: edit(FRAUD, FRAUD_MONITOR, f'schedule: "{expr}"')},
                argv=VALIDATE_FRAUD,
                exit=1,
                contains=(f"{FRAUD}:57:", "spec.monitoring.schedule", needle),
            )
        )
        out.append(
            Case(
                name=f"cron-eventbridge-{index:02d}",
                klass="cron",
                files={DIABETES: edit(DIABETES, DIABETES_RETRAIN, f'schedule: "{expr}"')},
                argv=VALIDATE_DIABETES,
                exit=1,
                contains=(f"{DIABETES}:53:", "spec.retraining.schedule", needle),
            )
        )
    for index, (expr, needle) in enumerate(EVENTBRIDGE):
        out.append(
            Case(
                name=f"cron-eventbridge-only-{index}",
                klass="cron-dialect",
                files={DIABETES: edit(DIABETES, DIABETES_RETRAIN, f'schedule: "{expr}"')},
                argv=VALIDATE_DIABETES,
                exit=1,
                contains=("aws-sagemaker target", needle, "[env prod]"),
            )
        )
    for index, expr in enumerate(VALID):
        for spec, old, argv in (
            (FRAUD, FRAUD_MONITOR, VALIDATE_FRAUD),
            (DIABETES, DIABETES_RETRAIN, VALIDATE_DIABETES),
        ):
            out.append(
                Case(
                    name=f"cron-valid-{index}-{spec.split('/')[1][:5]}",
                    klass="cron-valid",
                    files={spec: edit(spec, old, f'schedule: "{expr}"')},
                    argv=argv,
                    exit=0,
                    positioned=False,
                )
            )
    # a production deployment with monitoring that never runs must not pass policy check
    for expr in ("0 0 31 2,4 *", "0 0 30 2 *"):
        out.append(
            Case(
                name=f"cron-prod-monitoring-never-{expr.replace(' ', '_')}",
                klass="cron-policy",
                files={FRAUD: edit(FRAUD, FRAUD_MONITOR, f'schedule: "{expr}"')},
                argv=POLICY_PROD,
                exit=1,
                contains=("never runs",),
            )
        )
    return out

"""Hostile specs that only build, apply or retrain would refuse (validate must first)."""

from __future__ import annotations

from hostile.base import DIABETES, FRAUD, VALIDATE_DIABETES, VALIDATE_FRAUD, edit
from hostile.case import Case

AWS_SINKS = [".modelops/capture", "gs://bucket/capture", "capture", "https://example.com/c"]
SCHEMES = ["ftp://h/m.joblib", "http://h/m.joblib", "file:///m.joblib", "hdfs://nn/m.joblib"]
SCHEMES += ["sftp://h/m.joblib", "mlflow:/models/fraud", "git+ssh://h/r.git"]
FRAMEWORKS = ["xgboost", "lightgbm", "onnx", "pytorch"]


def cases() -> list[Case]:
    """Every build-rule case."""
    out = [
        Case(
            name=f"aws-capture-sink-{i}",
            klass="aws-capture-sink",
            files={
                DIABETES: edit(DIABETES, "sink: s3://clinical-ml-capture/diabetes", f"sink: {v}")
            },
            argv=VALIDATE_DIABETES,
            exit=1,
            contains=("spec.monitoring.capture.sink", "s3://"),
        )
        for i, v in enumerate(AWS_SINKS)
    ]
    out += [
        Case(
            name=f"model-uri-scheme-{i}",
            klass="model-uri-scheme",
            files={FRAUD: edit(FRAUD, "uri: examples/fraud/model.joblib", f"uri: {v}")},
            argv=VALIDATE_FRAUD,
            exit=1,
            contains=("spec.model.uri", "is not a scheme the build can fetch"),
        )
        for i, v in enumerate(SCHEMES)
    ]
    out += [
        Case(
            name=f"retraining-framework-{v}",
            klass="retraining-framework",
            files={FRAUD: edit(FRAUD, "framework: sklearn", f"framework: {v}")},
            argv=VALIDATE_FRAUD,
            exit=1,
            contains=("spec.retraining", f"not {v!r}"),
        )
        for v in FRAMEWORKS
    ]
    out += [
        Case(
            name=f"model-pickle-for-{v}",
            klass="model-load",
            files={FRAUD: edit(FRAUD, "framework: sklearn", f"framework: {v}")},
            argv=VALIDATE_FRAUD,
            exit=1,
            contains=("spec.model.uri", "is a Python pickle", "save_model("),
        )
        for v in ("lightgbm", "xgboost")
    ]
    return out

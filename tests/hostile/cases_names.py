"""Hostile names and values: what Kubernetes, SageMaker and the build would refuse.

Deployment names become Service names (RFC 1035: start with a letter), namespaces
DNS-1123 labels, label keys and values Kubernetes label syntax; CPU and memory are
Kubernetes quantities; a model URI must be something the build can fetch.
"""

from __future__ import annotations

from hostile.base import FRAUD, VALIDATE_FRAUD, edit
from hostile.case import Case

NAMES = ["7fraud", "0-scorer", "Fraud", "fraud_detector", "fraud-", "-fraud", "fraud.detector"]
NAMES += ["a" * 64, "fräud", "fraud detector", '""']
NAMESPACES = ["ML", "ml_team", "-ml", "ml-", "m" * 64, "ml.prod", '""']
LABELS = [
    ("cost center", "cc-1234"),
    ("cost-center", '"cc 1234"'),
    ("cost-center", '"-cc"'),
    ("cost-center", "x" * 64),
    ("-cost", "cc"),
    ("example.com/", "cc"),
    ("cost-center", '"ü"'),
]
CPU = ["2 cores", "1.5.5", "-1", "0x10", "1e", "m", '""', "1Gi?", "two"]
MEMORY = ["1GB", "1 Gi", "-1Gi", "Gi", "1.5.5Mi", "1gb", "0x400"]
URIS = ["ftp://host/model.joblib", "http://host/model.joblib", "file:///etc/passwd"]
URIS += ["../../etc/passwd", "/etc/passwd", "examples/fraud/missing.joblib", '""']


def _case(name: str, klass: str, old: str, new: str, field: str) -> Case:
    return Case(
        name=name,
        klass=klass,
        files={FRAUD: edit(FRAUD, old, new)},
        argv=VALIDATE_FRAUD,
        exit=1,
        contains=(field,),
    )


def cases() -> list[Case]:
    """Every names-and-values case."""
    out = [
        _case(f"name-{i}", "k8s-name", "name: fraud-detector", f"name: {v}", "metadata.name")
        for i, v in enumerate(NAMES)
    ]
    out += [
        _case(f"namespace-{i}", "k8s-name", "namespace: ml", f"namespace: {v}", "namespace")
        for i, v in enumerate(NAMESPACES)
    ]
    out += [
        _case(f"label-{i}", "k8s-label", "cost-center: cc-1234", f"{k}: {v}", "metadata.labels")
        for i, (k, v) in enumerate(LABELS)
    ]
    out += [
        _case(f"cpu-{i}", "k8s-quantity", "cpu: 500m", f"cpu: {v}", "requests.cpu")
        for i, v in enumerate(CPU)
    ]
    out += [
        _case(f"memory-{i}", "k8s-quantity", "memory: 2Gi", f"memory: {v}", "limits.memory")
        for i, v in enumerate(MEMORY)
    ]
    out += [
        _case(
            f"model-uri-{i}",
            "model-uri",
            "uri: examples/fraud/model.joblib",
            f"uri: {v}",
            "spec.model.uri",
        )
        for i, v in enumerate(URIS)
    ]
    return out

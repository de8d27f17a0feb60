"""What a spec must say for ``target.platform: edge``, checked at validate time.

The edge build (``reconciler/build/edge_*.py``) converts the model to ONNX, proves parity
against the original on data the spec names, measures size and latency and writes a
bundle; apply publishes it. Everything about that which is knowable from the repository
is checked here, so that ``validate`` fails where the build would (rationale:
``docs/edge.md``).
"""

from __future__ import annotations

from reconciler.core.config import Config
from reconciler.core.diagnostics import Diagnostic
from reconciler.runtime.uris import URI_SCHEMES
from reconciler.spec.model import Deployment
from reconciler.spec.paths import S3_UNREACHABLE, SpecPathError, spec_path

EDGE = "edge"

#: ``spec.model.framework`` -> the input dtypes its ONNX converter can declare.
#: skl2onnx declares float, double and int64 tensors for scikit-learn; onnxmltools'
#: XGBoost and LightGBM converters take a float tensor only; an ONNX model is passed
#: through with the inputs it has (checked against the signature by the build).
EXPORT_DTYPES: dict[str, tuple[str, ...]] = {
    "sklearn": ("float32", "float64", "int64"),
    "xgboost": ("float32",),
    "lightgbm": ("float32",),
    "onnx": ("float32", "float64", "int64", "int32", "bool"),
}

#: The fields the parity data is taken from, first set wins.
PARITY_DATA_FIELDS = (
    "spec.edge.parity.data",
    "spec.monitoring.reference",
    "spec.retraining.holdout",
)

#: ``spec.target`` fields that describe a server or a cloud resource: an edge bundle has
#: none of them, so a value there would be dropped (reported as a warning).
SERVER_TARGET_FIELDS = (
    "namespace",
    "region",
    "registry",
    "image",
    "instance_type",
    "resources",
    "autoscaling",
    "rollout",
    "serverless",
    "encryption",
    "service_account",
)


def parity_data_field(dep: Deployment) -> str | None:
    """The first of :data:`PARITY_DATA_FIELDS` that the deployment sets (a string), or None."""
    for field in PARITY_DATA_FIELDS:
        if isinstance(dep.get(field), str) and dep.get(field):
            return field
    return None


def edge_diagnostics(dep: Deployment, config: Config) -> list[Diagnostic]:
    """The edge checks of one resolved deployment (none for other platforms but one).

    On ``target.platform: edge``: ``spec.edge`` with a ``destination`` (a repository
    directory or ``s3://bucket/prefix``; the OCI layout only for a directory) and
    ``spec.target.device`` are present; the framework has an ONNX converter and the
    signature is ``[-1, N]`` of a dtype the converter can declare (:data:`EXPORT_DTYPES`);
    the model is a repository file; parity data is named
    (:data:`PARITY_DATA_FIELDS`) and is a file in the repository; target fields of a
    server (:data:`SERVER_TARGET_FIELDS`) are reported as unused (warning). On another
    platform, ``spec.target.device`` is reported as unused (warning).

    Returns:
        Diagnostics with code ``edge`` at the field's file, line and column.
    """
    out: list[Diagnostic] = []

    def add(path: str, message: str, severity: str = "error") -> None:
        out.append(
            Diagnostic(
                dep.locate(path), path, f"{message} [env {dep.env}]", severity=severity, code=EDGE
            )
        )

    if dep.platform != EDGE:
        if dep.get("spec.target.device") is not None:
            add(
                "spec.target.device",
                f"used only by platform edge; platform {dep.platform} ignores it",
                "warning",
            )
        return out
    for name in SERVER_TARGET_FIELDS:
        if dep.get(f"spec.target.{name}") is not None:
            add(
                f"spec.target.{name}",
                "not used by platform edge (a bundle for devices has no server or cloud "
                "resource); remove it from this environment",
                "warning",
            )
    if not isinstance(dep.get("spec.target.device"), dict):
        add(
            "spec.target.platform",
            "platform edge needs spec.target.device {arch, os, runtime: onnxruntime}",
        )
    edge = dep.get("spec.edge")
    if not isinstance(edge, dict):
        add("spec.target.platform", "platform edge needs a spec.edge section with a destination")
    else:
        _destination(dep, config, add)
    framework = dep.get("spec.model.framework")
    if isinstance(framework, str) and framework not in EXPORT_DTYPES:
        add(
            "spec.model.framework",
            f"{framework!r} has no ONNX converter here; edge bundles are built from "
            f"{', '.join(EXPORT_DTYPES)}",
        )
    uri = dep.get("spec.model.uri")
    if isinstance(uri, str) and uri.startswith(URI_SCHEMES):
        add(
            "spec.model.uri",
            f"{uri!r}: the edge build reads a model file in the repository (a path)",
        )
    _signature(dep, framework, add)
    _parity_data(dep, config, add)
    return out


def _destination(dep: Deployment, config: Config, add) -> None:
    field = "spec.edge.destination"
    value = dep.get(field)
    if not isinstance(value, str):
        add("spec.edge", "missing destination: a repository directory or s3://bucket/prefix")
        return
    try:
        checked = spec_path(
            dep,
            config,
            field,
            value,
            s3=True,
            kind="dir",
            what="destination",
            valid="a repository directory or s3://bucket/prefix",
        )
    except SpecPathError as exc:
        add(field, exc.message.split(f"{field}: ", 1)[-1])
        return
    if checked.s3 is not None and dep.get("spec.edge.layout") == "oci":
        add(
            "spec.edge.layout",
            "an OCI image layout is written to a repository directory; use layout: bundle "
            "for an s3:// destination (or push the layout with an OCI client)",
        )


def _signature(dep: Deployment, framework, add) -> None:
    shape = dep.get("spec.model.signature.inputs.shape")
    if isinstance(shape, list) and (
        len(shape) != 2 or shape[0] != -1 or not isinstance(shape[1], int) or shape[1] <= 0
    ):
        add(
            "spec.model.signature.inputs.shape",
            f"{shape} cannot be declared to the ONNX converter; edge export needs "
            "[-1, N] (a batch of rows of N features)",
        )
    dtype = dep.get("spec.model.signature.inputs.dtype")
    allowed = EXPORT_DTYPES.get(framework) if isinstance(framework, str) else None
    if isinstance(dtype, str) and allowed and dtype not in allowed:
        add(
            "spec.model.signature.inputs.dtype",
            f"{dtype} inputs cannot be declared to the {framework} ONNX converter; "
            f"valid: {', '.join(allowed)}",
        )


def _parity_data(dep: Deployment, config: Config, add) -> None:
    field = parity_data_field(dep)
    if field is None:
        add(
            "spec.edge",
            "parity needs data: set spec.edge.parity.data (or spec.monitoring.reference, "
            "or spec.retraining.holdout) to a Parquet or CSV file of the feature columns",
        )
        return
    try:
        spec_path(
            dep,
            config,
            field,
            s3=S3_UNREACHABLE,
            must_exist=True,
            what="parity data",
            valid="a repository path to a Parquet or CSV file",
        )
    except SpecPathError as exc:
        add(field, exc.message.split(f"{field}: ", 1)[-1])

"""Edge export: the spec's model as an ONNX graph, optionally quantized to int8.

scikit-learn estimators and pipelines go through skl2onnx, XGBoost and LightGBM through
onnxmltools, ONNX files pass through; the graph's input is the spec's signature
(``[-1, N]``, its dtype). Classifiers export without skl2onnx's ZipMap, so the graph
answers ``label`` and a ``probabilities`` tensor. Quantization uses ONNX Runtime's
dynamic or static int8 quantizer; when the quantizer leaves the graph as it was (the
tree and linear operators of ``ai.onnx.ml`` have no int8 form) the export says so and
keeps the original graph rather than ship a copy under a new name. Rationale and
figures: ``docs/edge.md``.
"""

from __future__ import annotations

import contextlib
import logging
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from reconciler.build.artifact import BuildError

#: ONNX opsets the graphs are written for: default domain and ``ai.onnx.ml``. 15 is the
#: highest onnxmltools 1.16's XGBoost and LightGBM converters accept; skl2onnx uses
#: the same so every bundle needs the same runtime floor (ONNX Runtime >= 1.10).
OPSET = 15
ML_OPSET = 3
INPUT_NAME = "input"
GRAPH_NAME = "modelops_edge"

#: ONNX operators whose presence shows that the quantizer rewrote the graph.
QUANTIZED_OPS = frozenset(
    {
        "QuantizeLinear",
        "DequantizeLinear",
        "DynamicQuantizeLinear",
        "MatMulInteger",
        "ConvInteger",
        "QLinearMatMul",
        "QLinearConv",
        "QLinearAdd",
        "QLinearMul",
        "DynamicQuantizeMatMul",
        "QGemm",
    }
)


class EdgeBuildError(BuildError):
    """The edge build failed (export, quantization, parity, budget or bundle); nothing
    was published. The message names the model, the operator or estimator, the file or
    the threshold concerned."""


@dataclass
class Export:
    """An exported model.

    Attributes:
        onnx: the serialized ONNX graph that goes into the bundle (bytes).
        converter: ``"skl2onnx 1.20.0"``, ``"onnxmltools 1.16.0"`` or ``"passthrough"``.
        operators: the graph's operator types, sorted (``["LinearClassifier", "Scaler"]``).
        quantization: what was applied: ``none``, ``dynamic`` or ``static``; ``none`` also
            when it was asked for and changed nothing (see ``notes``).
        notes: sentences for the build log and the plan (a no-op quantization says so).
        unquantized_bytes: size of the graph before quantization (bytes).
    """

    onnx: bytes
    converter: str
    operators: list[str]
    quantization: str = "none"
    notes: list[str] = field(default_factory=list)
    unquantized_bytes: int = 0


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "none"


def _operators(onnx_bytes: bytes) -> list[str]:
    import onnx  # heavy: only when an edge model is exported

    model = onnx.load_from_string(onnx_bytes)
    return sorted({node.op_type for node in model.graph.node})


def _estimators(model: Any) -> Iterable[Any]:
    """Every estimator in a scikit-learn model: pipeline steps, column-transformer parts,
    nested, in order (the model itself last)."""
    steps = getattr(model, "steps", None)
    if isinstance(steps, list):
        for _, step in steps:
            if step not in (None, "passthrough", "drop"):
                yield from _estimators(step)
    parts = getattr(model, "transformers", None)
    if isinstance(parts, list):
        for part in parts:
            if len(part) >= 2 and part[1] not in ("passthrough", "drop"):
                yield from _estimators(part[1])
    if not isinstance(steps, list) and not isinstance(parts, list):
        yield model


def unsupported_sklearn(model: Any) -> list[str]:
    """Names of the estimators in ``model`` that skl2onnx has no converter for."""
    from skl2onnx._supported_operators import sklearn_operator_name_map  # heavy: skl2onnx

    return [
        type(e).__name__ for e in _estimators(model) if type(e) not in sklearn_operator_name_map
    ]


def _tensor_type(module: Any, dtype: str, width: int) -> Any:
    types = {
        "float32": "FloatTensorType",
        "float64": "DoubleTensorType",
        "int64": "Int64TensorType",
        "int32": "Int32TensorType",
    }
    return getattr(module, types[dtype])([None, width])


def export(
    framework: str, model: Any, *, width: int, dtype: str, task: str, display: str
) -> Export:
    """Convert ``model`` (as :func:`reconciler.runtime.frameworks.load_model` returns it)
    to ONNX with the input ``[-1, width]`` of ``dtype``.

    Args:
        framework: ``sklearn``, ``xgboost``, ``lightgbm`` or ``onnx`` (for ``onnx``,
            ``model`` is the file's bytes).
        model: the loaded model.
        width: the number of features (the signature's ``N``).
        dtype: the signature's input dtype.
        task: ``classification`` or ``regression`` (``spec.model.task``; ``""`` unknown).
        display: the model as named in messages (``examples/fraud/model.joblib``).

    Returns:
        An :class:`Export` (``quantization`` ``none``).

    Raises:
        EdgeBuildError: no converter for the framework, an estimator or operator the
            converter cannot handle (named), a dtype it cannot declare, or an ONNX model
            whose input does not match the signature.
    """
    if framework == "onnx":
        return _passthrough(model, width, display)
    try:
        if framework == "sklearn":
            onnx_bytes, converter = _sklearn(model, width, dtype, task, display), "skl2onnx"
        elif framework in ("xgboost", "lightgbm"):
            onnx_bytes, converter = _onnxmltools(framework, model, width, dtype), "onnxmltools"
        else:
            raise EdgeBuildError(
                f"{display}: no ONNX converter for framework {framework!r}; edge bundles are "
                "built from sklearn, xgboost, lightgbm or onnx models"
            )
    except EdgeBuildError:
        raise
    except Exception as exc:  # noqa: BLE001 - a converter failure becomes one clear message
        raise EdgeBuildError(
            f"{display}: the {framework} model cannot be converted to ONNX: "
            f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc) else ''}"
        ) from None
    return Export(
        onnx_bytes,
        f"{converter} {_version(converter)}",
        _operators(onnx_bytes),
        unquantized_bytes=len(onnx_bytes),
    )


def _sklearn(model: Any, width: int, dtype: str, task: str, display: str) -> bytes:
    from skl2onnx import convert_sklearn  # heavy: only for an edge export
    from skl2onnx.common import data_types

    missing = unsupported_sklearn(model)
    if missing:
        raise EdgeBuildError(
            f"{display}: skl2onnx has no converter for {', '.join(missing)}; use estimators "
            "it supports (skl2onnx.supported_converters()) or export the model to ONNX "
            "yourself (framework: onnx)"
        )
    if dtype not in ("float32", "float64", "int64"):
        raise EdgeBuildError(f"{display}: skl2onnx cannot declare {dtype} inputs")
    final = list(_estimators(model))[-1]
    options = {}
    if task != "regression" and hasattr(final, "predict_proba"):
        options = {id(final): {"zipmap": False}}
    onx = convert_sklearn(
        model,
        initial_types=[(INPUT_NAME, _tensor_type(data_types, dtype, width))],
        options=options,
        target_opset={"": OPSET, "ai.onnx.ml": ML_OPSET},
    )
    return _stable(onx)


def _onnxmltools(framework: str, model: Any, width: int, dtype: str) -> bytes:
    import onnxmltools  # heavy: only for an edge export
    from onnxmltools.convert.common import data_types

    if dtype != "float32":
        raise EdgeBuildError(f"the {framework} ONNX converter declares float32 inputs only")
    initial = [(INPUT_NAME, _tensor_type(data_types, dtype, width))]
    if framework == "xgboost":
        booster = model.get_booster() if hasattr(model, "get_booster") else model
        # the converter reads features as f0..fN-1; names from a data frame are no part
        # of the model's arithmetic, so they are cleared (on this loaded copy)
        if booster.feature_names is not None:
            booster.feature_names = None
            booster.feature_types = None
        onx = onnxmltools.convert_xgboost(model, initial_types=initial, target_opset=OPSET)
    else:
        onx = onnxmltools.convert_lightgbm(
            model, initial_types=initial, target_opset=OPSET, zipmap=False
        )
    return _stable(onx)


def _stable(onx: Any) -> bytes:
    """The serialized graph without what changes from one conversion to the next: the
    converters name the graph with a random UUID, which would make every bundle differ."""
    onx.graph.name = GRAPH_NAME
    return onx.SerializeToString()


def _passthrough(data: bytes, width: int, display: str) -> Export:
    import onnx  # heavy: only for an edge export

    try:
        model = onnx.load_from_string(data)
        onnx.checker.check_model(model)
    except Exception as exc:  # noqa: BLE001 - one clear message
        raise EdgeBuildError(f"{display}: not a valid ONNX model: {exc}") from None
    inputs = [
        i for i in model.graph.input if i.name not in {t.name for t in model.graph.initializer}
    ]
    if len(inputs) != 1:
        raise EdgeBuildError(
            f"{display}: the ONNX model has {len(inputs)} inputs; an edge bundle's model "
            "takes one [-1, N] tensor"
        )
    dims = inputs[0].type.tensor_type.shape.dim
    last = dims[-1].dim_value if dims else 0
    if len(dims) != 2 or (last and last != width):
        shape = [d.dim_value or -1 for d in dims]
        raise EdgeBuildError(
            f"{display}: the ONNX model's input {inputs[0].name!r} has shape {shape}; the "
            f"spec's signature is [-1, {width}]"
        )
    return Export(data, "passthrough", _operators(data), unquantized_bytes=len(data))


def quantize(exported: Export, mode: str, calibration: np.ndarray | None = None) -> Export:
    """Quantize ``exported`` to int8 with ONNX Runtime (``mode`` ``dynamic`` or
    ``static``); ``none`` returns it unchanged.

    Static quantization is calibrated on ``calibration`` (rows of the parity data, at most
    the first 256). When the quantized graph has no quantized operator
    (:data:`QUANTIZED_OPS`), the quantizer found nothing it can quantize: the original
    graph is kept and a note says why.

    Raises:
        EdgeBuildError: the quantizer failed (its error is named).
    """
    if mode in (None, "", "none"):
        return exported
    if _only_ml_operators(exported.onnx):
        # ONNX Runtime's quantizer has nothing to work on and refuses a graph without an
        # ai.onnx operator ("Failed to find proper ai.onnx domain"): the same no-op
        return _unchanged(exported, mode)
    from onnxruntime import quantization as q  # heavy: only when quantization is asked

    with tempfile.TemporaryDirectory(prefix="modelops-quant-") as tmp, _quiet_root_logger():
        src, dst = Path(tmp) / "model.onnx", Path(tmp) / "model.int8.onnx"
        src.write_bytes(exported.onnx)
        try:
            if mode == "dynamic":
                q.quantize_dynamic(src, dst, weight_type=q.QuantType.QInt8)
            else:
                rows = np.asarray(calibration if calibration is not None else [])[:256]
                if len(rows) == 0:
                    raise EdgeBuildError("static quantization needs calibration rows")
                q.quantize_static(
                    src,
                    dst,
                    _Calibration(rows),
                    quant_format=q.QuantFormat.QDQ,
                    activation_type=q.QuantType.QInt8,
                    weight_type=q.QuantType.QInt8,
                )
        except EdgeBuildError:
            raise
        except Exception as exc:  # noqa: BLE001 - one clear message
            raise EdgeBuildError(
                f"{mode} int8 quantization failed: {type(exc).__name__}: {exc}"
            ) from None
        data = dst.read_bytes()
    ops = _operators(data)
    if not QUANTIZED_OPS & set(ops):
        return _unchanged(exported, mode)
    note = f"{mode} int8 quantization: {exported.unquantized_bytes} -> {len(data)} bytes"
    return Export(data, exported.converter, ops, mode, [*exported.notes, note], len(exported.onnx))


@contextlib.contextmanager
def _quiet_root_logger():
    """Hold back the quantizer's advice on the root logger ("Please consider to run
    pre-processing before quantization"): it is for image models, and it would be
    printed in the middle of plan and apply output."""
    root = logging.getLogger()
    advice = _DropQuantizerAdvice()
    root.addFilter(advice)
    try:
        yield
    finally:
        root.removeFilter(advice)


class _DropQuantizerAdvice(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "pre-processing before quantization" not in record.getMessage()


def _only_ml_operators(onnx_bytes: bytes) -> bool:
    """True when every node of the graph is an ``ai.onnx.ml`` operator."""
    import onnx  # heavy: only for an edge export

    nodes = onnx.load_from_string(onnx_bytes).graph.node
    return all(node.domain == "ai.onnx.ml" for node in nodes)


def _unchanged(exported: Export, mode: str) -> Export:
    """``exported`` as it was, with the note that ``mode`` quantization changed nothing."""
    kept = ", ".join(exported.operators)
    note = (
        f"{mode} int8 quantization left the graph unchanged: its operators ({kept}) have "
        "no int8 form (tree and linear operators of ai.onnx.ml cannot be quantized); "
        "the unquantized model is shipped"
    )
    return Export(
        exported.onnx,
        exported.converter,
        exported.operators,
        "none",
        [*exported.notes, note],
        exported.unquantized_bytes,
    )


class _Calibration:
    """ONNX Runtime's CalibrationDataReader over rows: one row per call."""

    def __init__(self, rows: np.ndarray) -> None:
        self._rows = iter(rows)

    def get_next(self) -> dict | None:
        row = next(self._rows, None)
        return None if row is None else {INPUT_NAME: np.asarray(row)[None, :]}

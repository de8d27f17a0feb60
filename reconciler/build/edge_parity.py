"""Edge parity: the exported model and the original answer the same inputs alike.

The inputs are the rows of the parity data the spec names (``spec.edge.parity.data``,
else ``spec.monitoring.reference``, else ``spec.retraining.holdout``), at most
``spec.edge.parity.max_rows`` of them, plus generated edge cases: for each feature its
minimum and its maximum over the data (the other features at their median), a row of
zeros, a row of every minimum and a row of every maximum. Both models run through
:func:`reconciler.runtime.frameworks.predict`, as the service calls them.

The report gives label agreement (classifiers), the maximum and p99 absolute difference
of the probabilities (classifiers) or outputs (regressors), and the rows that differ most;
a threshold it misses fails the build (rationale: ``docs/edge.md``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from reconciler.build.edge_export import EdgeBuildError
from reconciler.runtime import frameworks

DEFAULT_MAX_ROWS = 10_000
DEFAULT_MIN_LABEL_AGREEMENT = 0.99
DEFAULT_MAX_ABS_DIFF = 1e-3
WORST_ROWS = 5
#: Columns of a parity file that are never features (the training scripts' label).
NON_FEATURES = ("target",)


@dataclass
class ParityReport:
    """How closely the exported model follows the original.

    Attributes:
        rows: rows compared: ``data_rows`` from the parity data plus ``edge_case_rows``.
        data_rows, edge_case_rows: the two parts.
        compared: ``probabilities`` (classifiers with probabilities), ``labels``
            (classifiers without) or ``outputs`` (regressors).
        label_agreement: share of rows whose labels are equal (0..1), ``None`` for a
            regressor.
        max_abs_diff, p99_abs_diff: of the compared values (the largest over a row's
            classes), over all rows.
        min_label_agreement, max_abs_diff_allowed: the thresholds checked.
        worst: up to :data:`WORST_ROWS` rows that differ most: ``{"row", "source"
            ("data" | "edge-case: <what>"), "abs_diff", "original", "exported"}``.
        failures: one sentence per missed threshold; empty when parity holds.
    """

    rows: int
    data_rows: int
    edge_case_rows: int
    compared: str
    label_agreement: float | None
    max_abs_diff: float
    p99_abs_diff: float
    min_label_agreement: float
    max_abs_diff_allowed: float
    worst: list[dict] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        """True when every threshold holds."""
        return not self.failures

    def to_dict(self) -> dict:
        """JSON-ready mapping (the bundle's ``parity.json``), with ``passed``."""
        return {**asdict(self), "passed": self.passed}


def read_parity_rows(
    path: Path, display: str, *, width: int, dtype: str, names: list[str] | None, max_rows: int
) -> np.ndarray:
    """The feature rows of a Parquet or CSV file, as ``rows × width`` of ``dtype``.

    With signature ``names`` the columns are taken by name (others, such as the label,
    are ignored); without, every numeric column but :data:`NON_FEATURES`, in file order,
    must be exactly ``width`` columns. The first ``max_rows`` rows are kept.

    Raises:
        EdgeBuildError: unreadable file, missing or extra columns (named), non-numeric
            values, or no rows.
    """
    import pandas as pd  # heavy: only when parity data is read

    try:
        frame = pd.read_parquet(path) if path.suffix == ".parquet" else pd.read_csv(path)
    except Exception as exc:  # noqa: BLE001 - one clear message
        raise EdgeBuildError(
            f"{display}: parity data cannot be read as Parquet or CSV: {exc}"
        ) from None
    columns = [str(c) for c in frame.columns]
    if names:
        missing = [n for n in names if n not in columns]
        if missing:
            raise EdgeBuildError(
                f"{display}: parity data lacks {len(missing)} of the signature's columns "
                f"({', '.join(missing[:5])}{', ...' if len(missing) > 5 else ''}); "
                f"it has {', '.join(columns[:8])}{', ...' if len(columns) > 8 else ''}"
            )
        frame = frame[names]
    else:
        features = [c for c in frame.columns if str(c) not in NON_FEATURES]
        if len(features) != width:
            raise EdgeBuildError(
                f"{display}: parity data has {len(features)} feature columns; the signature "
                f"takes {width} (name them in spec.model.signature.inputs.names to select "
                "columns by name)"
            )
        frame = frame[features]
    bad = [str(c) for c in frame.columns if not pd.api.types.is_numeric_dtype(frame[c])]
    if bad:
        raise EdgeBuildError(f"{display}: parity data columns are not numeric: {', '.join(bad)}")
    if frame.empty:
        raise EdgeBuildError(f"{display}: parity data has no rows")
    return frame.head(max_rows).to_numpy(dtype=dtype)


def edge_cases(rows: np.ndarray) -> tuple[np.ndarray, list[str]]:
    """Generated rows at the edges of the data's range, with a label for each.

    For each feature ``j``: the column medians with feature ``j`` at its minimum, then at
    its maximum; then a row of zeros, a row of every minimum and a row of every maximum:
    ``2 * width + 3`` rows.
    """
    lo, hi = rows.min(axis=0), rows.max(axis=0)
    mid = np.median(rows, axis=0).astype(rows.dtype)
    out, labels = [], []
    for j in range(rows.shape[1]):
        for which, value in (("min", lo[j]), ("max", hi[j])):
            row = mid.copy()
            row[j] = value
            out.append(row)
            labels.append(f"edge-case: feature {j} at its {which}")
    for label, row in (
        ("edge-case: zeros", np.zeros_like(mid)),
        ("edge-case: every feature at its min", lo),
        ("edge-case: every feature at its max", hi),
    ):
        out.append(np.asarray(row, dtype=rows.dtype))
        labels.append(label)
    return np.stack(out), labels


def _flat(values: np.ndarray | None) -> np.ndarray:
    arr = np.asarray(values, dtype=np.float64)
    return arr.reshape(len(arr), -1)


def check_parity(
    framework: str,
    original: Any,
    session: Any,
    data: np.ndarray,
    *,
    task: str,
    min_label_agreement: float = DEFAULT_MIN_LABEL_AGREEMENT,
    max_abs_diff: float = DEFAULT_MAX_ABS_DIFF,
) -> ParityReport:
    """Compare ``original`` (a ``framework`` model) with ``session`` (an ONNX Runtime
    session of the export) on ``data`` plus :func:`edge_cases` of it.

    Args:
        framework: the original's framework.
        original: the loaded original model.
        session: ``onnxruntime.InferenceSession`` of the exported graph.
        data: the parity rows (rows × features).
        task: ``classification`` or ``regression``.
        min_label_agreement: share of equal labels required (0..1, classifiers).
        max_abs_diff: largest absolute difference allowed (probabilities or outputs).

    Raises:
        EdgeBuildError: either model fails on the rows (its error is named).
    """
    cases, case_labels = edge_cases(data)
    rows = np.concatenate([data, cases])
    sources = ["data"] * len(data) + case_labels
    try:
        want_labels, want_proba = frameworks.predict(framework, original, rows, task)
    except frameworks.FrameworkError as exc:
        raise EdgeBuildError(f"the original model fails on the parity rows: {exc}") from None
    try:
        got_labels, got_proba = frameworks.predict("onnx", session, rows, task)
    except frameworks.FrameworkError as exc:
        raise EdgeBuildError(f"the exported model fails on the parity rows: {exc}") from None
    if task == "regression":
        compared, want, got = "outputs", _flat(want_labels), _flat(got_labels)
        agreement = None
    else:
        agreement = float(np.mean(np.asarray(want_labels) == np.asarray(got_labels)))
        if want_proba is not None and got_proba is not None:
            compared, want, got = "probabilities", _flat(want_proba), _flat(got_proba)
        else:
            compared = "labels"  # a differing label counts as a difference of 1
            want = np.zeros((len(rows), 1))
            got = _flat(np.asarray(want_labels) != np.asarray(got_labels))
    if want.shape != got.shape:
        raise EdgeBuildError(
            f"the exported model answers {got.shape[1]} values per row, the original "
            f"{want.shape[1]} ({compared})"
        )
    diff = np.abs(want - got).max(axis=1)
    order = np.argsort(-diff, kind="stable")[:WORST_ROWS]
    worst = [
        {
            "row": int(i),
            "source": sources[i],
            "abs_diff": float(diff[i]),
            "original": [round(float(v), 6) for v in want[i]],
            "exported": [round(float(v), 6) for v in got[i]],
        }
        for i in order
        if diff[i] > 0
    ]
    report = ParityReport(
        rows=len(rows),
        data_rows=len(data),
        edge_case_rows=len(cases),
        compared=compared,
        label_agreement=agreement,
        max_abs_diff=float(diff.max()),
        p99_abs_diff=float(np.quantile(diff, 0.99)),
        min_label_agreement=float(min_label_agreement),
        max_abs_diff_allowed=float(max_abs_diff),
        worst=worst,
    )
    if agreement is not None and agreement < min_label_agreement:
        report.failures.append(
            f"label agreement {agreement:.4f} is below spec.edge.parity.min_label_agreement "
            f"{min_label_agreement}"
        )
    if report.max_abs_diff > max_abs_diff:
        report.failures.append(
            f"max absolute difference of the {compared} {report.max_abs_diff:.3g} is above "
            f"spec.edge.parity.max_abs_diff {max_abs_diff} (worst row: {worst[0]['source']})"
        )
    return report

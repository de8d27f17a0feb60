"""Reading the data the drift job compares: reference data and captured traffic.

Reference data and ``--current`` files are Parquet or CSV with the signature's feature
columns. Captured traffic is ``<sink>/<deployment>/<env>/<YYYY-MM-DD>/capture-*.jsonl``
(or ``.parquet``), one record per request: ``timestamp`` (ISO 8601 with zone),
``inputs`` (rows of features in signature order), ``outputs`` (one prediction per row);
an ``s3://`` sink is downloaded into ``<state_dir>/capture-cache`` and merged with the
local spool. Every problem is a :class:`MonitorInputError` naming the file (and line)
and the spec field. Details: ``docs/monitor.md``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from reconciler.core.config import Config
from reconciler.core.diagnostics import ModelopsError
from reconciler.monitor.s3 import fetch_capture
from reconciler.runtime.capture import resolve_sink
from reconciler.runtime.uris import parse_s3_uri
from reconciler.spec.model import Deployment
from reconciler.spec.paths import S3_UNREACHABLE, spec_path
from reconciler.spec.validate import signature_feature_names

if TYPE_CHECKING:  # annotations only
    import numpy as np
    import pandas as pd

NUMERIC_DTYPES = ("float32", "float64", "int32", "int64")


class MonitorInputError(ModelopsError):
    """Bad monitoring input (reference, capture, window); exit code 2."""


@dataclass
class Features:
    """The model's input features as the signature describes them.

    Attributes:
        names: feature names in signature order (``spec.model.signature.inputs.names``,
            else ``f0..fN-1`` from the last dimension of ``shape``).
        dtype: the signature's dtype (``float32`` ... ``bool``); ``bool`` features are
            compared as categorical, every other dtype as numerical.
        redacted: names of features the capture redacts (``spec.data.sensitive_fields``
            with ``monitoring.capture.redact`` ``drop``/``hash``); excluded from drift.
    """

    names: list[str]
    dtype: str = "float32"
    redacted: list[str] = field(default_factory=list)

    @property
    def categorical(self) -> bool:
        """True when the features are compared as categories (dtype ``bool``)."""
        return self.dtype == "bool"

    @property
    def compared(self) -> list[str]:
        """The features drift is computed on (signature order, redacted ones left out)."""
        return [n for n in self.names if n not in self.redacted]


def field_origin(dep: Deployment, path: str) -> str:
    """``<file>:<line>:<col>: <path>``: where a spec field is, for messages."""
    return f"{dep.locate(path)}: {path}"


def features_of(dep: Deployment) -> Features:
    """Feature names and dtype from ``spec.model.signature.inputs``.

    Raises:
        MonitorInputError: no signature, or neither ``names`` nor a fixed last dimension.
    """
    names = signature_feature_names(dep)
    dtype = dep.get("spec.model.signature.inputs.dtype", "float32")
    if names is None:
        raise MonitorInputError(
            f"{field_origin(dep, 'spec.model.signature.inputs')}: drift needs the feature "
            "list; give signature.inputs.names or a fixed last dimension in "
            "signature.inputs.shape"
        )
    redact = dep.get("spec.monitoring.capture.redact", "none")
    sensitive = dep.get("spec.data.sensitive_fields", []) or []
    redacted = [n for n in names if n in sensitive] if redact in ("drop", "hash") else []
    return Features(names=[str(n) for n in names], dtype=str(dtype), redacted=redacted)


# -- tables (reference data, --current files) -----------------------------------------


def sample_indices(n: int, size: int, seed: int) -> np.ndarray:
    """``size`` sorted row indexes drawn uniformly without replacement from ``range(n)``.

    ``numpy.random.default_rng(seed).choice``: the same seed gives the same rows.
    """
    import numpy as np  # heavy: loaded when this runs, not at every `modelops` start

    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(n, size=size, replace=False))


def read_table(
    path: Path,
    columns: list[str],
    *,
    what: str,
    origin: str,
    categorical: bool = False,
    sample_size: int | None = None,
    seed: int = 0,
) -> pd.DataFrame:
    """Read only ``columns`` of a Parquet or CSV file and check they are numbers.

    Args:
        path: the file (``.parquet``/``.pq`` or ``.csv``).
        columns: the columns to read (feature names); every one must be present.
        what: a noun for messages (``reference data``, ``current data``).
        origin: where the path came from, for messages (``specs/x.yaml:55:5:
            spec.monitoring.reference`` or ``--current``).
        categorical: when True (signature dtype ``bool``) any dtype is accepted.
        sample_size: when the file has more rows, keep a sample of this many
            (:func:`sample_indices` with ``seed``), taken before conversion to pandas.
        seed: the sampling seed.

    Returns:
        A frame with exactly ``columns`` in that order; ``frame.attrs["rows_total"]`` is
        the number of rows in the file (before sampling).

    Raises:
        MonitorInputError: missing or unreadable file, unknown format, missing columns,
            non-numeric columns, no rows.
    """
    import pandas as pd  # heavy: loaded when this runs, not at every `modelops` start
    import pyarrow.parquet as pq  # heavy: loaded when this runs, not at every `modelops` start

    if not path.is_file():
        raise MonitorInputError(
            f"{origin}: {what} {path} not found; expected a Parquet or CSV file"
        )
    suffix = path.suffix.lower()
    try:
        if suffix in (".parquet", ".pq"):
            present = pq.read_schema(path).names
            missing = [c for c in columns if c not in present]
            if not missing:
                table = pq.read_table(path, columns=columns)
                total = table.num_rows
                if sample_size and total > sample_size:
                    table = table.take(sample_indices(total, sample_size, seed))
                frame = table.to_pandas()
        elif suffix == ".csv":
            present = list(pd.read_csv(path, nrows=0).columns)
            missing = [c for c in columns if c not in present]
            if not missing:
                frame = pd.read_csv(path, usecols=columns)[columns]
                total = len(frame)
                if sample_size and total > sample_size:
                    idx = sample_indices(total, sample_size, seed)
                    frame = frame.iloc[idx].reset_index(drop=True)
        else:
            raise MonitorInputError(
                f"{origin}: {what} {path} has suffix {suffix or '(none)'!r}; "
                "expected .parquet or .csv"
            )
    except MonitorInputError:
        raise
    except Exception as exc:  # noqa: BLE001 - any reader failure is unreadable input
        raise MonitorInputError(
            f"{origin}: cannot read {what} {path}: {type(exc).__name__}: {exc}; "
            "expected a readable Parquet or CSV file"
        ) from None
    if missing:
        shown = ", ".join(missing[:5]) + (
            f" (+{len(missing) - 5} more)" if len(missing) > 5 else ""
        )
        raise MonitorInputError(
            f"{origin}: {what} {path} lacks {len(missing)} feature column(s) of the model "
            f"signature (spec.model.signature.inputs.names): {shown}"
        )
    if not categorical:
        bad = [f"{c} ({frame[c].dtype})" for c in columns if not _is_number(frame[c])]
        if bad:
            raise MonitorInputError(
                f"{origin}: {what} {path}: column(s) {', '.join(bad[:5])} are not numeric; "
                "the signature's features are numbers"
            )
    if frame.empty:
        raise MonitorInputError(f"{origin}: {what} {path} has no rows")
    frame.attrs["rows_total"] = total
    return frame


def _is_number(series: pd.Series) -> bool:
    import pandas as pd  # heavy: loaded when this runs, not at every `modelops` start

    return pd.api.types.is_numeric_dtype(series) and not pd.api.types.is_bool_dtype(series)


def reference_path(dep: Deployment, config: Config) -> tuple[Path, str]:
    """The local path of ``spec.monitoring.reference`` and its origin for messages.

    Raises:
        MonitorInputError: not set, ``s3://`` (not reachable here), outside the repo or
            missing (:func:`reconciler.spec.paths.spec_path`).
    """
    field_ = "spec.monitoring.reference"
    value = dep.get(field_)
    origin = field_origin(dep, field_)
    if not isinstance(value, str) or not value:
        raise MonitorInputError(
            f"{field_origin(dep, 'spec.monitoring')}.reference: not set; drift needs reference "
            "data (a Parquet or CSV file of the training features)"
        )
    checked = spec_path(
        dep,
        config,
        field_,
        value,
        s3=S3_UNREACHABLE,
        must_exist=True,
        what="reference data",
        valid="a repository path to a Parquet or CSV file (copy S3 data into the repository)",
        error=MonitorInputError,
    )
    return checked.local, origin


# -- captured traffic -------------------------------------------------------------------


@dataclass
class Capture:
    """Captured traffic of one window, as arrays.

    Attributes:
        inputs: ``(rows, features)`` float64 array in signature order (NaN where redacted).
        outputs: ``(rows,)`` array of predictions, or ``None`` when missing.
        requests: number of request records in the window.
        files: capture files read.
        directory: the deployment's capture directory.
        start, end: the window (UTC).
        notes: remarks for the report (spool used...).
    """

    inputs: np.ndarray
    outputs: np.ndarray | None
    requests: int
    files: list[Path]
    directory: Path
    start: datetime
    end: datetime
    notes: list[str] = field(default_factory=list)


def capture_dir(dep: Deployment, config: Config) -> tuple[Path, list[str]]:
    """The local directory holding this deployment's captured traffic, and notes.

    ``<sink>/<name>/<env>`` for a repository-relative sink; for an ``s3://`` sink the
    local spool of the serving runtime (``reconciler.runtime.capture.resolve_sink``).

    Raises:
        MonitorInputError: no sink configured, a local sink outside the repository, or a
            malformed ``s3://`` URI (:func:`reconciler.spec.paths.spec_path`).
    """
    field_ = "spec.monitoring.capture.sink"
    sink = dep.get(field_)
    if not isinstance(sink, str) or not sink:
        raise MonitorInputError(
            f"{field_origin(dep, 'spec.monitoring.capture')}.sink: not set; the drift job reads "
            "captured traffic from the sink (or give --current PATH)"
        )
    notes = []
    checked = spec_path(dep, config, field_, sink, s3=True, error=MonitorInputError)
    if checked.s3 is not None:
        base, _ = resolve_sink(sink, config.root)
    else:
        base = checked.local
    return base / dep.name / dep.env, notes


def s3_capture_files(
    dep: Deployment, config: Config, sink: str, days: list[str], ext: str, spooled: list[Path]
) -> tuple[list[Path], list[str]]:
    """Capture files of an ``s3://`` sink: those on S3 (downloaded into
    ``<state_dir>/capture-cache``) plus those still in the local spool, once each by name.
    """
    bucket, key = parse_s3_uri(sink)
    cache = config.state_dir / "capture-cache" / bucket / key / dep.name / dep.env
    fetched, problem = fetch_capture(sink, dep.name, dep.env, days, ext, cache)
    if problem:
        notes = [f"{problem}; read only the local spool ({len(spooled)} file(s))"]
    else:
        notes = [f"read {len(fetched)} capture file(s) from {sink.rstrip('/')}/{dep.name}/"]
    by_name = {p.name: p for p in fetched}
    for path in spooled:  # not uploaded yet
        by_name.setdefault(path.name, path)
    return sorted(by_name.values(), key=lambda p: (p.parent.name, p.name)), notes


def _window_days(start: datetime, end: datetime) -> list[str]:
    days, day = [], start.date()
    while day <= end.date():
        days.append(day.isoformat())
        day += timedelta(days=1)
    return days


def load_capture(
    dep: Deployment, config: Config, features: Features, *, now: datetime | None = None
) -> Capture:
    """Captured traffic of ``spec.monitoring.window_hours`` (default 24) back from ``now``.

    Returns:
        A :class:`Capture` with every row whose request timestamp is in the window.

    Raises:
        MonitorInputError: no files or no rows in the window (empty window), a record that
            is not JSON, lacks ``inputs``/``outputs``/``timestamp``, has rows of the wrong
            width (missing columns) or non-numeric values (wrong types).
    """
    import numpy as np  # heavy: loaded when this runs, not at every `modelops` start

    end = (now or datetime.now(UTC)).astimezone(UTC)
    hours = dep.get("spec.monitoring.window_hours", 24)
    start = end - timedelta(hours=hours)
    directory, notes = capture_dir(dep, config)
    fmt = dep.get("spec.monitoring.capture.format", "jsonl")
    ext = "parquet" if fmt == "parquet" else "jsonl"
    days = _window_days(start, end)
    files = [f for d in days for f in sorted((directory / d).glob(f"capture-*.{ext}"))]
    sink = dep.get("spec.monitoring.capture.sink")
    if sink.startswith("s3://"):
        files, s3_notes = s3_capture_files(dep, config, sink, days, ext, files)
        notes.extend(s3_notes)
    span = f"{start:%Y-%m-%d %H:%M} to {end:%Y-%m-%d %H:%M} UTC"
    if not files:
        raise MonitorInputError(
            f"{field_origin(dep, 'spec.monitoring.capture.sink')}: empty window: no captured "
            f"traffic (capture-*.{ext}) for {dep.name}/{dep.env} from {span} in "
            f"{config.rel(directory)}/<{days[0]}..{days[-1]}>/ (sink {sink}); "
            "has the deployment served requests with capture enabled? Or give --current PATH"
        )
    chunks, outs, requests = [], [], 0
    hashed = [features.names.index(n) for n in features.redacted] if features.redacted else []
    if hashed and dep.get("spec.monitoring.capture.redact") == "hash":
        notes.append("redacted (hashed) features are read record by record (slow path)")
    else:
        hashed = []
    for path in files:
        if hashed:
            x, y, n = _read_capture_python(path, features.names, hashed, start, end, config, fmt)
        else:
            x, y, n = _read_capture_file(path, features.names, start, end, config, fmt)
        if n:
            chunks.append(x)
            outs.append(y)
            requests += n
    if not requests:
        raise MonitorInputError(
            f"{field_origin(dep, 'spec.monitoring.window_hours')}: empty window: {len(files)} "
            f"capture file(s) in {config.rel(directory)} but no request timestamped {span}"
        )
    inputs = np.concatenate(chunks) if len(chunks) > 1 else chunks[0]
    outputs = np.concatenate(outs) if len(outs) > 1 else outs[0]
    return Capture(inputs, outputs, requests, files, directory, start, end, notes)


def _json_buffer_from_parquet(path: Path):
    """A JSON Lines buffer and a timestamp array from a Parquet capture file."""
    import numpy as np  # heavy: loaded when this runs, not at every `modelops` start
    import pyarrow as pa  # heavy: loaded when this runs, not at every `modelops` start
    import pyarrow.compute as pc  # heavy: loaded when this runs, not at every `modelops` start
    import pyarrow.parquet as pq  # heavy: loaded when this runs, not at every `modelops` start

    table = pq.read_table(path, columns=["timestamp", "inputs", "outputs"])
    ts = table["timestamp"]
    if not pa.types.is_string(ts.type) and not pa.types.is_large_string(ts.type):
        ts = pc.cast(ts, pa.timestamp("us", tz="UTC"))
    ins = pc.fill_null(pc.cast(table["inputs"], pa.string()), "null")
    outs = pc.fill_null(pc.cast(table["outputs"], pa.string()), "null")
    lines = pc.binary_join_element_wise('{"inputs":', ins, ',"outputs":', outs, "}\n", "")
    lines = pc.cast(lines.combine_chunks(), pa.large_string())
    # the value buffer of a string array is its strings back to back: the JSON Lines text
    offsets = np.frombuffer(lines.buffers()[1], dtype=np.int64)
    first, last = int(offsets[lines.offset]), int(offsets[lines.offset + len(lines)])
    return pa.BufferReader(lines.buffers()[2].slice(first, last - first)), ts


def _read_capture_file(path: Path, names: list[str], start, end, config: Config, fmt: str):
    """Rows, outputs and request count of one capture file inside [start, end]."""
    import numpy as np  # heavy: loaded when this runs, not at every `modelops` start
    import pyarrow as pa  # heavy: loaded when this runs, not at every `modelops` start
    import pyarrow.compute as pc  # heavy: loaded when this runs, not at every `modelops` start
    import pyarrow.json as pj  # heavy: loaded when this runs, not at every `modelops` start

    width = len(names)
    where = config.rel(path)
    schema = pa.schema(
        [
            ("timestamp", pa.string()),
            ("inputs", pa.list_(pa.list_(pa.float64()))),
            ("outputs", pa.list_(pa.float64())),
        ]
    )
    try:
        if fmt == "parquet":
            buf, ts = _json_buffer_from_parquet(path)
            schema = pa.schema([schema.field("inputs"), schema.field("outputs")])
        else:
            buf, ts = str(path), None
        table = pj.read_json(
            buf,
            read_options=pj.ReadOptions(block_size=1 << 24),
            parse_options=pj.ParseOptions(
                explicit_schema=schema, unexpected_field_behavior="ignore"
            ),
        )
        if ts is None:
            ts = table["timestamp"]
        if pa.types.is_string(ts.type) or pa.types.is_large_string(ts.type):
            ts = pc.cast(ts, pa.timestamp("us", tz="UTC"))
    except (pa.ArrowInvalid, pa.ArrowTypeError, OSError) as exc:
        if fmt != "parquet":
            _diagnose_jsonl(path, names, where)
        raise MonitorInputError(
            f"{where}: captured traffic is unreadable ({exc}); expected records "
            '{"timestamp": ISO 8601 UTC, "inputs": [[numbers...]], "outputs": [...]}'
        ) from None
    for name in ("inputs", "outputs"):
        if table[name].null_count:
            if fmt != "parquet":
                _diagnose_jsonl(path, names, where)
            raise MonitorInputError(f"{where}: a record has no {name!r}; every record needs one")
    if ts.null_count:
        if fmt != "parquet":
            _diagnose_jsonl(path, names, where)
        raise MonitorInputError(f"{where}: a record has no 'timestamp'")
    mask = pc.and_(
        pc.greater_equal(ts, pa.scalar(start, pa.timestamp("us", tz="UTC"))),
        pc.less_equal(ts, pa.scalar(end, pa.timestamp("us", tz="UTC"))),
    )
    table = table.filter(mask)
    n = table.num_rows
    if not n:
        return None, None, 0
    rows = pc.list_flatten(table["inputs"])
    lengths = pc.list_value_length(rows)
    lo_hi = pc.min_max(lengths).as_py()
    if lo_hi["min"] != width or lo_hi["max"] != width:
        if fmt != "parquet":
            _diagnose_jsonl(path, names, where)
        raise MonitorInputError(
            f"{where}: input rows have {lo_hi['min']}..{lo_hi['max']} values; the model "
            f"signature (spec.model.signature.inputs) has {width} features (missing columns?)"
        )
    values = pc.list_flatten(rows).to_numpy(zero_copy_only=False).astype(np.float64, copy=False)
    x = values.reshape(-1, width)
    y = pc.list_flatten(table["outputs"]).to_numpy(zero_copy_only=False)
    if len(y) != len(x):
        raise MonitorInputError(
            f"{where}: {len(x)} input rows but {len(y)} outputs; expected one output per row"
        )
    return x, y, n


def _records(path: Path, fmt: str):
    """(line number, record dict or raw text) of a capture file, JSON Lines or Parquet."""
    import pyarrow.parquet as pq  # heavy: loaded when this runs, not at every `modelops` start

    if fmt == "parquet":
        table = pq.read_table(path, columns=["timestamp", "inputs", "outputs"]).to_pylist()
        for i, rec in enumerate(table, 1):
            for key in ("inputs", "outputs"):
                if isinstance(rec.get(key), str):
                    rec[key] = json.loads(rec[key])
            if isinstance(rec.get("timestamp"), datetime):
                rec["timestamp"] = rec["timestamp"].isoformat()
            yield i, rec
        return
    with open(path, encoding="utf-8", errors="replace") as fh:
        for lineno, line in enumerate(fh, 1):
            if line.strip():
                yield lineno, line


def _read_capture_python(path: Path, names: list[str], hashed: list[int], start, end, config, fmt):
    """Slow path for captures with hashed (string) features: those columns become NaN."""
    import numpy as np  # heavy: loaded when this runs, not at every `modelops` start

    where = config.rel(path)
    xs, ys, n = [], [], 0
    for lineno, rec in _records(path, fmt):
        if isinstance(rec, str):
            try:
                rec = json.loads(rec)
            except json.JSONDecodeError as exc:
                raise MonitorInputError(
                    f"{where}:{lineno}: not a JSON object ({exc.msg})"
                ) from None
        _check_record(rec, names, f"{where}:{lineno}", skip=set(hashed))
        stamp = datetime.fromisoformat(str(rec["timestamp"]).replace("Z", "+00:00"))
        if not (start <= stamp <= end):
            continue
        n += 1
        for row in rec["inputs"]:
            xs.append([np.nan if j in hashed or v is None else float(v) for j, v in enumerate(row)])
        ys.extend(rec["outputs"])
    if not n:
        return None, None, 0
    return np.asarray(xs, dtype=np.float64), np.asarray(ys), n


def _diagnose_jsonl(path: Path, names: list[str], where: str) -> None:
    """Re-read a JSON Lines capture file and raise at its first bad line (slow path)."""
    with open(path, encoding="utf-8", errors="replace") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            at = f"{where}:{lineno}"
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as exc:
                raise MonitorInputError(f"{at}: not a JSON object ({exc.msg})") from None
            _check_record(rec, names, at)


def _check_record(rec, names: list[str], at: str, skip: set[int] | frozenset = frozenset()) -> None:
    """Raise :class:`MonitorInputError` at ``at`` for the first problem of one record."""
    width = len(names)
    if not isinstance(rec, dict):
        raise MonitorInputError(f"{at}: expected a JSON object per line")
    for key in ("timestamp", "inputs", "outputs"):
        if key not in rec:
            raise MonitorInputError(
                f"{at}: record has no {key!r}; capture records need timestamp, inputs and outputs"
            )
    try:
        stamp = datetime.fromisoformat(str(rec["timestamp"]).replace("Z", "+00:00"))
        if stamp.tzinfo is None:
            raise ValueError("no zone")
    except ValueError:
        raise MonitorInputError(
            f"{at}: timestamp: {rec['timestamp']!r} is not ISO 8601 with a zone "
            "(e.g. 2026-11-29T08:00:00+00:00)"
        ) from None
    rows = rec["inputs"]
    if not isinstance(rows, list) or not all(isinstance(r, list) for r in rows):
        raise MonitorInputError(f"{at}: inputs: expected a list of rows (lists)")
    for i, row in enumerate(rows):
        if len(row) != width:
            raise MonitorInputError(
                f"{at}: inputs[{i}] has {len(row)} values; the model signature "
                f"(spec.model.signature.inputs) has {width} features (missing columns?)"
            )
        for j, v in enumerate(row):
            if (
                j not in skip
                and v is not None
                and (isinstance(v, bool) or not isinstance(v, int | float))
            ):
                raise MonitorInputError(
                    f"{at}: inputs[{i}][{j}] (feature {names[j]!r}): {v!r} is a "
                    f"{type(v).__name__}; features must be numbers"
                )
    outs = rec["outputs"]
    if not isinstance(outs, list) or len(outs) != len(rows):
        raise MonitorInputError(
            f"{at}: outputs: expected a list of one prediction per input row ({len(rows)})"
        )
    for j, v in enumerate(outs):
        if isinstance(v, bool) or not isinstance(v, int | float):
            raise MonitorInputError(
                f"{at}: outputs[{j}]: {v!r} is a {type(v).__name__}; predictions must be numbers"
            )

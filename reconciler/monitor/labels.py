"""Delayed labels: read a label file, check it against the captured predictions, store it by
day; and read back the predictions and labels of a window for the quality job.

Where labels live: ``spec.monitoring.labels.sink`` (a repository directory or an
``s3://bucket/prefix``), under
``<sink>/<name>/<env>/<YYYY-MM-DD>/`` (the day the labels were ingested, UTC), one
Parquet file per ingest, ``labels-<time>-<digest>.parquet`` (:func:`content_digest`: no
ingest replaces another's file), with columns ``id``,
``label`` (text: the class as the model names it, or the regression target) and
``received_at``. On S3 each file is one PutObject (visible whole or not at all); reads
download the sink's label files into ``<state_dir>/labels-cache/<bucket>/<key>/<name>/<env>``.

A prediction's id is the request's ``X-Request-ID`` (``request_id`` in the capture) for
a one-row request, and ``<request_id>/<row>`` (row from 0) for the rows of a
multi-row request.

Nothing is dropped silently: every rejected row is counted under its reason and kept in
``rejected-<time>-<digest>.jsonl`` beside the stored labels (:class:`IngestResult`). Formats,
checks and the SageMaker ground-truth shape: ``docs/monitor.md`` ("Labels").
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import re
from collections import Counter
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from reconciler.core.clock import now_iso
from reconciler.core.config import Config
from reconciler.monitor.data import (
    MonitorInputError,
    capture_dir,
    field_origin,
    s3_capture_files,
)
from reconciler.monitor.s3 import fetch_objects, put_objects
from reconciler.spec.model import Deployment
from reconciler.spec.paths import spec_path

if TYPE_CHECKING:  # annotations only
    import pandas as pd

DEFAULT_ID_FIELD = "request_id"
DEFAULT_LABEL_FIELD = "label"
DEFAULT_MAX_DELAY = "7d"
REASONS = (
    "unreadable",
    "missing_id",
    "missing_label",
    "wrong_type",
    "unknown_class",
    "unknown_id",
    "conflicting",
    "conflicts_with_stored",
)
"""Why a label row is rejected (the keys of :attr:`IngestResult.rejected`)."""
_DELAY = re.compile(r"^([1-9][0-9]*)(m|h|d)$")


def parse_delay(text: str) -> timedelta:
    """``<n>m``, ``<n>h`` or ``<n>d`` as a timedelta (the schema's pattern).

    Raises:
        ValueError: any other text.
    """
    match = _DELAY.match(str(text))
    if not match:
        raise ValueError(f"{text!r} is not <n>m, <n>h or <n>d")
    n, unit = int(match.group(1)), match.group(2)
    return timedelta(minutes=n) if unit == "m" else timedelta(hours=n if unit == "h" else 24 * n)


@dataclass(frozen=True)
class LabelSettings:
    """``spec.monitoring.labels`` with its defaults.

    Attributes:
        directory: ``<sink>/<name>/<env>`` (local), or for an ``s3://`` sink the local
            cache of its label files.
        id_field, label_field: the columns read from a label file.
        max_delay: how long a label may arrive after its prediction.
        uri: ``s3://<bucket>/<prefix>/<name>/<env>`` for an ``s3://`` sink, else ``""``.
    """

    directory: Path
    id_field: str
    label_field: str
    max_delay: timedelta
    uri: str = ""


def label_settings(dep: Deployment, config: Config) -> LabelSettings:
    """Read ``spec.monitoring.labels``.

    Raises:
        MonitorInputError: not set, an invalid ``s3://`` URI, another URI scheme, or a
            sink outside the repository.
    """
    section = dep.get("spec.monitoring.labels")
    if not isinstance(section, dict) or not section.get("sink"):
        raise MonitorInputError(
            f"{field_origin(dep, 'spec.monitoring')}.labels: not set; give "
            "spec.monitoring.labels {sink: <repository directory or s3://bucket/prefix>, "
            "id_field, label_field, max_delay}"
        )
    sink = str(section["sink"])
    checked = spec_path(
        dep, config, "spec.monitoring.labels.sink", sink, s3=True, error=MonitorInputError
    )
    uri, directory = "", checked.local
    if checked.s3 is not None:
        bucket, key = checked.s3
        uri = f"s3://{bucket}/{key + '/' if key else ''}{dep.name}/{dep.env}"
        directory = config.state_dir / "labels-cache" / bucket / key
    return LabelSettings(
        directory=directory / dep.name / dep.env,
        id_field=str(section.get("id_field") or DEFAULT_ID_FIELD),
        label_field=str(section.get("label_field") or DEFAULT_LABEL_FIELD),
        max_delay=parse_delay(section.get("max_delay") or DEFAULT_MAX_DELAY),
        uri=uri,
    )


def _s3_failure(settings: LabelSettings, what: str, exc: Exception) -> MonitorInputError:
    """A failed S3 call on the label sink, naming the URI (exit 2)."""
    return MonitorInputError(
        f"{settings.uri}/: labels cannot be {what}: {type(exc).__name__}: {exc}; check the "
        "bucket exists and the AWS credentials may list, read and write below this prefix"
    )


# -- predictions from the capture ------------------------------------------------------


@dataclass
class Predictions:
    """The captured predictions of a window, one row per predicted row.

    Attributes:
        frame: columns ``id`` (text), ``timestamp`` (UTC), ``prediction`` (text: the class
            or the number as captured), ``model_version``; and ``proba`` (a 2-D float
            array, rows × classes, or ``None`` when the capture has no probabilities).
        files: capture files read.
        synthetic_skipped: records marked synthetic in the capture (not counted).
        notes: remarks on where the files came from (an ``s3://`` sink: downloaded, or
            only the local spool when S3 could not be read).
    """

    frame: pd.DataFrame
    proba: object
    files: list[Path] = field(default_factory=list)
    synthetic_skipped: int = 0
    notes: list[str] = field(default_factory=list)


def prediction_ids(request_id: str, rows: int) -> list[str]:
    """The ids of a request's rows: the request id for one row, ``<id>/<row>`` for more."""
    return [request_id] if rows == 1 else [f"{request_id}/{i}" for i in range(rows)]


def _text(value) -> str:
    """A prediction or label as text: integral floats without ``.0`` (1.0 and 1 agree)."""
    if isinstance(value, bool):
        return str(int(value))
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def capture_files(
    dep: Deployment, config: Config, start: datetime, end: datetime
) -> tuple[list[Path], list[str]]:
    """The capture files of the UTC days ``start``..``end`` (day, then name order: names
    start with their first record's time), and notes on where they came from; an
    ``s3://`` sink is downloaded into the capture cache as the drift job reads it."""
    directory, _notes = capture_dir(dep, config)
    days, day = [], start.date()
    while day <= end.date():
        days.append(day.isoformat())
        day += timedelta(days=1)
    fmt = dep.get("spec.monitoring.capture.format", "jsonl")
    ext = "parquet" if fmt == "parquet" else "jsonl"
    files = [f for d in days for f in sorted((directory / d).glob(f"capture-*.{ext}"))]
    sink = dep.get("spec.monitoring.capture.sink")
    notes: list[str] = []
    if isinstance(sink, str) and sink.startswith("s3://"):  # as the drift job reads it
        files, notes = s3_capture_files(dep, config, sink, days, ext, files)
    return files, notes


def load_predictions(
    dep: Deployment, config: Config, start: datetime, end: datetime
) -> Predictions:
    """Every captured prediction timestamped in ``[start, end]`` (JSON Lines or Parquet;
    an ``s3://`` sink is downloaded into the capture cache as for the drift job).

    Records with a ``synthetic`` field are skipped and counted (the service does not
    capture marked traffic; older captures might hold it).

    Raises:
        MonitorInputError: a record that is not JSON or lacks ``request_id``/``outputs``.
    """
    import numpy as np  # heavy: loaded when this runs, not at every `modelops` start
    import pandas as pd  # heavy: loaded when this runs, not at every `modelops` start

    files, notes = capture_files(dep, config, start, end)
    ids: list[str] = []
    stamps: list[datetime] = []
    preds: list[str] = []
    versions: list[str] = []
    probas: list = []
    skipped = 0
    for path in files:
        for where, rec in capture_records(path, config):
            if rec.get("synthetic"):
                skipped += 1
                continue
            try:
                stamp = datetime.fromisoformat(str(rec["timestamp"]).replace("Z", "+00:00"))
                outs = rec["outputs"]
                rid = str(rec["request_id"])
            except (KeyError, ValueError, TypeError):
                raise MonitorInputError(
                    f"{where}: a capture record needs timestamp, request_id and outputs"
                ) from None
            if not (start <= stamp <= end) or not isinstance(outs, list):
                continue
            ids.extend(prediction_ids(rid, len(outs)))
            stamps.extend([stamp] * len(outs))
            preds.extend(_text(v) for v in outs)
            versions.extend([str(rec.get("model_version", ""))] * len(outs))
            pr = rec.get("probabilities")
            probas.extend(
                pr if isinstance(pr, list) and len(pr) == len(outs) else [None] * len(outs)
            )
    frame = pd.DataFrame(
        {
            "id": pd.Series(ids, dtype="object"),
            "timestamp": pd.to_datetime(pd.Series(stamps, dtype="object"), utc=True),
            "prediction": pd.Series(preds, dtype="object"),
            "model_version": pd.Series(versions, dtype="object"),
        }
    )
    proba = None
    if probas and all(p is not None for p in probas):
        width = {len(p) for p in probas}
        if len(width) == 1:
            proba = np.asarray(probas, dtype=np.float64)
    return Predictions(frame, proba, files, skipped, notes)


def capture_records(path: Path, config: Config):
    """(where, record) of a capture file (JSON Lines, or Parquet with JSON text columns)."""
    where = config.rel(path)
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq  # heavy: only for Parquet captures

        for i, rec in enumerate(pq.read_table(path).to_pylist(), 1):
            for key in ("inputs", "outputs", "probabilities"):
                if isinstance(rec.get(key), str):
                    rec[key] = json.loads(rec[key])
            if isinstance(rec.get("timestamp"), datetime):
                rec["timestamp"] = rec["timestamp"].isoformat()
            yield f"{where}:{i}", rec
        return
    with open(path, encoding="utf-8", errors="replace") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as exc:
                raise MonitorInputError(
                    f"{where}:{lineno}: not a JSON object ({exc.msg})"
                ) from None
            if isinstance(rec, dict):
                yield f"{where}:{lineno}", rec


# -- label files -----------------------------------------------------------------------


@dataclass
class IngestResult:
    """The outcome of ``modelops labels ingest``.

    Attributes:
        name, env: the deployment.
        file: the label file read; format: ``csv``, ``parquet``, ``jsonl`` or
            ``sagemaker`` (JSON Lines of SageMaker Model Monitor ground truth).
        rows: rows read; accepted: labels stored; duplicates: rows repeating an id with
            the same label (stored once, counted here); already_stored: labels equal to
            one stored before (not stored again).
        rejected: ``{reason: count}`` (:data:`REASONS`); examples: up to 5
            ``"<where>: <reason>: <detail>"`` lines per reason.
        late: accepted labels that arrived more than ``max_delay`` after their prediction.
        stored: the Parquet file written (or ``""``); rejected_file: the JSON Lines file
            of rejected rows with their reasons (or ``""``); both are ``s3://`` URIs on an
            ``s3://`` sink.
        time: ISO 8601 UTC.
    """

    name: str
    env: str
    file: str
    format: str
    rows: int = 0
    accepted: int = 0
    duplicates: int = 0
    already_stored: int = 0
    rejected: dict = field(default_factory=dict)
    examples: dict = field(default_factory=dict)
    late: int = 0
    stored: str = ""
    rejected_file: str = ""
    time: str = ""

    @property
    def rejected_total(self) -> int:
        """Rows rejected, all reasons."""
        return sum(self.rejected.values())

    def to_dict(self) -> dict:
        """JSON-ready mapping, with ``status`` (``ok`` or ``rejected rows``)."""
        out = asdict(self)
        out["rejected_total"] = self.rejected_total
        out["status"] = "rejected rows" if self.rejected_total else "ok"
        return out

    @property
    def message(self) -> str:
        """One line for the ledger history."""
        parts = [f"{self.accepted} of {self.rows} label(s) stored from {self.file}"]
        if self.rejected_total:
            why = ", ".join(f"{k} {v}" for k, v in sorted(self.rejected.items()))
            parts.append(f"{self.rejected_total} rejected ({why})")
        if self.duplicates:
            parts.append(f"{self.duplicates} duplicate(s)")
        if self.late:
            parts.append(f"{self.late} late")
        return "; ".join(parts)


def _format_of(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix == ".csv":
        return "csv"
    if suffix in (".parquet", ".pq"):
        return "parquet"
    if suffix in (".jsonl", ".ndjson", ".json"):
        return "jsonl"
    raise MonitorInputError(
        f"{path}: suffix {suffix or '(none)'!r}; label files are .csv, .parquet or .jsonl "
        "(JSON Lines, also SageMaker ground truth)"
    )


def read_label_file(
    path: Path, id_field: str, label_field: str
) -> tuple[list[tuple[str, object, object]], str, list[tuple[str, str]]]:
    """Rows ``(where, id, label)`` of a label file, its format, and unreadable rows.

    CSV and Parquet need the columns ``id_field`` and ``label_field``; JSON Lines records
    either carry them, or are SageMaker ground truth (``groundTruthData.data`` the label,
    ``eventMetadata.eventId`` the id).

    Returns:
        ``(rows, format, unreadable)``; ``unreadable`` is ``(where, why)`` per line that is
        not a JSON object.

    Raises:
        MonitorInputError: a missing or unreadable file, unknown suffix, or missing
            columns (naming the ones present).
    """
    import pandas as pd  # heavy: loaded when this runs, not at every `modelops` start

    if not path.is_file():
        raise MonitorInputError(f"{path}: label file not found")
    fmt = _format_of(path)
    want = [id_field, label_field]
    if fmt in ("csv", "parquet"):
        try:
            if fmt == "csv":
                frame = pd.read_csv(path, dtype=object, keep_default_na=False, na_values=[""])
            else:
                frame = pd.read_parquet(path)
        except Exception as exc:  # noqa: BLE001 - any reader failure is unreadable input
            raise MonitorInputError(
                f"{path}: cannot read the label file: {type(exc).__name__}: {exc}"
            ) from None
        missing = [c for c in want if c not in frame.columns]
        if missing:
            raise MonitorInputError(
                f"{path}: missing column(s) {', '.join(missing)} (spec.monitoring.labels."
                f"id_field/label_field); the file has: {', '.join(map(str, frame.columns[:20]))}"
            )
        rows = [
            (f"{path.name}:{i + (2 if fmt == 'csv' else 1)}", _none(a), _none(b))
            for i, (a, b) in enumerate(zip(frame[id_field], frame[label_field], strict=True))
        ]
        return rows, fmt, []
    rows, bad, sagemaker, flat = [], [], 0, 0
    with open(path, encoding="utf-8", errors="replace") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            where = f"{path.name}:{lineno}"
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as exc:
                bad.append((where, f"not a JSON object ({exc.msg})"))
                continue
            if not isinstance(rec, dict):
                bad.append((where, "not a JSON object"))
                continue
            if "groundTruthData" in rec or "eventMetadata" in rec:
                sagemaker += 1
                truth = rec.get("groundTruthData") or {}
                meta = rec.get("eventMetadata") or {}
                label = truth.get("data") if isinstance(truth, dict) else None
                if isinstance(truth, dict) and str(truth.get("encoding", "")).upper() == "JSON":
                    try:
                        label = json.loads(label) if isinstance(label, str) else label
                    except json.JSONDecodeError:
                        pass
                rows.append((where, meta.get("eventId") if isinstance(meta, dict) else None, label))
            else:
                flat += 1
                if id_field not in rec and label_field not in rec:
                    raise MonitorInputError(
                        f"{where}: missing column(s) {id_field}, {label_field} (spec.monitoring."
                        "labels.id_field/label_field) and not SageMaker ground truth "
                        f"(groundTruthData, eventMetadata.eventId); the record has: "
                        f"{', '.join(list(rec)[:20])}"
                    )
                rows.append((where, rec.get(id_field), rec.get(label_field)))
    return rows, ("sagemaker" if sagemaker and not flat else "jsonl"), bad


def _none(value):
    """``None`` for pandas' missing values."""
    try:
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return None
    except TypeError:
        pass
    return value


def stored_labels(settings: LabelSettings, days: list[str] | None = None) -> pd.DataFrame:
    """Labels stored so far (``id``, ``label``, ``received_at``), optionally only those
    ingested on ``days``; the first stored label of an id wins (later equal ones are not
    stored, conflicting ones are rejected at ingest). An ``s3://`` sink's label files are
    downloaded first (only those listed now are read).

    Raises:
        MonitorInputError: the ``s3://`` sink cannot be listed or read (naming the URI).
    """
    import pandas as pd  # heavy: loaded when this runs, not at every `modelops` start

    base = settings.directory
    if settings.uri:
        try:
            listed = fetch_objects(settings.uri, "labels-", ".parquet", base)
        except Exception as exc:  # noqa: BLE001 - botocore raises many kinds; all are named
            raise _s3_failure(settings, "read", exc) from None
        files = [f for f in listed if not days or f.parent.name in days]
    else:
        dirs = [base / d for d in days] if days else sorted(p for p in base.glob("*") if p.is_dir())
        files = [f for d in dirs for f in sorted(d.glob("labels-*.parquet"))]
    if not files:
        return pd.DataFrame({"id": [], "label": [], "received_at": []}, dtype="object")
    frame = pd.concat([pd.read_parquet(f) for f in files], ignore_index=True)
    return frame.drop_duplicates("id", keep="first").reset_index(drop=True)


def _coerce(label, classes: list[str] | None) -> tuple[str | None, str]:
    """The label as stored text, or ``(None, reason)``."""
    if label is None or (isinstance(label, str) and not label.strip()):
        return None, "missing_label"
    if classes is not None:
        if isinstance(label, list | dict):
            return None, "wrong_type"
        text = _text(label).strip()
        try:  # "1.0" in a CSV names class 1
            number = float(text)
            if number.is_integer() and text not in classes:
                text = str(int(number))
        except ValueError:
            pass
        return (text, "") if text in classes else (None, "unknown_class")
    if isinstance(label, bool):
        return None, "wrong_type"
    try:
        number = float(label)
    except (TypeError, ValueError):
        return None, "wrong_type"
    if not math.isfinite(number):
        return None, "wrong_type"
    return repr(number), ""


def ingest_labels(
    dep: Deployment,
    config: Config,
    file: Path,
    *,
    classes: list[str] | None,
    now: datetime | None = None,
) -> IngestResult:
    """Check a label file against the captured predictions and store the good rows.

    Args:
        dep, config: the deployment (``spec.monitoring.labels``, its capture).
        file: CSV, Parquet, JSON Lines or SageMaker ground-truth JSON Lines.
        classes: the classifier's classes as text (labels must be one of them), or
            ``None`` for a regressor (labels must be finite numbers).
        now: the ingest time (default now, UTC): the day directory, and the end of the
            span of predictions ids are looked up in (``max_delay`` plus
            ``window_hours`` back).

    Returns:
        An :class:`IngestResult`; the labels are written to
        ``<sink>/<name>/<env>/<day>/labels-<time>-<digest>.parquet`` and the rejected
        rows to ``rejected-<time>-<digest>.jsonl`` beside it (``digest``:
        :func:`content_digest` of the stored ``(id, label)`` pairs or rejected rows, so
        no ingest replaces another's file) (on an ``s3://`` sink: objects with those
        keys). Nothing goes to the ledger (the flow records the result).

    Raises:
        MonitorInputError: labels not configured, an unreadable file, missing columns; an
            ``s3://`` sink that cannot be listed, read or written (no bucket, access
            denied), naming the URI, with nothing written.
    """
    import pandas as pd  # heavy: loaded when this runs, not at every `modelops` start

    settings = label_settings(dep, config)
    now = (now or datetime.now(UTC)).astimezone(UTC)
    rows, fmt, unreadable = read_label_file(file, settings.id_field, settings.label_field)
    result = IngestResult(
        dep.name, dep.env, config.rel(file), fmt, rows=len(rows) + len(unreadable)
    )
    rejected: list[dict] = []
    counts: Counter = Counter()

    def reject(where: str, reason: str, detail: str, rid=None, label=None) -> None:
        counts[reason] += 1
        examples = result.examples.setdefault(reason, [])
        if len(examples) < 5:
            examples.append(f"{where}: {reason}: {detail}")
        rejected.append(
            {
                "where": where,
                "reason": reason,
                "detail": detail,
                "id": rid,
                "label": label if isinstance(label, str | int | float | None) else str(label),
            }
        )

    for where, why in unreadable:
        reject(where, "unreadable", why)
    hours = int(dep.get("spec.monitoring.window_hours", 24))
    preds = load_predictions(dep, config, now - settings.max_delay - timedelta(hours=hours), now)
    when = dict(zip(preds.frame["id"], preds.frame["timestamp"], strict=True))
    stored = stored_labels(settings)
    before = dict(zip(stored["id"], stored["label"], strict=True))
    seen: dict[str, tuple[str, str]] = {}
    conflicted: set[str] = set()
    for where, rid, raw in rows:
        if rid is None or (isinstance(rid, str) and not rid.strip()):
            reject(where, "missing_id", f"no {settings.id_field}", rid, raw)
            continue
        rid = _text(rid)
        label, why = _coerce(raw, classes)
        if label is None:
            valid = f"one of {', '.join(classes[:10])}" if classes else "a finite number"
            reject(where, why, f"{raw!r} for id {rid}; expected {valid}", rid, raw)
            continue
        if rid not in when:
            reject(where, "unknown_id", f"{rid} is not a captured prediction id", rid, raw)
            continue
        if rid in conflicted:
            reject(where, "conflicting", f"id {rid} has different labels in this file", rid, raw)
            continue
        if rid in seen:
            if seen[rid][0] == label:
                result.duplicates += 1
                continue
            conflicted.add(rid)
            first_where, first_label = seen.pop(rid)[1], None
            reject(
                first_where,
                "conflicting",
                f"id {rid} has different labels in this file",
                rid,
                first_label,
            )
            reject(where, "conflicting", f"id {rid} has different labels in this file", rid, raw)
            continue
        if rid in before:
            if before[rid] == label:
                result.already_stored += 1
            else:
                reject(
                    where,
                    "conflicts_with_stored",
                    f"id {rid}: {label} but {before[rid]} was stored before",
                    rid,
                    raw,
                )
            continue
        seen[rid] = (label, where)
    day = now.strftime("%Y-%m-%d")
    stamp = now.strftime("%Y%m%dT%H%M%S%fZ")
    out: dict[str, bytes] = {}
    if seen:
        digest = content_digest(sorted((rid, v[0]) for rid, v in seen.items()))
        frame = pd.DataFrame(
            {
                "id": list(seen),
                "label": [v[0] for v in seen.values()],
                "received_at": [now.isoformat()] * len(seen),
            }
        )
        buffer = io.BytesIO()
        frame.to_parquet(buffer, index=False)
        out[f"{day}/labels-{stamp}-{digest}.parquet"] = buffer.getvalue()
        result.late = sum(1 for rid in seen if now - when[rid] > settings.max_delay)
    if rejected:
        text = "".join(json.dumps(r, default=str) + "\n" for r in rejected)
        out[f"{day}/rejected-{stamp}-{content_digest(text)}.jsonl"] = text.encode()
    written = _store(settings, config, out)
    for rel, where in written.items():
        if rel.endswith(".parquet"):
            result.stored = where
        else:
            result.rejected_file = where
    result.accepted = len(seen)
    result.rejected = dict(counts)
    result.time = now_iso()
    return result


def content_digest(content) -> str:
    """First 16 hex digits of the SHA-256 of ``content``'s canonical JSON text (a str is
    hashed as it is): the part of a label or rejected-rows file name that keeps two
    ingests with the same ``now`` from replacing each other's file."""
    text = content if isinstance(content, str) else json.dumps(content, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _store(settings: LabelSettings, config: Config, files: dict[str, bytes]) -> dict[str, str]:
    """Write ``{<day>/<file>: body}`` below the sink; return ``{rel: where}`` (a
    repository-relative path, or the ``s3://`` URI). Local files are written beside and
    renamed into place; S3 objects land whole (:func:`reconciler.monitor.s3.put_objects`).

    Raises:
        MonitorInputError: the ``s3://`` sink refused a write (nothing is left behind).
    """
    if settings.uri:
        try:
            uris = put_objects(settings.uri, files)
        except Exception as exc:  # noqa: BLE001 - botocore raises many kinds; all are named
            raise _s3_failure(settings, "written", exc) from None
        return dict(zip(files, uris, strict=True))
    written = {}
    for rel, body in files.items():
        path = settings.directory / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        part = path.with_name(path.name + ".part")
        part.write_bytes(body)
        part.replace(path)
        written[rel] = config.rel(path)
    return written


__all__ = [
    "IngestResult",
    "LabelSettings",
    "Predictions",
    "capture_files",
    "capture_records",
    "content_digest",
    "ingest_labels",
    "label_settings",
    "load_predictions",
    "parse_delay",
    "prediction_ids",
    "read_label_file",
    "stored_labels",
]

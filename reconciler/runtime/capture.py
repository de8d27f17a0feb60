"""Traffic capture: sampled request/response records, written off the request path.

Shipped in every Bento (``.uris`` is its sibling in ``modelops_runtime``); imports
nothing from ``reconciler``. Record format (the monitoring job reads exactly this),
redaction, file layout and ``s3://`` shipping: ``docs/runtime.md``.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import queue
import random
import re
import secrets
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .uris import parse_s3_uri

_STOP = object()
SYNTHETIC_HEADER = "X-Modelops-Synthetic"
"""Request header that marks traffic modelops sends itself (value: its kind, e.g.
``smoke``, ``load``, ``canary``, ``demo``). The service answers it but never captures it
(only counts it: ``capture_stats.synthetic``), so drift, quality and KPI never see it."""
SYNTHETIC_KINDS = ("smoke", "load", "canary", "demo")


def redact_rows(rows: list, sensitive_idx: list[int], mode: str) -> list:
    """Return ``rows`` with the columns at ``sensitive_idx`` dropped (``None``) or hashed.

    Args:
        rows: list of rows (lists of JSON scalars).
        sensitive_idx: column indexes of sensitive features.
        mode: ``none`` | ``drop`` | ``hash``.
    """
    if not sensitive_idx or mode == "none":
        return rows
    out = []
    for row in rows:
        row = list(row)
        for i in sensitive_idx:
            if i < len(row):
                if mode == "drop":
                    row[i] = None
                else:
                    digest = hashlib.sha256(json.dumps(row[i]).encode()).hexdigest()[:16]
                    row[i] = f"sha256:{digest}"
        out.append(row)
    return out


def resolve_sink(sink: str, root: str | os.PathLike | None = None) -> tuple[Path, bool]:
    """Local directory to write under for ``sink``, and whether it is a spool for S3.

    A relative local sink is resolved against ``root`` (the spec repository; env
    ``MODELOPS_REPO_ROOT``, else the working directory). ``s3://bucket/prefix`` maps to
    ``<spool>/bucket/prefix`` where spool is env ``MODELOPS_CAPTURE_SPOOL`` or
    ``<root>/.modelops/capture-spool``.

    Raises:
        ValueError: a malformed ``s3://`` URI (see :func:`parse_s3_uri`); a local sink
            that is absolute or resolves outside ``root`` (``..``, a symbolic link): the
            runtime checks again what validate checked, before anything is written.
    """
    base = Path(root or os.environ.get("MODELOPS_REPO_ROOT") or os.getcwd())
    if sink.startswith("s3:"):
        bucket, key = parse_s3_uri(sink)
        spool = Path(os.environ.get("MODELOPS_CAPTURE_SPOOL") or base / ".modelops/capture-spool")
        return (spool / bucket / key if key else spool / bucket), True
    path = Path(sink)
    inside = base.resolve()
    if path.is_absolute() or not (base / path).resolve().is_relative_to(inside):
        raise ValueError(
            f"capture sink {sink!r} leaves the repository {inside} (absolute, '..' or a "
            "symbolic link); nothing is captured there"
        )
    return base / path, False


_CAPTURE_FILE = re.compile(
    r"^capture-(?:(?P<stamp>\d{8}T\d{12}Z)-)?(?P<pid>\d+)-(?:(?P<writer>[0-9a-f]{12})-)?\d+"
    r"\.(?:jsonl|parquet)$"
)
"""A capture file's name: ``capture-<first record UTC, %Y%m%dT%H%M%S%fZ>-<pid>-<writer
id>-<n>.<ext>``; the older ``capture-<pid>-<n>.<ext>`` (no stamp, no writer id) still
matches so a spool left by an older runtime is shipped."""

_LIVE_WRITERS: set[str] = set()
"""Writer ids of the :class:`CaptureWriter` objects of this process that are not closed:
a spooled file of this pid with another writer id was left by an earlier process that
had the same pid (a restarted container is pid 1 again)."""


def capture_file_name(first: _dt.datetime, pid: int, writer: str, n: int, ext: str) -> str:
    """The name of a new capture file (unique across writers, processes, restarts, hosts).

    Args:
        first: timestamp of the file's first record (names sort by it within a day).
        pid: the writing process; writer: the writer's random id (12 hex digits, 48 bits
            from :func:`secrets.token_hex`); n: the writer's file counter (1, 2, ...);
        ext: ``jsonl`` or ``parquet``.
    """
    stamp = first.astimezone(_dt.UTC).strftime("%Y%m%dT%H%M%S%fZ")
    return f"capture-{stamp}-{pid}-{writer}-{n:06d}.{ext}"


class CaptureShipper:
    """Uploads closed capture files from the local spool to S3 (one daemon thread).

    Args:
        spool: the local directory the writer writes under for this sink
            (:func:`resolve_sink`: ``<spool>/<bucket>/<prefix>``).
        uri: the sink, ``s3://bucket/prefix``.
        retry_s: seconds between retries of failed uploads.
        client: an S3 client (default: ``boto3.client("s3")`` made on the thread).

    Attributes:
        shipped: files uploaded (and deleted locally); errors, last_error: failed
            attempts and the last failure (``/metadata`` shows them).

    A file's key is ``<prefix>/<path relative to spool>``, so S3 holds the same
    ``<deployment>/<env>/<YYYY-MM-DD>/capture-<stamp>-<pid>-<writer>-<n>.<ext>`` layout
    (:func:`capture_file_name`) the monitoring job reads; a key is never reused, so an
    upload never replaces another writer's object. Raises nothing: capture must never
    take serving down.
    """

    def __init__(
        self,
        spool: str | os.PathLike,
        uri: str,
        retry_s: float = 30.0,
        client: Any = None,
    ) -> None:
        self.spool = Path(spool)
        self.bucket, self.prefix = parse_s3_uri(uri)
        self.retry_s = retry_s
        self.shipped = 0
        self.errors = 0
        self.last_error = ""
        self._client = client
        self._queue: queue.Queue = queue.Queue()
        self._failed: list[Path] = []
        for path in self._leftovers():
            self._queue.put(path)
        self._thread = threading.Thread(target=self._run, name="modelops-ship", daemon=True)
        self._thread.start()

    def ship(self, path: str | os.PathLike) -> None:
        """Queue a closed capture file for upload (called by :class:`CaptureWriter`)."""
        self._queue.put(Path(path))

    def close(self, timeout_s: float = 10.0) -> None:
        """Upload what is queued (and retry failures once), then stop; waits at most
        ``timeout_s`` seconds. Files that could not be uploaded stay in the spool."""
        self._queue.put(_STOP)
        self._thread.join(timeout_s)

    def key_for(self, path: Path) -> str:
        """The S3 key of a spooled file (``<prefix>/<deployment>/<env>/<day>/<file>``)."""
        rel = path.relative_to(self.spool).as_posix()
        return f"{self.prefix}/{rel}" if self.prefix else rel

    def _leftovers(self) -> list[Path]:
        """Capture files in the spool written by processes that are gone."""
        out = []
        if not self.spool.is_dir():
            return out
        for path in sorted(self.spool.rglob("capture-*")):
            match = _CAPTURE_FILE.match(path.name)
            if match and path.is_file() and _left_over(match):
                out.append(path)
        return out

    def _upload(self, path: Path) -> bool:
        try:
            if self._client is None:
                import boto3  # heavy: only for s3:// sinks

                self._client = boto3.client("s3")
            self._client.upload_file(str(path), self.bucket, self.key_for(path))
            path.unlink()
            self.shipped += 1
            return True
        except FileNotFoundError:
            return True  # removed under us (retention clean-up): nothing to ship
        except Exception as exc:  # noqa: BLE001 - counted, retried, never raised
            self.errors += 1
            where = f"s3://{self.bucket}/{self.key_for(path)}"
            self.last_error = f"{where}: {type(exc).__name__}: {exc}"
            return False

    def _run(self) -> None:
        last_retry = time.monotonic()
        while True:
            try:
                item = self._queue.get(timeout=self.retry_s)
            except queue.Empty:
                item = None
            stopping = item is _STOP
            if isinstance(item, Path) and not self._upload(item):
                self._failed.append(item)
            if self._failed and (stopping or time.monotonic() - last_retry >= self.retry_s):
                last_retry = time.monotonic()
                self._failed = [p for p in self._failed if not self._upload(p)]
            if stopping:
                return


def _left_over(match: re.Match) -> bool:
    """Whether the capture file named by ``match`` has no live writer any more: its
    process is gone, or it is this process's pid but no open writer of this process has
    its writer id (an earlier container or process that had the same pid wrote it)."""
    pid, writer = int(match.group("pid")), match.group("writer")
    if pid == os.getpid() and writer is not None:
        return writer not in _LIVE_WRITERS
    return not _alive(pid)


def _alive(pid: int) -> bool:
    """Whether process ``pid`` exists (a capture file's writer may still append to it)."""
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class CaptureWriter:
    """Background writer of capture records (one daemon thread, one bounded queue).

    Args:
        directory: local base directory (see :func:`resolve_sink`).
        deployment: deployment name (``metadata.name``); env: environment name.
        sample_rate: share of requests recorded, 0..1 (``monitoring.capture.sample_rate``).
        fmt: ``jsonl`` or ``parquet``.
        redact: ``none`` | ``drop`` | ``hash``; sensitive_idx: column indexes to redact.
        max_records: records per file before a new file is started.
        queue_size: records held in memory at most; beyond it records are dropped.
        flush_interval_s: the writer flushes open JSON Lines files at least this often
            (seconds).
        parquet_flush_s: a Parquet file is written once ``max_records`` records are
            pending or the oldest pending record is this old (seconds), and on close.
        max_file_age_s: a JSON Lines file is closed once it is this old (seconds), even
            when idle; None keeps it open until ``max_records`` or the day boundary.
        on_close: called with the path of every file once it is complete (closed JSON
            Lines file, written Parquet file), e.g. :meth:`CaptureShipper.ship`.
        confine: when given, every directory a capture file is created in must resolve
            inside it (checked before each new file: a symbolic link swapped in after
            the server started is refused, counted in ``errors``, nothing written).
    """

    def __init__(
        self,
        directory: str | os.PathLike,
        deployment: str,
        env: str,
        sample_rate: float,
        fmt: str = "jsonl",
        redact: str = "none",
        sensitive_idx: list[int] | None = None,
        max_records: int = 10000,
        queue_size: int = 10000,
        flush_interval_s: float = 1.0,
        parquet_flush_s: float = 60.0,
        max_file_age_s: float | None = None,
        on_close: Callable[[Path], None] | None = None,
        confine: str | os.PathLike | None = None,
    ) -> None:
        self.base = Path(directory) / deployment / env
        self.confine = Path(confine).resolve() if confine is not None else None
        self.sample_rate = float(sample_rate)
        self.fmt = fmt
        self.redact = redact
        self.sensitive_idx = list(sensitive_idx or [])
        self.max_records = max_records
        self.flush_interval_s = flush_interval_s
        self.parquet_flush_s = parquet_flush_s
        self.max_file_age_s = max_file_age_s
        self.on_close = on_close
        self.queue: queue.Queue = queue.Queue(maxsize=queue_size)
        self.dropped = 0
        self.written = 0
        self.errors = 0
        self.last_error = ""
        self.synthetic: dict[str, int] = {}
        self._n = 0
        self._pid = os.getpid()
        self.writer_id = secrets.token_hex(6)
        _LIVE_WRITERS.add(self.writer_id)
        self._thread = threading.Thread(target=self._run, name="modelops-capture", daemon=True)
        self._thread.start()

    def sampled(self) -> bool:
        """Decide (at random, ``sample_rate``) whether this request is captured."""
        return self.sample_rate >= 1.0 or (
            self.sample_rate > 0 and random.random() < self.sample_rate
        )

    def skip_synthetic(self, kind: str) -> None:
        """Count one request marked with :data:`SYNTHETIC_HEADER` (never captured).

        Unknown kinds are counted as ``other`` (the header is caller input: the counter
        keys stay bounded)."""
        key = kind if kind in SYNTHETIC_KINDS else "other"
        self.synthetic[key] = self.synthetic.get(key, 0) + 1

    def submit(
        self,
        request_id: str,
        model_version: str,
        latency_ms: float,
        inputs: list,
        outputs: list,
        timestamp: _dt.datetime | None = None,
        probabilities: list | None = None,
    ) -> bool:
        """Queue one record without blocking; False (and ``dropped`` + 1) if the queue is full.

        ``inputs`` (rows), ``outputs`` (one prediction per row: the class label, or the
        regression output) and ``probabilities`` (one list of class probabilities per
        row, in the model's class order; ``None`` when the model has none) are kept by
        reference; redaction and encoding happen on the writer thread.
        """
        ts = timestamp or _dt.datetime.now(_dt.UTC)
        item = (ts, request_id, model_version, latency_ms, inputs, outputs, probabilities)
        try:
            self.queue.put_nowait(item)
            return True
        except queue.Full:
            self.dropped += 1
            return False

    def close(self, timeout_s: float = 5.0) -> None:
        """Flush queued records and stop the thread (waits at most ``timeout_s`` seconds)."""
        try:
            self.queue.put(_STOP, timeout=timeout_s)
        except queue.Full:
            return
        self._thread.join(timeout_s)
        if not self._thread.is_alive():
            _LIVE_WRITERS.discard(self.writer_id)

    # -- writer thread ---------------------------------------------------------------

    def _record(self, item: tuple) -> dict[str, Any]:
        ts, request_id, version, latency_ms, inputs, outputs, probabilities = item
        record = {
            "timestamp": ts.isoformat(),
            "request_id": request_id,
            "model_version": version,
            "latency_ms": round(float(latency_ms), 3),
            "inputs": redact_rows(inputs, self.sensitive_idx, self.redact),
            "outputs": outputs,
        }
        if probabilities is not None:
            record["probabilities"] = probabilities
        return record

    def _confined(self, directory: Path) -> None:
        """Raise ``PermissionError`` when ``directory`` resolves outside ``confine``."""
        if self.confine is not None and not directory.resolve().is_relative_to(self.confine):
            raise PermissionError(
                f"capture directory {directory} resolves to {directory.resolve()}, outside "
                f"the sink {self.confine}; record not written"
            )

    def _new_path(self, day: str, first: _dt.datetime) -> Path:
        """A new file for ``day`` named by :func:`capture_file_name` (``first``: the
        timestamp of its first record)."""
        self._n += 1
        ext = "parquet" if self.fmt == "parquet" else "jsonl"
        directory = self.base / day
        self._confined(directory)  # before mkdir: nothing is created outside either
        directory.mkdir(parents=True, exist_ok=True)
        self._confined(directory)
        return directory / capture_file_name(first, self._pid, self.writer_id, self._n, ext)

    def _run(self) -> None:
        handle = None
        day = ""
        count = 0
        pending: list[dict] = []  # parquet: records not yet written
        pending_since = 0.0
        opened_at = 0.0
        while True:
            try:
                item = self.queue.get(timeout=self.flush_interval_s)
            except queue.Empty:
                item = None
            if item is _STOP:
                break
            try:
                if item is None:  # idle: flush what is open, close it when old enough
                    if handle is not None:
                        handle.flush()
                        if (
                            self.max_file_age_s is not None
                            and time.monotonic() - opened_at >= self.max_file_age_s
                        ):
                            self._finish(handle)
                            handle = None
                    if pending and time.monotonic() - pending_since >= self.parquet_flush_s:
                        self._write_parquet(pending, day)
                        pending = []
                    continue
                record = self._record(item)
                rec_day = item[0].strftime("%Y-%m-%d")
                if self.fmt == "parquet":
                    if pending and rec_day != day:
                        self._write_parquet(pending, day)
                        pending = []
                    if not pending:
                        pending_since = time.monotonic()
                    day = rec_day
                    pending.append(record)
                    if (
                        len(pending) >= self.max_records
                        or time.monotonic() - pending_since >= self.parquet_flush_s
                    ):
                        self._write_parquet(pending, day)
                        pending = []
                    continue
                # A file removed under us (retention clean-up, a new monitoring window)
                # would swallow records into an unlinked inode: start a new file instead.
                if (
                    handle is None
                    or rec_day != day
                    or count >= self.max_records
                    or not os.path.exists(handle.name)
                    or (
                        self.max_file_age_s is not None
                        and time.monotonic() - opened_at >= self.max_file_age_s
                    )
                ):
                    if handle is not None:
                        self._finish(handle)
                    day, count = rec_day, 0
                    handle = open(self._new_path(day, item[0]), "a", encoding="utf-8")  # noqa: SIM115
                    opened_at = time.monotonic()
                handle.write(json.dumps(record, separators=(",", ":")) + "\n")
                count += 1
                self.written += 1
                if self.queue.empty():
                    handle.flush()
            except Exception as exc:  # noqa: BLE001 - capture must never take serving down
                self.errors += 1
                self.last_error = f"{type(exc).__name__}: {exc}"
        try:
            if pending:
                self._write_parquet(pending, day)
        except Exception as exc:  # noqa: BLE001
            self.errors += 1
            self.last_error = f"{type(exc).__name__}: {exc}"
        if handle is not None:
            self._finish(handle)

    def _finish(self, handle) -> None:
        """Close a JSON Lines file and hand it to ``on_close`` (unless it was removed)."""
        handle.close()
        if self.on_close is not None and os.path.exists(handle.name):
            self.on_close(Path(handle.name))

    def _write_parquet(self, records: list[dict], day: str) -> None:
        import pyarrow as pa  # heavy: only for format parquet
        import pyarrow.parquet as pq  # heavy: only for format parquet

        cols = {
            "timestamp": [r["timestamp"] for r in records],
            "request_id": [r["request_id"] for r in records],
            "model_version": [r["model_version"] for r in records],
            "latency_ms": [r["latency_ms"] for r in records],
            "inputs": [json.dumps(r["inputs"]) for r in records],
            "outputs": [json.dumps(r["outputs"]) for r in records],
            "probabilities": [json.dumps(r.get("probabilities")) for r in records],
        }
        path = self._new_path(day, _dt.datetime.fromisoformat(records[0]["timestamp"]))
        pq.write_table(pa.table(cols), path)
        if self.on_close is not None:
            self.on_close(path)
        self.written += len(records)

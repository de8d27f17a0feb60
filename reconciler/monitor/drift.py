"""The drift job: Evidently data drift of captured traffic against the reference data.

One ``ValueDrift`` per signature feature plus one on the predictions; the dataset
drifted when the share of drifted features reaches ``spec.monitoring.drift.threshold``.
Outputs: an HTML report and ``summary.json`` per run; the job writes nothing to the
ledger (``reconciler.flow.monitor`` records the result). Why these metrics, sampling
and the measurements: ``docs/monitor.md``.
"""

from __future__ import annotations

import importlib
import json
import threading
import time
import warnings
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from html import escape
from pathlib import Path
from typing import TYPE_CHECKING

from reconciler.build.fetch import FetchError, is_remote, resolve_model
from reconciler.core.clock import now_iso
from reconciler.core.config import Config
from reconciler.core.digests import file_sha256
from reconciler.monitor.data import (
    Features,
    MonitorInputError,
    features_of,
    load_capture,
    read_table,
    reference_path,
    sample_indices,
)
from reconciler.monitor.power import default_method, min_rows
from reconciler.runtime import frameworks
from reconciler.runtime.uris import URI_SCHEMES
from reconciler.spec.model import Deployment

if TYPE_CHECKING:  # annotations only
    import numpy as np
    import pandas as pd

DEFAULT_SAMPLE_SIZE = 50_000
"""Rows per side above which the drift job samples (``spec.monitoring.drift.sample_size``)."""
DEFAULT_SHARE_THRESHOLD = 0.5
"""Share of drifted features at which the dataset counts as drifted (Evidently's default)."""
PREDICTION = "prediction"
INSUFFICIENT = "insufficient data"
"""The verdict of a window too small for the test (never drift)."""
TESTED, EMPTY, CONSTANT = "tested", "empty", "constant"
"""A feature's ``status`` in :attr:`DriftResult.features`."""
NUMERIC_ONLY_METHODS = {"ks", "wasserstein"}


@dataclass
class DriftResult:
    """The outcome of one drift run.

    Attributes:
        name, env: the deployment and environment.
        drifted: True when ``share_drifted >= threshold``.
        share_drifted: drifted features / features compared (0..1).
        threshold: the share threshold used (``spec.monitoring.drift.threshold``).
        features: one ``{"name", "score", "test", "threshold", "drifted", "status"}`` per
            feature, in signature order; ``score`` is the method's statistic (PSI,
            distance) or p-value (ks, chisquare), ``test`` the method's name; ``status``
            is ``tested``, ``empty`` (no values on a side: ``side`` says which; not
            tested, not counted) or ``constant`` (one and the same value on both sides:
            not drifted, counted).
        prediction_drift: the same mapping for the predictions, or ``None`` (with a note)
            when it could not be computed.
        sampled: rows per side used when sampling happened, else ``None``.
        rows: ``{"current": n, "reference": n}`` rows available before sampling.
        rows_used: ``{"current": n, "reference": n}`` rows compared.
        requests: captured requests in the window (0 for ``--current`` data).
        window: ``{"start", "end"}`` ISO 8601 UTC of the capture window, or ``{}``.
        source: where the current data came from (capture directory or file).
        report_html, summary_json: paths of the written report and summary.
        notes: remarks (sampling, redacted features, spool, prediction drift skipped).
        seconds: wall time of the run (s).
        time: when the run finished (ISO 8601 UTC).
        verdict: ``drifted``, ``ok`` or ``insufficient data`` (the current window has
            fewer rows than ``min_rows``: no test ran, never drift).
        min_rows, min_rows_rule: the minimum current rows for the test and its rule
            (:func:`reconciler.monitor.power.min_rows`).
        what_if: the current data came from ``--current`` (nothing is recorded).
    """

    name: str
    env: str
    drifted: bool
    share_drifted: float
    threshold: float
    features: list[dict]
    prediction_drift: dict | None
    sampled: int | None
    rows: dict
    rows_used: dict
    requests: int
    window: dict
    source: str
    report_html: str = ""
    summary_json: str = ""
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0
    time: str = ""
    verdict: str = ""
    min_rows: int = 0
    min_rows_rule: str = ""
    what_if: bool = False

    @property
    def drifted_features(self) -> list[str]:
        """Names of the features that drifted."""
        return [f["name"] for f in self.features if f["drifted"]]

    def to_dict(self) -> dict:
        """JSON-ready mapping of every field plus ``status`` (``drifted`` / ``ok``)."""
        out = asdict(self)
        out["status"] = self.verdict or ("drifted" if self.drifted else "ok")
        out["drifted_features"] = self.drifted_features
        return out

    @property
    def insufficient(self) -> bool:
        """True when the window was too small for the test (verdict ``insufficient data``)."""
        return self.verdict == INSUFFICIENT

    @property
    def history_message(self) -> str:
        """One line for the ledger history: drifted/compared features, share, threshold
        (or the window's rows against the minimum when it was too small)."""
        if self.insufficient:
            return (
                f"insufficient data: {self.rows_used['current']} current rows, the test "
                f"needs at least {self.min_rows} ({self.min_rows_rule})"
            )
        tested = [f for f in self.features if f.get("status", TESTED) != EMPTY]
        drifted = sum(f["drifted"] for f in tested)
        names = ", ".join(self.drifted_features[:5]) or "none"
        return (
            f"{drifted}/{len(tested)} features drifted "
            f"(share {self.share_drifted:.2f}, threshold {self.threshold:.2f}): {names}"
        )


def preload_evidently() -> threading.Thread:
    """Start importing Evidently (about 5 s here) on a daemon thread; returns the thread.

    Called first thing by the drift job so that the import overlaps reading the data;
    a later ``import evidently`` waits for it (Python's import lock).
    """
    thread = threading.Thread(
        target=importlib.import_module, args=("evidently.metrics",), daemon=True
    )
    thread.start()
    return thread


def _sample(frame: pd.DataFrame, size: int, seed: int) -> pd.DataFrame:
    if len(frame) <= size:
        return frame
    return frame.iloc[sample_indices(len(frame), size, seed)].reset_index(drop=True)


def _sample_array(x: np.ndarray, y: np.ndarray | None, size: int, seed: int):
    if len(x) <= size:
        return x, y
    idx = sample_indices(len(x), size, seed)
    return x[idx], (y[idx] if y is not None else None)


def load_live_model(dep: Deployment, config: Config):
    """The live model object after checking its digest, or the reason it is not loaded.

    Loading uses the build's framework adapters (``reconciler.runtime.frameworks``), so the
    predictions are the ones the service returns.

    Returns:
        ``(model, "")`` or ``(None, reason)``; a pickled model runs code when loaded, so
        it is loaded only when its SHA-256 equals ``spec.model.sha256`` (when the spec
        gives one): a repository path, or an ``s3://`` / ``models:/`` model fetched into
        the cache (:func:`reconciler.build.fetch.resolve_model`).
    """
    uri = dep.get("spec.model.uri")
    if is_remote(uri):  # fetched into the cache, its digest checked against the spec's
        try:
            path = resolve_model(dep, config).path
        except FetchError as exc:
            return None, exc.message
    elif not isinstance(uri, str) or uri.startswith(URI_SCHEMES):
        return None, f"model {uri} is not a repository file; cannot load it here"
    else:
        path = config.repo_path(uri)
        if path is None or not path.is_file():
            return None, f"model file {uri} not found"
        want = dep.get("spec.model.sha256")
        if isinstance(want, str) and file_sha256(path) != want:
            return None, f"model file {uri} does not match spec.model.sha256; not loaded"
    framework = dep.get("spec.model.framework", "sklearn")
    try:
        return frameworks.load_model(framework, path, dep.get("spec.model.task", "")), ""
    except Exception as exc:  # noqa: BLE001 - FrameworkError or any unpickling failure
        return None, f"cannot load model {uri}: {exc}"


def predict(dep: Deployment, model, frame: pd.DataFrame, names: list[str]) -> np.ndarray:
    """Predictions ``(rows,)`` of ``model`` on ``frame[names]`` cast to the signature dtype."""
    import numpy as np  # heavy: loaded when this runs, not at every `modelops` start

    dtype = dep.get("spec.model.signature.inputs.dtype", "float32")
    x = frame[names].to_numpy(dtype=np.dtype(dtype))
    framework = dep.get("spec.model.framework", "sklearn")
    return np.asarray(frameworks.predict(framework, model, x, dep.get("spec.model.task", ""))[0])


def _output_dir(dep: Deployment, config: Config, capture_dir: Path | None) -> Path:
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
    base = capture_dir if capture_dir is not None else config.state_dir / "drift" / dep.key
    return base / "drift" / stamp if capture_dir is not None else base / stamp


def run_drift(
    dep: Deployment,
    config: Config,
    *,
    current: pd.DataFrame | str | None = None,
    sample_size: int | None = None,
    seed: int = 0,
    now: datetime | None = None,
) -> DriftResult:
    """Compute data drift of one deployment's current data against its reference data.

    Args:
        dep: the resolved deployment (its ``spec.monitoring`` and ``spec.model``).
        config: repository configuration (root, state directory).
        current: the current data: a frame or a Parquet/CSV path (columns = feature
            names, optional ``prediction``); ``None`` reads the captured traffic of the
            last ``spec.monitoring.window_hours`` (default 24) hours.
        sample_size: rows per side above which to sample (default
            ``spec.monitoring.drift.sample_size``, else 50 000).
        seed: the sampling seed (fixed, so a run can be repeated).
        now: the end of the capture window (default: now, UTC).

    Returns:
        A :class:`DriftResult`, also written as ``summary.json`` and as an Evidently HTML
        report; nothing is written to the ledger (:func:`reconciler.flow.monitor.monitor_run`
        records it).

    Raises:
        MonitorInputError: (exit 2) missing/unreadable reference data, capture with
            missing columns or wrong types, an empty window.
    """
    started = time.perf_counter()
    importer = preload_evidently()
    return _run(dep, config, current, sample_size, seed, now, importer, started)


def _run(dep, config, current, sample_size, seed, now, importer, started) -> DriftResult:
    import pandas as pd  # heavy: loaded when this runs, not at every `modelops` start

    feats = features_of(dep)
    names = feats.compared
    notes: list[str] = []
    if feats.redacted:
        notes.append(
            f"redacted features excluded from drift: {', '.join(feats.redacted)} "
            "(spec.data.sensitive_fields, spec.monitoring.capture.redact)"
        )
    if not names:
        raise MonitorInputError(
            f"{dep.locate('spec.data.sensitive_fields')}: spec.data.sensitive_fields: every "
            "feature is redacted in the capture, so there is nothing to compare"
        )
    size = int(sample_size or dep.get("spec.monitoring.drift.sample_size") or DEFAULT_SAMPLE_SIZE)
    ref_file, ref_origin = reference_path(dep, config)
    # Redacted features are not compared, but the model needs every feature to predict
    # the reference rows for prediction drift (the reference data is not redacted).
    reference = read_table(
        ref_file,
        feats.names if feats.redacted else names,
        what="reference data",
        origin=ref_origin,
        categorical=feats.categorical,
        sample_size=size,
        seed=seed + 1,
    )
    capture_dir = None
    requests, window = 0, {}
    cur_outputs = None
    if current is None:
        cap = load_capture(dep, config, feats, now=now)
        capture_dir = cap.directory
        notes.extend(cap.notes)
        requests = cap.requests
        window = {"start": _iso(cap.start), "end": _iso(cap.end)}
        source = config.rel(cap.directory)
        n_current = len(cap.inputs)
        x, cur_outputs = _sample_array(cap.inputs, cap.outputs, size, seed)
        idx = [feats.names.index(n) for n in names]
        cur = pd.DataFrame(x[:, idx], columns=names)
    else:
        if isinstance(current, pd.DataFrame):
            source = "data frame"
            frame = current
            missing = [n for n in names if n not in frame.columns]
            if missing:
                raise MonitorInputError(
                    f"current data lacks feature column(s) {', '.join(missing[:5])} of the "
                    "model signature (spec.model.signature.inputs.names)"
                )
            bad = [n for n in names if not pd.api.types.is_numeric_dtype(frame[n])]
            if bad and not feats.categorical:
                raise MonitorInputError(
                    f"current data: column(s) {', '.join(bad[:5])} are not numeric"
                )
            if frame.empty:
                raise MonitorInputError("current data has no rows")
            n_current = len(frame)
        else:
            path = Path(current)
            if not path.is_absolute() and not path.exists():
                path = config.root / path
            source = config.rel(path)
            cols = [*names, PREDICTION] if _has_column(path, PREDICTION) else list(names)
            frame = read_table(
                path,
                cols,
                what="current data",
                origin="--current",
                categorical=feats.categorical,
                sample_size=size,
                seed=seed,
            )
            n_current = frame.attrs["rows_total"]
        cur = _sample(frame, size, seed)
        if PREDICTION in cur.columns:
            cur_outputs = cur[PREDICTION].to_numpy()
        cur = cur[names].reset_index(drop=True)
    n_reference = reference.attrs.get("rows_total", len(reference))
    ref_full = _sample(reference, size, seed + 1)
    ref = ref_full[names].reset_index(drop=True) if feats.redacted else ref_full
    sampled = size if (n_current > size or n_reference > size) else None
    if sampled:
        notes.append(
            f"sampled {min(n_current, size)} of {n_current} current and "
            f"{min(n_reference, size)} of {n_reference} reference rows "
            f"(sample_size {size}, seed {seed})"
        )
    screened = screen_features(cur, ref, names)
    for entry in screened.values():
        notes.append(f"feature {entry['name']}: {entry['note']}")
    tested = [n for n in names if n not in screened]
    method = dep.get("spec.monitoring.drift.method")
    if method == "chisquare" and not feats.categorical:
        raise MonitorInputError(
            f"{dep.locate('spec.monitoring.drift.method')}: spec.monitoring.drift.method: "
            f"chisquare applies to categorical features, and this signature's features are "
            f"{feats.dtype}; use psi, ks, wasserstein, jensenshannon or kl_div"
        )
    feature_threshold = dep.get("spec.monitoring.drift.feature_threshold")
    share_threshold = float(dep.get("spec.monitoring.drift.threshold", DEFAULT_SHARE_THRESHOLD))
    minimum = min_rows(
        method or default_method(len(ref), feats.categorical),
        feature_threshold,
        len(ref),
        categories=2 if feats.categorical else None,
    )
    base = dict(
        name=dep.name,
        env=dep.env,
        threshold=share_threshold,
        sampled=sampled,
        rows={"current": n_current, "reference": n_reference},
        rows_used={"current": len(cur), "reference": len(ref)},
        requests=requests,
        window=window,
        source=source,
        notes=notes,
        min_rows=minimum.rows,
        min_rows_rule=minimum.rule,
        what_if=current is not None,
    )
    if len(cur) < minimum.rows or not tested:
        if not tested:
            notes.append("no feature has values on both sides: nothing to test")
        else:
            notes.append(
                f"insufficient data: {len(cur)} current rows; the test needs at least "
                f"{minimum.rows} ({minimum.rule}); no drift test ran"
            )
        features = [screened.get(n) or _untested(n) for n in names]
        return _finish(
            DriftResult(
                drifted=False,
                share_drifted=0.0,
                features=features,
                prediction_drift=None,
                verdict=INSUFFICIENT,
                **base,
            ),
            None,
            dep,
            config,
            capture_dir,
            started,
            len(ref),
        )

    # prediction drift: captured outputs vs the live model on the reference rows
    model, why = load_live_model(dep, config)
    ref_pred = cur_pred = None
    if model is not None and (not feats.redacted or cur_outputs is not None):
        try:
            ref_pred = predict(dep, model, ref_full, feats.names if feats.redacted else names)
            cur_pred = cur_outputs if cur_outputs is not None else predict(dep, model, cur, names)
        except Exception as exc:  # noqa: BLE001 - a model that cannot predict these rows
            why = f"the live model could not predict the rows: {type(exc).__name__}: {exc}"
            ref_pred = cur_pred = None
    elif model is not None:
        why = "redacted features cannot be fed to the model and no predictions were captured"
    if ref_pred is None:
        notes.append(f"prediction drift skipped: {why}")

    importer.join()
    from evidently import DataDefinition, Dataset, Report  # heavy: about 5 s, preloaded
    from evidently.metrics import ValueDrift  # heavy: see preload_evidently

    metrics = [ValueDrift(column=n, method=method, threshold=feature_threshold) for n in tested]
    numerical = [] if feats.categorical else list(tested)
    categorical = list(tested) if feats.categorical else []
    cur, ref = cur[tested], ref[tested]
    if ref_pred is not None:
        cur = cur.assign(**{PREDICTION: cur_pred})
        ref = ref.assign(**{PREDICTION: ref_pred})
        is_class = dep.get("spec.model.task", "classification") == "classification"
        pred_method = None if (is_class and method in NUMERIC_ONLY_METHODS) else method
        (categorical if is_class else numerical).append(PREDICTION)
        metrics.append(ValueDrift(column=PREDICTION, method=pred_method))
    definition = DataDefinition(numerical_columns=numerical, categorical_columns=categorical)
    try:
        with warnings.catch_warnings():
            # Evidently's summary statistics divide by zero on constant columns (numpy
            # RuntimeWarning, result NaN in the widget only); keep the job's output clean
            warnings.simplefilter("ignore", RuntimeWarning)
            snapshot = Report(metrics, include_tests=True).run(
                Dataset.from_pandas(cur, data_definition=definition),
                Dataset.from_pandas(ref, data_definition=definition),
            )
    except Exception as exc:  # noqa: BLE001 - Evidently's errors on odd data
        raise MonitorInputError(
            f"Evidently could not compute drift for {dep.key}: {type(exc).__name__}: {exc}"
        ) from None
    per_column = _columns(snapshot.dict())
    features = [screened.get(n) or per_column[n] for n in names]
    counted = [f for f in features if f["status"] != EMPTY]
    share = sum(f["drifted"] for f in counted) / len(counted)
    result = DriftResult(
        drifted=share >= share_threshold,
        share_drifted=round(share, 4),
        features=features,
        prediction_drift=per_column.get(PREDICTION),
        verdict="drifted" if share >= share_threshold else "ok",
        **base,
    )
    return _finish(result, snapshot, dep, config, capture_dir, started, len(ref))


def _finish(result, snapshot, dep, config, capture_dir, started, used_ref) -> DriftResult:
    """Write the HTML report (Evidently's, or a page saying why no test ran) and
    ``summary.json``; set the paths, the time and the seconds on ``result``."""
    out_dir = _output_dir(dep, config, capture_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    html = out_dir / "report.html"
    if snapshot is not None:
        snapshot.save_html(str(html))
    else:
        html.write_text("<html><body></body></html>\n", encoding="utf-8")
    _banner(
        html,
        dep,
        result.source,
        result.window,
        [f"verdict: {result.verdict}", *result.notes],
        result.rows["current"],
        result.rows["reference"],
        result.rows_used["current"],
        used_ref,
    )
    result.report_html = str(html)
    result.summary_json = str(out_dir / "summary.json")
    result.seconds = round(time.perf_counter() - started, 3)
    result.time = now_iso()
    Path(result.summary_json).write_text(json.dumps(result.to_dict(), indent=2) + "\n")
    return result


def _untested(name: str) -> dict:
    """A feature entry for a window too small to test."""
    return {
        "name": name,
        "score": None,
        "test": None,
        "threshold": None,
        "drifted": False,
        "status": "untested",
    }


def screen_features(cur: pd.DataFrame, ref: pd.DataFrame, names: list[str]) -> dict[str, dict]:
    """Features that are not tested: no values on a side, or one value on both.

    Returns:
        ``{name: feature entry}`` (the shape of :attr:`DriftResult.features`, with a
        ``note``): ``empty`` (all missing in the current data, the reference or both;
        ``side`` says which; not counted in the share) or ``constant`` (the same single
        value on both sides; not drifted, counted). A column constant in the reference
        but not in the current data is tested: that is a change.
    """
    out: dict[str, dict] = {}
    for n in names:
        c, r = cur[n].dropna(), ref[n].dropna()
        entry = {"name": n, "score": None, "test": None, "threshold": None, "drifted": False}
        if c.empty or r.empty:
            side = (
                "current and reference"
                if c.empty and r.empty
                else ("current" if c.empty else "reference")
            )
            out[n] = {
                **entry,
                "status": EMPTY,
                "side": side,
                "note": f"no values in the {side} data (all missing); not tested",
            }
        elif c.nunique() == 1 and r.nunique() == 1 and c.iloc[0] == r.iloc[0]:
            out[n] = {
                **entry,
                "status": CONSTANT,
                "note": f"constant ({r.iloc[0]!r}) in both; not drifted",
            }
    return out


def _banner(html: Path, dep, source, window, notes, n_cur, n_ref, used_cur, used_ref) -> None:
    """Put what was compared (source, window, rows, sampling) at the top of the report."""
    lines = [
        f"modelops drift report: {dep.key}; current data: {source}"
        + (f" ({window['start']} to {window['end']})" if window else ""),
        f"rows compared: {used_cur} of {n_cur} current, {used_ref} of {n_ref} reference",
        *notes,
    ]
    block = (
        '<div id="modelops-summary" style="font-family:sans-serif;padding:8px 16px;'
        'background:#fff8e1;border-bottom:1px solid #e0c068">'
        + "".join(f"<div>{escape(line)}</div>" for line in lines)
        + "</div>"
    )
    text = html.read_text(encoding="utf-8")
    at = text.find("<body")
    at = text.find(">", at) + 1 if at >= 0 else 0
    html.write_text(text[:at] + block + text[at:], encoding="utf-8")


def _iso(value: datetime) -> str:
    return value.astimezone(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def _has_column(path: Path, column: str) -> bool:
    import pandas as pd  # heavy: loaded when this runs, not at every `modelops` start
    import pyarrow.parquet as pq  # heavy: loaded when this runs, not at every `modelops` start

    try:
        if path.suffix.lower() in (".parquet", ".pq"):
            return column in pq.read_schema(path).names
        return column in pd.read_csv(path, nrows=0).columns
    except Exception:  # noqa: BLE001 - read_table reports unreadable files
        return False


def _columns(snapshot: dict) -> dict[str, dict]:
    """Per column ``{"name", "score", "test", "threshold", "drifted"}`` from a snapshot.

    The score and the resolved method/threshold come from each ValueDrift metric's
    config and value; ``drifted`` from Evidently's own test on that metric (FAIL).
    """
    status = {t["metric_config"]["metric_id"]: t["status"] for t in snapshot.get("tests", [])}
    out = {}
    for metric in snapshot["metrics"]:
        cfg = metric.get("config", {})
        column = cfg.get("column")
        if column is None:
            continue
        score = metric.get("value")
        out[column] = {
            "name": column,
            "score": None if score is None else round(float(score), 6),
            "test": cfg.get("method"),
            "threshold": cfg.get("threshold"),
            "drifted": status.get(metric["id"]) == "FAIL",
            "status": TESTED,
        }
    return out


_RESULT = {EMPTY: "no values", CONSTANT: "constant", "untested": "not tested"}


def format_table(result: DriftResult, limit: int = 40) -> list[list[str]]:
    """Rows ``[feature, test, score, threshold, drifted]`` for the CLI table (features
    ordered drifted first, then by signature order; at most ``limit`` rows)."""
    rows = sorted(result.features, key=lambda f: not f["drifted"])[:limit]
    if result.prediction_drift:
        rows = [*rows, {**result.prediction_drift, "name": "(prediction)"}]
    return [
        [
            f["name"],
            str(f["test"]),
            "-" if f["score"] is None else f"{f['score']:.4g}",
            "-" if f["threshold"] is None else f"{f['threshold']:g}",
            "DRIFT" if f["drifted"] else _RESULT.get(f.get("status", TESTED), "ok"),
        ]
        for f in rows
    ]


__all__ = ["DriftResult", "Features", "MonitorInputError", "run_drift", "format_table"]

"""The quality job: join stored labels to captured predictions, compute the task's metrics
with intervals, the label-free estimate (CBPE), the KPI, and the verdict.

Window: the predictions timestamped in the last ``window_hours + max_delay`` (labels may
arrive up to ``max_delay`` late). Reference: the live model on ``spec.retraining.holdout``
(feature columns and ``target``), which also calibrates CBPE. The job returns a
:class:`QualityResult` and writes ``quality.json`` beside the drift report; it writes
nothing to the ledger (``reconciler.flow.monitor`` records it). Rules and measurements:
``docs/monitor.md`` ("Labels and quality").
"""

from __future__ import annotations

import json
import math
import warnings
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from html import escape
from pathlib import Path
from typing import TYPE_CHECKING

from reconciler.core.clock import now_iso
from reconciler.core.config import Config
from reconciler.monitor import metrics as mx
from reconciler.monitor.data import MonitorInputError, features_of, read_table
from reconciler.monitor.drift import load_live_model
from reconciler.monitor.labels import label_settings, load_predictions, stored_labels
from reconciler.runtime import frameworks
from reconciler.spec.model import Deployment
from reconciler.spec.paths import S3_UNREACHABLE, spec_path

if TYPE_CHECKING:  # annotations only
    import pandas as pd

MIN_LABELS = 30
"""Joined rows below which no verdict is given (``insufficient labels``): the normal
approximations behind the intervals need about 30 (the usual rule of thumb)."""
DEFAULT_MAX_DROP = 0.02
OK, ALERT, INCONCLUSIVE, INSUFFICIENT = "ok", "quality alert", "inconclusive", "insufficient labels"
COVARIATE, CONCEPT, NONE = "covariate shift", "concept drift", "none"


@dataclass
class QualityResult:
    """The outcome of one quality run.

    Attributes:
        name, env, task: the deployment and ``classification``/``regression``.
        verdict: ``ok``, ``quality alert`` (a floor, ``max_drop`` or the KPI floor
            breached: the whole 95% interval on the wrong side), ``inconclusive`` (the
            value is past a floor but the interval reaches back) or ``insufficient
            labels`` (fewer than :data:`MIN_LABELS` joined rows).
        window: ``{"start", "end"}`` ISO 8601 UTC of the predictions considered.
        predictions: predictions in the window; labelled: those with a label (joined).
        join_rate: labelled / predictions; pending: share of predictions without a
            label yet still within ``max_delay``; overdue: share without a label past it.
        metrics: realized ``{metric: {"value", "low", "high", "n", "interval"}}``.
        reference: ``{metric: value}`` of the live model on the holdout (or ``{}``).
        change: ``{metric: realized − reference}``.
        estimated: CBPE ``{metric: value}`` on every prediction of the window;
            estimated_labelled: the same on the labelled ones (to set beside realized).
        drift_kind: ``none``, ``covariate shift`` (realized and estimate fall together)
            or ``concept drift`` (realized falls, the estimate does not).
        metric: the metric ``max_drop`` watches.
        kpi: ``{"name", "unit", "value", "low", "high", "n", "reference", "change"}`` or
            ``{}``.
        alerts: one line per breach.
        action: ``spec.monitoring.quality.on_quality_drop`` (default ``alert``).
        notes, summary_json, time.
    """

    name: str
    env: str
    task: str
    verdict: str
    window: dict
    predictions: int
    labelled: int
    join_rate: float
    pending: float
    overdue: float
    metrics: dict = field(default_factory=dict)
    reference: dict = field(default_factory=dict)
    change: dict = field(default_factory=dict)
    estimated: dict = field(default_factory=dict)
    estimated_labelled: dict = field(default_factory=dict)
    drift_kind: str = NONE
    metric: str = ""
    kpi: dict = field(default_factory=dict)
    alerts: list = field(default_factory=list)
    action: str = "alert"
    notes: list = field(default_factory=list)
    summary_json: str = ""
    report_html: str = ""
    time: str = ""

    @property
    def alerted(self) -> bool:
        """True when the verdict is a quality alert."""
        return self.verdict == ALERT

    def to_dict(self) -> dict:
        """JSON-ready mapping with ``status`` (= verdict)."""
        out = asdict(self)
        out["status"] = self.verdict
        return out

    @property
    def message(self) -> str:
        """One line for the ledger history."""
        head = f"{self.verdict}: {self.labelled}/{self.predictions} predictions labelled"
        m = self.metrics.get(self.metric) or {}
        if m.get("value") is not None:
            head += (
                f"; {self.metric} {m['value']:.3f} [{m['low']:.3f}, {m['high']:.3f}]"
                if m.get("low") is not None
                else f"; {self.metric} {m['value']:.3f}"
            )
        est = self.estimated_labelled.get(self.metric)
        if est is not None:
            head += f", estimated {est:.3f}"
        if self.drift_kind != NONE:
            head += f" ({self.drift_kind})"
        if self.alerts:
            head += "; " + "; ".join(self.alerts[:3])
        return head


def _classes(dep: Deployment, model) -> list[str] | None:
    """The classifier's classes as text, or ``None`` for a regressor."""
    if dep.get("spec.model.task", "classification") != "classification":
        return None
    found = None
    if model is not None:
        try:
            found = frameworks.classes(dep.get("spec.model.framework", "sklearn"), model)
        except Exception:  # noqa: BLE001 - a model without classes: fall back below
            found = None
    return [str(c) for c in found] if found else None


def model_classes(dep: Deployment, config: Config) -> list[str] | None:
    """The live model's classes as text (``None`` for a regressor).

    Raises:
        MonitorInputError: a classifier whose classes cannot be read (model not loadable).
    """
    model, why = load_live_model(dep, config)
    classes = _classes(dep, model)
    if classes is None and dep.get("spec.model.task", "classification") == "classification":
        raise MonitorInputError(
            f"{dep.locate('spec.model.uri')}: spec.model.uri: the classifier's classes are "
            f"needed to check labels and cannot be read: {why or 'the model has no classes'}"
        )
    return classes


def _reference(dep: Deployment, config: Config, model, classes, notes: list[str]):
    """``(y_index or values, proba or predictions)`` of the live model on the holdout, or None."""
    import numpy as np  # heavy: loaded when this runs

    value = dep.get("spec.retraining.holdout")
    if model is None or not isinstance(value, str):
        notes.append("no reference quality: needs spec.retraining.holdout and a loadable model")
        return None
    checked = spec_path(
        dep,
        config,
        "spec.retraining.holdout",
        value,
        s3=S3_UNREACHABLE,
        must_exist=True,
        what="holdout data",
        error=MonitorInputError,
    )
    names = features_of(dep).names
    frame = read_table(
        checked.local,
        [*names, "target"],
        what="holdout data",
        origin=f"{dep.locate('spec.retraining.holdout')}: spec.retraining.holdout",
    )
    dtype = dep.get("spec.model.signature.inputs.dtype", "float32")
    x = frame[names].to_numpy(dtype=np.dtype(dtype))
    framework = dep.get("spec.model.framework", "sklearn")
    preds, proba = frameworks.predict(framework, model, x, dep.get("spec.model.task", ""))
    if classes is None:
        return frame["target"].to_numpy(dtype=np.float64), np.asarray(preds, dtype=np.float64), None
    index = {c: i for i, c in enumerate(classes)}
    y = np.array([index.get(_txt(v), -1) for v in frame["target"]])
    yhat = np.array([index.get(_txt(v), -1) for v in preds])
    keep = (y >= 0) & (yhat >= 0)
    return y[keep], yhat[keep], (None if proba is None else np.asarray(proba)[keep])


def _txt(v) -> str:
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    if hasattr(v, "item"):
        return _txt(v.item())
    return str(v)


def run_quality(
    dep: Deployment,
    config: Config,
    *,
    now: datetime | None = None,
    out_dir: Path | None = None,
    seed: int = 0,
    report_html: str | Path | None = None,
) -> QualityResult:
    """Join labels to the window's predictions and judge the model's quality.

    Args:
        dep, config: the deployment (``spec.monitoring.labels``/``quality``/``kpi``).
        now: the end of the window (default now, UTC).
        out_dir: where ``quality.json`` goes (default
            ``<state_dir>/quality/<name>-<env>/<time>/``).
        seed: bootstrap seed.
        report_html: the drift run's HTML report: the quality section (the table, the
            KPI, the verdict, and Evidently's classification or regression preset on the
            joined rows against the holdout) is added to it, so one file holds drift,
            quality and KPI. Without it the section is written to ``report.html`` beside
            ``quality.json``.

    Returns:
        A :class:`QualityResult` (nothing recorded: the flow records it).

    Raises:
        MonitorInputError: labels not configured, unreadable capture or holdout.
    """
    import numpy as np  # heavy: loaded when this runs
    import pandas as pd  # heavy: loaded when this runs

    settings = label_settings(dep, config)
    end = (now or datetime.now(UTC)).astimezone(UTC)
    hours = int(dep.get("spec.monitoring.window_hours", 24))
    start = end - timedelta(hours=hours) - settings.max_delay
    notes: list[str] = []
    model, why = load_live_model(dep, config)
    classes = _classes(dep, model)
    task = (
        "classification"
        if dep.get("spec.model.task", "classification") == "classification"
        else "regression"
    )
    if task == "classification" and classes is None:
        raise MonitorInputError(
            f"{dep.locate('spec.model.uri')}: spec.model.uri: quality needs the classifier's "
            f"classes: {why or 'the model has none'}"
        )
    preds = load_predictions(dep, config, start, end)
    labels = stored_labels(settings)
    joined, n_pred = join(preds.frame, labels)
    frame = preds.frame
    labelled = len(joined)
    unlabelled = ~frame["id"].isin(joined["id"]) if n_pred else frame["id"].isna()
    pending = (
        int((unlabelled & (frame["timestamp"] >= end - settings.max_delay)).sum()) if n_pred else 0
    )
    overdue = int(unlabelled.sum()) - pending if n_pred else 0
    q = dep.get("spec.monitoring.quality", {}) or {}
    kpi_spec = dep.get("spec.monitoring.kpi", {}) or {}
    result = QualityResult(
        name=dep.name,
        env=dep.env,
        task=task,
        verdict=INSUFFICIENT,
        window={"start": _iso(start), "end": _iso(end)},
        predictions=n_pred,
        labelled=labelled,
        join_rate=round(labelled / n_pred, 4) if n_pred else 0.0,
        pending=round(pending / n_pred, 4) if n_pred else 0.0,
        overdue=round(overdue / n_pred, 4) if n_pred else 0.0,
        action=str(q.get("on_quality_drop", "alert")),
        notes=notes,
    )
    notes.extend(preds.notes)
    if preds.synthetic_skipped:
        notes.append(f"{preds.synthetic_skipped} synthetic capture record(s) not counted")
    if not n_pred:
        notes.append(
            f"empty window: no captured predictions from {result.window['start']} "
            f"to {result.window['end']}"
        )
    elif not labelled:
        notes.append(
            f"no label joined yet: {pending} prediction(s) within max_delay, {overdue} past it"
        )
    ref = _reference(dep, config, model, classes, notes) if model is not None else None
    proba = preds.proba
    frames: dict = {}  # Evidently's data: joined rows and the holdout, as frames
    if task == "classification":
        k = len(classes)
        index = {c: i for i, c in enumerate(classes)}
        has_proba = proba is not None and proba.shape[1] == k
        result.metric = str(q.get("metric") or ("roc_auc" if has_proba and k == 2 else "accuracy"))
        calibrate = None
        cvals = kpi_spec.get("confusion_values")
        if ref is not None:
            ry, ryhat, rproba = ref
            rm, rk = mx.classification_metrics(
                ry, ryhat, rproba, k, confusion_values=cvals, seed=seed
            )
            result.reference = {m: v["value"] for m, v in rm.items()}
            if rk is not None:
                result.kpi["reference"] = rk["value"]
            if rproba is not None and k == 2 and len(set(ry.tolist())) == 2:
                calibrate = mx.Calibrator().fit(rproba[:, 1], (ry == 1).astype(float))
        yhat_all = np.array([index.get(p, -1) for p in frame["prediction"]], dtype=np.int64)
        if has_proba and n_pred:
            ok = yhat_all >= 0
            result.estimated = mx.cbpe(proba[ok], yhat_all[ok], k, calibrate)
        if labelled:
            y = np.array([index.get(v, -1) for v in joined["label"]], dtype=np.int64)
            yhat = np.array([index.get(v, -1) for v in joined["prediction"]], dtype=np.int64)
            ok = (y >= 0) & (yhat >= 0)
            if not ok.all():
                notes.append(
                    f"{int((~ok).sum())} joined row(s) with a class the model does not "
                    "have (not counted)"
                )
            jp = proba[joined["row"].to_numpy()][ok] if has_proba else None
            y, yhat = y[ok], yhat[ok]
            frames["current"] = _class_frame(y, yhat, jp, classes)
            frames["positive"] = classes[-1] if k == 2 else None
            if ref is not None:
                frames["reference"] = _class_frame(ref[0], ref[1], ref[2], classes)
            if len(y):
                result.metrics, kpi = mx.classification_metrics(
                    y, yhat, jp, k, confusion_values=cvals, seed=seed
                )
                if kpi is not None:
                    result.kpi.update(kpi)
                if jp is not None:
                    result.estimated_labelled = mx.cbpe(jp, yhat, k, calibrate)
    else:
        result.metric = str(q.get("metric") or "r2")
        cost = kpi_spec.get("cost_per_unit_error")
        if ref is not None:
            ry, rpred, _ = ref
            rm, rk = mx.regression_metrics(ry, rpred, cost_per_unit_error=cost)
            result.reference = {m: v["value"] for m, v in rm.items()}
            if rk is not None:
                result.kpi["reference"] = rk["value"]
        if labelled:
            y = pd.to_numeric(joined["label"], errors="coerce").to_numpy(dtype=np.float64)
            yhat = pd.to_numeric(joined["prediction"], errors="coerce").to_numpy(dtype=np.float64)
            ok = np.isfinite(y) & np.isfinite(yhat)
            frames["current"] = pd.DataFrame({"target": y[ok], "prediction": yhat[ok]})
            if ref is not None:
                frames["reference"] = pd.DataFrame({"target": ref[0], "prediction": ref[1]})
            result.metrics, kpi = mx.regression_metrics(y[ok], yhat[ok], cost_per_unit_error=cost)
            if kpi is not None:
                result.kpi.update(kpi)
    if result.kpi:
        result.kpi["name"] = str(kpi_spec.get("name", "kpi"))
        result.kpi["unit"] = str(kpi_spec.get("unit", ""))
        if result.kpi.get("value") is not None and result.kpi.get("reference") is not None:
            result.kpi["change"] = round(result.kpi["value"] - result.kpi["reference"], 6)
    result.change = {
        m: round(v["value"] - result.reference[m], 6)
        for m, v in result.metrics.items()
        if v.get("value") is not None and result.reference.get(m) is not None
    }
    _judge(result, q, kpi_spec)
    base = out_dir or config.state_dir / "quality" / dep.key / end.strftime("%Y%m%dT%H%M%S%fZ")
    base.mkdir(parents=True, exist_ok=True)
    result.time = now_iso()
    html = Path(report_html) if report_html else base / "report.html"
    write_section(html, result, evidently_html(task, frames, result.notes))
    result.report_html = str(html)
    result.summary_json = str(base / "quality.json")
    Path(result.summary_json).write_text(json.dumps(result.to_dict(), indent=2) + "\n")
    return result


def _class_frame(y, yhat, proba, classes) -> pd.DataFrame:
    """Evidently's classification columns: ``target``, ``prediction`` (class names) and,
    for binary models, ``proba`` (the positive class's probability)."""
    import pandas as pd  # heavy: loaded when this runs

    names = list(classes)
    frame = pd.DataFrame({"target": [names[i] for i in y], "prediction": [names[i] for i in yhat]})
    if proba is not None and len(names) == 2:
        frame["proba"] = proba[:, 1]
    return frame


def evidently_html(task: str, frames: dict, notes: list[str]) -> str:
    """Evidently's classification (or regression) preset on the joined rows, against the
    holdout, as an HTML document; ``""`` (with a note) without labelled rows or when
    Evidently fails on the data."""
    cur, ref = frames.get("current"), frames.get("reference")
    if cur is None or cur.empty or ref is None or ref.empty:
        return ""
    from evidently import (  # heavy: about 5 s; preloaded by monitor run
        BinaryClassification,
        DataDefinition,
        Dataset,
        MulticlassClassification,
        Regression,
        Report,
    )
    from evidently.presets import ClassificationPreset, RegressionPreset  # heavy: as above

    if task == "classification":
        binary = "proba" in cur.columns
        cls = (
            BinaryClassification(
                target="target",
                prediction_labels="prediction",
                prediction_probas="proba",
                pos_label=frames.get("positive"),
            )
            if binary
            else MulticlassClassification(target="target", prediction_labels="prediction")
        )
        definition = DataDefinition(
            classification=[cls],
            categorical_columns=["target", "prediction"],
            numerical_columns=["proba"] if binary else [],
        )
        preset = ClassificationPreset()
    else:
        definition = DataDefinition(
            regression=[Regression(target="target", prediction="prediction")],
            numerical_columns=["target", "prediction"],
        )
        preset = RegressionPreset()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            snapshot = Report([preset]).run(
                Dataset.from_pandas(cur, data_definition=definition),
                Dataset.from_pandas(ref, data_definition=definition),
            )
            return snapshot.get_html_str(as_iframe=False)
    except Exception as exc:  # noqa: BLE001 - the figures stand without Evidently's view
        notes.append(f"Evidently's quality preset failed: {type(exc).__name__}: {exc}")
        return ""


def write_section(html: Path, result: QualityResult, evidently: str) -> None:
    """Add the quality section (verdict, table, KPI, Evidently's preset in an inline
    frame) before ``</body>`` of ``html``, or write a page with it."""
    rows = "".join(
        "<tr>" + "".join(f"<td>{escape(c)}</td>" for c in row) + "</tr>"
        for row in format_rows(result)
    )
    head = "".join(
        f"<th>{h}</th>"
        for h in ("metric", "realized", "95% interval", "estimated (CBPE)", "reference", "change")
    )
    lines = [
        f"verdict: {result.verdict}; drift kind: {result.drift_kind}",
        f"{result.labelled}/{result.predictions} predictions labelled (join rate "
        f"{result.join_rate:.2%}; pending {result.pending:.2%}, overdue {result.overdue:.2%}); "
        f"window {result.window.get('start')} to {result.window.get('end')}",
    ]
    if result.kpi.get("value") is not None:
        k = result.kpi
        lines.append(
            f"KPI {k['name']}: {k['value']:.4f} {k.get('unit', '')} per prediction "
            f"[{k['low']:.4f}, {k['high']:.4f}]"
            + (f"; change {k['change']:+.4f} vs reference" if "change" in k else "")
        )
    lines += [f"ALERT: {a}" for a in result.alerts] + [f"note: {n}" for n in result.notes]
    frame = (
        f'<iframe title="Evidently quality report" style="width:100%;height:1800px;border:0" '
        f'srcdoc="{escape(evidently, quote=True)}"></iframe>'
        if evidently
        else ""
    )
    block = (
        '<section id="modelops-quality" style="font-family:sans-serif;padding:8px 16px;'
        'border-top:2px solid #e0c068">'
        f"<h2>Model quality and KPI: {escape(result.name)}-{escape(result.env)}</h2>"
        + "".join(f"<div>{escape(line)}</div>" for line in lines)
        + f'<table border="1" cellpadding="4"><tr>{head}</tr>{rows}</table>'
        + frame
        + "</section>"
    )
    text = html.read_text(encoding="utf-8") if html.is_file() else "<html><body></body></html>"
    at = text.rfind("</body>")
    at = at if at >= 0 else len(text)
    html.parent.mkdir(parents=True, exist_ok=True)
    html.write_text(text[:at] + block + text[at:], encoding="utf-8")


def join(predictions, labels):
    """Inner join of predictions and labels by id (``row`` = the prediction's position).

    Both id columns are factorized together (one hash pass over all ids) and the labels
    are looked up by code: the same result as ``pandas.merge(..., how="inner")`` with
    unique label ids (:func:`stored_labels` keeps one label per id), about twice as fast
    on a million rows (``bench/bench_quality.py``).

    Returns:
        ``(joined frame: the prediction columns, label, row; number of predictions)``.
    """
    import numpy as np  # heavy: loaded when this runs
    import pandas as pd  # heavy: loaded when this runs

    n = len(predictions)
    if not n or not len(labels):
        empty = predictions.iloc[:0].assign(label=pd.Series([], dtype="object"), row=[])
        return empty, n
    codes, _uniques = pd.factorize(
        np.concatenate([predictions["id"].to_numpy(), labels["id"].to_numpy()])
    )
    pred_codes, label_codes = codes[:n], codes[n:]
    slot = np.full(int(codes.max()) + 1, -1, dtype=np.int64)
    slot[label_codes] = np.arange(len(labels))
    hit = slot[pred_codes]
    rows = np.flatnonzero(hit >= 0)
    joined = predictions.iloc[rows].reset_index(drop=True)
    joined["label"] = labels["label"].to_numpy()[hit[rows]]
    joined["row"] = rows
    return joined, n


def realized_metric(
    dep: Deployment,
    config: Config,
    metric: str,
    version: str,
    since: datetime,
    end: datetime | None = None,
    classes: list[str] | None = None,
) -> dict:
    """The realized ``metric`` of one model version's captured predictions in
    ``[since, end]`` joined to the labels stored so far (the quality job's capture reader
    and :func:`join`): what a canary's ``realized_quality`` check reads
    (``reconciler.engine.canary``).

    Args:
        metric: a name of :func:`~reconciler.monitor.metrics.classification_metrics`
            (``accuracy``, ``precision``, ``recall``, ``f1``, ``roc_auc``) or of
            :func:`~reconciler.monitor.metrics.regression_metrics` (``r2``).
        version: the ``model_version`` the capture records carry (``spec.model.version``).
        classes: the classifier's classes as text (default: read from the model,
            :func:`model_classes`); class 1 of a binary model is the positive one.

    Returns:
        ``{"metric", "value", "n"}``: ``n`` joined predictions of ``version`` (rows with a
        class the model does not have are left out); ``value`` is ``None`` without any, or
        when the metric cannot be computed from them (``roc_auc`` without captured
        probabilities or with one class only, ``r2`` with constant labels).

    Raises:
        MonitorInputError: labels not configured, unreadable capture, a classifier whose
            classes cannot be read.
    """
    import numpy as np  # heavy: loaded when this runs

    end = (end or datetime.now(UTC)).astimezone(UTC)
    preds = load_predictions(dep, config, since.astimezone(UTC), end)
    joined, _ = join(preds.frame, stored_labels(label_settings(dep, config)))
    mine = (joined["model_version"].astype(str) == version).to_numpy()
    joined = joined[mine]
    out: dict = {"metric": metric, "value": None, "n": 0}
    if dep.get("spec.model.task", "classification") != "classification":
        try:
            y = joined["label"].astype(float).to_numpy()
            yhat = joined["prediction"].astype(float).to_numpy()
        except ValueError:
            raise MonitorInputError(
                f"{config.rel(label_settings(dep, config).directory)}: a label or prediction "
                "of a regressor is not a number"
            ) from None
        out["n"] = len(y)
        if len(y):
            values, _ = mx.regression_metrics(y, yhat)
            out["value"] = (values.get(metric) or {}).get("value")
        return out
    classes = classes if classes is not None else model_classes(dep, config)
    index = {c: i for i, c in enumerate(classes or [])}
    y = np.array([index.get(v, -1) for v in joined["label"]], dtype=np.int64)
    yhat = np.array([index.get(v, -1) for v in joined["prediction"]], dtype=np.int64)
    ok = (y >= 0) & (yhat >= 0)
    out["n"] = int(ok.sum())
    if not out["n"]:
        return out
    k = len(index)
    proba = None
    if preds.proba is not None and preds.proba.shape[1] == k:
        proba = preds.proba[joined["row"].to_numpy()][ok]
    values, _ = mx.classification_metrics(y[ok], yhat[ok], proba, k)
    value = (values.get(metric) or {}).get("value")
    out["value"] = None if value is None or math.isnan(value) else float(value)
    return out


def _judge(result: QualityResult, q: dict, kpi_spec: dict) -> None:
    """Set the verdict, the alerts and the kind of drift."""
    if result.labelled < MIN_LABELS or not result.metrics:
        result.verdict = INSUFFICIENT
        result.notes.append(
            f"insufficient labels: {result.labelled} joined row(s), at least {MIN_LABELS} "
            "needed for a verdict"
        )
        return
    breach, unsure = [], []
    for key, bound in sorted(q.items()):
        if not isinstance(bound, int | float) or not key.startswith(("min_", "max_")):
            continue
        if key == "max_drop":
            continue
        name = key[4:]
        m = result.metrics.get(name)
        if not m or m.get("value") is None:
            continue
        lo = m["low"] if m["low"] is not None else m["value"]
        hi = m["high"] if m["high"] is not None else m["value"]
        if key.startswith("min_"):
            if hi < bound:
                breach.append(f"{name} {m['value']:.3f} [{lo:.3f}, {hi:.3f}] below {key} {bound:g}")
            elif m["value"] < bound:
                unsure.append(f"{name} {m['value']:.3f} below {key} {bound:g}, interval reaches it")
        else:
            if lo > bound:
                breach.append(f"{name} {m['value']:.3f} [{lo:.3f}, {hi:.3f}] above {key} {bound:g}")
            elif m["value"] > bound:
                unsure.append(f"{name} {m['value']:.3f} above {key} {bound:g}, interval reaches it")
    max_drop = float(q.get("max_drop", DEFAULT_MAX_DROP))
    m = result.metrics.get(result.metric)
    ref = result.reference.get(result.metric)
    higher = result.metric in mx.HIGHER_IS_BETTER
    if m and ref is not None and m.get("value") is not None and "max_drop" in q:
        floor = ref - max_drop if higher else ref + max_drop
        hi = m["high"] if higher else m["low"]
        if (hi < floor) if higher else (hi > floor):
            breach.append(
                f"{result.metric} {m['value']:.3f} fell {abs(m['value'] - ref):.3f} from the "
                f"reference {ref:.3f} (max_drop {max_drop:g})"
            )
        elif (m["value"] < floor) if higher else (m["value"] > floor):
            unsure.append(
                f"{result.metric} {m['value']:.3f} past reference − max_drop, interval reaches it"
            )
    floor = kpi_spec.get("min")
    if isinstance(floor, int | float) and result.kpi.get("high") is not None:
        if result.kpi["high"] < floor:
            breach.append(
                f"KPI {result.kpi['name']} {result.kpi['value']:.3f} [{result.kpi['low']:.3f}, "
                f"{result.kpi['high']:.3f}] below its floor {floor:g}"
            )
        elif result.kpi["value"] < floor:
            unsure.append(f"KPI {result.kpi['name']} below its floor, interval reaches it")
    result.alerts = breach
    result.verdict = ALERT if breach else (INCONCLUSIVE if unsure else OK)
    if unsure:
        result.notes.extend(unsure)
    # which drift explains a fall: the estimate beside the realized value
    est = result.estimated_labelled.get(result.metric)
    if m and ref is not None and est is not None and m.get("value") is not None:
        fell = (ref - m["value"]) if higher else (m["value"] - ref)
        half = max(abs(m["high"] - m["low"]) / 2 if m.get("low") is not None else 0.0, 0.0)
        tolerance = max(max_drop, half)
        if fell > tolerance:
            gap = (est - m["value"]) if higher else (m["value"] - est)
            result.drift_kind = CONCEPT if gap > tolerance else COVARIATE


def _iso(value: datetime) -> str:
    return value.astimezone(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def format_rows(result: QualityResult) -> list[list[str]]:
    """Rows ``[metric, realized, 95% interval, estimated, reference, change]``."""

    def f(x):
        return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.4f}"

    rows = []
    for name, m in result.metrics.items():
        interval = "-" if m.get("low") is None else f"[{m['low']:.4f}, {m['high']:.4f}]"
        rows.append(
            [
                name,
                f(m.get("value")),
                interval,
                f(result.estimated_labelled.get(name)),
                f(result.reference.get(name)),
                f(result.change.get(name)),
            ]
        )
    for name, v in result.estimated.items():
        if name not in result.metrics:
            rows.append([name, "-", "-", f(v), f(result.reference.get(name)), "-"])
    return rows


__all__ = ["QualityResult", "format_rows", "join", "model_classes", "run_quality"]

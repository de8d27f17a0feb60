"""modelops generated BentoML service (copied into the Bento as ``src/service.py``).

This fixed source plus ``modelops.json`` beside it; imports only ``modelops_runtime``.
Routes: ``POST /predict``, ``POST /invocations`` and ``GET /ping`` (SageMaker),
``GET /metadata``, ``GET /docs`` and ``GET /`` (the OpenAPI page, its assets under
``/static_content``) and ``GET /docs.json`` (its document), and BentoML's probes.
Contract (bodies, errors, batching, capture): ``docs/runtime.md``.
"""

from __future__ import annotations

import gc
import hashlib
import html
import json
import logging
import os
import random
import time
import typing as t
import uuid
from pathlib import Path

# BentoML records an OpenTelemetry span for every request even when nothing is exported
# (its sampler answers RECORD_ONLY at the default tracing.sample_rate 0, so that access
# log lines carry trace ids). That cost 0.7 ms of CPU per request, about 30% of a
# /predict (measured with py-spy, bench/bench_serving.py). Without a tracing exporter the
# spans go nowhere, so the OpenTelemetry SDK is off by default; OTEL_SDK_DISABLED=false in
# the deployment's environment turns it back on (with BentoML's tracing.* settings).
os.environ.setdefault("OTEL_SDK_DISABLED", "true")

import bentoml  # after the OpenTelemetry default above
import numpy as np
from bentoml import get_current_service  # once: the bentoml.* name runs an import per use

try:
    from modelops_runtime import batching, capture, frameworks, request, signals
except ModuleNotFoundError as exc:  # imported as reconciler.runtime.service
    raise ImportError(
        "service_template.py is the source of the generated BentoML service: it runs only "
        "inside a built Bento (src/service.py, beside modelops.json and modelops_runtime/)"
    ) from exc
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect, Request
from starlette.responses import HTMLResponse, JSONResponse
from starlette.routing import Mount, Route, Router
from starlette.staticfiles import StaticFiles

# With the SDK off, BentoML still puts OpenTelemetry's ASGI middleware in front of every
# route, and it still collects a span's attributes, starts a non-recording span, wraps
# receive and send and records duration histograms into no-op meters: about 0.1 ms of CPU
# per /predict (docs/runtime.md). BentoML's request metrics on /metrics come from another
# middleware. So while the SDK is off, every URL is excluded from it (BentoML's
# `tracing.excluded_urls`: regular expressions searched in the URL); with
# OTEL_SDK_DISABLED=false every request is traced as BentoML's tracing.* settings say.
OTEL_SDK_OFF = os.environ["OTEL_SDK_DISABLED"].lower().strip() == "true"  # as the SDK reads it
TRACING: dict = {"excluded_urls": [".*"]} if OTEL_SDK_OFF else {}
HERE = Path(__file__).resolve().parent
CONFIG: dict = json.loads((HERE / "modelops.json").read_text(encoding="utf-8"))
BATCHING: dict = CONFIG["batching"]
MAX_BYTES: int = int(CONFIG.get("max_request_bytes", 10 * 1024 * 1024))
SIGNATURE = request.Signature(CONFIG["signature"]["inputs"])
# With several workers, BentoML's workers share one listening socket and a keep-alive
# connection stays with the worker that accepted it: a burst of new connections could all
# land on one worker while the other idled (measured: 3,468 of 3,468 requests on one of two
# workers, bench/bench_serving.py). So, like nginx's keepalive_requests, a connection is
# closed after REQUESTS_PER_CONNECTION responses on average; the client reconnects and the
# less busy worker, which is the one waiting in accept, takes the new connection. (The
# worker count can be overridden at serve time, so this holds for one worker too: a
# reconnect every 32 requests costs about 5 us per request.)
REQUESTS_PER_CONNECTION = 32
# s3:// capture sinks: a JSON Lines file is closed and uploaded once it is this old
# (seconds), so the monitoring job sees records within about a minute at any traffic.
S3_FILE_AGE_S = float(os.environ.get("MODELOPS_CAPTURE_FILE_AGE_S", "60"))
# A lone request is answered on the event loop while the model's calls average at most
# this many ms (modelops_runtime.batching.INLINE_MAX_MS); 0 turns that off (every request
# goes through the batch loop's thread, as bench/bench_serving.py --inline-max-ms 0 does).
INLINE_MAX_MS = float(os.environ.get("MODELOPS_INLINE_MAX_MS", batching.INLINE_MAX_MS))
# BentoML's server logging sends this (through the root logger, WARNING and up) to the
# server's stdout, which is the server log.
log = logging.getLogger("modelops.service")


def _build_revision() -> str:
    """The spec revision this Bento was built at (label ``modelops.revision``), or ''."""
    try:
        import yaml  # only here: read once, for /metadata

        doc = yaml.safe_load((HERE.parent / "bento.yaml").read_text(encoding="utf-8"))
        return str((doc.get("labels") or {}).get("modelops.revision", ""))
    except Exception:  # noqa: BLE001 - metadata is best effort outside a Bento
        return ""


SPEC_REVISION = os.environ.get("MODELOPS_SPEC_REVISION") or _build_revision()


def _error(exc: request.BadRequest, request_id: str) -> JSONResponse:
    return JSONResponse(exc.to_dict(), status_code=exc.status, headers={"X-Request-ID": request_id})


_SYNTHETIC = capture.SYNTHETIC_HEADER.lower().encode("latin-1")


def _headers(req: Request) -> tuple[str | None, str | None, str | None]:
    """``(Content-Length, X-Request-ID, X-Modelops-Synthetic)`` from the raw ASGI headers,
    ``None`` when absent.

    One pass over the header list: Starlette's ``Headers.get`` raises and catches a
    KeyError for every missing header, a measurable share of a /predict here.
    """
    length = request_id = synthetic = None
    for key, value in req.scope["headers"]:
        if key == b"content-length":
            length = value.decode("latin-1")
        elif key == b"x-request-id":
            request_id = value.decode("latin-1")
        elif key == _SYNTHETIC:
            synthetic = value.decode("latin-1").strip().lower()
    return length, request_id, synthetic


async def _read_body(req: Request, length: str | None) -> bytes:
    if length is not None:
        try:
            size = int(length)
        except ValueError:
            raise request.BadRequest("Content-Length", f"not a number: {length!r}") from None
        if size > MAX_BYTES:
            raise request.BadRequest(
                "body", f"{size} bytes is over the limit of {MAX_BYTES} bytes", status=413
            )
    chunks: list[bytes] = []
    total = 0
    async for chunk in req.stream():
        total += len(chunk)
        if total > MAX_BYTES:
            raise request.BadRequest(
                "body", f"more than the limit of {MAX_BYTES} bytes", status=413
            )
        chunks.append(chunk)
    return b"".join(chunks)


def _internal_error(req: Request, request_id: str) -> JSONResponse:
    """The 500 for an unexpected exception (being handled): traceback to the log, no
    internals in the answer. Never raises."""
    log.exception(
        "%s %s failed unexpectedly (X-Request-ID %s); answered 500",
        req.scope.get("method", "?"),
        req.scope.get("path", "?"),
        request_id,
    )
    body = {
        "error": "internal error while serving this request; the server log has the details "
        f"under X-Request-ID {request_id}",
        "status": 500,
    }
    return JSONResponse(body, 500, headers={"X-Request-ID": request_id})


async def predict(req: Request) -> JSONResponse:
    """``POST /predict`` and ``POST /invocations`` (see the module docstring).

    Always answers: 200, 400/413 (:class:`request.BadRequest`), 500 for a model failure,
    and a 500 without internals for any other exception (traceback logged). Without
    this, an exception escaping the route makes BentoML's time-out middleware wait 60 s
    for a response that never starts and then answer a plain-text 500.
    """
    started = time.perf_counter()
    length, request_id, synthetic = _headers(req)
    request_id = request_id or uuid.uuid4().hex
    try:
        return await _predict(req, started, length, request_id, synthetic)
    except ClientDisconnect:  # the client went away mid-body: nobody reads the answer
        log.warning("client disconnected before sending the body (X-Request-ID %s)", request_id)
        err = request.BadRequest("body", "client disconnected before sending the whole body")
        return _error(err, request_id)
    except Exception:  # noqa: BLE001 - answered as a JSON 500, traceback logged
        return _internal_error(req, request_id)


async def _predict(
    req: Request, started: float, length: str | None, request_id: str, synthetic: str | None
) -> JSONResponse:
    """The work of :func:`predict`; exceptions other than BadRequest propagate."""
    svc = t.cast("ModelService", get_current_service())
    batcher = svc.batcher
    if batcher is not None:
        batcher.arrive()
    try:
        body = await _read_body(req, length)
        rows = SIGNATURE.rows(request.parse_json(body))
        batch = SIGNATURE.array(rows)
    except BaseException as exc:
        if batcher is not None:
            batcher.leave()
        if isinstance(exc, request.BadRequest):
            return _error(exc, request_id)
        raise
    try:
        if batcher is not None:
            out = await batcher.submit(batch)
        else:
            out = await run_in_threadpool(svc.infer, batch)
    except frameworks.FrameworkError as exc:  # the model failed: a server fault, not bad input
        log.error("prediction failed (X-Request-ID %s): %s", request_id, exc)
        body = {"error": f"prediction failed: {exc}", "status": 500}
        return JSONResponse(body, 500, headers={"X-Request-ID": request_id})
    result = svc.decode(np.asarray(out))
    result["model_version"] = CONFIG["model_version"]
    svc.signals.observe(result, body, synthetic is not None)  # rollout analysis signals
    writer = svc.capture
    if writer is not None and synthetic is not None:  # modelops's own traffic: counted only
        writer.skip_synthetic(synthetic)
    elif writer is not None and writer.sampled():
        latency_ms = (time.perf_counter() - started) * 1000.0
        writer.submit(
            request_id,
            CONFIG["model_version"],
            latency_ms,
            rows,
            result["predictions"],
            probabilities=result.get("probabilities"),
        )
    headers = {"X-Request-ID": request_id}
    if random.random() < 1.0 / REQUESTS_PER_CONNECTION:
        headers["Connection"] = "close"
    return JSONResponse(result, headers=headers)


async def ping(req: Request) -> JSONResponse:
    """``GET /ping``: 200 once the model is loaded (SageMaker health check)."""
    svc = get_current_service()
    ok = svc is not None and getattr(svc, "model", None) is not None
    return JSONResponse({"status": "ok" if ok else "loading"}, status_code=200 if ok else 503)


def _served_config() -> dict:
    """``workers`` and ``access_log`` as BentoML runs them: the values of ``modelops.json``
    (``spec.serving.workers``/``access_log``) unless overridden at serve time (e.g.
    ``BENTOML_CONFIG_OVERRIDES``, which ``modelops`` uses to set the worker count); the
    ``modelops.json`` values when BentoML's configuration cannot be read."""
    workers = int(CONFIG.get("workers", 1))
    access_log = bool(CONFIG.get("access_log", True))
    try:
        from bentoml._internal.configuration.containers import BentoMLContainer  # internal API

        served = BentoMLContainer.config.services[CONFIG["service_name"]].get()
        workers = int(served.get("workers") or workers)
        enabled = ((served.get("logging") or {}).get("access") or {}).get("enabled")
        access_log = access_log if enabled is None else bool(enabled)
    except Exception:  # noqa: BLE001 - BentoML internals moved: report the build's values
        pass
    return {"workers": workers, "access_log": access_log}


async def metadata(req: Request) -> JSONResponse:
    """``GET /metadata``: what is served (see the module docstring)."""
    svc = get_current_service()
    info = dict(getattr(svc, "info", {}))
    info["spec_revision"] = SPEC_REVISION
    info.update(_served_config())
    batcher = getattr(svc, "batcher", None)
    if batcher is not None:  # this worker's counters since start
        info["batching_stats"] = {
            "worker_pid": os.getpid(),
            "arriving": batcher.arriving,
            "batches": batcher.batches,
            "rows": batcher.rows,
            "mean_batch_rows": round(batcher.rows / batcher.batches, 2) if batcher.batches else 0,
            "inline_calls": batcher.inline_calls,
            "model_call_ms": round(batcher.call_ms, 3),
        }
    writer = getattr(svc, "capture", None)
    if writer is not None:
        info["capture_stats"] = {
            "written": writer.written,
            "dropped": writer.dropped,
            "errors": writer.errors,
            "last_error": writer.last_error,
            "synthetic": dict(writer.synthetic),
        }
        shipper = getattr(svc, "shipper", None)
        if shipper is not None:  # s3:// sink
            info["capture_stats"]["shipped"] = shipper.shipped
            info["capture_stats"]["ship_errors"] = shipper.errors
            info["capture_stats"]["last_ship_error"] = shipper.last_error
    return JSONResponse(info)


# GET /docs (and /): the Swagger UI page over the assets BentoML ships
# (bentoml/_internal/server/static_content), reading /docs.json. BentoML 1.4 would serve
# its own page at / and the assets at /static_content, but the routes below are mounted at
# / ahead of those and shadow them (a mounted Router matches every path), so the service
# serves all three itself. BentoML's page also loads Google Tag Manager; this one loads
# nothing from elsewhere.
DOCS_HTML = """<!DOCTYPE html>
<html lang="en">
  <head>
    <meta charset="UTF-8">
    <title>{title}</title>
    <link rel="stylesheet" type="text/css" href="./static_content/swagger-ui.css" />
    <link rel="stylesheet" type="text/css" href="./static_content/index.css" />
  </head>
  <body>
    <div id="swagger-ui"></div>
    <script src="./static_content/swagger-ui-bundle.js" charset="UTF-8"></script>
    <script src="./static_content/swagger-ui-standalone-preset.js" charset="UTF-8"></script>
    <script src="./static_content/swagger-initializer.js" charset="UTF-8"></script>
  </body>
</html>
"""
_OPENAPI: dict = {}


async def docs(req: Request) -> HTMLResponse:
    """``GET /docs``: the OpenAPI (Swagger UI) page of this service."""
    return HTMLResponse(DOCS_HTML.format(title=html.escape(f"{CONFIG['deployment']} - modelops")))


def _as_openapi30(node: t.Any) -> t.Any:
    """``node`` with JSON Schema's ``anyOf: [..., {"type": "null"}]`` (what pydantic 2
    writes for an optional field, as in BentoML's ``TaskStatusResponse``) turned into
    OpenAPI 3.0's ``nullable: true``: BentoML declares its document 3.0.2, where
    ``"type": "null"`` is invalid."""
    if isinstance(node, list):
        return [_as_openapi30(v) for v in node]
    if not isinstance(node, dict):
        return node
    out = {k: _as_openapi30(v) for k, v in node.items()}
    options = out.get("anyOf")
    if isinstance(options, list) and {"type": "null"} in options:
        rest = [o for o in options if o != {"type": "null"}]
        del out["anyOf"]
        if len(rest) == 1 and isinstance(rest[0], dict) and "$ref" not in rest[0]:
            out.update(rest[0])
        elif rest:
            out["anyOf"] = rest
        out["nullable"] = True
    return out


def openapi_document() -> dict:
    """BentoML's OpenAPI document of this service (its probes and metrics) with the
    routes BentoML cannot see in a bare Router: ``/predict`` and ``/invocations`` with
    the request schema of the signature (rows as arrays or as objects keyed by feature
    name, :func:`modelops_runtime.request.openapi`), ``/metadata`` and ``/ping``.
    Built once per worker."""
    if not _OPENAPI:
        try:
            doc = _as_openapi30(ModelService.openapi_spec.asdict())
        except Exception:  # noqa: BLE001 - BentoML's part is best effort; ours is complete
            log.exception("BentoML's OpenAPI document could not be built; serving ours alone")
            doc = {"openapi": "3.0.2", "info": {"title": CONFIG["service_name"]}, "paths": {}}
        ours = request.openapi(SIGNATURE)
        doc.setdefault("info", {})["title"] = CONFIG["deployment"]
        doc["info"].pop("contact", None)  # BentoML's team, not this service's owner
        doc["info"]["version"] = str(CONFIG["model_version"])
        doc["info"]["description"] = (
            f"{CONFIG['deployment']} ({CONFIG['env']}), {CONFIG['framework']} model "
            f"{CONFIG['model_version']}, served by modelops from Bento {CONFIG['bento_tag']}."
        )
        doc.setdefault("paths", {}).update(ours["paths"])
        for path, summary in (("/metadata", "What is served"), ("/ping", "Model loaded")):
            doc["paths"][path] = {
                "get": {
                    "tags": ["Service APIs"],
                    "summary": summary,
                    "responses": {"200": {"description": "OK"}},
                }
            }
        doc.setdefault("components", {}).setdefault("schemas", {}).update(ours["schemas"])
        _OPENAPI.update(doc)
    return _OPENAPI


async def docs_json(req: Request) -> JSONResponse:
    """``GET /docs.json``: :func:`openapi_document`."""
    return JSONResponse(openapi_document())


def _swagger_assets() -> list:
    """``/static_content``: BentoML's Swagger UI assets, when its package has them."""
    try:
        from bentoml._internal import server as bentoml_server  # internal API: its assets

        directory = Path(bentoml_server.__file__).parent / "static_content"
    except Exception:  # noqa: BLE001 - moved in another BentoML: /docs.json still works
        return []
    if not (directory / "swagger-ui-bundle.js").is_file():
        return []
    return [Mount("/static_content", app=StaticFiles(directory=directory), name="swagger")]


# A bare Router, not a Starlette application: BentoML's own app around it already
# handles errors and exceptions, and a second middleware stack cost CPU per request.
routes = Router(
    routes=[
        Route("/predict", predict, methods=["POST"]),
        Route("/invocations", predict, methods=["POST"]),
        Route("/ping", ping, methods=["GET"]),
        Route("/metadata", metadata, methods=["GET"]),
        Route("/docs", docs, methods=["GET"]),
        Route("/docs.json", docs_json, methods=["GET"]),
        Route("/", docs, methods=["GET"]),
        *_swagger_assets(),
    ]
)


@bentoml.asgi_app(routes, path="/")
@bentoml.service(
    name=CONFIG["service_name"],
    workers=int(CONFIG.get("workers", 1)),
    traffic={"timeout": 60},
    tracing=TRACING,
    # spec.serving.access_log (default true): one log line per request. Probes hit the
    # skipped paths every few seconds; access lines for them are noise.
    logging={
        "access": {
            "enabled": bool(CONFIG.get("access_log", True)),
            "skip_paths": ["/ping", "/readyz", "/livez", "/healthz", "/metrics"],
        }
    },
)
class ModelService:
    """The model behind the routes; one instance per worker process."""

    model_ref = bentoml.models.BentoModel(CONFIG["model_tag"])

    def __init__(self) -> None:
        path = Path(self.model_ref.path_of(CONFIG["model_file"]))
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        if digest != CONFIG["model_sha256"]:
            raise RuntimeError(
                f"{path}: sha256 {digest} does not match {CONFIG['model_sha256']} "
                "recorded at build time; refusing to load it"
            )
        self.task = CONFIG.get("task", "")
        self.model = frameworks.load_model(CONFIG["framework"], path, self.task)
        self.classes = frameworks.classes(CONFIG["framework"], self.model)
        self._class_index = {c: i for i, c in enumerate(self.classes or [])}
        self.info = {
            "name": CONFIG["deployment"],
            "env": CONFIG["env"],
            "bento": CONFIG["bento_tag"],
            "model": {
                "name": str(self.model_ref.tag.name),
                "tag": str(self.model_ref.tag),
                "version": CONFIG["model_version"],
                "sha256": CONFIG["model_sha256"],
                "framework": CONFIG["framework"],
                "framework_version": CONFIG["framework_version"],
                "task": self.task,
            },
            "model_version": CONFIG["model_version"],
            "digest": CONFIG["model_sha256"],
            "build_digest": CONFIG["digest"],
            "signature": CONFIG["signature"],
            "batching": BATCHING,
            "capture": CONFIG.get("capture"),
        }
        self.batcher = None
        if BATCHING["enabled"]:
            self.batcher = batching.MicroBatcher(
                self._infer_in_thread,
                BATCHING["max_batch_size"],
                BATCHING["max_latency_ms"],
                inline=self.infer if INLINE_MAX_MS > 0 else None,  # lone: no thread hop
                inline_max_ms=INLINE_MAX_MS,
            )
        # estimated quality and agreement with the stable version on /metrics
        self.signals = signals.Signals()
        self.capture = None
        self.shipper = None
        cap = CONFIG.get("capture")
        if cap:
            directory, spooled = capture.resolve_sink(cap["sink"])
            if spooled:  # s3:// sink: closed files go to S3 (see modelops_runtime.capture)
                self.shipper = capture.CaptureShipper(directory, cap["sink"])
            names = SIGNATURE.names
            sensitive = set(CONFIG.get("sensitive_fields") or [])
            self.capture = capture.CaptureWriter(
                directory,
                CONFIG["deployment"],
                CONFIG["env"],
                sample_rate=float(cap.get("sample_rate", 0.0)),
                fmt=cap.get("format", "jsonl"),
                redact=cap.get("redact", "none"),
                sensitive_idx=[i for i, n in enumerate(names) if n in sensitive],
                max_file_age_s=S3_FILE_AGE_S if spooled else None,
                on_close=self.shipper.ship if self.shipper is not None else None,
                confine=directory,
            )
        # Everything loaded so far (BentoML, the framework, the model) lives as long as
        # the worker: move it out of the collector's generations so that full collections
        # under load walk only per-request garbage (shorter pauses at p99).
        gc.freeze()

    async def _infer_in_thread(self, batch: np.ndarray) -> np.ndarray:
        return await run_in_threadpool(self.infer, batch)

    @bentoml.on_shutdown
    def _flush_capture(self) -> None:
        if self.capture is not None:
            self.capture.close()
        if self.shipper is not None:
            self.shipper.close()

    def infer(self, x: np.ndarray) -> np.ndarray:
        """Batch inference: rows × features in, rows × (1 + classes) float64 out.

        A plain method, not a BentoML API (no route of its own): ``x`` is what
        ``SIGNATURE.array`` returned for one or more requests (2-D, the signature's dtype
        and width, every value checked), so callers go through ``/predict``. Column 0 of
        the result is the prediction (for classifiers the index into ``classes``), the
        other columns the class probabilities when the model has them.

        Raises:
            frameworks.FrameworkError: the model failed.
        """
        preds, proba = frameworks.predict(CONFIG["framework"], self.model, x, self.task)
        if self._class_index:
            col = np.fromiter(
                (self._class_index[p] for p in preds.tolist()), dtype=np.float64, count=len(x)
            )
        else:
            col = np.asarray(preds, dtype=np.float64).reshape(len(x))
        if proba is None:
            return col.reshape(-1, 1)
        return np.concatenate([col.reshape(-1, 1), proba], axis=1)

    def decode(self, out: np.ndarray) -> dict:
        """Turn :meth:`infer`'s array into the response's ``predictions``/``probabilities``."""
        out = out.reshape(len(out), -1)
        first = out[:, 0]
        if self.classes:
            preds = [self.classes[int(i)] for i in first]
        elif self.task == "classification" or CONFIG["signature"].get("outputs", {}).get(
            "dtype", ""
        ).startswith("int"):
            preds = [int(v) for v in first]
        else:
            preds = first.tolist()
        result: dict = {"predictions": preds}
        if out.shape[1] > 1:
            result["probabilities"] = out[:, 1:].tolist()
        return result

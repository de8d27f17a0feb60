"""The local router: one process that owns a local deployment's stable port.

``python -m reconciler.runtime.router --port P --config FILE`` listens on
``127.0.0.1:P`` and forwards every request to one of the backends (``bentoml serve``
processes on ephemeral ports) named in ``FILE``, by weight (smooth weighted round robin:
deterministic, exact shares over every ``sum(weights)`` requests). The local engine
(``reconciler.engine.routing``) writes ``FILE`` and sends ``SIGHUP``; the router reads it
again and answers the new ``generation`` on ``GET /-/router``, so a switch is confirmed,
never assumed. The file (JSON)::

    {"generation": 3,
     "backends": [{"name": "stable", "url": "http://127.0.0.1:41001", "weight": 90},
                  {"name": "canary", "url": "http://127.0.0.1:41002", "weight": 10}],
     "fallback": "stable",      # optional: where a failed answer is sent again
     "mirror": 1.0}             # optional: share of requests also sent to the other backend

Zero-drop swap and canary guard rails (``docs/engine.md``):

- A backend's in-flight requests are counted; a backend dropped from the file stays in
  ``GET /-/router`` under ``draining`` until its last request has finished, so the
  engine stops the old server only when nothing is in flight there.
- A request a non-fallback backend answers with 5xx, or that fails to connect or times
  out there, is sent again to the ``fallback`` backend and the client gets that answer;
  the failure still counts against the backend. A connection error on the fallback
  itself (a stale pooled connection) is retried once.
- With ``mirror`` (0..1) and two backends, that share of ``POST`` requests is also sent
  to the other backend, marked synthetic (``X-Modelops-Synthetic: canary``: never
  captured) and its answer compared: the row-wise agreement of ``predictions`` is counted
  (the canary's model signal), and the answer counts in that backend's statistics.

``GET /-/router`` (JSON): ``router_id``, ``generation``, ``backends`` (per name: ``url``,
``weight``, ``requests``, ``errors`` (5xx or no answer), ``fallbacks``, ``inflight``,
``latency_buckets_ms`` (cumulative counts per upper bound, last ``"inf"``),
``confidence_sum`` / ``confidence_n`` (mean top-class probability: the label-free
accuracy estimate), ``agreement`` (``{"rows", "agreed"}`` against the other backend)),
``draining`` (``{url: in-flight}``). Counters are cumulative since the backend appeared;
the engine diffs two readings. Imports nothing of the package but the runtime.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import signal
import sys
import time
from dataclasses import dataclass, field

from aiohttp import ClientError, ClientSession, ClientTimeout, TCPConnector, web

from reconciler.runtime.capture import SYNTHETIC_HEADER
from reconciler.runtime.router_ids import ROUTER_ID_ENV, STATUS_PATH

#: Upper bounds (ms) of the latency histogram; the last bucket is unbounded.
BUCKETS_MS = (1, 2, 5, 10, 20, 50, 100, 200, 300, 500, 1000, 2000, 5000, 10000, 30000)
REQUEST_TIMEOUT_S = 60.0
#: Hop-by-hop headers (RFC 9110 7.6.1) and the ones aiohttp sets itself.
_HOP = {
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "trailers",
    "transfer-encoding",
    "upgrade",
    "host",
    "content-length",
    "content-encoding",
}


@dataclass
class Backend:
    """One backend server and what the router observed of it (cumulative)."""

    name: str
    url: str
    weight: int = 0
    current: int = 0  # smooth weighted round robin state
    requests: int = 0
    errors: int = 0
    fallbacks: int = 0
    inflight: int = 0
    buckets: list[int] = field(default_factory=lambda: [0] * (len(BUCKETS_MS) + 1))
    confidence_sum: float = 0.0
    confidence_n: int = 0
    agreement_rows: int = 0
    agreement_agreed: int = 0

    def observe(self, ms: float, failed: bool) -> None:
        self.requests += 1
        self.errors += int(failed)
        for i, bound in enumerate(BUCKETS_MS):
            if ms <= bound:
                self.buckets[i] += 1
                break
        else:
            self.buckets[-1] += 1

    def to_dict(self) -> dict:
        return {
            "url": self.url,
            "weight": self.weight,
            "requests": self.requests,
            "errors": self.errors,
            "fallbacks": self.fallbacks,
            "inflight": self.inflight,
            "latency_buckets_ms": dict(
                zip([*map(str, BUCKETS_MS), "inf"], self.buckets, strict=True)
            ),
            "confidence_sum": self.confidence_sum,
            "confidence_n": self.confidence_n,
            "agreement": {"rows": self.agreement_rows, "agreed": self.agreement_agreed},
        }


def _confidences(payload: dict) -> list[float]:
    """Top-class probability per row of an answer (``probabilities``: one column per
    class, or one column = P(positive class) for a binary model); ``[]`` without them."""
    out = []
    for row in payload.get("probabilities") or []:
        values = row if isinstance(row, list) else [row]
        try:
            nums = [float(v) for v in values]
        except (TypeError, ValueError):
            return []
        if len(nums) == 1:
            nums = [nums[0], 1.0 - nums[0]]
        if nums:
            out.append(max(nums))
    return out


def _json(body: bytes) -> dict | None:
    try:
        value = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return None
    return value if isinstance(value, dict) else None


class Router:
    """The routing table (from the config file) and the proxy handler."""

    def __init__(self, config_path: str, router_id: str) -> None:
        self.config_path = config_path
        self.router_id = router_id
        self.generation = -1
        self.backends: dict[str, Backend] = {}  # by name, in file order
        self.draining: list[Backend] = []
        self.fallback = ""
        self.mirror = 0.0
        self.load_error = ""
        self.session: ClientSession | None = None
        self.tasks: set[asyncio.Task] = set()
        self.random = random.Random(0)

    def load(self) -> None:
        """Read the config file; on any error keep the current table (``load_error``)."""
        try:
            with open(self.config_path, encoding="utf-8") as fh:
                doc = json.load(fh)
            specs = [
                (str(b["name"]), str(b["url"]).rstrip("/"), int(b["weight"]))
                for b in doc["backends"]
            ]
            generation = int(doc["generation"])
        except (OSError, ValueError, KeyError, TypeError) as exc:
            self.load_error = f"{type(exc).__name__}: {exc}"
            return
        old = {b.url: b for b in [*self.backends.values(), *self.draining]}
        new: dict[str, Backend] = {}
        for name, url, weight in specs:
            backend = old.pop(url, None) or Backend(name, url)
            backend.name, backend.weight, backend.current = name, max(0, weight), 0
            new[name] = backend
        self.backends = new
        self.draining = [b for b in old.values() if b.inflight > 0]
        self.fallback = str(doc.get("fallback") or "")
        self.mirror = min(1.0, max(0.0, float(doc.get("mirror") or 0.0)))
        self.generation = generation
        self.load_error = ""

    def pick(self) -> Backend | None:
        """Smooth weighted round robin (nginx's): exact shares, evenly interleaved."""
        live = [b for b in self.backends.values() if b.weight > 0]
        if not live:
            return None
        total = sum(b.weight for b in live)
        for b in live:
            b.current += b.weight
        best = max(live, key=lambda b: b.current)
        best.current -= total
        return best

    def status(self) -> dict:
        return {
            "router_id": self.router_id,
            "pid": os.getpid(),
            "generation": self.generation,
            "load_error": self.load_error,
            "fallback": self.fallback,
            "mirror": self.mirror,
            "backends": {b.name: b.to_dict() for b in self.backends.values()},
            "draining": {b.url: b.inflight for b in self.draining},
        }

    async def _send(
        self, backend: Backend, request: web.Request, body: bytes, headers: dict
    ) -> tuple[int, list, bytes, float]:
        """One request to ``backend`` (counted in flight); returns status, headers, body
        and milliseconds. Raises ClientError / TimeoutError when there is no answer."""
        assert self.session is not None
        backend.inflight += 1
        start = time.perf_counter()
        try:
            async with self.session.request(
                request.method,
                backend.url + request.rel_url.raw_path_qs,
                data=body,
                headers=headers,
                allow_redirects=False,
            ) as resp:
                data = await resp.read()
                return resp.status, list(resp.headers.items()), data, _ms(start)
        finally:
            backend.inflight -= 1
            if backend.inflight == 0 and backend in self.draining:
                self.draining.remove(backend)

    async def _attempt(
        self, backend: Backend, request: web.Request, body: bytes, headers: dict
    ) -> tuple[int, list, bytes] | None:
        """:meth:`_send` with one retry of a connection error; counts the outcome.

        Returns None when the backend gave no answer (connection error, timeout)."""
        for attempt in (1, 2):
            start = time.perf_counter()
            try:
                status, resp_headers, data, ms = await self._send(backend, request, body, headers)
            except TimeoutError:
                backend.observe(_ms(start), failed=True)
                return None
            except ClientError:
                if attempt == 2:
                    backend.observe(_ms(start), failed=True)
                    return None
                continue
            backend.observe(ms, failed=status >= 500)
            if status < 500 and request.method == "POST":
                self._confidence(backend, data)
            return status, resp_headers, data
        return None

    def _confidence(self, backend: Backend, data: bytes) -> None:
        payload = _json(data)
        if payload is not None:
            conf = _confidences(payload)
            backend.confidence_sum += sum(conf)
            backend.confidence_n += len(conf)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        if request.path == STATUS_PATH:
            return web.json_response(self.status())
        body = await request.read()
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _HOP}
        backend = self.pick()
        if backend is None:
            return web.json_response(
                {"error": "the router has no backend with a weight above 0"}, status=503
            )
        answer = await self._attempt(backend, request, body, headers)
        fallback = self.backends.get(self.fallback)
        if fallback is not None and fallback is not backend and _failed(answer):
            backend.fallbacks += 1
            answer = await self._attempt(fallback, request, body, headers)
            backend = fallback
        if answer is None:
            return web.json_response(
                {"error": f"backend {backend.name} ({backend.url}) gave no answer"}, status=502
            )
        status, resp_headers, data = answer
        if (
            self.mirror > 0
            and request.method == "POST"
            and status < 500
            and len(self.backends) == 2
            and self.random.random() < self.mirror
        ):
            other = next(b for b in self.backends.values() if b is not backend)
            task = asyncio.ensure_future(
                self._compare(backend, other, request, body, headers, data)
            )
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)
        out = web.Response(status=status, body=data)
        for key, value in resp_headers:
            if key.lower() not in _HOP:
                out.headers.add(key, value)
        return out

    async def _compare(
        self,
        served: Backend,
        other: Backend,
        request: web.Request,
        body: bytes,
        headers: dict,
        served_data: bytes,
    ) -> None:
        """Send the request to ``other`` too (synthetic) and count row agreement."""
        mirrored = {**headers, SYNTHETIC_HEADER: "canary"}
        answer = await self._attempt(other, request, body, mirrored)
        if answer is None or answer[0] >= 500:
            return
        a, b = _json(served_data), _json(answer[2])
        if a is None or b is None:
            return
        pa, pb = a.get("predictions"), b.get("predictions")
        if not isinstance(pa, list) or not isinstance(pb, list) or len(pa) != len(pb):
            return
        agreed = sum(1 for x, y in zip(pa, pb, strict=True) if x == y)
        for backend in (served, other):
            backend.agreement_rows += len(pa)
            backend.agreement_agreed += agreed


def _failed(answer: tuple[int, list, bytes] | None) -> bool:
    return answer is None or answer[0] >= 500


def _ms(start: float) -> float:
    return (time.perf_counter() - start) * 1000.0


def build_app(router: Router) -> web.Application:
    app = web.Application(client_max_size=64 * 1024 * 1024)

    async def start(_app: web.Application) -> None:
        router.session = ClientSession(
            connector=TCPConnector(limit=0, force_close=False),
            timeout=ClientTimeout(total=REQUEST_TIMEOUT_S),
            auto_decompress=False,
        )
        asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, router.load)

    async def stop(_app: web.Application) -> None:
        for task in list(router.tasks):
            task.cancel()
        if router.session is not None:
            await router.session.close()

    app.on_startup.append(start)
    app.on_cleanup.append(stop)
    app.router.add_route("*", "/{tail:.*}", router.handle)
    return app


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m reconciler.runtime.router")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--config", required=True)
    parser.add_argument("--host", default="127.0.0.1")
    args = parser.parse_args(argv)
    router = Router(args.config, os.environ.get(ROUTER_ID_ENV, ""))
    router.load()
    if router.generation < 0:
        print(f"router: cannot read {args.config}: {router.load_error}", file=sys.stderr)
        return 2
    with contextlib.suppress(KeyboardInterrupt):
        # SIGTERM: stop accepting, let in-flight requests finish (up to 30 s), exit
        web.run_app(
            build_app(router),
            host=args.host,
            port=args.port,
            shutdown_timeout=30,
            access_log=None,
            print=None,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Smoke test and SLO check of a served deployment.

:func:`run_smoke` sends the cases of ``spec.serving.smoke`` (request files:
``reconciler.spec.smoke``) to a running server, checks status, shape and values, then
runs a short load test and compares its p99 latency (ms, client side) with the SLO.
Rationale and details: ``docs/build.md``.
"""

from __future__ import annotations

import json
import math
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import httpx

from reconciler.core.config import Config
from reconciler.core.progress import step
from reconciler.runtime.capture import SYNTHETIC_HEADER
from reconciler.spec.model import Deployment
from reconciler.spec.smoke import RequestFileError, read_request_file

DEFAULT_LOAD_REQUESTS = 200
DEFAULT_LOAD_CONCURRENCY = 8
REQUEST_TIMEOUT_S = 30.0
PREDICT_PATH = "/predict"


@dataclass
class SmokeResult:
    """Outcome of a smoke test and load test against one server.

    Attributes:
        deployment: ``<name>-<env>``.
        url: the server's base URL.
        cases: one dict per smoke case, in spec order, including cases whose file could
            not be read: ``request`` (file), ``field`` (spec path of the file), ``sent``
            (False when the file could not be read), ``status`` (HTTP; None when not
            sent or no answer), ``ok``, ``latency_ms`` (None when not sent), ``failures``
            (this case's reasons, each starting with the file or the spec location).
        load: ``requests``, ``concurrency``, ``warmup``, ``completed``, ``errors``,
            ``p50_ms``, ``p95_ms``, ``p99_ms``, ``mean_ms``, ``max_ms``,
            ``throughput_rps``, ``duration_s`` (``{}`` when the load test did not run).
        slo_p99_ms: ``spec.serving.slo.p99_latency_ms`` (None when the spec sets none).
        slo_met: whether p99 <= the SLO (None without SLO or load test).
        failures: every reason the check failed, one sentence each (empty when passed):
            the cases' reasons, then the others (no smoke request, load test, SLO).
    """

    deployment: str
    url: str
    cases: list[dict] = field(default_factory=list)
    load: dict = field(default_factory=dict)
    slo_p99_ms: float | None = None
    slo_met: bool | None = None
    failures: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        """True when every case matched, the load test had no errors and met the SLO."""
        return not self.failures

    @property
    def failed_cases(self) -> int:
        """How many of :attr:`cases` failed (not sent, or the answer did not match)."""
        return sum(1 for case in self.cases if not case.get("ok"))

    @property
    def other_failures(self) -> list[str]:
        """The :attr:`failures` that belong to no case (no smoke request, load test, SLO)."""
        of_cases = {f for case in self.cases for f in case.get("failures", [])}
        return [f for f in self.failures if f not in of_cases]

    def to_dict(self) -> dict:
        """JSON-ready mapping: every attribute plus ``passed`` and ``failed_cases``."""
        return {
            "deployment": self.deployment,
            "url": self.url,
            "passed": self.passed,
            "failed_cases": self.failed_cases,
            "cases": self.cases,
            "load": self.load,
            "slo_p99_ms": self.slo_p99_ms,
            "slo_met": self.slo_met,
            "failures": list(self.failures),
        }

    def summary(self) -> str:
        """One line: pass/fail, ``N case(s), M failed``, latency percentiles (ms),
        throughput (req/s), SLO."""
        head = "smoke passed" if self.passed else "smoke FAILED"
        head = f"{head}: {len(self.cases)} case(s), {self.failed_cases} failed"
        if not self.load:
            return head
        ld = self.load
        slo = f", SLO p99 <= {self.slo_p99_ms:g} ms" if self.slo_p99_ms is not None else ""
        return (
            f"{head}; load {ld['completed']}/{ld['requests']} req "
            f"at concurrency {ld['concurrency']}: p50 {ld['p50_ms']:.1f} ms, "
            f"p95 {ld['p95_ms']:.1f} ms, p99 {ld['p99_ms']:.1f} ms, "
            f"{ld['throughput_rps']:.0f} req/s{slo}"
        )


def describe_case(case: dict) -> str:
    """One line for one case of :attr:`SmokeResult.cases`, with its reasons when it failed.

    ``examples/x.json: HTTP 200 in 3.1 ms``; a failed case adds ``: <reason>; <reason>``
    (a reason that starts with the file name is shown without it); a case that was not
    sent reads ``examples/x.json: not sent: <reason>``.
    """
    file = str(case.get("request", "?"))
    if not case.get("sent", True):
        head = f"{file}: not sent"
    elif case.get("status") is None:
        head = f"{file}: no answer"
    else:
        head = f"{file}: HTTP {case['status']} in {case.get('latency_ms') or 0:.1f} ms"
    prefix = f"{file}: "
    reasons = [f[len(prefix) :] if f.startswith(prefix) else f for f in case.get("failures", [])]
    return f"{head}: {'; '.join(reasons)}" if reasons and not case.get("ok") else head


@dataclass
class _Case:
    field: str  # spec path of the request file, for messages
    file: str
    body: Any = None
    expect: dict = field(default_factory=dict)
    problem: str = ""  # why the file cannot be sent ('' when it can)


def _shape(value: Any) -> list[int]:
    """Shape of nested lists (``[[1, 2], [3, 4]]`` → ``[2, 2]``); scalars → ``[]``."""
    shape: list[int] = []
    while isinstance(value, list):
        shape.append(len(value))
        if not value:
            break
        value = value[0]
    return shape


def _compare(actual: Any, expected: Any, tol: float, path: str = "predictions") -> str | None:
    """First difference between ``actual`` and ``expected`` ('' paths like ``[1][0]``)."""
    if isinstance(expected, list):
        if not isinstance(actual, list) or len(actual) != len(expected):
            got = f"{len(actual)} item(s)" if isinstance(actual, list) else repr(actual)
            return f"{path}: expected {len(expected)} item(s), got {got}"
        for i, (a, e) in enumerate(zip(actual, expected, strict=True)):
            diff = _compare(a, e, tol, f"{path}[{i}]")
            if diff:
                return diff
        return None
    both_numbers = all(
        isinstance(v, int | float) and not isinstance(v, bool) for v in (actual, expected)
    )
    if both_numbers:
        if math.isclose(float(actual), float(expected), rel_tol=0.0, abs_tol=tol):
            return None
        within = f" (± {tol:g})" if tol else ""
        return f"{path}: expected {expected!r}{within}, got {actual!r}"
    if actual != expected:
        return f"{path}: expected {expected!r}, got {actual!r}"
    return None


def _cases(dep: Deployment, config: Config) -> tuple[list[_Case], list[str]]:
    """Every smoke case of ``dep`` in spec order (those whose file cannot be sent carry a
    ``problem``), and the failures that belong to no case (no smoke request at all)."""
    smoke = dep.get("spec.serving.smoke", {}) or {}
    raw: list[_Case] = []
    if isinstance(smoke.get("request"), str):
        raw.append(_Case("spec.serving.smoke.request", smoke["request"]))
    for i, case in enumerate(smoke.get("requests") or []):
        if isinstance(case, dict) and isinstance(case.get("request"), str):
            raw.append(
                _Case(
                    f"spec.serving.smoke.requests.{i}.request",
                    case["request"],
                    expect=dict(case.get("expect") or {}),
                )
            )
    failures: list[str] = []
    for case in raw:
        where = f"{dep.locate(case.field)}: {case.field}"
        path = config.repo_path(case.file)
        if path is None:
            case.problem = f"{where}: {case.file!r} leaves the repository; use a path inside it"
            continue
        status = case.expect.get("status", 200)
        try:
            case.body = read_request_file(
                path, case.file, status if isinstance(status, int) else 200
            )
        except RequestFileError as exc:
            case.problem = f"{where}: {exc}"
    if not raw:
        failures.append(
            f"{dep.locate('spec.serving')}: spec.serving.smoke: no smoke request; set "
            'spec.serving.smoke.request (a JSON file with {"instances": [[...]]})'
        )
    return raw, failures


def _not_sent(case: _Case) -> dict:
    """The outcome of a case whose request file cannot be sent."""
    return {
        "request": case.file,
        "field": case.field,
        "sent": False,
        "status": None,
        "ok": False,
        "latency_ms": None,
        "failures": [case.problem],
    }


def _check_case(client: httpx.Client, url: str, case: _Case) -> dict:
    """POST one case's body and compare the answer with its expectations."""
    expect = case.expect
    want_status = int(expect.get("status", 200))
    fails: list[str] = []
    start = time.perf_counter()
    try:
        resp = client.post(url + PREDICT_PATH, json=case.body, headers={SYNTHETIC_HEADER: "smoke"})
    except httpx.HTTPError as exc:
        elapsed = (time.perf_counter() - start) * 1000
        return {
            "request": case.file,
            "field": case.field,
            "sent": True,
            "status": None,
            "ok": False,
            "latency_ms": round(elapsed, 3),
            "failures": [f"POST {PREDICT_PATH} with {case.file} failed: {exc}"],
        }
    elapsed = (time.perf_counter() - start) * 1000
    if resp.status_code != want_status:
        fails.append(
            f"{case.file}: expected HTTP {want_status}, got {resp.status_code}: {resp.text[:300]}"
        )
    elif 200 <= want_status < 300:
        try:
            payload = resp.json()
        except ValueError:
            payload = None
        preds = payload.get("predictions") if isinstance(payload, dict) else None
        if not isinstance(preds, list):
            fails.append(f'{case.file}: response has no "predictions" list: {resp.text[:300]}')
        else:
            instances = case.body.get("instances")
            n_inst = len(instances) if isinstance(instances, list) else None
            if "shape" in expect:
                if _shape(preds) != list(expect["shape"]):
                    fails.append(
                        f"{case.file}: predictions have shape {_shape(preds)}, expected "
                        f"{list(expect['shape'])}"
                    )
            elif n_inst is not None and len(preds) != n_inst:
                fails.append(f"{case.file}: {len(preds)} prediction(s) for {n_inst} instance(s)")
            if "values" in expect:
                diff = _compare(preds, expect["values"], float(expect.get("tolerance", 0)))
                if diff:
                    fails.append(f"{case.file}: {diff}")
    return {
        "request": case.file,
        "field": case.field,
        "sent": True,
        "status": resp.status_code,
        "ok": not fails,
        "latency_ms": round(elapsed, 3),
        "failures": fails,
    }


def percentiles_ms(latencies_ms: list[float]) -> dict:
    """p50/p95/p99/mean/max of latencies in ms (numpy's linear interpolation)."""
    import numpy as np  # heavy: only when latencies are summarized

    if not latencies_ms:
        return {"p50_ms": 0.0, "p95_ms": 0.0, "p99_ms": 0.0, "mean_ms": 0.0, "max_ms": 0.0}
    arr = np.asarray(latencies_ms, dtype=float)
    p50, p95, p99 = np.percentile(arr, [50, 95, 99])
    return {
        "p50_ms": round(float(p50), 3),
        "p95_ms": round(float(p95), 3),
        "p99_ms": round(float(p99), 3),
        "mean_ms": round(float(arr.mean()), 3),
        "max_ms": round(float(arr.max()), 3),
    }


def load_test(
    url: str,
    body: Any,
    *,
    requests: int,
    concurrency: int,
    warmup: int = 0,
    kind: str = "load",
) -> dict:
    """Send ``requests`` POSTs of ``body`` to ``url`` from ``concurrency`` threads.

    Each thread has its own keep-alive HTTP connection and sends requests back to back
    (closed loop) until the shared count is used up. ``warmup`` requests go first and
    are not counted. Every request carries ``X-Modelops-Synthetic: <kind>``, so the
    service does not capture it (``reconciler.runtime.capture.SYNTHETIC_HEADER``).

    Returns:
        ``requests``, ``concurrency``, ``warmup``, ``completed`` (2xx answers),
        ``errors`` (non-2xx or transport errors), ``first_error`` (text or ''),
        ``p50_ms``, ``p95_ms``, ``p99_ms``, ``mean_ms``, ``max_ms`` (of the 2xx answers),
        ``throughput_rps`` (2xx answers per second of wall time), ``duration_s``.
    """
    requests, concurrency = int(requests), max(1, int(concurrency))
    lock = threading.Lock()
    remaining = [warmup]
    latencies: list[float] = []
    errors: list[str] = []
    payload = json.dumps(body).encode()
    headers = {"content-type": "application/json", SYNTHETIC_HEADER: kind}
    limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)

    def take() -> bool:
        with lock:
            if remaining[0] <= 0:
                return False
            remaining[0] -= 1
            return True

    def worker(client: httpx.Client, record: bool) -> None:
        while take():
            start = time.perf_counter()
            try:
                resp = client.post(url, content=payload, headers=headers)
                ok = 200 <= resp.status_code < 300
                err = "" if ok else f"HTTP {resp.status_code}: {resp.text[:200]}"
            except httpx.HTTPError as exc:
                ok, err = False, f"{type(exc).__name__}: {exc}"
            elapsed = (time.perf_counter() - start) * 1000
            if record:
                with lock:
                    if ok:
                        latencies.append(elapsed)
                    else:
                        errors.append(err)

    clients = [
        httpx.Client(timeout=REQUEST_TIMEOUT_S, limits=limits, trust_env=False)
        for _ in range(concurrency)
    ]
    try:
        with ThreadPoolExecutor(max_workers=concurrency) as pool:
            if warmup:
                list(pool.map(lambda c: worker(c, False), clients))
            remaining[0] = requests
            start = time.perf_counter()
            list(pool.map(lambda c: worker(c, True), clients))
            duration = time.perf_counter() - start
    finally:
        for client in clients:
            client.close()
    return {
        "requests": requests,
        "concurrency": concurrency,
        "warmup": warmup,
        "completed": len(latencies),
        "errors": len(errors),
        "first_error": errors[0] if errors else "",
        **percentiles_ms(latencies),
        "throughput_rps": round(len(latencies) / duration, 1) if duration > 0 else 0.0,
        "duration_s": round(duration, 3),
    }


def run_smoke(
    dep: Deployment,
    config: Config,
    url: str,
    *,
    requests: int | None = None,
    concurrency: int | None = None,
) -> SmokeResult:
    """Check a served deployment: its smoke cases, then a short load test against the SLO.

    Args:
        dep: the resolved deployment (``spec.serving.smoke``, ``spec.serving.slo``).
        config: resolves the request files (repository-relative paths).
        url: the server's base URL (``http://127.0.0.1:<port>``).
        requests: load-test requests (default ``spec.serving.smoke.load.requests``, else
            200); 0 skips the load test.
        concurrency: concurrent clients (default ``spec.serving.smoke.load.concurrency``,
            else 8).

    Returns:
        A :class:`SmokeResult`; ``passed`` is False when a request file is missing or
        invalid, a case's status/shape/values differ from what is expected, any load-test
        request fails, or p99 latency exceeds ``spec.serving.slo.p99_latency_ms``. The load
        test runs only when every case passed. Never raises for a bad answer.
    """
    url = url.rstrip("/")
    result = SmokeResult(dep.key, url)
    cases, other = _cases(dep, config)
    with (
        step("smoke", dep.key, f"{len(cases)} case(s)"),
        httpx.Client(timeout=REQUEST_TIMEOUT_S, trust_env=False) as client,
    ):
        for case in cases:
            outcome = _not_sent(case) if case.problem else _check_case(client, url, case)
            result.cases.append(outcome)
            result.failures.extend(outcome["failures"])
    result.failures.extend(other)
    slo = dep.get("spec.serving.slo.p99_latency_ms")
    result.slo_p99_ms = float(slo) if isinstance(slo, int | float) else None
    load_spec = dep.get("spec.serving.smoke.load", {}) or {}
    n = requests if requests is not None else load_spec.get("requests", DEFAULT_LOAD_REQUESTS)
    c = (
        concurrency
        if concurrency is not None
        else load_spec.get("concurrency", DEFAULT_LOAD_CONCURRENCY)
    )
    if result.failures or not cases or int(n) <= 0:
        return result
    # the load test repeats a case that answers 2xx
    body = next(
        (
            case.body
            for case, outcome in zip(cases, result.cases, strict=True)
            if outcome["status"] is not None and 200 <= outcome["status"] < 300
        ),
        None,
    )
    if body is None:
        return result
    with step("load test", dep.key, f"{n} requests, {c} clients"):
        result.load = load_test(
            url + PREDICT_PATH,
            body,
            requests=int(n),
            concurrency=int(c),
            warmup=min(2 * int(c), 32),
        )
    if result.load["errors"]:
        result.failures.append(
            f"load test: {result.load['errors']} of {n} request(s) failed "
            f"(first: {result.load['first_error']})"
        )
    if result.slo_p99_ms is not None:
        result.slo_met = result.load["p99_ms"] <= result.slo_p99_ms
        if not result.slo_met:
            result.failures.append(
                f"{dep.locate('spec.serving.slo.p99_latency_ms')}: "
                f"spec.serving.slo.p99_latency_ms: SLO missed: p99 latency "
                f"{result.load['p99_ms']:.1f} ms > {result.slo_p99_ms:g} ms at concurrency "
                f"{result.load['concurrency']} ({n} requests)"
            )
    return result

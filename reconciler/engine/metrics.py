"""Service health of a served Bento from its Prometheus ``/metrics``: latency, request rate,
error rate since the server started.

BentoML 1.4 counts every request but health checks and ``/metrics`` in
``bentoml_service_request_duration_seconds`` (histogram) and
``bentoml_service_request_total`` (counter), labelled with ``endpoint`` and
``http_response_code`` (names: ``stacks.common``; the same series the Kubernetes
PrometheusRule alerts on). Health checks are counted there too and are left out here.
:func:`parse_metrics` reads the text format with prometheus_client's parser (a BentoML
dependency); :func:`read_metrics` fetches it. The figures include modelops's own smoke
and load-test requests, which a server's counters cannot tell apart. Rationale:
``docs/engine.md``.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import httpx
import psutil
from prometheus_client.parser import text_string_to_metric_families

from stacks.common import (
    ENDPOINT_LABEL,
    HEALTH_PATHS,
    METRICS_PATH,
    REQUEST_DURATION_METRIC,
    REQUEST_TOTAL_METRIC,
    STATUS_LABEL,
)


class MetricsUnavailable(Exception):
    """``/metrics`` could not be fetched or is not the Prometheus text format; the message
    says which and why."""


@dataclass(frozen=True)
class ServiceMetrics:
    """Request figures of one server since it started.

    Attributes:
        requests: requests answered (count).
        errors: requests answered with a 5xx status (count).
        p50_ms, p99_ms: latency quantiles in ms, estimated from the histogram's buckets
            as Prometheus's ``histogram_quantile`` does (linear within a bucket; a
            quantile in the ``+Inf`` bucket is the largest finite bound); ``None``
            without requests.
        uptime_s: seconds since the server started (``None``: unknown).
    """

    requests: int
    errors: int
    p50_ms: float | None
    p99_ms: float | None
    uptime_s: float | None = None

    @property
    def error_rate(self) -> float | None:
        """Share of requests answered 5xx (0-1), ``None`` without requests."""
        return self.errors / self.requests if self.requests else None

    @property
    def request_rate(self) -> float | None:
        """Requests per second since start, ``None`` when the uptime is unknown or 0."""
        if not self.uptime_s or self.uptime_s <= 0:
            return None
        return self.requests / self.uptime_s

    def to_dict(self) -> dict:
        """JSON-ready: requests, errors, error_rate (0-1), p50_ms, p99_ms, request_rate
        (req/s), uptime_s; unknown figures are ``None``."""
        return {
            "requests": self.requests,
            "errors": self.errors,
            "error_rate": self.error_rate,
            "p50_ms": self.p50_ms,
            "p99_ms": self.p99_ms,
            "request_rate": self.request_rate,
            "uptime_s": self.uptime_s,
        }

    def summary(self) -> str:
        """One line: ``p50 3 ms, p99 9.5 ms, 2.1 req/s, 0.0% 5xx (230 requests)``."""
        if not self.requests:
            return "no requests yet"
        rate = self.request_rate
        parts = [
            f"p50 {self.p50_ms:.3g} ms" if self.p50_ms is not None else "p50 -",
            f"p99 {self.p99_ms:.3g} ms" if self.p99_ms is not None else "p99 -",
            f"{rate:.3g} req/s" if rate is not None else "- req/s",
            f"{(self.error_rate or 0.0):.1%} 5xx",
        ]
        return f"{', '.join(parts)} ({self.requests} requests)"


def bucket_quantile(q: float, buckets: list[tuple[float, float]]) -> float | None:
    """The ``q`` quantile (0-1) of a cumulative histogram, as PromQL's
    ``histogram_quantile``.

    Args:
        q: the quantile, 0-1.
        buckets: ``(upper bound, cumulative count)`` pairs, the last bound ``+Inf``.

    Returns:
        The estimate in the buckets' unit; ``None`` when the histogram is empty.
    """
    buckets = sorted(buckets)
    if not buckets or buckets[-1][1] <= 0:
        return None
    total = buckets[-1][1]
    rank = q * total
    lower_bound, lower_count = 0.0, 0.0
    for bound, count in buckets:
        if count >= rank:
            if math.isinf(bound):
                return lower_bound  # the largest finite bound, as Prometheus answers
            if count == lower_count:
                return bound
            return lower_bound + (bound - lower_bound) * (rank - lower_count) / (
                count - lower_count
            )
        lower_bound, lower_count = bound, count
    return lower_bound


def parse_metrics(text: str, uptime_s: float | None = None) -> ServiceMetrics:
    """:class:`ServiceMetrics` from a ``/metrics`` body (Prometheus text format).

    Every series of the two request metrics counts but those of the health endpoints
    (:data:`stacks.common.HEALTH_PATHS`); the histogram's buckets are summed over the
    label sets by their bound.

    Raises:
        MetricsUnavailable: the text is not the Prometheus format.
    """
    requests = errors = 0.0
    buckets: dict[float, float] = {}
    try:
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.labels.get(ENDPOINT_LABEL) in HEALTH_PATHS:
                    continue
                if sample.name == REQUEST_TOTAL_METRIC:
                    requests += sample.value
                    if str(sample.labels.get(STATUS_LABEL, "")).startswith("5"):
                        errors += sample.value
                elif sample.name == f"{REQUEST_DURATION_METRIC}_bucket":
                    bound = float(sample.labels["le"])
                    buckets[bound] = buckets.get(bound, 0.0) + sample.value
    except (ValueError, KeyError, TypeError) as exc:
        raise MetricsUnavailable(f"not the Prometheus text format ({exc})") from None
    pairs = list(buckets.items())
    p50 = bucket_quantile(0.5, pairs)
    p99 = bucket_quantile(0.99, pairs)
    return ServiceMetrics(
        requests=int(requests),
        errors=int(errors),
        p50_ms=None if p50 is None else p50 * 1000,
        p99_ms=None if p99 is None else p99 * 1000,
        uptime_s=uptime_s,
    )


def read_metrics(url: str, uptime_s: float | None = None, timeout_s: float = 5.0) -> ServiceMetrics:
    """GET ``<url>/metrics`` and :func:`parse_metrics` it.

    Args:
        url: the server's base URL (``http://127.0.0.1:3000``).
        uptime_s: seconds since the server started, for the request rate.
        timeout_s: seconds for the request.

    Raises:
        MetricsUnavailable: no answer, a status other than 200, or not the text format.
    """
    try:
        resp = httpx.get(f"{url}{METRICS_PATH}", timeout=timeout_s, trust_env=False)
    except httpx.HTTPError as exc:
        raise MetricsUnavailable(f"GET {url}{METRICS_PATH} failed ({type(exc).__name__})") from None
    if resp.status_code != 200:
        raise MetricsUnavailable(f"GET {url}{METRICS_PATH} answered HTTP {resp.status_code}")
    return parse_metrics(resp.text, uptime_s)


def server_metrics(pid: int, url: str, timeout_s: float = 5.0) -> ServiceMetrics:
    """:func:`read_metrics` of a local server, with its uptime from the process's start
    time (``pid``: the ``bentoml serve`` process).

    Raises:
        MetricsUnavailable: the process is gone, or as :func:`read_metrics`.
    """
    try:
        started = psutil.Process(pid).create_time()
    except psutil.Error:
        raise MetricsUnavailable(f"process {pid} is not running") from None
    return read_metrics(url, max(time.time() - started, 0.0), timeout_s)

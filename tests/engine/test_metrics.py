"""Service health from a server's /metrics: the quantile estimate and the parser.

A real served Bento counting the requests a test sends, with the metric and label names
the Kubernetes PrometheusRule alerts on, is checked in tests/runtime/test_service.py
(``test_metrics_count_what_was_sent``, on the session's shared server); ``status`` over
a real local server in tests/flow/test_flow_apply.py.
"""

from __future__ import annotations

import pytest

from reconciler.build.serve import free_port
from reconciler.engine.metrics import (
    MetricsUnavailable,
    ServiceMetrics,
    bucket_quantile,
    parse_metrics,
    read_metrics,
)
from stacks.common import (
    REQUEST_DURATION_METRIC,
    REQUEST_TOTAL_METRIC,
    STATUS_LABEL,
)

INF = float("inf")


def test_bucket_quantile_interpolates_within_a_bucket_as_promql():
    buckets = [(0.005, 50.0), (0.01, 90.0), (0.025, 100.0), (INF, 100.0)]
    assert bucket_quantile(0.5, buckets) == pytest.approx(0.005)
    # rank 99 lies in (0.01, 0.025] holding ranks 90..100: 0.01 + 0.015 × 9/10
    assert bucket_quantile(0.99, buckets) == pytest.approx(0.0235)
    assert bucket_quantile(0.25, buckets) == pytest.approx(0.0025)  # from 0 in the first
    # a quantile in the +Inf bucket is the largest finite bound
    assert bucket_quantile(0.99, [(0.1, 10.0), (INF, 20.0)]) == pytest.approx(0.1)
    assert bucket_quantile(0.5, [(0.1, 0.0), (INF, 0.0)]) is None
    assert bucket_quantile(0.5, []) is None


EXPOSITION = f"""\
# HELP {REQUEST_TOTAL_METRIC} Total number of HTTP requests
# TYPE {REQUEST_TOTAL_METRIC} counter
{REQUEST_TOTAL_METRIC}{{endpoint="/predict",{STATUS_LABEL}="200"}} 90.0
{REQUEST_TOTAL_METRIC}{{endpoint="/predict",{STATUS_LABEL}="400"}} 6.0
{REQUEST_TOTAL_METRIC}{{endpoint="/predict",{STATUS_LABEL}="500"}} 3.0
{REQUEST_TOTAL_METRIC}{{endpoint="/predict_proba",{STATUS_LABEL}="503"}} 1.0
{REQUEST_TOTAL_METRIC}{{endpoint="/readyz",{STATUS_LABEL}="503"}} 7.0
{REQUEST_TOTAL_METRIC}{{endpoint="/livez",{STATUS_LABEL}="200"}} 9.0
# HELP {REQUEST_DURATION_METRIC} request duration in seconds
# TYPE {REQUEST_DURATION_METRIC} histogram
{REQUEST_DURATION_METRIC}_bucket{{{STATUS_LABEL}="200",le="0.005"}} 40.0
{REQUEST_DURATION_METRIC}_bucket{{{STATUS_LABEL}="200",le="0.01"}} 80.0
{REQUEST_DURATION_METRIC}_bucket{{{STATUS_LABEL}="200",le="+Inf"}} 90.0
{REQUEST_DURATION_METRIC}_count{{{STATUS_LABEL}="200"}} 90.0
{REQUEST_DURATION_METRIC}_sum{{{STATUS_LABEL}="200"}} 0.6
{REQUEST_DURATION_METRIC}_bucket{{{STATUS_LABEL}="500",le="0.005"}} 10.0
{REQUEST_DURATION_METRIC}_bucket{{{STATUS_LABEL}="500",le="0.01"}} 10.0
{REQUEST_DURATION_METRIC}_bucket{{{STATUS_LABEL}="500",le="+Inf"}} 10.0
{REQUEST_DURATION_METRIC}_count{{{STATUS_LABEL}="500"}} 10.0
{REQUEST_DURATION_METRIC}_sum{{{STATUS_LABEL}="500"}} 0.01
{REQUEST_DURATION_METRIC}_bucket{{endpoint="/livez",{STATUS_LABEL}="200",le="0.005"}} 0.0
{REQUEST_DURATION_METRIC}_bucket{{endpoint="/livez",{STATUS_LABEL}="200",le="+Inf"}} 9.0
"""


def test_parse_sums_every_series_and_counts_only_5xx_as_errors():
    m = parse_metrics(EXPOSITION, uptime_s=50.0)
    # 400s are the caller's fault, not errors; health checks are not requests
    assert (m.requests, m.errors) == (100, 4)
    assert m.error_rate == pytest.approx(0.04)
    assert m.request_rate == pytest.approx(2.0)
    # buckets summed by bound over both label sets: 50, 90, 100
    assert m.p50_ms == pytest.approx(5.0)
    assert m.p99_ms == pytest.approx(10.0)  # rank 99 in the +Inf bucket
    assert m.summary() == "p50 5 ms, p99 10 ms, 2 req/s, 4.0% 5xx (100 requests)"


def test_no_requests_and_unknown_uptime():
    m = parse_metrics("", uptime_s=None)
    assert (m.requests, m.p50_ms, m.error_rate, m.request_rate) == (0, None, None, None)
    assert m.summary() == "no requests yet"
    assert ServiceMetrics(5, 0, 1.0, 2.0, uptime_s=0.0).request_rate is None


def test_text_that_is_not_the_prometheus_format_is_unavailable():
    with pytest.raises(MetricsUnavailable, match="not the Prometheus text format"):
        parse_metrics(f'{REQUEST_TOTAL_METRIC}{{endpoint="/predict" 3\n')


def test_a_server_that_does_not_answer_is_unavailable(free_port_url):
    with pytest.raises(MetricsUnavailable, match="failed"):
        read_metrics(free_port_url, timeout_s=2)


@pytest.fixture
def free_port_url() -> str:
    return f"http://127.0.0.1:{free_port()}"

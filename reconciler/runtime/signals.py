"""Model signals of the served version, for rollout analysis (copied into every Bento).

Two signals judge a new version on the model's own behaviour, beside BentoML's request
metrics (rationale: ``docs/rollout.md``):

* **estimated quality**: the mean top-class probability of the rows served, the
  confidence-based accuracy estimate (exact for a calibrated classifier); counters
  ``modelops_confidence_rows_total`` and ``modelops_confidence_sum_total`` on ``/metrics``
  (a rate ratio gives the estimate over any window);
* **agreement with the stable version**: with ``MODELOPS_STABLE_URL`` set (the new pods of
  an Argo Rollouts canary: the stable Service's ``/predict``), a sample
  (``MODELOPS_AGREEMENT_SAMPLE``, default 0.1) of requests is sent there too, after the
  answer, and the predicted labels compared: ``modelops_agreement_rows_total``,
  ``modelops_agreement_equal_total``, ``modelops_agreement_errors_total`` (copies that got
  no answer). The copies carry ``X-Modelops-Synthetic: agreement``, so the stable version
  does not capture them.

On SageMaker (``MODELOPS_SIGNALS_NAMESPACE`` set) the estimate is also written once a
minute as a CloudWatch embedded-metric-format line on stdout (the container log becomes
the metric ``EstimatedQuality`` with dimensions ``EndpointName`` and ``VariantName``,
which the rollout's quality alarm reads).

Imports nothing of the package (it runs inside the Bento).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import random
import sys
import time

import httpx
from prometheus_client import REGISTRY, Counter

log = logging.getLogger("modelops.signals")

STABLE_URL_ENV = "MODELOPS_STABLE_URL"
SAMPLE_ENV = "MODELOPS_AGREEMENT_SAMPLE"
DEFAULT_SAMPLE = 0.1
AGREEMENT_TIMEOUT_S = 5.0
EMF_PERIOD_S = 60.0
SYNTHETIC_HEADER = "X-Modelops-Synthetic"


def _counter(name: str, documentation: str) -> Counter:
    """The process's counter ``name`` (``<name>_total`` on /metrics). The build imports
    this module again to check the service (a fresh module object), so a counter already
    registered by an earlier import is reused rather than registered twice."""
    try:
        return Counter(name, documentation)
    except ValueError:  # already registered in this process
        return REGISTRY._names_to_collectors[name]


CONFIDENCE_ROWS = _counter("modelops_confidence_rows", "Rows scored with class probabilities")
CONFIDENCE_SUM = _counter("modelops_confidence_sum", "Sum of the rows' top-class probabilities")
AGREEMENT_ROWS = _counter("modelops_agreement_rows", "Rows compared with the stable version")
AGREEMENT_EQUAL = _counter(
    "modelops_agreement_equal", "Compared rows whose label equals the stable version's"
)
AGREEMENT_ERRORS = _counter(
    "modelops_agreement_errors", "Comparison copies the stable version did not answer"
)


def confidence(probabilities) -> tuple[int, float]:
    """``(rows, sum of top-class probabilities)`` of a response's ``probabilities``
    (a list of per-class lists); ``(0, 0.0)`` without them."""
    if not probabilities:
        return 0, 0.0
    return len(probabilities), float(sum(max(row) for row in probabilities if row))


def agreement(mine: list, theirs: list) -> tuple[int, int]:
    """``(rows compared, rows with equal labels)`` of two ``predictions`` lists; lists of
    different lengths compare nothing (``(0, 0)``)."""
    if not isinstance(theirs, list) or len(theirs) != len(mine):
        return 0, 0
    return len(mine), sum(1 for a, b in zip(mine, theirs, strict=True) if a == b)


def emf_line(namespace: str, endpoint: str, variant: str, value: float, now_s: float) -> str:
    """One CloudWatch embedded-metric-format record of ``EstimatedQuality``."""
    return json.dumps(
        {
            "_aws": {
                "Timestamp": int(now_s * 1000),
                "CloudWatchMetrics": [
                    {
                        "Namespace": namespace,
                        "Dimensions": [["EndpointName", "VariantName"]],
                        "Metrics": [{"Name": "EstimatedQuality", "Unit": "None"}],
                    }
                ],
            },
            "EndpointName": endpoint,
            "VariantName": variant,
            "EstimatedQuality": value,
        },
        separators=(",", ":"),
    )


class Signals:
    """The signals of one worker process (settings from the environment by default)."""

    def __init__(self, environ=None, out=None) -> None:
        env = os.environ if environ is None else environ
        self.stable_url = env.get(STABLE_URL_ENV) or None
        self.sample = float(env.get(SAMPLE_ENV, DEFAULT_SAMPLE))
        self.namespace = env.get("MODELOPS_SIGNALS_NAMESPACE") or None
        self.endpoint = env.get("MODELOPS_SIGNALS_ENDPOINT", "")
        self.variant = env.get("MODELOPS_SIGNALS_VARIANT", "")
        self.out = out or sys.stdout
        self._client: httpx.AsyncClient | None = None
        self._window = [0, 0.0]
        self._window_start = time.time()
        self._tasks: set = set()

    def observe(self, result: dict, body: bytes, synthetic: bool) -> None:
        """Count one answered request (``result``: the response body with ``predictions``
        and maybe ``probabilities``); modelops's own traffic (``synthetic``) is left out.
        Schedules the comparison copy on the running event loop when sampled."""
        if synthetic:
            return
        rows, total = confidence(result.get("probabilities"))
        if rows:
            CONFIDENCE_ROWS.inc(rows)
            CONFIDENCE_SUM.inc(total)
            if self.namespace:
                self._emf(rows, total)
        if self.stable_url and random.random() < self.sample:
            task = asyncio.get_running_loop().create_task(
                self.compare(body, result.get("predictions") or [])
            )
            self._tasks.add(task)  # keep a reference until it is done
            task.add_done_callback(self._tasks.discard)

    async def compare(self, body: bytes, predictions: list) -> tuple[int, int]:
        """Send ``body`` to the stable version and count equal labels; returns
        ``(rows, equal)``, ``(0, 0)`` when the stable version did not answer 200."""
        if self._client is None:
            self._client = httpx.AsyncClient(timeout=AGREEMENT_TIMEOUT_S)
        try:
            response = await self._client.post(
                self.stable_url,
                content=body,
                headers={"Content-Type": "application/json", SYNTHETIC_HEADER: "agreement"},
            )
            theirs = response.json().get("predictions") if response.status_code == 200 else None
        except (httpx.HTTPError, ValueError, AttributeError) as exc:
            log.warning("agreement copy to %s failed: %s", self.stable_url, exc)
            theirs = None
        if theirs is None:
            AGREEMENT_ERRORS.inc()
            return 0, 0
        rows, equal = agreement(predictions, theirs)
        AGREEMENT_ROWS.inc(rows)
        AGREEMENT_EQUAL.inc(equal)
        return rows, equal

    def _emf(self, rows: int, total: float) -> None:
        self._window[0] += rows
        self._window[1] += total
        now = time.time()
        if now - self._window_start >= EMF_PERIOD_S:
            n, s = self._window
            line = emf_line(self.namespace, self.endpoint, self.variant, s / n, now)
            self.out.write(line + "\n")
            self.out.flush()
            self._window = [0, 0.0]
            self._window_start = now

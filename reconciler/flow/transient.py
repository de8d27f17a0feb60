"""Failures that are not the spec's fault: retried with backoff, never counted toward Stalled.

A throttled cloud API, a dropped connection or a stack locked by another update says
nothing about the deployment's inputs: counting it toward ``Stalled`` would stop a
healthy spec from being applied until someone edits it. :func:`with_retries` retries
such a failure a few times with exponential backoff (2 s, 4 s: the AWS SDKs' and
Terraform's practice of retrying throttling with growing waits); a failure that stays
transient is recorded as ``TransientFailure`` (``state/reasons.py``), which the next run
retries without a count. Everything else (a refused update, a model that does not load,
a failed smoke test) is a real failure and counts.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")

ATTEMPTS = 3
BASE_DELAY_S = 2.0
# Exception class names raised by the SDKs under Pulumi and the HTTP stacks for a
# dropped or refused connection, a time-out or another update holding the stack.
_TRANSIENT_TYPES = {
    "ConcurrentUpdateError",  # pulumi.automation: the stack is locked by another update
    "EndpointConnectionError",
    "ConnectTimeoutError",
    "ReadTimeoutError",
    "ConnectTimeout",
    "ReadTimeout",
    "RemoteDisconnected",
    "ProtocolError",
}
# What cloud APIs say when they throttle or are briefly unavailable (AWS error codes,
# HTTP 429/503, Pulumi's stack lock), matched in the error message.
_TRANSIENT_MESSAGE = re.compile(
    r"\b(Throttling(Exception)?|ThrottledException|Rate exceeded|TooManyRequests(Exception)?|"
    r"RequestLimitExceeded|SlowDown|ProvisionedThroughputExceeded|RequestTimeout|"
    r"429 Too Many Requests|503 Service Unavailable|ServiceUnavailable|"
    r"connection reset by peer|the stack is currently locked|conflict: Another update)\b",
    re.IGNORECASE,
)


def is_transient(exc: BaseException) -> bool:
    """Whether ``exc`` is a failure that is not the spec's fault (see the module doc).

    Connection errors and time-outs of the socket layer (``ConnectionError``,
    ``TimeoutError``), an error whose class sets ``transient = True`` (a remote model
    that moved since the plan: ``reconciler.flow.sources.PlanOutdated``) and the SDK
    classes in ``_TRANSIENT_TYPES`` are transient, as is
    any error whose message (or its explicit ``raise ... from`` cause's) carries a
    throttling or unavailability code. An implicit context is not followed: an engine's
    verdict raised while handling a refused connection (a model server that never came
    up) is the deployment's failure, not a transient one.
    """
    seen = 0
    while exc is not None and seen < 5:
        if isinstance(exc, (ConnectionError, TimeoutError)):
            return True
        if getattr(exc, "transient", False) is True:  # an error that says so itself
            return True
        if type(exc).__name__ in _TRANSIENT_TYPES:
            return True
        if _TRANSIENT_MESSAGE.search(str(exc)):
            return True
        exc = exc.__cause__
        seen += 1
    return False


def with_retries(
    action: Callable[[], T],
    *,
    attempts: int = ATTEMPTS,
    base_delay_s: float = BASE_DELAY_S,
    sleep: Callable[[float], None] = time.sleep,
    on_retry: Callable[[int, BaseException], None] | None = None,
) -> T:
    """``action()``, retried after a transient failure up to ``attempts`` times in all.

    The waits grow as ``base_delay_s * 2**n`` seconds (2, 4 by default). A failure that
    is not transient is raised at once; the last transient one is raised after the last
    attempt (the caller records it as transient).
    """
    for attempt in range(1, attempts + 1):
        try:
            return action()
        except Exception as exc:
            if attempt == attempts or not is_transient(exc):
                raise
            if on_retry is not None:
                on_retry(attempt, exc)
            sleep(base_delay_s * 2 ** (attempt - 1))
    raise AssertionError("unreachable")  # pragma: no cover - the loop returns or raises

"""Adaptive micro-batching for the generated service (one batcher per worker process).

Shipped in every Bento; standard library and numpy only. Why not BentoML's own
dispatcher (measured): ``docs/runtime.md``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import numpy as np

#: A lone request is answered inline (see :class:`MicroBatcher`) only while the model's
#: calls take at most this long on average (ms). Meanwhile the event loop is blocked: a
#: request or probe that comes in waits for the call, as it would for a call in the batch
#: loop's thread (one model call is in flight at a time, and scikit-learn's small calls
#: hold the GIL most of the time anyway); only its parsing does not overlap the call. A
#: one-row call of the fraud example (scikit-learn pipeline) took 1.5-3.5 ms on the loaded
#: 2-core machine, a 100-tree forest about 10 ms; slower models keep the thread hop.
INLINE_MAX_MS = 10.0
#: Weight of the newest call in :attr:`MicroBatcher.call_ms` (exponential moving average).
CALL_MS_WEIGHT = 0.2


class MicroBatcher:
    """Batch 2-D arrays from concurrent coroutines into calls of ``fn``.

    Args:
        fn: ``async fn(batch: np.ndarray) -> np.ndarray``; output row ``i`` belongs to
            input row ``i`` (e.g. the model's inference run in a thread).
        max_batch_size: rows per call at most (``spec.serving.batching.max_batch_size``);
            a single request with more rows is sent alone.
        max_latency_ms: the longest a queued request waits for others to join its batch
            (``spec.serving.batching.max_latency_ms``), in milliseconds.

        inline: ``inline(batch) -> np.ndarray``, the same model call made synchronously,
            or ``None``. With it, a lone request (nothing queued, no model call in
            flight, no other request being parsed) is answered by calling ``inline``
            right on the event loop: no batch-loop wake-up and no thread hop, which
            were a third of a single client's latency (``docs/runtime.md``). Only while
            the model's calls take at most ``inline_max_ms`` on average (an estimate
            updated after every call): a slow model keeps the event loop free.
        inline_max_ms: see ``inline`` (milliseconds, default :data:`INLINE_MAX_MS`).

    Attributes:
        batches, rows: model calls made and rows sent (for ``/metadata``-style stats).
        inline_calls: how many of the ``batches`` were lone requests called inline.
        call_ms: the moving average of a model call's duration (ms; 0 before the first).
    """

    def __init__(
        self,
        fn: Callable[[np.ndarray], object],
        max_batch_size: int,
        max_latency_ms: float,
        inline: Callable[[np.ndarray], np.ndarray] | None = None,
        inline_max_ms: float | None = None,
    ) -> None:
        self.fn = fn
        self.inline = inline
        self.inline_max_ms = INLINE_MAX_MS if inline_max_ms is None else float(inline_max_ms)
        self.inline_calls = 0
        self.call_ms = 0.0
        self._busy = False  # a model call of the batch loop is in flight
        self._candidates = 0  # requests yielding once before they go inline
        self.max_batch_size = max(1, int(max_batch_size))
        self.max_latency_s = max(0.0, float(max_latency_ms) / 1000.0)
        self.arriving = 0  # requests being parsed that will submit soon
        self.batches = 0
        self.rows = 0
        self._queue: list[tuple[np.ndarray, asyncio.Future, float]] = []
        self._queued_rows = 0
        # The batch loop sleeps on this future; it is resolved when a batch should leave
        # (see _poke). One future and at most one timer per batch, not one per request:
        # an asyncio.wait_for per wake-up cost a measurable share of a /predict.
        self._ready: asyncio.Future | None = None
        self._idle = False  # the loop sleeps on an empty queue: any submit wakes it
        self._task: asyncio.Task | None = None

    def arrive(self) -> None:
        """Note that a request has arrived and will call :meth:`submit` (or :meth:`leave`)."""
        self.arriving += 1

    def leave(self) -> None:
        """Undo :meth:`arrive` for a request that will not submit (e.g. it was invalid)."""
        self.arriving = max(0, self.arriving - 1)
        self._poke()

    def _poke(self) -> None:
        """Wake the batch loop: on the first request into an empty queue (to start its
        ``max_latency_ms`` clock), and when the queued batch should leave now (nothing
        more is being parsed, or the queue already holds ``max_batch_size`` rows)."""
        ready = self._ready
        if (
            ready is not None
            and not ready.done()
            and self._queue
            and (self._idle or self._parsing() == 0 or self._queued_rows >= self.max_batch_size)
        ):
            ready.set_result(None)

    async def submit(self, batch: np.ndarray, arrived: bool = True) -> np.ndarray:
        """Queue ``batch`` (rows × features) and return its rows of ``fn``'s output.

        Args:
            batch: the request's rows.
            arrived: True when :meth:`arrive` was called for this request.

        Raises:
            whatever ``fn`` raised for the batch this request was part of.
        """
        if arrived:
            self.arriving = max(0, self.arriving - 1)
        if self._alone():
            # Yield once: requests whose bytes came in with this one run up to their own
            # submit meanwhile, see this candidate, and queue; then this one is not alone.
            self._candidates += 1
            try:
                await asyncio.sleep(0)
            finally:
                self._candidates -= 1
            if self._alone():
                return self._call_inline(batch)
        loop = asyncio.get_running_loop()
        if self._task is None or self._task.done():
            self._task = loop.create_task(self._loop())
        fut: asyncio.Future = loop.create_future()
        self._queue.append((batch, fut, time.monotonic()))
        self._queued_rows += len(batch)
        self._poke()
        return await fut

    def _parsing(self) -> int:
        """Requests that will submit soon: being parsed, or yielding before inline."""
        return self.arriving + self._candidates

    def _alone(self) -> bool:
        """Whether a request may take the inline path now: an inline call is given, the
        model is fast enough, no call is in flight, nothing is queued, and no other
        request is being parsed or waiting to go inline."""
        return (
            self.inline is not None
            and not self._busy
            and not self._queue
            and self.arriving == 0
            and self._candidates == 0
            and self.call_ms <= self.inline_max_ms
        )

    def _call_inline(self, batch: np.ndarray) -> np.ndarray:
        """The fast path of :meth:`submit`: ``inline(batch)`` now, on the event loop."""
        started = time.perf_counter()
        try:
            out = np.asarray(self.inline(batch))
        finally:
            self._timed(started)
        self.batches += 1
        self.inline_calls += 1
        self.rows += len(batch)
        return out

    def _timed(self, started: float) -> None:
        """Fold the duration of the model call begun at ``started`` into :attr:`call_ms`."""
        ms = (time.perf_counter() - started) * 1000.0
        self.call_ms = (
            ms
            if self.call_ms == 0.0
            else (CALL_MS_WEIGHT * ms + (1.0 - CALL_MS_WEIGHT) * self.call_ms)
        )

    def _take(self) -> list[tuple[np.ndarray, asyncio.Future, float]]:
        taken, rows = [], 0
        while self._queue:
            n = len(self._queue[0][0])
            if taken and rows + n > self.max_batch_size:
                break
            item = self._queue.pop(0)
            taken.append(item)
            rows += n
        self._queued_rows -= rows
        return taken

    async def _wait_for_batch(self, loop: asyncio.AbstractEventLoop) -> None:
        """Return when the queue is non-empty and its first batch should leave: at once
        if nothing more is being parsed or the batch is full, else when that becomes
        true or ``max_latency_ms`` after the first queued request, whichever is first."""
        while True:
            if self._queue:
                if self._parsing() == 0 or self._queued_rows >= self.max_batch_size:
                    return
                delay = self._queue[0][2] + self.max_latency_s - time.monotonic()
                if delay <= 0:
                    return
            else:
                delay = None
            ready = self._ready = loop.create_future()
            self._idle = delay is None
            timer = None
            if delay is not None:
                timer = loop.call_later(delay, lambda f=ready: f.done() or f.set_result(None))
            try:
                await ready
            finally:
                self._ready = None
                self._idle = False
                if timer is not None:
                    timer.cancel()
            if self._queue and delay is not None:
                return  # woken by _poke or by the deadline: the batch leaves

    async def _loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await self._wait_for_batch(loop)
            taken = self._take()
            sizes = [len(item[0]) for item in taken]
            try:
                arrays = [item[0] for item in taken]
                merged = arrays[0] if len(arrays) == 1 else np.concatenate(arrays)
                self._busy = True
                started = time.perf_counter()
                try:
                    out = np.asarray(await self.fn(merged))
                finally:
                    self._busy = False
                    self._timed(started)
                parts = np.split(out, np.cumsum(sizes)[:-1]) if len(sizes) > 1 else [out]
            except Exception as exc:  # noqa: BLE001 - handed to every waiting request
                for _, fut, _t in taken:
                    if not fut.done():
                        fut.set_exception(exc)
                continue
            self.batches += 1
            self.rows += sum(sizes)
            for (_, fut, _t), part in zip(taken, parts, strict=True):
                if not fut.done():
                    fut.set_result(part)

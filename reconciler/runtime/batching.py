"""Adaptive micro-batching for the generated service (one batcher per worker process).

Shipped in every Bento; standard library and numpy only. Why not BentoML's own
dispatcher (measured): ``docs/runtime.md``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import numpy as np


class MicroBatcher:
    """Batch 2-D arrays from concurrent coroutines into calls of ``fn``.

    Args:
        fn: ``async fn(batch: np.ndarray) -> np.ndarray``; output row ``i`` belongs to
            input row ``i`` (e.g. the model's inference run in a thread).
        max_batch_size: rows per call at most (``spec.serving.batching.max_batch_size``);
            a single request with more rows is sent alone.
        max_latency_ms: the longest a queued request waits for others to join its batch
            (``spec.serving.batching.max_latency_ms``), in milliseconds.

    Attributes:
        batches, rows: model calls made and rows sent (for ``/metadata``-style stats).
    """

    def __init__(
        self,
        fn: Callable[[np.ndarray], object],
        max_batch_size: int,
        max_latency_ms: float,
    ) -> None:
        self.fn = fn
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
            and (self._idle or self.arriving == 0 or self._queued_rows >= self.max_batch_size)
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
        loop = asyncio.get_running_loop()
        if self._task is None or self._task.done():
            self._task = loop.create_task(self._loop())
        if arrived:
            self.arriving = max(0, self.arriving - 1)
        fut: asyncio.Future = loop.create_future()
        self._queue.append((batch, fut, time.monotonic()))
        self._queued_rows += len(batch)
        self._poke()
        return await fut

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
                if self.arriving == 0 or self._queued_rows >= self.max_batch_size:
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
                out = np.asarray(await self.fn(merged))
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

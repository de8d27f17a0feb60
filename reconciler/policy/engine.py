"""Evaluate a policy set on many inputs, failing closed, with crash and time-out isolation.

:class:`PolicyEngine` owns one :class:`~reconciler.policy.worker.RegoWorker` (one compiled
bundle per run). For each input it first runs one query that reads every policy's
``deny`` set. When that query errors or is undefined, or the worker crashes or times out,
it evaluates the policies one at a time (each with its own time-out) so that the cause
is attributed to one policy; a policy that crashed or timed out is quarantined for the
rest of the run (its later evaluations are errors, not passes), which keeps a run
bounded at about ``2 × timeout_s`` per bad policy.
"""

from __future__ import annotations

import os
import re
import time
from multiprocessing.connection import wait as mp_wait

from reconciler.policy.library import Policy
from reconciler.policy.worker import EngineFailure, RegoWorker

DEFAULT_TIMEOUT_S = 5.0  # per evaluation; a library of ~25 rules answers in about 1 ms
PARALLEL_FROM = 32  # inputs from which evaluate_many uses more than one worker
CHUNK_MAX = 32  # inputs per message to a worker in evaluate_many
_LINECOL = re.compile(r"^line (\d+) col (\d+): ")
_DOTTED = re.compile(r"^([A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*)?$")


class PolicyEngine:
    """Compile ``policies`` once and evaluate them on inputs.

    Args:
        policies: usable policies (complete metadata, unique ids).
        data: the organisation data document.
        timeout_s: time-out per evaluation in seconds.
        workers: worker processes for :meth:`evaluate_many` (default: CPU count, at most
            4); rego-cpp evaluates a query on one core, so more workers scale a large run.

    Attributes:
        compile_errors: policy id → ``line L col C: message`` for modules that do not
            compile (the policy is an error on every input).
        quarantined: policy id → why it is no longer evaluated in this run.
    """

    def __init__(
        self,
        policies: list[Policy],
        data: dict,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        workers: int | None = None,
    ):
        self.policies = {p.id: p for p in policies}
        self.data = data
        self.timeout_s = timeout_s
        self.compile_errors: dict[str, str] = {}
        self.quarantined: dict[str, str] = {}
        self._worker: RegoWorker | None = None
        self._extra: list[RegoWorker | None] = [None] * (
            max(1, workers if workers is not None else min(os.cpu_count() or 1, 4)) - 1
        )
        self._start()

    def _active(self) -> list[str]:
        return [
            pid
            for pid in self.policies
            if pid not in self.compile_errors and pid not in self.quarantined
        ]

    def _start(self) -> None:
        isolate = False
        while True:
            modules = [self.policies[pid].module() for pid in self._active()]
            try:
                self._worker = RegoWorker(modules, self.data, self.timeout_s, isolate)
            except EngineFailure as exc:
                # Crash or hang while compiling: the detail names the module (after a
                # retry that compiles module by module when the whole set failed).
                pid = exc.detail.removeprefix("compiling ").strip()
                if pid not in self.policies:
                    if isolate:
                        raise
                    isolate = True
                    continue
                verb = "crashed" if exc.kind == "crash" else "timed out"
                self.compile_errors[pid] = f"the policy engine {verb} while compiling it"
                continue
            self.compile_errors.update(self._worker.compile_errors)
            return

    def compile_position(self, policy_id: str) -> tuple[int, int]:
        """(line, col) in the policy file of its compile error, or the package line."""
        match = _LINECOL.match(self.compile_errors.get(policy_id, ""))
        if match:
            return int(match.group(1)), int(match.group(2))
        return self.policies[policy_id].line, 1

    def evaluate(self, input_doc: dict, label: str) -> dict[str, tuple[str, object]]:
        """Evaluate every policy on one input.

        Args:
            input_doc: the Rego ``input`` (``Deployment.policy_input()``), JSON-ready.
            label: the deployment key, for messages (``fraud-detector-prod``).

        Returns:
            policy id → ``("ok", deny value)`` or ``("error", cause)``; every policy given
            to the engine is in the mapping (fail closed).
        """
        out: dict[str, tuple[str, object]] = {}
        for pid, cause in self.compile_errors.items():
            out[pid] = ("error", f"policy does not compile: {cause}")
        for pid, cause in self.quarantined.items():
            out[pid] = ("error", f"not evaluated: {cause}; failing closed")
        active = self._active()
        if not active:
            return out
        if self._worker is None or not self._worker.alive:
            self._start()
            active = self._active()
        try:
            kind, value = self._worker.evaluate_all(input_doc)
        except EngineFailure:
            kind, value = "failed", None
            self._worker = None
        if kind == "ok" and isinstance(value, dict):
            for pid in active:
                if pid in value:
                    out[pid] = ("ok", value[pid])
                else:
                    out[pid] = ("error", "deny is undefined (expected a set of objects)")
            return out
        # Attribute the failure: one policy at a time, each with its own time-out.
        for pid in active:
            if pid in self.quarantined:
                out[pid] = ("error", f"not evaluated: {self.quarantined[pid]}; failing closed")
                continue
            if self._worker is None or not self._worker.alive:
                self._start()
            try:
                kind, value = self._worker.evaluate_one(pid, input_doc)
            except EngineFailure as exc:
                self._worker = None
                if exc.kind == "crash":
                    cause = f"policy engine crashed while evaluating {pid} on {label}"
                else:
                    cause = (
                        f"policy engine timed out after {self.timeout_s:g} s while "
                        f"evaluating {pid} on {label}"
                    )
                self.quarantined[pid] = cause
                out[pid] = ("error", cause)
                continue
            if kind == "ok":
                out[pid] = ("ok", value)
            elif kind == "undefined":
                out[pid] = ("error", "deny is undefined (expected a set of objects)")
            else:
                out[pid] = ("error", f"evaluation error: {value}")
        return out

    def _extra_worker(self, i: int) -> RegoWorker | None:
        worker = self._extra[i]
        if worker is None or not worker.alive:
            modules = [self.policies[pid].module() for pid in self._active()]
            try:
                worker = RegoWorker(modules, self.data, self.timeout_s)
            except EngineFailure:
                worker = None  # the main worker's slow path will attribute the problem
            self._extra[i] = worker
        return worker

    def evaluate_many(self, items: list[tuple[dict, str]]) -> list[dict[str, tuple[str, object]]]:
        """Evaluate many inputs, spreading them over the worker processes.

        Inputs go to the workers in chunks (one pipe message per chunk, at most
        ``CHUNK_MAX`` inputs); each worker answers input by input, and each answer must come
        within ``timeout_s`` of the previous one, so the time-out per evaluation holds. A
        worker gets its next chunk as soon as it has answered the last one, so a slow
        chunk does not hold the others back.

        Args:
            items: ``(input document, label)`` pairs.

        Returns:
            One mapping per item, as :meth:`evaluate` returns, in order. Any input whose
            combined query does not come back well formed (error, undefined, crash,
            time-out) is re-evaluated through :meth:`evaluate`, which attributes the
            cause to a policy.
        """
        # A second worker costs a compile (about half a second): only for large runs.
        if self.quarantined or self.compile_errors or not self._extra or len(items) < PARALLEL_FROM:
            return [self.evaluate(*item) for item in items]
        if self._worker is None or not self._worker.alive:
            self._start()
        workers = [self._worker, *(self._extra_worker(k) for k in range(len(self._extra)))]
        workers = [w for w in workers if w is not None]
        size = max(1, min(CHUNK_MAX, -(-len(items) // (len(workers) * 4))))
        chunks = [list(range(i, min(i + size, len(items)))) for i in range(0, len(items), size)]
        chunks.reverse()  # taken from the end: in order
        out: list[dict | None] = [None] * len(items)
        failed: list[int] = []
        pending: dict[RegoWorker, list[int]] = {}
        deadline: dict[RegoWorker, float] = {}
        active = self._active()

        def feed(worker: RegoWorker) -> None:
            if not chunks:
                return
            idxs = chunks.pop()
            try:
                worker.submit_chunk([items[i][0] for i in idxs])
            except EngineFailure:
                failed.extend(idxs)
                return
            pending[worker] = idxs
            deadline[worker] = time.monotonic() + self.timeout_s

        for worker in workers:
            feed(worker)
        while pending:
            by_conn = {w.connection: w for w in pending}
            wait_s = max(0.0, min(deadline.values()) - time.monotonic())
            ready = mp_wait(list(by_conn), wait_s)
            if not ready:  # a worker gave no answer within timeout_s: it hangs
                now = time.monotonic()
                for worker in [w for w in pending if deadline[w] <= now]:
                    worker.close()
                    failed.extend(pending.pop(worker))
                    del deadline[worker]
                continue
            for conn in ready:
                worker = by_conn[conn]
                try:
                    answer = worker.collect()
                except EngineFailure:  # the worker died mid-chunk
                    failed.extend(pending.pop(worker))
                    del deadline[worker]
                    continue
                idx = pending[worker].pop(0)
                if (
                    answer[0] == "ok"
                    and isinstance(answer[1], dict)
                    and all(pid in answer[1] for pid in active)
                ):
                    out[idx] = {pid: ("ok", answer[1][pid]) for pid in active}
                else:
                    failed.append(idx)
                deadline[worker] = time.monotonic() + self.timeout_s
                if not pending[worker]:
                    del pending[worker], deadline[worker]
                    feed(worker)
        if failed:
            for idx in sorted(failed):
                out[idx] = self.evaluate(*items[idx])
            self._close_extra()  # quarantine or restart: rebuild the others lazily
        return out

    def _close_extra(self) -> None:
        for k, worker in enumerate(self._extra):
            if worker is not None:
                worker.close()
            self._extra[k] = None

    def close(self) -> None:
        """Stop the worker processes."""
        self._close_extra()
        if self._worker is not None:
            self._worker.close()
            self._worker = None

    def __enter__(self) -> PolicyEngine:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def violations(value: object) -> tuple[list[dict], str | None]:
    """Check a ``deny`` value's shape.

    Args:
        value: what the ``deny`` rule returned (a set comes back as a JSON list).

    Returns:
        ``(violations, None)`` when ``value`` is a list of objects each with a non-empty
        string ``msg`` and a dotted ``path`` (``""`` for the whole spec);
        else ``([], cause)`` naming the first bad element.
    """
    if not isinstance(value, list):
        return [], (
            f"deny must be a set of objects, got {type(value).__name__} {str(value)[:80]!r}"
            " (is the rule written in OPA v0 syntax? use `deny contains {...} if {...}`)"
        )
    items = []
    for item in value:
        if not isinstance(item, dict):
            return [], (
                f"deny returned {type(item).__name__} {str(item)[:80]!r}; each element must be"
                ' an object like {"msg": "...", "path": "spec.exposure.public"}'
            )
        if not isinstance(item.get("msg"), str) or not item["msg"]:
            return [], f"deny returned an object without a string msg: {str(item)[:120]}"
        if not isinstance(item.get("path"), str):
            return [], f"deny returned an object without a string path: {str(item)[:120]}"
        if not _DOTTED.match(item["path"]):
            return [], (
                f"deny returned path {item['path']!r}; expected a dotted path into the "
                "resolved spec such as spec.secrets.0.from"
            )
        items.append(item)
    items.sort(key=lambda v: (v["path"], v["msg"]))
    return items, None

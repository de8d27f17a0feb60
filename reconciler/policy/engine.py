"""Evaluate a policy set on many inputs, failing closed, with crash and time-out isolation.

:class:`PolicyEngine` owns the Rego workers; a query that errors, is undefined, crashes
or times out is retried policy by policy so the cause is attributed to one policy, which
is then quarantined for the run (its later evaluations are errors, never passes).
Rationale and measurements: ``docs/policy.md``.
"""

from __future__ import annotations

import os
import re
import time
from multiprocessing.connection import wait as mp_wait

from reconciler.policy.library import Policy
from reconciler.policy.reads import InputReads, input_reads, minimal, path_value_key, project
from reconciler.policy.worker import EngineFailure, RegoWorker

DEFAULT_TIMEOUT_S = 5.0  # per evaluation; a library of ~25 rules answers in about 1 ms
PARALLEL_FROM = 32  # inputs from which evaluate_many uses more than one worker
CHUNK_MAX = 32  # inputs per message to a worker in evaluate_many
CACHE_MAX = 250_000  # reused answers kept per run (one per policy and distinct value)
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
        reuse: reuse a policy's answer for inputs that agree on every path it reads
            (:meth:`evaluate_many` only); False evaluates every policy on every input
            (benchmarks, and a cross-check in the tests).

    Attributes:
        compile_errors: policy id → ``line L col C: message`` for modules that do not
            compile (the policy is an error on every input).
        quarantined: policy id → why it is no longer evaluated in this run.
        reads: policy id → what its module reads of ``input``.
        stats: counters for the run: ``evaluated`` (policy answers computed by a worker
            in :meth:`evaluate_many`) and ``reused`` (answers taken from earlier inputs).
    """

    def __init__(
        self,
        policies: list[Policy],
        data: dict,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        workers: int | None = None,
        reuse: bool = True,
    ):
        self.policies = {p.id: p for p in policies}
        self.reuse = reuse
        self.data = data
        self.timeout_s = timeout_s
        self.compile_errors: dict[str, str] = {}
        self.quarantined: dict[str, str] = {}
        self.reads = _policy_reads(policies, data)
        self.stats = {"evaluated": 0, "reused": 0}
        self._answers: dict[tuple, object] = {}
        self._active_plans: dict[tuple[str, ...], tuple[tuple, list, list]] = {}
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
        # Every policy sees only the paths it reads, here as in evaluate_many, so that a
        # deployment gets the same answers in a run of one and in a run of a thousand
        # (a value no policy reads cannot make the input unusable in one and not the other).
        try:
            union = self._active_plan(tuple(active))[0]
            kind, value = self._worker.evaluate_all(project(input_doc, union))
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
                doc = project(input_doc, self.reads[pid].paths)
                kind, value = self._worker.evaluate_one(pid, doc)
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
                # Not waited for: it compiles while the first worker already evaluates.
                worker = RegoWorker(modules, self.data, self.timeout_s, wait=False)
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
        chunks = []
        start, step = 0, 1 if self.reuse else size
        while start < len(items):
            # Chunks grow 1, 2, 4... up to ``size``: answers come back (and are reused
            # for later inputs) after a few inputs instead of after a whole first chunk.
            chunks.append(list(range(start, min(start + min(step, size), len(items)))))
            start += min(step, size)
            step *= 2
        chunks.reverse()  # taken from the end: in order
        out: list[dict | None] = [None] * len(items)
        failed: list[int] = []
        pending: dict[RegoWorker, list[int]] = {}
        deadline: dict[RegoWorker, float] = {}
        active = self._active()

        plans: dict[int, _Plan] = {}

        def feed(worker: RegoWorker) -> None:
            # Planned when sent, not up front: answers from earlier chunks are reused.
            idxs: list[int] = []
            while chunks and not idxs:
                for i in chunks.pop():
                    plan = self._plan(items[i][0], active)
                    if plan.missing:
                        plans[i] = plan
                        idxs.append(i)
                    else:  # every answer is known: nothing to ask the worker
                        out[i] = self._complete(plan, {}, active)
            if not idxs:
                return
            try:
                worker.submit_chunk([plans[i].work for i in idxs])
            except EngineFailure:
                failed.extend(idxs)
                return
            pending[worker] = idxs
            allowance = worker.compile_allowance_s if worker.starting else 0.0
            deadline[worker] = time.monotonic() + self.timeout_s + allowance

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
                if answer is None:  # the worker's compile went on: no answer yet
                    continue
                idx = pending[worker].pop(0)
                plan = plans.pop(idx)
                if (
                    answer[0] == "ok"
                    and isinstance(answer[1], dict)
                    and all(pid in answer[1] for pid in plan.missing)
                ):
                    out[idx] = self._complete(plan, answer[1], active)
                else:
                    failed.append(idx)
                deadline[worker] = time.monotonic() + self.timeout_s
                if not pending[worker]:
                    del pending[worker], deadline[worker]
                    feed(worker)
        # Inputs never sent (every worker was lost to a crash or a time-out) are evaluated
        # one at a time too: every input gets an answer for every policy.
        failed.extend(i for chunk in chunks for i in chunk)
        if failed:
            for idx in sorted(failed):
                out[idx] = self.evaluate(*items[idx])
            self._close_extra()  # quarantine or restart: rebuild the others lazily
        return out

    def _plan(self, doc: dict, active: list[str]) -> _Plan:
        """Split ``active`` into answers already known for ``doc`` and policies to ask.

        A policy's answer is reused when an earlier input had the same values at every
        path its module reads (see :func:`~reconciler.policy.reads.path_value_key`).
        The policies still to evaluate are each sent ``doc`` cut down to the paths they
        read, to be queried one by one; when more than two thirds must be evaluated, all
        are, with one bundle query on ``doc`` cut down to the paths any policy reads
        (measured on ``bench/bench_policy.py``: a query costs about 0.12 ms plus the
        policy, ``set_input`` about 0.5 µs per node, so below that share the small
        queries on small inputs cost less).
        """
        known: dict[str, object] = {}
        keys: dict[str, tuple] = {}
        union, paths, keyed = self._active_plan(tuple(active))
        if self.reuse:
            values = [path_value_key(doc, path) for path in paths]
            answers = self._answers
            for pid, idxs in keyed:
                key = keys[pid] = (pid, *[values[i] for i in idxs])
                answer = answers.get(key, _UNKNOWN)
                if answer is not _UNKNOWN:
                    known[pid] = answer
        missing = [pid for pid in active if pid not in known]
        if 3 * len(missing) > 2 * len(active):
            return _Plan(("all", project(doc, union)), list(active), {}, keys)
        work = [
            (pid, project(doc, self.reads[pid].paths), self.reads[pid].standalone)
            for pid in missing
        ]
        return _Plan(("each", work), missing, known, keys)

    def _active_plan(self, active: tuple[str, ...]) -> tuple[tuple, list, list]:
        """Computed once per set of active policies: the minimal paths any of them reads
        (what a query of all of them is sent), the distinct paths the cacheable ones read,
        and for each cacheable policy the indices of its paths in that list."""
        plan = self._active_plans.get(active)
        if plan is None:
            union = minimal(p for pid in active for p in self.reads[pid].paths)
            cacheable = [
                pid for pid in active if self.reads[pid].cacheable and not self.reads[pid].whole
            ]
            paths = sorted({p for pid in cacheable for p in self.reads[pid].paths})
            index = {p: i for i, p in enumerate(paths)}
            keyed = [(pid, tuple(index[p] for p in self.reads[pid].paths)) for pid in cacheable]
            plan = self._active_plans[active] = (union, paths, keyed)
        return plan

    def _complete(self, plan: _Plan, answers: dict, active: list[str]) -> dict:
        """The outcome mapping of one input: reused plus new answers; remembers the new."""
        self.stats["reused"] += len(plan.known)
        self.stats["evaluated"] += len(plan.missing)
        for pid in plan.missing:
            key = plan.keys.get(pid)
            if key is not None and len(self._answers) < CACHE_MAX:
                self._answers[key] = answers[pid]
        return {
            pid: ("ok", plan.known[pid] if pid in plan.known else answers[pid]) for pid in active
        }

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


_UNKNOWN = object()


class _Plan:
    """How one input of :meth:`PolicyEngine.evaluate_many` is evaluated.

    Attributes:
        work: what the worker is sent (see :meth:`RegoWorker.submit_chunk`).
        missing: the policy ids whose answers come from the worker.
        known: policy id → reused answer.
        keys: policy id → cache key, for the cacheable policies.
    """

    __slots__ = ("work", "missing", "known", "keys")

    def __init__(self, work, missing, known, keys) -> None:
        self.work, self.missing, self.known, self.keys = work, missing, known, keys


def _policy_reads(policies: list[Policy], data: dict) -> dict[str, InputReads]:
    """policy id → what its module reads of ``input``.

    A module whose package equals or contains (or is contained in) another module's is not
    analysed: rules of one may then be rules of the other (``b.deny contains ...`` in
    package ``modelops.a`` adds to the ``deny`` of package ``modelops.a.b``)."""
    shared: dict[str, str] = {}
    for policy in policies:
        for other in policies:
            if other is policy:
                continue
            a, b = policy.package, other.package
            if a == b or b.startswith(a + ".") or a.startswith(b + "."):
                shared[policy.id] = f"package {a} overlaps package {b} of {other.id}"
                break
    roots = {p.package.split(".")[0] for p in policies if p.package}
    data_roots = set(data) if isinstance(data, dict) else set()
    out = {}
    for policy in policies:
        if policy.id in shared:
            out[policy.id] = InputReads(((),), False, shared[policy.id], standalone=False)
        else:
            out[policy.id] = input_reads(policy.source, data_roots, roots)
    return out


def violations(value: object) -> tuple[list[dict], str | None]:
    """Check a ``deny`` value's shape.

    Args:
        value: what the ``deny`` rule returned (a set comes back as a JSON list).

    Returns:
        ``(violations, None)`` when ``value`` is a list of objects each with a non-empty
        string ``msg`` and a dotted ``path`` (``""`` for the whole spec);
        else ``([], cause)`` naming the first bad element.
    """
    if type(value) is list and not value:  # the common answer: no violation
        return [], None
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

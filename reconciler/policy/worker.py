"""The Rego worker: regopy runs in a child process so that an engine crash or a runaway
policy cannot take the reconciler down with it.

regopy 1.5 (rego-cpp) aborts the whole process on some misuse (``Output.binding`` on an
undefined or error result calls ``std::terminate``), can crash on some ``with`` patterns,
prints to the C-level stdout/stderr, and has no evaluation time-out. So:

* the parent (:class:`RegoWorker`) talks to one child process over a pipe, waits for each
  answer at most ``timeout_s`` seconds, and kills and restarts the child on a time-out or a
  crash, reporting which policy and which deployment were being evaluated;
* the child builds one bundle with every policy as an entrypoint plus one query that
  reads them all; when that fails it compiles each module on its own, so that a module
  that does not compile is attributed to its file and line, and bundles the good ones
  (``Interpreter.build`` / ``query_bundle``): about 0.07 ms per query instead of about
  1 ms for a fresh ``Interpreter.query`` (measured, ``shared/DESIGN.md``);
* results are read from the raw output (see :func:`_query`), never through
  ``Output.binding``, so undefined and error results come back as values.

Fail closed: every outcome other than a well-formed value is returned as an error string,
never as "no violations".
"""

from __future__ import annotations

import json
import multiprocessing
import os
import re
import time
from dataclasses import dataclass

# Answer kinds from the child: ("ok", value) | ("undefined", None) | ("error", message)
Outcome = tuple[str, object]

_ERRMSG = re.compile(r"errormsg \d+:([^\n)]*)")
_ERRLOC = re.compile(r"\(error \d+:([^|\s]*)\|(\d+)\|(\d+)")


@dataclass(frozen=True)
class PolicyModule:
    """One policy's Rego module as the worker needs it.

    Attributes:
        policy_id: the policy's ``custom.id`` (``MDL-001``).
        filename: the file name shown in compile errors (``policies/public.rego``).
        source: the module's text.
        package: the Rego package (``modelops.no_public_sensitive_data``); the policy's
            rule is ``data.<package>.deny``.
    """

    policy_id: str
    filename: str
    source: str
    package: str

    @property
    def entrypoint(self) -> str:
        """The bundle entrypoint of the ``deny`` rule (``modelops/x/deny``)."""
        return self.package.replace(".", "/") + "/deny"

    @property
    def ref(self) -> str:
        """The Rego reference of the ``deny`` rule (``data.modelops.x.deny``)."""
        return f"data.{self.package}.deny"


def describe_rego_error(text: str, source: str | None = None) -> str:
    """Turn a rego-cpp error dump into ``line L col C: message`` text.

    Args:
        text: ``str(RegoError)`` or the JSON of an error node (an s-expression such as
            ``(error 6:a.rego|33|1 (errormsg 16:this is unclosed) ...)``; the numbers after
            the file name are a byte offset and a length).
        source: the module text, to turn the byte offset into line and column.
    """
    messages = [m.strip() for m in _ERRMSG.findall(text)] or [text.strip()[:300]]
    loc = _ERRLOC.search(text)
    if loc and source is not None:
        offset = int(loc.group(2))
        before = source.encode("utf-8")[:offset].decode("utf-8", "replace")
        line = before.count("\n") + 1
        col = len(before) - (before.rfind("\n") + 1) + 1
        return f"line {line} col {col}: {'; '.join(dict.fromkeys(messages))}"
    return "; ".join(dict.fromkeys(messages))


def _read_outcome(out) -> Outcome:
    """Read a regopy ``Output`` without touching the calls that abort the process."""
    if not out.ok():
        try:
            node = out.node()
            parts = [node.at(i).json() for i in range(len(node))]
            return ("error", describe_rego_error("\n".join(parts)))
        except Exception as exc:  # noqa: BLE001 - any failure to read is still an error
            return ("error", f"query failed ({type(exc).__name__})")
    if not out.results or "x" not in out.results[0].bindings:
        return ("undefined", None)
    return ("ok", out.results[0].bindings["x"])


def _to_python(impl):
    """Convert a rego-cpp result node to Python values by walking the node tree.

    rego-cpp's JSON rendering of a result does not escape strings (a ``"`` or ``\\`` in a
    message, which often quotes a spec value, makes it invalid JSON, measured with regopy
    1.5), so results are read node by node through regopy's own bindings instead:
    strings come back raw, numbers as their decimal text.
    """
    from regopy.rego_shared import NodeKind as K
    from regopy.rego_shared import rego_node_get, rego_node_size, rego_node_type, rego_node_value

    kind = rego_node_type(impl)
    size = rego_node_size(impl)
    if kind in (K.Term, K.Scalar):
        return _to_python(rego_node_get(impl, 0))
    if kind in (K.Array, K.Set):
        return [_to_python(rego_node_get(impl, i)) for i in range(size)]
    if kind == K.Object:
        out = {}
        for i in range(size):
            item = rego_node_get(impl, i)
            key = _to_python(rego_node_get(item, 0))
            out[key if isinstance(key, str) else repr(key)] = _to_python(rego_node_get(item, 1))
        return out
    if kind == K.String:
        text = rego_node_value(impl)
        # rego-cpp keeps some strings (e.g. results of concat) as their JSON token, quotes
        # included; decode those. A raw string that merely starts and ends with a quote
        # and is not valid JSON stays as it is.
        if len(text) >= 2 and text[0] == '"' and text[-1] == '"':
            try:
                return json.loads(text, strict=False)
            except ValueError:
                return text
        return text
    if kind == K.Int:
        return int(rego_node_value(impl))
    if kind == K.Float:
        return float(rego_node_value(impl))
    if kind in (K.True_, K.False_, K.Boolean):
        return rego_node_value(impl) == "true"
    if kind == K.Null:
        return None
    raise ValueError(f"unexpected node kind {kind!r} in a policy result")


def _query(runner, bundle, entrypoint: str | None) -> Outcome:
    """Run the bundle's query (or one entrypoint) and read the result without JSON text.

    Uses regopy's C bindings (``regopy.rego_shared``) directly: ``regopy.Output`` parses
    the (unescaped) JSON text strictly, and ``Output.binding`` aborts the process on an
    undefined result. Error results still go through ``regopy.Output`` for the message.
    """
    from regopy.output import Output
    from regopy.rego_shared import (
        rego_bundle_query,
        rego_bundle_query_entrypoint,
        rego_free_output,
        rego_node_get,
        rego_node_size,
        rego_output_binding_at_index,
        rego_output_expressions_at_index,
        rego_output_ok,
        rego_output_string,
    )

    if entrypoint is None:
        impl = rego_bundle_query(runner._impl, bundle._impl)
    else:
        impl = rego_bundle_query_entrypoint(runner._impl, bundle._impl, entrypoint)
    if not rego_output_ok(impl):
        return _read_outcome(Output(impl))  # Output frees impl
    try:
        if rego_output_string(impl) == "undefined":
            return ("undefined", None)
        if entrypoint is None:
            node = rego_output_binding_at_index(impl, 0, "x")
            if not node:
                return ("undefined", None)
            return ("ok", _to_python(node))
        terms = rego_output_expressions_at_index(impl, 0)
        if not terms or rego_node_size(terms) == 0:
            return ("undefined", None)
        return ("ok", _to_python(rego_node_get(terms, 0)))
    finally:
        rego_free_output(impl)


_INT64 = (-(2**63), 2**63 - 1)


def rego_safe(value):
    """``value`` with every integer outside the signed 64-bit range turned into a float.

    regopy 1.5 passes Python ints to rego-cpp as int64 and wraps silently on overflow
    (measured: -9223372036854775809 arrives as 9223372036854775807, and 2**64 + 5 as 5),
    so a huge negative ``min_replicas`` would read as huge and pass a minimum: fail open.
    A float keeps the sign and the order, which is what the rules compare. Other values
    are returned unchanged (containers are copied only when something inside changes).
    """
    if type(value) is int:
        return float(value) if not _INT64[0] <= value <= _INT64[1] else value
    if isinstance(value, dict):
        out = {k: rego_safe(v) for k, v in value.items()}
        return value if all(out[k] is value[k] for k in value) else out
    if isinstance(value, list):
        items = [rego_safe(v) for v in value]
        return value if all(a is b for a, b in zip(items, value, strict=True)) else items
    return value


def _child(
    conn, modules: list[PolicyModule], data: dict, isolate: bool
) -> None:  # pragma: no cover - child
    # rego-cpp prints to the C-level stdout/stderr (``print``, parse errors): keep it out of
    # the reconciler's output; the messages come back through RegoError and error nodes.
    import faulthandler

    faulthandler.disable()  # a crash is reported by the parent, not dumped by the child
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    os.dup2(devnull, 2)
    import regopy

    def build(mods: list[PolicyModule]):
        interp = regopy.Interpreter()
        interp.add_data(data)
        for mod in mods:
            interp.add_module(mod.filename, mod.source)
        fields = ", ".join(f'"{m.policy_id}": {m.ref}' for m in mods)
        return interp.build(f"x := {{{fields}}}", [m.entrypoint for m in mods])

    compile_errors: dict[str, str] = {}
    good: list[PolicyModule] = list(modules)
    bundle = None
    if good and not isolate:
        conn.send(("compiling", "the policy set"))
        try:
            bundle = build(good)
        except Exception:  # noqa: BLE001 - attribute the failure module by module below
            bundle = None
    if good and bundle is None:
        good = []
        for mod in modules:
            conn.send(("compiling", mod.policy_id))
            try:
                build([mod])
                good.append(mod)
            except Exception as exc:  # noqa: BLE001 - every compile failure is reported
                compile_errors[mod.policy_id] = describe_rego_error(str(exc), mod.source)
        if good:
            conn.send(("compiling", "the policy set"))
            try:
                bundle = build(good)
            except Exception as exc:  # noqa: BLE001
                for mod in good:
                    compile_errors[mod.policy_id] = (
                        "the policy set does not compile together: " + describe_rego_error(str(exc))
                    )
                good = []
    conn.send(("ready", compile_errors))
    by_id = {m.policy_id: m for m in good}
    runner = regopy.Interpreter()
    # A built-in that fails (type error, bad regex) is an error, not "undefined": regopy's
    # default would turn it into a silently non-firing rule.
    runner.strict_built_in_errors = True
    while True:
        try:
            msg = conn.recv()
        except EOFError:
            return
        kind = msg[0]
        if kind == "stop":
            return
        if kind == "chunk":  # several inputs in one message, one answer per input
            for doc in msg[2]:
                try:
                    runner.set_input(rego_safe(doc))
                    answer = _query(runner, bundle, None)
                except Exception as exc:  # noqa: BLE001 - reported to the parent as an error
                    answer = ("error", f"{type(exc).__name__}: {str(exc)[:300]}")
                conn.send(answer)
            continue
        try:
            runner.set_input(rego_safe(msg[2]))
            if kind == "all":
                conn.send(_query(runner, bundle, None))
            else:
                conn.send(_query(runner, bundle, by_id[msg[1]].entrypoint))
        except Exception as exc:  # noqa: BLE001 - reported to the parent as an error
            conn.send(("error", f"{type(exc).__name__}: {str(exc)[:300]}"))


class EngineFailure(Exception):
    """The worker died or did not answer in time.

    Attributes:
        kind: ``crash`` (the process exited) or ``timeout``.
        detail: what was being done (``compiling MDL-003``, ``evaluating``).
    """

    def __init__(self, kind: str, detail: str) -> None:
        super().__init__(f"{kind}: {detail}")
        self.kind = kind
        self.detail = detail


class RegoWorker:
    """A child process holding one compiled policy bundle.

    Args:
        modules: the policies to compile (each is one entrypoint of the bundle).
        data: the base document (the organisation settings), JSON-ready.
        timeout_s: the longest one evaluation (or the whole compile) may take, in seconds.
        isolate: compile each module on its own before bundling (used after the whole
            set crashed or hung while compiling, to find the module responsible).

    Attributes:
        compile_errors: policy id → why its module does not compile (``line L col C: ...``).

    Raises:
        EngineFailure: the child crashed or timed out while compiling; ``detail`` names the
            policy being compiled.
    """

    def __init__(
        self,
        modules: list[PolicyModule],
        data: dict,
        timeout_s: float = 5.0,
        isolate: bool = False,
    ) -> None:
        self.modules = list(modules)
        self.data = data
        self.timeout_s = timeout_s
        ctx = multiprocessing.get_context("fork" if hasattr(os, "fork") else "spawn")
        self._conn, child_conn = ctx.Pipe()
        self._proc = ctx.Process(
            target=_child, args=(child_conn, self.modules, data, isolate), daemon=True
        )
        self._proc.start()
        child_conn.close()
        self.compile_errors: dict[str, str] = {}
        compiling = "starting the engine"
        deadline = time.monotonic() + timeout_s + 0.2 * len(self.modules)
        while True:
            msg = self._recv(deadline, compiling)
            if msg[0] == "compiling":
                compiling = f"compiling {msg[1]}"
                continue
            self.compile_errors = msg[1]
            break

    def _recv(self, deadline: float, doing: str):
        remaining = max(0.0, deadline - time.monotonic())
        try:
            if not self._conn.poll(remaining):
                self.close()
                raise EngineFailure("timeout", doing)
            return self._conn.recv()
        except (EOFError, OSError, ConnectionError):
            self.close()
            raise EngineFailure("crash", doing) from None

    def evaluate_all(self, input_doc: dict) -> Outcome:
        """Evaluate every compiled policy on one input.

        Returns:
            ``("ok", {policy_id: [deny value]})``, ``("undefined", None)`` or
            ``("error", message)``.

        Raises:
            EngineFailure: crash or time-out; the worker is closed and must be replaced.
        """
        self._conn.send(("all", None, input_doc))
        return self._recv(time.monotonic() + self.timeout_s, "evaluating")

    def collect(self) -> Outcome:
        """The next answer to a :meth:`submit_chunk`, waiting at most ``timeout_s``.

        Raises:
            EngineFailure: crash or time-out; the worker is closed and must be replaced.
        """
        return self._recv(time.monotonic() + self.timeout_s, "evaluating")

    def submit_chunk(self, input_docs: list[dict]) -> None:
        """Send several inputs in one message; the child answers each in order, one
        message per input (read them with :meth:`collect`, each within ``timeout_s``).

        One message per chunk instead of one per input halves the pipe round trips, and
        the child goes from one input to the next without waiting for the parent.

        Raises:
            EngineFailure: the worker is gone (crash).
        """
        try:
            self._conn.send(("chunk", None, input_docs))
        except (OSError, ValueError, BrokenPipeError):
            self.close()
            raise EngineFailure("crash", "evaluating") from None

    @property
    def connection(self):
        """The parent's end of the pipe (for ``multiprocessing.connection.wait``)."""
        return self._conn

    def evaluate_one(self, policy_id: str, input_doc: dict) -> Outcome:
        """Evaluate one policy's ``deny`` rule on one input (see :meth:`evaluate_all`)."""
        self._conn.send(("one", policy_id, input_doc))
        return self._recv(time.monotonic() + self.timeout_s, f"evaluating {policy_id}")

    @property
    def alive(self) -> bool:
        """Whether the child process is still running."""
        return self._proc.is_alive()

    def close(self) -> None:
        """Stop the child (politely, then by force); safe to call twice."""
        if self._proc.is_alive():
            try:
                self._conn.send(("stop",))
            except (OSError, ValueError, BrokenPipeError):
                pass
            self._proc.join(0.2)
        if self._proc.is_alive():
            self._proc.kill()
            self._proc.join(1)
        self._conn.close()

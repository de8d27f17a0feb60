"""The Rego worker: regopy runs in a child process that the reconciler can kill.

:class:`RegoWorker` (parent) talks to one child over a pipe, waits at most ``timeout_s``
per answer and reports crashes and time-outs as :class:`EngineFailure`; the child holds
one compiled bundle of every policy. Results are read from the raw output node, so an
undefined or error result comes back as a value. Fail closed: anything but a well-formed
value is an error string, never "no violations". Why, and the measurements:
``docs/policy.md``.
"""

from __future__ import annotations

import faulthandler
import json
import multiprocessing
import os
import re
import time
from dataclasses import dataclass

from reconciler.policy.encoding import set_input

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


# rego-cpp messages that are C++ exception names, with what they mean for a policy author.
_CRYPTIC = {
    "stod": "a number is out of the range rego-cpp can handle (std::stod failed), such as"
    " a float near the double maximum in the input",
}


def describe_rego_error(text: str, source: str | None = None) -> str:
    """Turn a rego-cpp error dump into ``line L col C: message`` text.

    Args:
        text: ``str(RegoError)`` or the JSON of an error node (an s-expression such as
            ``(error 6:a.rego|33|1 (errormsg 16:this is unclosed) ...)``; the numbers after
            the file name are a byte offset and a length).
        source: the module text, to turn the byte offset into line and column.
    """
    messages = [m.strip() for m in _ERRMSG.findall(text)] or [text.strip()[:300]]
    messages = [_CRYPTIC.get(m, m) for m in messages]
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


# rego-cpp node kinds (``regopy.rego_shared.NodeKind``), as the C API returns them: compared
# as plain ints, because building an IntEnum per node costs more than the C call.
_TERM, _SCALAR, _ARRAY, _SET, _OBJECT = 1002, 1003, 1004, 1005, 1006
_INT, _FLOAT, _STRING, _TRUE, _FALSE, _NULL = 1008, 1009, 1010, 1011, 1012, 1013
_UNDEFINED, _RESULTS = 1014, 1017


def _to_python(impl):
    """Convert a rego-cpp result node to Python values by walking the node tree.

    rego-cpp's JSON rendering of a result does not escape strings (a ``"`` or ``\\`` in a
    message, which often quotes a spec value, makes it invalid JSON, measured with regopy
    1.5), so results are read node by node through regopy's own bindings instead:
    strings come back raw, numbers as their decimal text.

    Raises:
        ValueError: a node of a kind that is not a JSON value.
    """
    from regopy.rego_shared import rego, rego_node_value  # rego-cpp's C library: child only

    kind = rego.regoNodeType(impl)
    if kind == _TERM or kind == _SCALAR:
        return _to_python(rego.regoNodeGet(impl, 0))
    if kind == _SET or kind == _ARRAY:
        get = rego.regoNodeGet
        return [_to_python(get(impl, i)) for i in range(rego.regoNodeSize(impl))]
    if kind == _OBJECT:
        out = {}
        get = rego.regoNodeGet
        for i in range(rego.regoNodeSize(impl)):
            item = get(impl, i)
            key = _to_python(get(item, 0))
            out[key if isinstance(key, str) else repr(key)] = _to_python(get(item, 1))
        return out
    if kind == _STRING:
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
    if kind == _INT:
        return int(rego_node_value(impl))
    if kind == _FLOAT:
        return float(rego_node_value(impl))
    if kind == _TRUE or kind == _FALSE:
        return kind == _TRUE
    if kind == _NULL:
        return None
    raise ValueError(f"unexpected node kind {kind!r} in a policy result")


def _query(runner, bundle, entrypoint: bytes | None) -> Outcome:
    """Run the bundle's query (or one entrypoint) and read the result without JSON text.

    Args:
        entrypoint: ``None`` for the bundle's query (binding ``x``), else the entrypoint
            as UTF-8 bytes (``b"modelops/x/deny"``).

    Uses regopy's C library (``regopy.rego_shared.rego``) directly: ``regopy.Output``
    parses the (unescaped) JSON text strictly, and ``Output.binding`` aborts the process
    on an undefined result; the output node's kind is read before any binding:
    ``Undefined`` (or no result) is undefined, ``Results`` is a value, anything else (an
    ``Error`` node inside an output marked ok, seen for ``stod`` failures) is an error.
    Outputs marked not ok go through ``regopy.Output`` for the message.
    """
    from regopy.output import Output  # rego-cpp's C library: loaded in the child only
    from regopy.rego_shared import rego, rego_node_json  # rego-cpp: child only

    if entrypoint is None:
        impl = rego.regoBundleQuery(runner._impl, bundle._impl)
    else:
        impl = rego.regoBundleQueryEntrypoint(runner._impl, bundle._impl, entrypoint)
    if not impl:
        return ("error", "the query could not run")
    if not rego.regoOutputOk(impl):
        return _read_outcome(Output(impl))  # Output frees impl
    try:
        results = rego.regoOutputNode(impl)
        kind = rego.regoNodeType(results) if results else _UNDEFINED
        if kind == _UNDEFINED or (kind == _RESULTS and rego.regoNodeSize(results) == 0):
            return ("undefined", None)
        if kind != _RESULTS:  # an error node in an "ok" output (seen: errormsg stod)
            return ("error", describe_rego_error(rego_node_json(results)))
        if entrypoint is None:
            node = rego.regoOutputBindingAtIndex(impl, 0, b"x")
        else:
            terms = rego.regoOutputExpressionsAtIndex(impl, 0)
            node = rego.regoNodeGet(terms, 0) if terms and rego.regoNodeSize(terms) else None
        if not node:
            return ("undefined", None)
        return ("ok", _to_python(node))
    finally:
        rego.regoFreeOutput(impl)


SINGLE_AFTER = 16  # queries of one policy before its bundle of one module pays for itself


def _child(
    conn, modules: list[PolicyModule], data: dict, isolate: bool
) -> None:  # pragma: no cover - child
    # rego-cpp prints to the C-level stdout/stderr (``print``, parse errors): keep it out of
    # the reconciler's output; the messages come back through RegoError and error nodes.

    faulthandler.disable()  # a crash is reported by the parent, not dumped by the child
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    os.dup2(devnull, 2)
    import regopy  # loads rego-cpp: only in the child, after stdout is redirected

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
    singles: dict[str, object] = {}
    entrypoints = {m.policy_id: m.entrypoint.encode() for m in good}
    asked: dict[str, int] = {}

    def each(work: list[tuple[str, dict, bool]]) -> Outcome:
        # Policy by policy, each on its own input, each from a bundle of its own when
        # the module stands alone (else the entrypoint of the bundle of every module):
        # a query costs about 0.12 ms plus a share of the bundle's size, and set_input
        # about 0.5 µs per node, so small inputs and small bundles are what is cheap.
        values = {}
        for pid, doc, standalone in work:
            set_input(runner, doc)
            asked[pid] = asked.get(pid, 0) + 1
            # A bundle of one module costs a compile (about 7 ms): made for a policy
            # asked often; until then its entrypoint in the bundle of every module.
            one = singles.get(pid)
            if one is None and standalone and asked[pid] > SINGLE_AFTER:
                one = singles[pid] = build([by_id[pid]])
            kind, value = _query(runner, bundle if one is None else one, entrypoints[pid])
            if kind != "ok":
                return ("error", f"{pid}: {kind} {str(value)[:300]}")
            values[pid] = value
        return ("ok", values)

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
            for how, work in msg[2]:
                try:
                    if how == "all":
                        set_input(runner, work)
                        answer = _query(runner, bundle, None)
                    else:
                        answer = each(work)
                except Exception as exc:  # noqa: BLE001 - reported to the parent as an error
                    answer = ("error", f"{type(exc).__name__}: {str(exc)[:300]}")
                conn.send(answer)
            continue
        try:
            set_input(runner, msg[2])
            if kind == "all":
                conn.send(_query(runner, bundle, None))
            else:
                conn.send(_query(runner, bundle, entrypoints[msg[1]]))
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
        wait: wait for the compile (default); False returns at once, and the compile's
            messages are then skipped by :meth:`collect` (work sent meanwhile is read by
            the child when it is ready).

    Attributes:
        compile_errors: policy id → why its module does not compile (``line L col C: ...``).
        starting: True until the compile's end has been read.
        compile_allowance_s: how long the compile may take beyond ``timeout_s``: 0.2 s
            per module.

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
        wait: bool = True,
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
        self.compile_allowance_s = 0.2 * len(self.modules)
        self.starting = True
        if not wait:
            return
        compiling = "starting the engine"
        deadline = time.monotonic() + timeout_s + self.compile_allowance_s
        while True:
            msg = self._recv(deadline, compiling)
            if msg[0] == "compiling":
                compiling = f"compiling {msg[1]}"
                continue
            self.compile_errors = msg[1]
            self.starting = False
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

    def collect(self) -> Outcome | None:
        """The next answer to a :meth:`submit_chunk`, waiting at most ``timeout_s``; None
        for a message of a compile that was not waited for (``wait=False``).

        Raises:
            EngineFailure: crash or time-out; the worker is closed and must be replaced.
        """
        msg = self._recv(time.monotonic() + self.timeout_s, "evaluating")
        if self.starting and msg[0] in ("compiling", "ready"):
            if msg[0] == "ready":
                self.compile_errors, self.starting = msg[1], False
            return None
        return msg

    def submit_chunk(self, items: list[tuple[str, object]]) -> None:
        """Send several inputs in one message; the child answers each in order, one
        message per input (read them with :meth:`collect`, each within ``timeout_s``).

        Args:
            items: ``("all", input document)`` for every policy on one input (one bundle
                query, answered ``("ok", {policy_id: value})``), or ``("each",
                [(policy id, input document, standalone), ...])`` for some policies,
                each on its own input (answered the same way with just those ids, or
                with an error naming the first policy whose answer is not a value);
                ``standalone`` policies are queried from a bundle of their own module,
                the others from the bundle of every module.

        One message per chunk instead of one per input halves the pipe round trips, and
        the child goes from one input to the next without waiting for the parent.

        Raises:
            EngineFailure: the worker is gone (crash).
        """
        try:
            self._conn.send(("chunk", None, items))
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

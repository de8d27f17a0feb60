"""The policy input encoding: how a JSON-like document becomes rego-cpp's input.

:func:`set_input` builds the input through rego-cpp's C input API and refuses what
rego-cpp cannot represent faithfully (:class:`InputError`); :func:`text_misread` is the
one rule for strings it would misread, shared with ``modelops validate``. Imports nothing
from the package, so validation can use it without the Rego worker. Rationale and
measurements: ``docs/policy.md``.
"""

from __future__ import annotations

import re

_INT64 = (-(2**63), 2**63 - 1)


class InputError(ValueError):
    """A value in the input that rego-cpp cannot represent faithfully.

    Attributes:
        path: dotted path of the value in the input (``spec.secrets.0.from``).
    """

    def __init__(self, path: str, problem: str) -> None:
        super().__init__(f"input {path or '(root)'}: {problem}")
        self.path = path


_INPUT_ERROR = re.compile(
    r"InputError: input (.+?): "
    r"(?:contains a NUL|.{0,60}? is wrapped in double quotes|a \w+ is not)",
    re.DOTALL,
)


def input_error_path(message: str) -> str | None:
    """The dotted input path named by an :class:`InputError` message carried in an
    evaluation error (``evaluation error: InputError: input spec.x: ...``), or None."""
    match = _INPUT_ERROR.search(message)
    return match.group(1) if match and match.group(1) != "(root)" else None


def text_misread(value: str) -> str | None:
    """How rego-cpp would misread ``value`` as input text: ``"nul"`` (it holds a NUL
    character: the C API cuts the string there), ``"quoted"`` (it starts and ends with a
    double quote: rego-cpp reads it as a JSON token, without them), or None.

    The one rule behind :func:`set_input`'s refusals and ``modelops validate``'s checks.
    """
    if "\0" in value:
        return "nul"
    if len(value) >= 2 and value[0] == value[-1] == '"':
        return "quoted"
    return None


def set_input(runner, value) -> None:
    """Set ``value`` (JSON-like) as the input document of a regopy ``Interpreter``.

    Builds the document through rego-cpp's C input API, as ``Interpreter.set_input``
    does, with two differences found by testing:

    * an integer outside the signed 64-bit range is passed as a float: regopy 1.5 passes
      ints as int64 and wraps silently (-9223372036854775809 arrives as
      9223372036854775807, 2**64 + 5 as 5), so a huge negative ``min_replicas`` would
      read as huge and pass a minimum (fail open); a float keeps the sign and order;
    * a string (or key) with a NUL character is refused (:class:`InputError`): the C API
      takes NUL-terminated strings, so ``"vault:a#b\\0anything"`` would arrive as
      ``"vault:a#b"`` and pass a pattern the whole value fails;
    * a string (or key) that starts and ends with a double quote is refused: rego-cpp
      reads it as a JSON token, so the key ``'"secret"'`` is the key ``secret`` to a
      policy and the value ``'"x"'`` is ``x``, not what the spec says.

    It is also about twice as fast as regopy's converter (it dispatches on the exact
    type instead of ``isinstance`` checks against ABCs), which matters at one call per
    spec. Tuples are arrays, sets and frozensets are Rego sets; any other type is an
    :class:`InputError`.

    Raises:
        InputError: a value that cannot be represented; names its path.
        RuntimeError: rego-cpp refused a value or the document (its status code).
    """
    from regopy.rego_shared import rego  # loads rego-cpp: only the worker child sets inputs

    p_input = rego.regoNewInput()
    if not p_input:
        raise RuntimeError("rego-cpp could not allocate an input")

    string, boolean, integer, real, null = (
        rego.regoInputString,
        rego.regoInputBoolean,
        rego.regoInputInt,
        rego.regoInputFloat,
        rego.regoInputNull,
    )
    lo, hi = _INT64

    def refused(code: int, path: list) -> RuntimeError:
        return RuntimeError(f"rego-cpp refused the input at {_dotted(path)} (code {code})")

    def scalar(v, t) -> int | None:
        # A leaf's status code, or None if ``v`` is not a plain leaf (strings: NUL check
        # by the caller, who knows the path).
        if t is bool:
            return boolean(p_input, v)
        if t is int:
            return integer(p_input, v) if lo <= v <= hi else real(p_input, float(v))
        if t is float:
            return real(p_input, v)
        if v is None:
            return null(p_input)
        return None

    def add(v, path: list) -> None:
        t = type(v)
        if t is str:
            misread = text_misread(v)
            if misread == "nul":
                raise InputError(_dotted(path), "contains a NUL character, which Rego cannot see")
            if misread == "quoted":
                raise InputError(
                    _dotted(path),
                    f"{v[:40]!r} is wrapped in double quotes, which rego-cpp reads as a JSON"
                    " string token (without them); remove the quotes",
                )
            code = string(p_input, v.encode("utf-8"))
        elif t is dict:
            for key, item in v.items():
                path.append(key)
                add(key, path)
                ti = type(item)
                code = scalar(item, ti) if ti is not str and ti is not dict else None
                if code is None:
                    add(item, path)
                elif code:
                    raise refused(code, path)
                path.pop()
                code = rego.regoInputObjectItem(p_input)
                if code:
                    raise refused(code, path)
            code = rego.regoInputObject(p_input, len(v))
        elif t is list or t is tuple:
            for i, item in enumerate(v):
                ti = type(item)
                code = scalar(item, ti) if ti is not str and ti is not dict else None
                if code is None:
                    path.append(i)
                    add(item, path)
                    path.pop()
                elif code:
                    raise refused(code, [*path, i])
            code = rego.regoInputArray(p_input, len(v))
        elif t is set or t is frozenset:
            for item in v:
                add(item, path)
            code = rego.regoInputSet(p_input, len(v))
        else:
            code = scalar(v, t)
            if code is None:
                if isinstance(v, (str, int, float, dict, list)):  # subclasses: as their base
                    base = next(b for b in (bool, str, int, float, dict, list) if isinstance(v, b))
                    add(base(v), path)
                    return
                raise InputError(_dotted(path), f"a {t.__name__} is not a JSON value")
        if code:
            raise refused(code, path)

    try:
        add(value, [])
        code = rego.regoSetInput(runner._impl, p_input)
        if code:
            raise refused(code, [])
    finally:
        rego.regoFreeInput(p_input)


def _dotted(path: list) -> str:
    return ".".join(str(p) for p in path)

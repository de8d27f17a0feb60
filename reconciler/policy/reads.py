"""Which parts of ``input`` a policy reads, found by reading its Rego source.

Conservative: any reference it cannot bound reads the whole input, so the engine's
reuse of answers can only do more work, never give another answer. What counts as
unbounded, and why: ``docs/policy.md``.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable
from dataclasses import dataclass

Path = tuple[str, ...]

_TOKEN = re.compile(
    r"""
    (?P<ws>\s+)
  | (?P<comment>\#[^\n]*)
  | (?P<string>"(?:\\.|[^"\\\n])*")
  | (?P<raw>`[^`]*`)
  | (?P<ident>[A-Za-z_][A-Za-z0-9_]*)
  | (?P<number>[0-9][0-9.eE+-]*)
  | (?P<punct>.)
    """,
    re.VERBOSE | re.DOTALL,
)

# Built-ins whose answer depends on more than their arguments (OPA's non-deterministic
# built-ins, https://www.openpolicyagent.org/docs/policy-reference#built-in-functions,
# plus time.now_ns): a policy that calls one is evaluated every time.
NON_DETERMINISTIC = frozenset(
    {
        ("time", "now_ns"),
        ("rand", "intn"),
        ("uuid", "rfc4122"),
        ("http", "send"),
        ("opa", "runtime"),
        ("net", "lookup_ip_addr"),
        ("io", "jwt"),  # decode_verify compares the token's times with the clock
    }
)


@dataclass(frozen=True)
class InputReads:
    """What one module reads of ``input``.

    Attributes:
        paths: the minimal set of paths read (no path is a prefix of another), sorted;
            ``((),)`` when the module may read the whole input.
        cacheable: False when the module calls a non-deterministic built-in or shares
            its package; its answers are never reused.
        reason: why the whole input is read or why the module is not cacheable (``""``
            when neither), for tests and debugging.
        standalone: False when the module may use rules of other modules (a ``data``
            reference outside the organisation document, a shared package): it must
            then be evaluated in a bundle that holds every module.
    """

    paths: tuple[Path, ...]
    cacheable: bool = True
    reason: str = ""
    standalone: bool = True

    @property
    def whole(self) -> bool:
        """True when the module may read any part of ``input``."""
        return self.paths == ((),)


@dataclass(frozen=True)
class _Tok:
    kind: str
    text: str
    line: int
    depth: int  # (), [] and {} open around the token
    first: bool  # the first token on its line


def _tokens(source: str) -> list[_Tok]:
    out: list[_Tok] = []
    line, depth, last_line = 1, 0, 0
    for match in _TOKEN.finditer(source):
        kind = match.lastgroup or "punct"
        text = match.group()
        if kind not in ("ws", "comment"):
            if text in ")]}":
                depth = max(0, depth - 1)
            out.append(_Tok(kind, text, line, depth, line != last_line))
            last_line = line
            if text in "([{":
                depth += 1
        line += text.count("\n")
    return out


def _string_value(tok: _Tok) -> str | None:
    """The value of a string literal token, or None if it is not a plain one.

    Only text without a backslash, a double quote or a control character is taken as a
    literal key: regopy 1.5 keeps escape sequences of a string as written (``"\\u0041"``
    is six characters to it), and looks a raw string's key up by its JSON text (`` `a\nb` ``
    reads the key ``a\\nb``, a tab the key with ``\\t``), so for such text no reading
    can be trusted to name the key it reads.
    """
    if tok.kind not in ("raw", "string"):
        return None
    text = tok.text[1:-1]
    if "\\" in text or '"' in text or any(ord(c) < 32 or ord(c) == 127 for c in text):
        return None
    return text


def minimal(paths: Iterable[Path]) -> tuple[Path, ...]:
    """``paths`` without any path that another one is a prefix of, sorted.

    ``()`` (the whole input) absorbs everything: the result is then ``((),)``.
    """
    out: list[Path] = []
    for path in sorted(set(paths), key=lambda p: (len(p), p)):
        if not any(path[: len(kept)] == kept for kept in out):
            out.append(path)
    return tuple(sorted(out))


def _dotted(toks: list[_Tok], i: int) -> Path:
    """Keys of ``input.a.b["c"]...`` starting after the ``input`` token at ``i - 1``."""
    keys: list[str] = []
    while i < len(toks):
        tok = toks[i]
        if tok.line != toks[i - 1].line:
            break  # a new line ends the reference (stopping early reads more, not less)
        if tok.text == "." and i + 1 < len(toks) and toks[i + 1].kind == "ident":
            keys.append(toks[i + 1].text)
            i += 2
            continue
        if (
            tok.text == "["
            and i + 2 < len(toks)
            and toks[i + 2].text == "]"
            and _string_value(toks[i + 1]) is not None
        ):
            keys.append(_string_value(toks[i + 1]))
            i += 3
            continue
        break
    return tuple(keys)


def _object_get_keys(toks: list[_Tok], i: int) -> Path | None:
    """Keys of ``object.get(input, <keys>, ...)``, ``i`` at the token after ``input``.

    Returns the literal prefix of the key list, or None when the second argument is not
    a string literal or an array literal (a comprehension, a variable, indexing).
    """
    if i >= len(toks) or toks[i].text != ",":
        return None
    i += 1
    if i < len(toks) and _string_value(toks[i]) is not None:
        return (_string_value(toks[i]),) if i + 1 < len(toks) and toks[i + 1].text in ",)" else None
    if i >= len(toks) or toks[i].text != "[":
        return None
    i += 1
    keys: list[str] = []
    while i < len(toks):
        value = _string_value(toks[i])
        if value is None:
            # A non-literal element: the keys so far are a prefix of every path it
            # builds, as long as this is a plain array (``[x | ...]`` has one term).
            return tuple(keys) if keys else ()
        nxt = toks[i + 1].text if i + 1 < len(toks) else ""
        if nxt == "]":
            after = toks[i + 2].text if i + 2 < len(toks) else ""
            return (*keys, value) if after in ",)" else None
        if nxt != ",":
            return None  # a comprehension or an expression: cannot bound it
        keys.append(value)
        i += 2
    return None


def input_reads(
    source: str,
    data_roots: Collection[str],
    package_roots: Collection[str] = ("modelops",),
) -> InputReads:
    """Find the parts of ``input`` that a Rego module reads.

    Args:
        source: the module text (OPA v1 Rego).
        data_roots: the top-level keys of the base document (``data``) loaded from the
            organisation file (``organization``); references under them read no input.
        package_roots: first segments of the policy packages (``modelops``); a ``data``
            reference there may name another policy's rules, so it reads the whole input.

    Returns:
        An :class:`InputReads`. Never raises: text it cannot make sense of reads the
        whole input.
    """
    toks = _tokens(source)
    paths: list[Path] = []
    whole_reason = ""
    cacheable, why_not = True, ""
    standalone = True
    for i, tok in enumerate(toks):
        if tok.text == "$":
            # A template string (``$"... {input.x} ..."``, OPA 1.x) holds expressions,
            # and raw strings inside them throw this tokenizer off: stop reading.
            return _unknown(f"line {tok.line}: template string")
        if tok.kind != "ident":
            continue
        prev = toks[i - 1].text if i > 0 else ""
        if tok.text in SHADOWABLE and tok.depth == 0 and _statement_start(toks, i):
            # A rule named input, data or object (regopy accepts ``input := 1``) changes
            # what every reference of that name means.
            return _unknown(f"line {tok.line}: a rule named {tok.text}")
        if tok.text in SHADOWABLE and prev == "with":
            # ``with object.get as f`` replaces the built-in for that expression.
            return _unknown(f"line {tok.line}: with {tok.text}... replaces it")
        if prev == ".":
            continue  # a member name, not a root reference
        nxt = toks[i + 1].text if i + 1 < len(toks) else ""
        if nxt == "." and i + 2 < len(toks) and (tok.text, toks[i + 2].text) in NON_DETERMINISTIC:
            cacheable, why_not = False, f"line {tok.line}: calls {tok.text}.{toks[i + 2].text}"
        if tok.text == "data":
            root = _dotted(toks, i + 1)
            if not root or root[0] not in data_roots or root[0] in package_roots:
                standalone = False
                whole_reason = whole_reason or (
                    f"line {tok.line}: data.{'.'.join(root[:1])} may name rules that read input"
                )
            continue
        if tok.text != "input":
            continue
        if [t.text for t in toks[max(0, i - 4) : i]] == ["object", ".", "get", "("]:
            keys = _object_get_keys(toks, i + 1)
            if keys is None:
                whole_reason = whole_reason or f"line {tok.line}: object.get(input, ...) keys"
                continue
            paths.append(keys)
            if not keys:
                whole_reason = whole_reason or f"line {tok.line}: object.get(input, ...) keys"
            continue
        keys = _dotted(toks, i + 1)
        if not keys:
            whole_reason = whole_reason or f"line {tok.line}: input used as a whole"
        paths.append(keys)
    if whole_reason:
        reason = "; ".join(filter(None, [whole_reason, why_not]))
        return InputReads(((),), cacheable, reason, standalone)
    return InputReads(minimal(paths), cacheable, why_not, standalone)


# Root names whose meaning the analysis relies on; a module that defines a rule by one of
# these names (at the start of a top-level statement) is not analysed.
SHADOWABLE = frozenset({"input", "data", "object"})


def _statement_start(toks: list[_Tok], i: int) -> bool:
    """Whether token ``i`` starts a top-level statement (a rule head): first on its line,
    after a ``;`` (regopy accepts two rules on one line), or after ``default`` there."""
    if toks[i].first or (i > 0 and toks[i - 1].text == ";"):
        return True
    return i > 0 and toks[i - 1].text == "default" and _statement_start(toks, i - 1)


def _unknown(reason: str) -> InputReads:
    """Whole input, not cacheable, not standalone: for text the analysis cannot trust."""
    return InputReads(((),), False, reason, False)


_MISSING = object()


def path_value_key(doc: dict, path: Path) -> str:
    """A text that is the same for two documents only if ``path`` reaches the same
    thing in both (equal text implies that a policy reading ``path`` sees no difference).

    Walks ``path``; the key is the ``repr`` of the value found (``repr`` tells ``1``,
    ``1.0``, ``True`` and ``"1"`` apart), ``<missing n>`` when the key at depth ``n`` is
    absent, and ``<n>repr`` when the walk stops at a non-object at depth ``n``. An object
    on the way that also has the key wrapped in double quotes (rego-cpp reads ``'"k"'``
    as ``k``) makes the key ``<quoted>`` and the repr of the whole document, which
    :func:`project` then sends whole, so that the worker refuses it. Equal keys
    on every path of a set give equal :func:`project` documents (tested), so a reused
    answer was computed on exactly the document the worker would have been sent.
    """
    value = doc
    for depth, key in enumerate(path):
        if type(value) is not dict:
            return f"<{depth}>{value!r}"
        if f'"{key}"' in value:
            return f"<quoted>{doc!r}"
        value = value.get(key, _MISSING)
        if value is _MISSING:
            return f"<missing {depth}>"
    return repr(value)


def project(doc: dict, paths: tuple[Path, ...]) -> dict:
    """The part of ``doc`` that ``paths`` reach, as a new document.

    Objects on the way keep only the keys on a path; the value at the end of a path is
    shared with ``doc``, as is a non-object met on the way (a policy reading through it
    sees the same thing). Missing keys stay missing. ``((),)`` returns ``doc`` itself.

    Args:
        doc: the input document (JSON-like: dict, list, str, int, float, bool, None).
        paths: a :func:`minimal` path set.
    """
    if () in paths:
        return doc
    out: dict = {}
    for path in paths:
        src, dst = doc, out
        for depth, key in enumerate(path):
            if f'"{key}"' in src:
                return doc  # see path_value_key: the worker refuses the quoted key
            if key not in src:
                break
            value = src[key]
            if depth == len(path) - 1 or type(value) is not dict:
                dst[key] = value
                break

            src = value
            dst = dst.setdefault(key, {})
    return out

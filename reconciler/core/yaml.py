"""The one hardened YAML reader: PyYAML's safe loader, with positions and limits.

PyYAML silently keeps the last of two duplicate keys and discards node positions
once it has built Python objects. This reader composes the node graph with
:class:`yaml.SafeLoader`, then builds the plain Python value itself, so that it can
record the line and column of every node, reject duplicate keys and non-string keys,
and stop alias bombs. Every YAML file modelops reads (specs, ``modelops.yaml``,
waivers, organisation settings, policy fixtures, policy ``# METADATA`` blocks, the
waivers of a revision for the policy-set diff) goes through :func:`load_yaml`.

PyYAML resolves plain scalars by YAML 1.1 rules, other readers (kubectl, Argo CD,
ruamel, Go's yaml.v3) by the YAML 1.2 core schema. Where the two disagree (``0755``
is 493 in 1.1 and 755 in 1.2; ``1:30`` is 90 or a string; ``no`` is false or a string;
``7e3`` is a string or 7000.0) the value is refused with the way to write it, never
silently read one way: see :func:`yaml12_conflict`.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

import yaml

from reconciler.core.diagnostics import Diagnostic, Position
from reconciler.core.document import PathKey, format_path

# PyYAML's safe loader, in C (libyaml) when the wheel has it: the same safe constructor,
# about 10x faster to parse; the pure-Python one otherwise.
_SAFE_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
MAX_NODES = 100_000  # a spec has hundreds of nodes; aliases must not expand past this
_MERGE_TAG = "tag:yaml.org,2002:merge"
_COLLECTION_TAGS = ("tag:yaml.org,2002:map", "tag:yaml.org,2002:seq")

# The YAML 1.2 core schema's plain-scalar resolution (YAML 1.2.2, section 10.3.2).
_CORE_NULL = re.compile(r"null|Null|NULL|~|")
_CORE_BOOL = re.compile(r"true|True|TRUE|false|False|FALSE")
_CORE_INT10 = re.compile(r"[-+]?[0-9]+")
_CORE_INT8 = re.compile(r"0o[0-7]+")
_CORE_INT16 = re.compile(r"0x[0-9a-fA-F]+")
_CORE_FLOAT = re.compile(r"[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?")
_CORE_INF = re.compile(r"[-+]?\.(inf|Inf|INF)")
_CORE_NAN = re.compile(r"\.(nan|NaN|NAN)")


class YamlLoadError(Exception):
    """A file that cannot be turned into a document; carries one :class:`Diagnostic`."""

    def __init__(self, diagnostic: Diagnostic) -> None:
        super().__init__(str(diagnostic))
        self.diagnostic = diagnostic


def _mark_pos(file: str, mark) -> Position:
    return Position(file, mark.line + 1, mark.column + 1) if mark else Position(file, 0, 0)


def _indent_tab(text: str, mark, file: str = "") -> Position | None:
    """Where a tab is at the syntax error, or in the indentation of the line it points at
    (or of the line before, for an error found at the start of the next token), else
    ``None``.

    PyYAML reports such a tab as "found character that cannot start any token" or as a
    mapping error some lines on; YAML forbids tabs in indentation (YAML 1.2, 6.1).
    """
    if mark is None:
        return None
    lines = text.splitlines()
    if 0 <= mark.line < len(lines) and lines[mark.line][mark.column : mark.column + 1] == "\t":
        return Position(file, mark.line + 1, mark.column + 1)  # e.g. after "- " or "? "
    for index in (mark.line, mark.line - 1):
        if 0 <= index < len(lines):
            line = lines[index]
            indent = line[: len(line) - len(line.lstrip(" \t"))]
            if "\t" in indent:
                return Position(file, index + 1, indent.index("\t") + 1)
    return None


def _decode(raw: bytes, file: str) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        before = raw[: exc.start]
        line = before.count(b"\n") + 1
        col = exc.start - (before.rfind(b"\n") + 1) + 1
        raise YamlLoadError(
            Diagnostic(
                Position(file, line, col),
                "",
                f"file is not valid UTF-8 (byte 0x{raw[exc.start]:02x}); save it as UTF-8",
                code="yaml",
            )
        ) from None


def load_yaml(raw: bytes | str, file: str) -> tuple[Any, dict[PathKey, Position]]:
    """Parse one YAML document, keeping positions and rejecting duplicate keys.

    Args:
        raw: the file's bytes (decoded as strict UTF-8) or text.
        file: the display path used in positions and diagnostics.

    Returns:
        ``(value, positions)``: the document as plain dicts/lists/scalars, and a map from
        each node's path tuple to its :class:`Position` (the key's position for mapping
        entries, the item's position for list items, ``()`` for the document).

    Raises:
        YamlLoadError: invalid UTF-8, a YAML syntax error, an empty file, several
            documents, a duplicate key or a key that is not a string.
    """
    text = _decode(raw, file) if isinstance(raw, bytes) else raw
    if text.startswith("\ufeff"):
        text = text[1:]
    loader = _SAFE_LOADER(text)
    positions: dict[PathKey, Position] = {}
    try:
        node = loader.get_single_node()
        if node is None:
            raise YamlLoadError(
                Diagnostic(
                    Position(file, 1, 1),
                    "",
                    "file is empty; expected a ModelDeployment mapping "
                    "(apiVersion, kind, metadata, spec)",
                    code="yaml",
                )
            )
        positions[()] = _mark_pos(file, node.start_mark)
        _check_expansion(node, file)
        value = _build(loader, node, (), positions, file, [0])
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        tab = _indent_tab(text, mark, file)
        if tab is not None:
            raise YamlLoadError(
                Diagnostic(
                    tab,
                    "",
                    "a tab character in the indentation: YAML forbids tabs for "
                    "indentation; use spaces",
                    code="yaml",
                )
            ) from None
        problem = exc.problem or "invalid YAML"
        context = f" ({exc.context})" if exc.context else ""
        raise YamlLoadError(
            Diagnostic(
                _mark_pos(file, mark), "", f"YAML syntax error: {problem}{context}", code="yaml"
            )
        ) from None
    except yaml.YAMLError as exc:  # errors without a mark
        raise YamlLoadError(
            Diagnostic(Position(file, 1, 1), "", f"YAML error: {exc}", code="yaml")
        ) from None
    finally:
        loader.dispose()
    return value, positions


def yaml12_core_value(text: str) -> Any:
    """A plain scalar's value under the YAML 1.2 core schema (``str`` when no rule matches)."""
    if _CORE_NULL.fullmatch(text):
        return None
    if _CORE_BOOL.fullmatch(text):
        return text.lower() == "true"
    if _CORE_INT10.fullmatch(text):
        return int(text)
    if _CORE_INT8.fullmatch(text):
        return int(text[2:], 8)
    if _CORE_INT16.fullmatch(text):
        return int(text[2:], 16)
    if _CORE_FLOAT.fullmatch(text):
        return float(text)
    if _CORE_INF.fullmatch(text):
        return -math.inf if text.startswith("-") else math.inf
    if _CORE_NAN.fullmatch(text):
        return math.nan
    return text


def _same(a: Any, b: Any) -> bool:
    if type(a) is not type(b):
        return False
    if isinstance(a, float) and math.isnan(a):
        return math.isnan(b)
    return a == b


def _how_to_write(text: str, v11: Any, v12: Any) -> str:
    if isinstance(v11, bool) or isinstance(v12, bool):
        what = "true or false" if isinstance(v11, bool) else f"{v12!r}"
        return f'write {what} for a boolean, or "{text}" (quoted) for the string'
    options = []
    for value in (v11, v12):
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            if isinstance(value, float) and not math.isfinite(value):
                continue
            if repr(value) not in options:
                options.append(repr(value))
    if not options:  # out of float range under both (1e400): no number to suggest
        return f'write a number within ±1.8e308, or "{text}" (quoted) for the string'
    numbers = " or ".join(options)
    return f'write the number as {numbers} (plain decimal), or "{text}" (quoted) for the string'


def yaml12_conflict(loader, node) -> str | None:
    """Why a plain scalar reads differently under YAML 1.1 and 1.2, or ``None``.

    Only implicitly typed plain scalars are checked (quoted values and explicit ``!!tags``
    mean the same to every reader). Timestamps are left to PyYAML (the waiver file's
    ``expires`` dates rely on them). Returns a sentence saying both readings and how to
    write the value so that every reader agrees.
    """
    if node.style or node.tag == "tag:yaml.org,2002:timestamp":  # "" or None: plain
        return None
    if node.tag != loader.resolve(yaml.ScalarNode, node.value, (True, False)):
        return None
    try:
        v11 = loader.construct_object(node, deep=True)
    except (ValueError, TypeError, OverflowError):
        return None  # reported by the caller with the constructor's reason
    v12 = yaml12_core_value(node.value)
    if _same(v11, v12):
        return None
    return (
        f"value {node.value} is {v11!r} under YAML 1.1 (PyYAML) but {v12!r} under YAML 1.2 "
        f"(kubectl, Argo CD); {_how_to_write(node.value, v11, v12)}"
    )


def _children(node) -> list:
    if isinstance(node, yaml.MappingNode):
        return [child for pair in node.value for child in pair]
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    return []


def _expanded_sizes(root) -> dict[int, int]:
    """Node count of each node's subtree with aliases expanded, by ``id(node)``; each
    distinct node is visited once (aliases share nodes), so a bomb costs what it weighs
    in bytes, not what it would expand to."""
    sizes: dict[int, int] = {}
    stack = [(root, False)]
    while stack:
        node, done = stack.pop()
        if id(node) in sizes:
            continue
        children = _children(node)
        if done:
            sizes[id(node)] = 1 + sum(sizes.get(id(c), 1) for c in children)
            continue
        stack.append((node, True))
        stack.extend((c, False) for c in children if id(c) not in sizes)
    return sizes


def _check_expansion(root, file: str) -> None:
    """Refuse, before building anything, a document that expands past :data:`MAX_NODES`.

    Raises:
        YamlLoadError: at the node where most of the expansion comes from (an alias of
            aliases), with its path.
    """
    sizes = _expanded_sizes(root)
    if sizes.get(id(root), 1) <= MAX_NODES:
        return
    node, path = root, ()
    while True:
        if isinstance(node, yaml.MappingNode):
            options = [
                (k.value if isinstance(k, yaml.ScalarNode) else "?", v) for k, v in node.value
            ]
        elif isinstance(node, yaml.SequenceNode):
            options = list(enumerate(node.value))
        else:
            break
        key, child = max(options, key=lambda kv: sizes.get(id(kv[1]), 1))
        if sizes.get(id(child), 1) * 2 <= sizes.get(id(node), 1):
            break  # no single child holds most of it: the expansion is here
        node, path = child, (*path, key)
    raise _too_many_nodes(file, node, path, aliased=len(sizes) <= MAX_NODES)


def _too_many_nodes(file: str, node, path: PathKey, aliased: bool = True) -> YamlLoadError:
    """The error for a document that expands past :data:`MAX_NODES`, at ``node``.

    ``aliased``: the document's own nodes are fewer than the limit, so YAML aliases make
    up the rest (an alias bomb); otherwise the document itself is that large.
    """
    if aliased:
        why = (
            f"document expands to more than {MAX_NODES:,} nodes through YAML aliases; "
            "write the values out instead of aliasing aliases"
        )
    else:
        why = (
            f"document has more than {MAX_NODES:,} nodes (a spec has hundreds); "
            "split it or remove the generated entries"
        )
    return YamlLoadError(
        Diagnostic(_mark_pos(file, node.start_mark), format_path(path), why, code="yaml")
    )


def _build(loader: yaml.SafeLoader, node, path: PathKey, positions, file: str, count) -> Any:
    count[0] += 1
    if count[0] > MAX_NODES:
        # aliases of aliases ("billion laughs") would expand without bound
        raise _too_many_nodes(file, node, path)
    if isinstance(node, yaml.CollectionNode) and node.tag not in _COLLECTION_TAGS:
        # PyYAML's safe constructor refuses unknown tags on scalars; on a mapping or a
        # list this builder would silently drop it (e.g. !!python/object/apply)
        raise YamlLoadError(
            Diagnostic(
                _mark_pos(file, node.start_mark),
                format_path(path),
                f"tag {node.tag!r} is not allowed; write a plain mapping or list",
                code="yaml",
            )
        )
    if isinstance(node, yaml.MappingNode):
        explicit = sum(1 for key_node, _ in node.value if key_node.tag != _MERGE_TAG)
        loader.flatten_mapping(node)  # resolves '<<' merge keys: merged entries come first
        merged = len(node.value) - explicit
        result: dict = {}
        from_merge: dict[str, bool] = {}  # key -> whether a merge brought it
        for index, (key_node, value_node) in enumerate(node.value):
            key = loader.construct_object(key_node, deep=True)
            key_pos = _mark_pos(file, key_node.start_mark)
            if not isinstance(key, str):
                raise YamlLoadError(
                    Diagnostic(
                        key_pos,
                        format_path(path),
                        f"key {key_node.value!r} is read as a {type(key).__name__}, not a "
                        "string; quote it",
                        code="yaml",
                    )
                )
            # a key that a '<<' merge brought in may be overridden (by an explicit key, or
            # by an earlier mapping of the merge list): valid YAML, the override wins
            if key in result and not from_merge[key]:
                first = positions.get((*path, key))
                where = f" (first defined at line {first.line})" if first else ""
                raise YamlLoadError(
                    Diagnostic(
                        key_pos,
                        format_path((*path, key)),
                        f"duplicate key {key!r}{where}; YAML keeps only one of them, "
                        "so remove or rename one",
                        code="yaml",
                    )
                )
            child = (*path, key)
            positions[child] = key_pos
            from_merge[key] = index < merged
            result[key] = _build(loader, value_node, child, positions, file, count)
        return result
    if isinstance(node, yaml.SequenceNode):
        items = []
        for index, item in enumerate(node.value):
            child = (*path, index)
            positions[child] = _mark_pos(file, item.start_mark)
            items.append(_build(loader, item, child, positions, file, count))
        return items
    conflict = yaml12_conflict(loader, node)
    if conflict:
        raise YamlLoadError(
            Diagnostic(_mark_pos(file, node.start_mark), format_path(path), conflict, code="yaml")
        )
    try:
        return loader.construct_object(node, deep=True)
    except (ValueError, TypeError, OverflowError) as exc:
        # e.g. an impossible date such as 2027-02-30, which PyYAML's timestamp
        # constructor turns into a bare ValueError
        raise YamlLoadError(
            Diagnostic(
                _mark_pos(file, node.start_mark),
                format_path(path),
                f"value {node.value!r} cannot be read as {node.tag.rsplit(':', 1)[-1]}: {exc}; "
                "quote it to keep it as a string",
                code="yaml",
            )
        ) from None


class _Dumper(yaml.SafeDumper):
    """PyYAML's safe dumper, quoting strings that any YAML version reads as non-strings."""


def _represent_str(dumper: yaml.SafeDumper, data: str):
    # PyYAML quotes what YAML 1.1 would resolve (no, 0755, 1:30); YAML 1.2 readers
    # (kubectl, Argo CD) also resolve 7e3, 0o17, 08, 1.5E3 to numbers: quote those too
    if not isinstance(yaml12_core_value(data), str):
        return dumper.represent_scalar("tag:yaml.org,2002:str", data, style="'")
    return dumper.represent_str(data)


_Dumper.add_representer(str, _represent_str)


def dump_yaml(data: Any, *, sort_keys: bool = False) -> str:
    """``data`` as block-style YAML that YAML 1.1 and 1.2 readers decode the same way.

    Every string that looks like a number, boolean or null under either version
    (``"7e3"``, ``"0x1f"``, ``".inf"``, ``"no"``, ``"0755"``) is quoted, so ``kubectl``,
    Argo CD and PyYAML all read it back as the string it is. Used for every rendered
    manifest and DesiredState written as YAML.
    """
    return yaml.dump(
        data, Dumper=_Dumper, sort_keys=sort_keys, default_flow_style=False, allow_unicode=True
    )


def display_path(path: Path, root: Path | None) -> str:
    """Path relative to ``root`` when inside it, else as given (for diagnostics)."""
    if root is not None:
        try:
            return str(Path(path).resolve().relative_to(Path(root).resolve()))
        except ValueError:
            pass
    return str(path)

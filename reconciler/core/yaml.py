"""The one hardened YAML reader: PyYAML's safe loader, with positions and limits.

PyYAML silently keeps the last of two duplicate keys and discards node positions
once it has built Python objects. This reader composes the node graph with
:class:`yaml.SafeLoader`, then builds the plain Python value itself, so that it can
record the line and column of every node, reject duplicate keys and non-string keys,
and stop alias bombs. Every YAML file modelops reads (specs, ``modelops.yaml``,
waivers, organisation settings, policy fixtures) goes through :func:`load_yaml`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from reconciler.core.diagnostics import Diagnostic, Position
from reconciler.core.document import PathKey, format_path

# PyYAML's safe loader, in C (libyaml) when the wheel has it: the same safe constructor,
# about 10x faster to parse; the pure-Python one otherwise.
_SAFE_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
MAX_NODES = 100_000  # a spec has hundreds of nodes; aliases must not expand past this


class YamlLoadError(Exception):
    """A file that cannot be turned into a document; carries one :class:`Diagnostic`."""

    def __init__(self, diagnostic: Diagnostic) -> None:
        super().__init__(str(diagnostic))
        self.diagnostic = diagnostic


def _mark_pos(file: str, mark) -> Position:
    return Position(file, mark.line + 1, mark.column + 1) if mark else Position(file, 0, 0)


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
        value = _build(loader, node, (), positions, file, [0])
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
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


def _build(loader: yaml.SafeLoader, node, path: PathKey, positions, file: str, count) -> Any:
    count[0] += 1
    if count[0] > MAX_NODES:
        # aliases of aliases ("billion laughs") would expand without bound
        raise YamlLoadError(
            Diagnostic(
                _mark_pos(file, node.start_mark),
                format_path(path),
                f"document expands to more than {MAX_NODES:,} nodes (nested YAML aliases?); "
                "write the values out instead of aliasing aliases",
                code="yaml",
            )
        )
    if isinstance(node, yaml.MappingNode):
        loader.flatten_mapping(node)  # resolves '<<' merge keys
        result: dict = {}
        for key_node, value_node in node.value:
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
            if key in result:
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
            result[key] = _build(loader, value_node, child, positions, file, count)
        return result
    if isinstance(node, yaml.SequenceNode):
        items = []
        for index, item in enumerate(node.value):
            child = (*path, index)
            positions[child] = _mark_pos(file, item.start_mark)
            items.append(_build(loader, item, child, positions, file, count))
        return items
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


def display_path(path: Path, root: Path | None) -> str:
    """Path relative to ``root`` when inside it, else as given (for diagnostics)."""
    if root is not None:
        try:
            return str(Path(path).resolve().relative_to(Path(root).resolve()))
        except ValueError:
            pass
    return str(path)

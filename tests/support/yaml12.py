"""A strict YAML 1.2 (core schema) reader for tests (no tests here).

kubectl (sigs.k8s.io/yaml over go-yaml) and Argo CD decode manifests with YAML 1.2
rules, where PyYAML uses YAML 1.1: a plain ``7e3`` is a float, ``0o17`` and ``08`` are
integers, ``no`` is a string. :func:`read_yaml12` composes the node graph with PyYAML
and resolves every plain scalar by the 1.2 core schema
(:func:`reconciler.core.yaml.yaml12_core_value`), so a test sees what those tools see.
Duplicate keys are refused, as go-yaml v3 does.
"""

from __future__ import annotations

from typing import Any

import yaml

from reconciler.core.yaml import yaml12_core_value


def _build(node) -> Any:
    if isinstance(node, yaml.MappingNode):
        out: dict = {}
        for key_node, value_node in node.value:
            key = _build(key_node)
            if key in out:
                raise ValueError(f"duplicate key {key!r} at line {key_node.start_mark.line + 1}")
            out[key] = _build(value_node)
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_build(item) for item in node.value]
    if node.style:  # quoted, literal or folded: a string in every version
        return node.value
    if node.tag not in (None, "?", "!") and not node.tag.startswith("tag:yaml.org,2002:"):
        return node.value
    return yaml12_core_value(node.value)


def read_yaml12(text: str) -> Any:
    """One YAML document read as a YAML 1.2 core-schema reader reads it."""
    return _build(yaml.compose(text, Loader=yaml.SafeLoader))

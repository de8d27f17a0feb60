"""Render a list of :class:`~reconciler.diagnostics.Diagnostic` in a chosen format.

First cut: text, json and github. The policy issue extends this table with markdown,
sarif and junit (one module per format, as Conftest's ``output`` package does).
"""

from __future__ import annotations

import json

from reconciler.diagnostics import Diagnostic, ModelopsError


def _text(diags: list[Diagnostic], tool: str) -> str:
    return "".join(f"{d}\n" for d in diags)


def _json(diags: list[Diagnostic], tool: str) -> str:
    return json.dumps({"tool": tool, "findings": [d.to_dict() for d in diags]}, indent=2) + "\n"


def _escape_data(value: str) -> str:
    return value.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _escape_prop(value: str) -> str:
    return _escape_data(value).replace(":", "%3A").replace(",", "%2C")


def _github(diags: list[Diagnostic], tool: str) -> str:
    lines = []
    for d in diags:
        level = "error" if d.severity == "error" else "warning"
        props = [f"file={_escape_prop(d.position.file)}"]
        if d.position.line:
            props += [f"line={d.position.line}", f"col={d.position.col}"]
        props.append(f"title={_escape_prop(f'{tool}: {d.code}')}")
        message = f"{d.field}: {d.message}" if d.field else d.message
        lines.append(f"::{level} {','.join(props)}::{_escape_data(message)}\n")
    return "".join(lines)


WRITERS = {"text": _text, "json": _json, "github": _github}


def render_diagnostics(fmt: str, diags: list[Diagnostic], tool: str = "modelops") -> str:
    """Render ``diags`` as ``fmt``.

    Raises:
        ModelopsError: (exit 2) unknown format; the message lists the valid ones.
    """
    writer = WRITERS.get(fmt)
    if writer is None:
        raise ModelopsError(f"unknown format {fmt!r}; valid formats: {', '.join(WRITERS)}")
    return writer(list(diags), tool)

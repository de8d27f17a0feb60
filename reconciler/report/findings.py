"""The table from format name to writer, and the two entry points that use it.

One module per format (``text``, ``json``, ``markdown``, ``sarif``, ``junit``,
``github``), each with ``write(FindingSet) -> str``, as Conftest's ``output`` package.
"""

from __future__ import annotations

from reconciler.core.diagnostics import Diagnostic, ModelopsError
from reconciler.report import github, junit, markdown, sarif, text
from reconciler.report import json as json_writer
from reconciler.report.model import FindingSet, from_diagnostics, from_policy_report

WRITERS = {
    "text": text.write,
    "json": json_writer.write,
    "markdown": markdown.write,
    "sarif": sarif.write,
    "junit": junit.write,
    "github": github.write,
}


def pick_writer(writers: dict, fmt: str):
    """``writers[fmt]`` from a table of format name to writer.

    Raises:
        ModelopsError: (exit 2) unknown format; the message lists the valid ones.
    """
    writer = writers.get(fmt)
    if writer is None:
        raise ModelopsError(f"unknown format {fmt!r}; valid formats: {', '.join(writers)}")
    return writer


def writer_for(fmt: str):
    """The findings writer for ``fmt`` (see :func:`pick_writer` for errors)."""
    return pick_writer(WRITERS, fmt)


def render(fmt: str, findings: FindingSet) -> str:
    """Render a :class:`FindingSet` as ``fmt`` (see :func:`writer_for` for errors)."""
    return writer_for(fmt)(findings)


def render_diagnostics(fmt: str, diags: list[Diagnostic], tool: str = "modelops") -> str:
    """Render spec diagnostics as ``fmt`` (text, json, markdown, sarif, junit, github).

    Raises:
        ModelopsError: (exit 2) unknown format; the message lists the valid ones.
    """
    writer = writer_for(fmt)
    return writer(from_diagnostics(list(diags), tool))


def render_policy_report(fmt: str, report) -> str:
    """Render a :class:`~reconciler.policy.PolicyReport` as ``fmt``.

    Raises:
        ModelopsError: (exit 2) unknown format; the message lists the valid ones.
    """
    writer = writer_for(fmt)
    return writer(from_policy_report(report))

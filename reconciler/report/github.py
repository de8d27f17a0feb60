"""GitHub Actions workflow commands: ``::error file=…,line=…,col=…,title=…::message``.

Escaping follows the runner's rules (actions/toolkit ``command.ts``): in the message
``%``, CR and LF are percent-encoded; in properties also ``:`` and ``,``.
"""

from __future__ import annotations

from reconciler.report.model import FindingSet


def escape_data(value: str) -> str:
    """Escape a workflow-command message (``%`` → ``%25``, CR → ``%0D``, LF → ``%0A``)."""
    return value.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def escape_property(value: str) -> str:
    """Escape a workflow-command property value (as data, plus ``:`` and ``,``)."""
    return escape_data(value).replace(":", "%3A").replace(",", "%2C")


_COMMAND = {"error": "error", "warning": "warning", "note": "notice"}


def write(fs: FindingSet) -> str:
    """One annotation per non-pass finding: error (fail/error), warning (warn), notice
    (waived); an engine error repeated on many deployments once
    (:attr:`~reconciler.report.model.FindingSet.problems_once`)."""
    lines = []
    for f in fs.problems_once:
        props = [f"file={escape_property(f.file)}"]
        if f.line:
            props += [f"line={f.line}", f"col={f.col}"]
        title = f"{fs.tool}: {f.rule_id}" + (f" {f.title}" if f.title else "")
        props.append(f"title={escape_property(title)}")
        message = f"{f.field}: {f.message}" if f.field else f.message
        if f.deployment:
            message += f" ({f.deployment}"
            message += f", waived until {f.waiver['expires']})" if f.waiver else ")"
        lines.append(f"::{_COMMAND[f.level]} {','.join(props)}::{escape_data(message)}\n")
    return "".join(lines)

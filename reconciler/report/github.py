"""GitHub Actions workflow commands: ``::error file=…,line=…,col=…,title=…::message``.

Escaping follows the runner's rules (actions/toolkit ``command.ts``): in the message
``%``, CR and LF are percent-encoded; in properties also ``:`` and ``,``.
"""

from __future__ import annotations

import re

from reconciler.report.model import FindingSet


def escape_data(value: str) -> str:
    """Escape a workflow-command message (``%`` → ``%25``, CR → ``%0D``, LF → ``%0A``)."""
    return value.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def escape_property(value: str) -> str:
    """Escape a workflow-command property value (as data, plus ``:`` and ``,``)."""
    return escape_data(value).replace(":", "%3A").replace(",", "%2C")


_COMMAND = {"error": "error", "warning": "warning", "note": "notice"}
# spec diagnostics end their message with the environment they were found in
_ENV_SUFFIX = re.compile(r" \[env ([^\]]+)\]$")


def write(fs: FindingSet) -> str:
    """One annotation per location: error (fail/error), warning (warn), notice (waived).

    Findings of the same rule at the same place (file, line, column, field) with the
    same level, as the environments of one spec give them (the base spec's line serves
    ``prod`` and ``staging`` alike), are one annotation naming every deployment: GitHub
    shows annotations per line, and a repeated one only hides the others (it also caps
    them per step). An engine error repeated on many deployments is shown once
    (:attr:`~reconciler.report.model.FindingSet.problems_once`).
    """
    groups: dict[tuple, list] = {}
    for f in fs.problems_once:
        key = (f.level, f.file, f.line, f.col, f.rule_id, f.field)
        groups.setdefault(key, []).append(f)
    lines = []
    for items in groups.values():
        f = items[0]
        props = [f"file={escape_property(f.file)}"]
        if f.line:
            props += [f"line={f.line}", f"col={f.col}"]
        title = f"{fs.tool}: {f.rule_id}" + (f" {f.title}" if f.title else "")
        props.append(f"title={escape_property(title)}")
        messages: list[str] = []
        for item in items:
            text = _ENV_SUFFIX.sub("", item.message)
            if text not in messages:
                messages.append(text)
        message = " | ".join(messages)
        if f.field:
            message = f"{f.field}: {message}"
        deployments = [item.deployment for item in items if item.deployment]
        envs = [m.group(1) for item in items for m in [_ENV_SUFFIX.search(item.message)] if m]
        if deployments:
            waived = f", waived until {f.waiver['expires']}" if f.waiver else ""
            message += f" ({', '.join(dict.fromkeys(deployments))}{waived})"
        elif envs:
            message += f" [env {', '.join(dict.fromkeys(envs))}]"
        lines.append(f"::{_COMMAND[f.level]} {','.join(props)}::{escape_data(message)}\n")
    return "".join(lines)

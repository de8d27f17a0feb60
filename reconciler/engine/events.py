"""Pulumi engine events → the plan structure of ``reconciler.engine.plan``.

:class:`PlanCollector` is the Automation API's ``on_event`` callback: each engine step
becomes a :class:`~reconciler.engine.plan.Change` like the offline plan's, so a PR
comment reads the same either way. Step-op mapping: ``docs/engine.md``.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from reconciler.engine.plan import Change, Plan
from reconciler.engine.render import normalise

_ACTIONS = {
    "create": "create",
    "update": "update",
    "replace": "replace",
    "create-replacement": "replace",
    "delete-replaced": "replace",
    "delete": "delete",
}
_TOKEN = re.compile(r'\[(\d+)\]|\["((?:[^"\\]|\\.)*)"\]|([^.\[\]]+)')


def urn_name(urn: str) -> str:
    """The logical name at the end of a Pulumi URN (``urn:pulumi:stack::proj::type::name``)."""
    return urn.rsplit("::", 1)[-1]


def parse_property_path(path: str) -> list[str | int]:
    """Split a Pulumi property path into keys and indexes.

    ``spec.template.spec.containers[0].image`` → ``["spec", "template", "spec",
    "containers", 0, "image"]``; ``metadata.labels["app.kubernetes.io/name"]`` keeps the
    quoted key whole.
    """
    out: list[str | int] = []
    for index, quoted, plain in _TOKEN.findall(path):
        if index:
            out.append(int(index))
        elif quoted:
            out.append(quoted.replace('\\"', '"'))
        else:
            out.append(plain)
    return out


def _lookup(doc: Any, path: str) -> Any:
    node = doc
    for part in parse_property_path(path):
        if isinstance(part, int) and isinstance(node, list) and 0 <= part < len(node):
            node = node[part]
        elif isinstance(part, str) and isinstance(node, dict) and part in node:
            node = node[part]
        else:
            return None
    return normalise(node)


def _display_path(path: str) -> str:
    """Pulumi's ``a["b.c"]`` as the offline plan's ``a.b.c`` (both read the same)."""
    out = ""
    for part in parse_property_path(path):
        out = f"{out}[{part}]" if isinstance(part, int) else (f"{out}.{part}" if out else part)
    return out


class PlanCollector:
    """An ``on_event`` callback that builds a :class:`Plan` from engine events.

    Args:
        deployment: ``<name>-<env>`` (the stack name).
        platform: the target platform, copied into the plan.
        image: the image dict (``ImageRef.to_dict()``), copied into the plan.
        progress: called with one line per step (``+ create aws:sagemaker/model:Model x``),
            failure and error diagnostic; ``None`` for silence.

    Attributes:
        failures: ``"<type> <name>: <status>"`` per ``ResOpFailedEvent``.
        errors: messages of ``error`` diagnostics.
        summary: the ``SummaryEvent``'s resource changes (op → count), when seen.
    """

    def __init__(
        self,
        deployment: str,
        platform: str = "",
        image: dict | None = None,
        progress: Callable[[str], None] | None = None,
    ) -> None:
        self.deployment = deployment
        self.platform = platform
        self.image = dict(image or {})
        self.progress = progress
        self.changes: dict[tuple[str, str], Change] = {}
        self.unchanged = 0
        self.failures: list[str] = []
        self.errors: list[str] = []
        self.summary: dict[str, int] = {}

    def __call__(self, event) -> None:
        """Consume one ``EngineEvent``."""
        if event.resource_pre_event is not None:
            self._step(event.resource_pre_event.metadata)
        elif event.res_op_failed_event is not None:
            meta = event.res_op_failed_event.metadata
            line = f"{meta.type} {urn_name(meta.urn)}: {meta.op.value} failed"
            self.failures.append(line)
            self._say(f"! {line}")
        elif event.diagnostic_event is not None:
            diag = event.diagnostic_event
            if diag.severity == "error":
                message = diag.message.strip()
                self.errors.append(message)
                self._say(f"error: {message}")
        elif event.summary_event is not None:
            changes = event.summary_event.resource_changes or {}
            self.summary = {getattr(k, "value", str(k)): int(v) for k, v in changes.items()}

    def _say(self, line: str) -> None:
        if self.progress is not None:
            self.progress(line)

    def _step(self, meta) -> None:
        if meta.type == "pulumi:pulumi:Stack" or meta.type.startswith("pulumi:providers:"):
            return
        op = getattr(meta.op, "value", str(meta.op))
        name = urn_name(meta.urn)
        if op == "same":
            self.unchanged += 1
            return
        action = _ACTIONS.get(op)
        if action is None:
            return
        key = (meta.type, name)
        old_inputs = (meta.old.inputs if meta.old else None) or {}
        new_inputs = (meta.new.inputs if meta.new else None) or {}
        fields: list[tuple[str, Any, Any]] = []
        replace: list[str] = []
        if action in ("update", "replace"):
            detailed = meta.detailed_diff or {}
            paths = list(detailed) or list(meta.diffs or [])
            for path in paths:
                shown = _display_path(path)
                fields.append((shown, _lookup(old_inputs, path), _lookup(new_inputs, path)))
                kind = getattr(detailed.get(path), "diff_kind", None)
                if kind is not None and getattr(kind, "value", str(kind)).endswith("-replace"):
                    replace.append(shown)
            for path in meta.keys or []:
                shown = _display_path(path)
                if shown not in replace:
                    replace.append(shown)
        if key in self.changes:  # the second step of a replacement
            return
        self.changes[key] = Change(action, meta.type, name, fields, replace)
        symbol = {"create": "+", "update": "~", "replace": "±", "delete": "-"}[action]
        self._say(f"{symbol} {action} {meta.type} {name}")

    def plan(self) -> Plan:
        """The plan seen so far, changes sorted by (type, name); marked not offline."""
        changes = [self.changes[k] for k in sorted(self.changes)]
        return Plan(self.deployment, changes, self.platform, False, self.image, self.unchanged)

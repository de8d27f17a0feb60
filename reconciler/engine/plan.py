"""Plans: what an apply would create, update, replace or delete, per deployment.

:func:`diff` compares the last applied DesiredState (the ledger's ``desiredState``) with
a freshly rendered one, resource by resource (matched on type and name), and input by
input. An update lists each changed input path with its old and new value; a change to
an input that the provider cannot update in place (a SageMaker model's image, a
Deployment's selector) makes the resource a ``replace``, as Pulumi's preview would.

The same :class:`Plan` structure comes from the Pulumi engine's events during a real
preview (``reconciler.engine.events``), so PR comments look the same online and offline.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from reconciler.engine.render import DesiredState

ACTIONS = ("create", "update", "replace", "delete")
SYMBOLS = {"create": "+", "update": "~", "replace": "±", "delete": "-"}
NO_CHANGES = "no changes"
MAX_VALUE_CHARS = 80
_ALL = "*"
_NEVER_REPLACE = ("tags", "tagsAll", "metadata.labels", "metadata.annotations")

# Inputs whose change forces replacement, per resource type: from the providers'
# schemas ("forces new resource" in the pulumi-aws docs; immutable fields in the
# Kubernetes API reference, which pulumi-kubernetes replaces). "*" = every input except
# tags and labels. Paths are prefixes in the provider's wire names.
REPLACE_ON: dict[str, tuple[str, ...]] = {
    "kubernetes:apps/v1:Deployment": ("spec.selector",),
    "kubernetes:batch/v1:Job": ("spec.template", "spec.selector"),
    "kubernetes:core/v1:Service": ("spec.clusterIP", "spec.clusterIPs"),
    "aws:sagemaker/model:Model": (_ALL,),
    "aws:sagemaker/endpointConfiguration:EndpointConfiguration": (_ALL,),
    "aws:sagemaker/endpoint:Endpoint": ("name",),
    "aws:iam/role:Role": ("name", "namePrefix", "path"),
    "aws:iam/rolePolicy:RolePolicy": ("name", "namePrefix", "role"),
    "aws:kms/key:Key": ("customerMasterKeySpec", "keyUsage", "multiRegion"),
    "aws:kms/alias:Alias": ("name",),
    "aws:cloudwatch/metricAlarm:MetricAlarm": ("name",),
    "aws:appautoscaling/target:Target": ("resourceId", "scalableDimension", "serviceNamespace"),
    "aws:appautoscaling/policy:Policy": (
        "name",
        "resourceId",
        "scalableDimension",
        "serviceNamespace",
    ),
    "aws:scheduler/schedule:Schedule": ("name", "namePrefix", "groupName"),
    # The local engine restarts the server for another Bento or bind address.
    "modelops:local:BentoServer": ("bento_tag", "host"),
}
# Every Kubernetes object is replaced when its name or namespace changes.
_K8S_IDENTITY = ("metadata.name", "metadata.namespace")


@dataclass
class Change:
    """One resource in a plan.

    Attributes:
        action: ``create``, ``update``, ``replace`` or ``delete``.
        type: Pulumi type token.
        name: Pulumi logical name.
        fields: ``(path, old, new)`` per changed input (updates and replaces; ``old`` is
            ``None`` for an added input, ``new`` ``None`` for a removed one).
        replace_paths: the changed paths that force the replacement.
    """

    action: str
    type: str
    name: str
    fields: list[tuple[str, Any, Any]] = field(default_factory=list)
    replace_paths: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        """``{"action", "type", "name", "fields": [{"path", "old", "new"}], "replace_paths"}``."""
        return {
            "action": self.action,
            "type": self.type,
            "name": self.name,
            "fields": [{"path": p, "old": o, "new": n} for p, o, n in self.fields],
            "replace_paths": list(self.replace_paths),
        }

    @classmethod
    def from_dict(cls, data: dict) -> Change:
        """Inverse of :meth:`to_dict`."""
        return cls(
            data["action"],
            data["type"],
            data["name"],
            [(f["path"], f.get("old"), f.get("new")) for f in data.get("fields", [])],
            list(data.get("replace_paths", [])),
        )


@dataclass
class Plan:
    """The changes of one deployment × environment.

    Attributes:
        deployment: ``<name>-<env>``.
        changes: resources that change, sorted by (type, name); unchanged ones are left out.
        platform: target platform of the new (or, for deletes, the old) state.
        offline: True when computed by the offline renderer, False from a Pulumi preview.
        image: the new state's image (``ref``, ``built``...), ``{}`` for deletes.
        unchanged: how many resources stay as they are.
        schedules: the next run times (ISO 8601, UTC) of each schedule the new state
            runs (``monitor``, ``retrain``, ``batch``), for the reviewer to see when a
            cron expression fires; ``{}`` when none (or for deletes).
        notes: what the reviewer should know about how the new state is carried out
            (the stack's ``rollout_note`` output: e.g. Argo Rollouts weighting traffic
            by replica counts without a service mesh).
    """

    deployment: str
    changes: list[Change] = field(default_factory=list)
    platform: str = ""
    offline: bool = True
    image: dict = field(default_factory=dict)
    unchanged: int = 0
    schedules: dict[str, list[str]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        """Number of changes per action (every action present, possibly 0)."""
        out = dict.fromkeys(ACTIONS, 0)
        for c in self.changes:
            out[c.action] = out.get(c.action, 0) + 1
        return out

    def summary(self) -> str:
        """``3 to create, 1 to update, 0 to replace, 0 to delete``, or ``no changes``."""
        if self.empty:
            return NO_CHANGES
        counts = self.counts()
        return ", ".join(f"{counts[a]} to {a}" for a in ACTIONS)

    @property
    def empty(self) -> bool:
        """True when nothing would change."""
        return not self.changes

    def to_dict(self) -> dict:
        """JSON-ready mapping: deployment, platform, offline, image, summary, counts, changes."""
        return {
            "deployment": self.deployment,
            "platform": self.platform,
            "offline": self.offline,
            "image": dict(self.image),
            "summary": self.summary(),
            "counts": self.counts(),
            "unchanged": self.unchanged,
            "changes": [c.to_dict() for c in self.changes],
            "schedules": {k: list(v) for k, v in self.schedules.items()},
            "notes": list(self.notes),
        }

    @classmethod
    def from_dict(cls, data: dict) -> Plan:
        """Inverse of :meth:`to_dict`."""
        return cls(
            data["deployment"],
            [Change.from_dict(c) for c in data.get("changes", [])],
            data.get("platform", ""),
            bool(data.get("offline", True)),
            dict(data.get("image") or {}),
            int(data.get("unchanged", 0)),
            {str(k): list(v) for k, v in (data.get("schedules") or {}).items()},
            [str(n) for n in data.get("notes") or []],
        )


def _join(prefix: str, key: Any) -> str:
    if isinstance(key, int):
        return f"{prefix}[{key}]"
    return f"{prefix}.{key}" if prefix else str(key)


def field_diff(old: Any, new: Any, prefix: str = "") -> list[tuple[str, Any, Any]]:
    """Leaf-level differences between two input values, as ``(path, old, new)``.

    Mappings are compared key by key; lists element by element (index paths such as
    ``spec.template.spec.containers[0].image``), an added or removed element being a
    difference of its own; anything else by equality.
    """
    if old == new:  # the common case, compared in C: no walk needed
        return []
    if isinstance(old, dict) and isinstance(new, dict):
        out = []
        for key in sorted(set(old) | set(new), key=str):
            if key not in old:
                out.append((_join(prefix, key), None, new[key]))
            elif key not in new:
                out.append((_join(prefix, key), old[key], None))
            else:
                out.extend(field_diff(old[key], new[key], _join(prefix, key)))
        return out
    if isinstance(old, list) and isinstance(new, list):
        out = []
        for i in range(max(len(old), len(new))):
            if i >= len(old):
                out.append((_join(prefix, i), None, new[i]))
            elif i >= len(new):
                out.append((_join(prefix, i), old[i], None))
            else:
                out.extend(field_diff(old[i], new[i], _join(prefix, i)))
        return out
    if old == new or (_is_quantity_path(prefix) and same_quantity(old, new)):
        return []
    return [(prefix, old, new)]


# Kubernetes resource quantities (k8s.io/apimachinery/pkg/api/resource: Quantity):
# a decimal number with a binary (Ki..Ei), decimal SI (n, u, m, k, M..E) or exponent
# suffix. Equal amounts written differently (1.5Gi and 1536Mi, 0.25 and 250m) are the
# same quantity: the API server stores one canonical form, so it is never an update.
_QUANTITY = re.compile(
    r"^([+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+))(Ki|Mi|Gi|Ti|Pi|Ei|n|u|m|k|M|G|T|P|E|[eE][+-]?[0-9]+)?$"
)
_QUANTITY_SCALE = {
    "Ki": Decimal(2) ** 10,
    "Mi": Decimal(2) ** 20,
    "Gi": Decimal(2) ** 30,
    "Ti": Decimal(2) ** 40,
    "Pi": Decimal(2) ** 50,
    "Ei": Decimal(2) ** 60,
    "n": Decimal("1e-9"),
    "u": Decimal("1e-6"),
    "m": Decimal("1e-3"),
    "": Decimal(1),
    "k": Decimal("1e3"),
    "M": Decimal("1e6"),
    "G": Decimal("1e9"),
    "T": Decimal("1e12"),
    "P": Decimal("1e15"),
    "E": Decimal("1e18"),
}
# the input keys that hold quantities: container resources (requests/limits), volume
# sizes, and any key under a ``resources`` mapping (extended resources: nvidia.com/gpu)
_QUANTITY_KEYS = ("cpu", "memory", "ephemeral-storage", "storage", "sizeLimit")


def _is_quantity_path(path: str) -> bool:
    last = re.split(r"[.\[]", path)[-1]
    return last in _QUANTITY_KEYS or ".requests." in path or ".limits." in path


def parse_quantity(value: Any) -> Decimal | None:
    """A Kubernetes quantity (``"1.5Gi"``, ``"250m"``, ``2``, ``0.25``) as an exact
    :class:`~decimal.Decimal` in base units (cores, bytes), or ``None`` when it is not one."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return Decimal(value)
    if isinstance(value, float):
        return Decimal(repr(value)) if math.isfinite(value) else None
    if not isinstance(value, str):
        return None
    match = _QUANTITY.match(value.strip())
    if not match:
        return None
    number, suffix = match.group(1), match.group(2) or ""
    if suffix[:1] in ("e", "E") and len(suffix) > 1:
        return Decimal(number) * (Decimal(10) ** int(suffix[1:]))
    return Decimal(number) * _QUANTITY_SCALE[suffix]


def same_quantity(old: Any, new: Any) -> bool:
    """True when both are quantities of the same amount (``1536Mi`` == ``1.5Gi``)."""
    a, b = parse_quantity(old), parse_quantity(new)
    return a is not None and b is not None and a == b


def _path_under(path: str, prefix: str) -> bool:
    return path == prefix or path.startswith(prefix + ".") or path.startswith(prefix + "[")


def replace_paths(type_: str, paths: list[str]) -> list[str]:
    """The paths among ``paths`` that force replacement of a resource of ``type_``."""
    rules = REPLACE_ON.get(type_, ())
    if type_.startswith("kubernetes:"):
        rules = (*rules, *_K8S_IDENTITY)
    out = []
    for path in paths:
        if any(_path_under(path, keep) for keep in _NEVER_REPLACE):
            continue
        if any(rule == _ALL or _path_under(path, rule) for rule in rules):
            out.append(path)
    return out


def _index(state: dict | None) -> dict[tuple[str, str], dict]:
    if not state:
        return {}
    return {(r["type"], r["name"]): r.get("inputs") or {} for r in state.get("resources", [])}


def diff(old: dict | None, new, deployment_key: str) -> Plan:
    """Plan the move from ``old`` to ``new``.

    Args:
        old: the last applied DesiredState as a dict (the ledger's ``desiredState``), or
            ``None`` / ``{}`` when nothing was applied.
        new: the rendered :class:`~reconciler.engine.render.DesiredState`, or ``None`` to
            delete everything in ``old``.
        deployment_key: ``<name>-<env>``.

    Returns:
        A :class:`Plan` with one :class:`Change` per resource that is created, updated,
        replaced or deleted, sorted by (type, name).

    Raises:
        ModelopsError: (exit 2) ``old`` is not a DesiredState (via ``from_dict``).
    """
    if old:
        DesiredState.from_dict(old)  # shape and version check
    before = _index(old)
    # Read-only view of the new state's inputs: nothing below mutates them.
    after = {(r.type, r.name): r.inputs for r in new.resources} if new is not None else {}
    changes: list[Change] = []
    for key in sorted(set(before) | set(after)):
        type_, name = key
        if key not in before:
            changes.append(Change("create", type_, name))
        elif key not in after:
            changes.append(Change("delete", type_, name))
        else:
            fields = field_diff(before[key], after[key])
            if not fields:
                continue
            forcing = replace_paths(type_, [p for p, _, _ in fields])
            action = "replace" if forcing else "update"
            changes.append(Change(action, type_, name, fields, forcing))
    _propagate_replacements(changes, after)
    unchanged = len([k for k in after if k in before]) - len(
        [c for c in changes if c.action in ("update", "replace")]
    )
    if new is not None:
        platform, image = new.platform, dict(new.image)
    else:
        platform, image = (old or {}).get("platform", ""), {}
    changes.sort(key=lambda c: (c.type, c.name))
    note = (new.outputs or {}).get("rollout_note") if new is not None else None
    notes = [note] if isinstance(note, str) and note else []
    return Plan(deployment_key, changes, platform, True, image, unchanged, notes=notes)


def unchanged(new, deployment_key: str) -> Plan:
    """The plan of a rendered state against itself: no change.

    What :func:`diff` returns for ``diff(new.to_dict(), new, deployment_key)``, without
    copying the state and comparing every resource with itself (``plan --all`` over an
    unchanged spec: about 1 ms per deployment).

    Args:
        new: a rendered :class:`~reconciler.engine.render.DesiredState`.
        deployment_key: ``<name>-<env>``.
    """
    note = (new.outputs or {}).get("rollout_note")
    return Plan(
        deployment_key,
        [],
        new.platform,
        True,
        dict(new.image),
        len({(r.type, r.name) for r in new.resources}),
        notes=[note] if isinstance(note, str) and note else [],
    )


AFTER_REPLACEMENT = "[known after replacement]"


def _marker_paths(value: Any, prefix: str, out: list[tuple[str, str]], prefix_path: str = ""):
    """Collect ``(path, value)`` of strings in ``value`` that start with ``prefix``."""
    if isinstance(value, dict):
        for k, v in value.items():
            _marker_paths(v, prefix, out, _join(prefix_path, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            _marker_paths(v, prefix, out, _join(prefix_path, i))
    elif isinstance(value, str) and value.startswith(prefix):
        out.append((prefix_path, value))


def _propagate_replacements(changes: list[Change], after: dict) -> None:
    """Follow references to replaced resources, as Pulumi's preview does.

    A replaced resource gets new computed attributes (a SageMaker model's generated
    name), so every input that holds its ``[unknown <type> <name>.<attr>]`` marker
    changes to a value known only after the replacement; if that input forces
    replacement in turn (an EndpointConfiguration's model name), the change cascades.
    """
    by_key = {(c.type, c.name): c for c in changes}
    pending = [(c.type, c.name) for c in changes if c.action == "replace"]
    done: set[tuple[str, str]] = set()
    while pending:
        replaced = pending.pop()
        if replaced in done:
            continue
        done.add(replaced)
        prefix = f"[unknown {replaced[0]} {replaced[1]}."
        for key, inputs in after.items():
            change = by_key.get(key)
            if change is not None and change.action in ("create", "delete"):
                continue
            found: list[tuple[str, str]] = []
            _marker_paths(inputs, prefix, found)
            if not found:
                continue
            if change is None:
                change = Change("update", key[0], key[1])
                changes.append(change)
                by_key[key] = change
            known = {p for p, _, _ in change.fields}
            for path, marker in found:
                if path not in known:
                    change.fields.append((path, marker, AFTER_REPLACEMENT))
            change.replace_paths = replace_paths(key[0], [p for p, _, _ in change.fields])
            if change.replace_paths and change.action != "replace":
                change.action = "replace"
                pending.append(key)


def _show(value: Any, limit: int = MAX_VALUE_CHARS) -> str:
    if value is None:
        return "(none)"
    text = json.dumps(value, sort_keys=True) if not isinstance(value, str) else json.dumps(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _schedule_lines(plan: Plan) -> list[str]:
    return [
        f"  next runs ({kind}, UTC): {', '.join(t.replace('T', ' ')[:16] for t in times)}"
        for kind, times in sorted(plan.schedules.items())
    ]


def render_plan_text(plans: list[Plan]) -> str:
    """Plans as terminal text: per deployment, one line per change and its fields.

    ``+`` create, ``~`` update, ``±`` replace (with the inputs that force it), ``-`` delete,
    then the summary line; a plan without changes prints ``<deployment>: no changes``.
    """
    lines = []
    for plan in plans:
        if plan.empty:
            lines.append(f"{plan.deployment}: {NO_CHANGES}")
            lines += _schedule_lines(plan)
            continue
        where = f" ({plan.platform})" if plan.platform else ""
        lines.append(f"{plan.deployment}{where}:")
        if plan.image and not plan.image.get("built", True):
            lines.append(
                f"  note: image {plan.image.get('ref', '')} is not built (placeholder tag)"
            )
        lines += [f"  note: {note}" for note in plan.notes]
        for c in plan.changes:
            lines.append(f"  {SYMBOLS[c.action]} {c.action:<7} {c.type} {c.name}")
            for path, old, new in c.fields:
                mark = "  (forces replacement)" if path in c.replace_paths else ""
                lines.append(f"      {path}: {_show(old)} → {_show(new)}{mark}")
        lines.append(f"  {plan.summary()}")
        lines += _schedule_lines(plan)
    if len(plans) > 1:
        lines.append(f"total: {_total(plans)}")
    return "\n".join(lines) + "\n" if lines else f"{NO_CHANGES}\n"


def _total(plans: list[Plan]) -> str:
    counts = dict.fromkeys(ACTIONS, 0)
    for plan in plans:
        for action, n in plan.counts().items():
            counts[action] += n
    if not any(counts.values()):
        return NO_CHANGES
    return ", ".join(f"{counts[a]} to {a}" for a in ACTIONS)


def _md(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def render_plan_markdown(plans: list[Plan]) -> str:
    """Plans as GitHub-flavoured Markdown for a pull-request comment.

    One section per deployment with its summary and a table (action, type, name,
    changed inputs as ``path: old → new``), and a total line.
    """
    out = ["## modelops plan", "", f"**Total:** {_total(plans)}", ""]
    for plan in plans:
        where = f" ({plan.platform})" if plan.platform else ""
        out.append(f"### `{plan.deployment}`{where}: {plan.summary()}")
        out.append("")
        if plan.image and not plan.image.get("built", True):
            out.append(f"> image `{plan.image.get('ref', '')}` is not built (placeholder tag)")
            out.append("")
        if plan.empty:
            continue
        out.append("| Action | Type | Name | Changes |")
        out.append("|---|---|---|---|")
        for c in plan.changes:
            fields = "<br>".join(
                f"`{_md(p)}`: `{_md(_show(o))}` → `{_md(_show(n))}`"
                + (" (forces replacement)" if p in c.replace_paths else "")
                for p, o, n in c.fields
            )
            out.append(
                f"| {SYMBOLS[c.action]} {c.action} | `{c.type}` | `{_md(c.name)}` | {fields} |"
            )
        out.append("")
    return "\n".join(out).rstrip() + "\n"


def render_plan_json(plans: list[Plan]) -> str:
    """Plans as JSON: ``{"summary": <total>, "plans": [Plan.to_dict(), ...]}``."""
    return (
        json.dumps({"summary": _total(plans), "plans": [p.to_dict() for p in plans]}, indent=2)
        + "\n"
    )

"""Field-level differences between two resolved specs, and which fields the build covers.

:func:`field_changes` lists ``(dotted path, old, new)``; :func:`touches_build` says
whether a field is one the build digest covers (so a new Bento is needed).
"""

from __future__ import annotations

#: Resolved-spec fields that the build digest covers (``reconciler.build.bento``
#: ``build_inputs``: the deployment name, ``spec.model``, ``spec.serving`` without
#: ``smoke`` and ``slo``, the capture settings, ``spec.data.sensitive_fields``). Used only
#: when the build inputs themselves cannot be computed (a missing model file, say).
BUILD_SPEC_FIELDS: tuple[str, ...] = (
    "metadata.name",
    "spec.model",
    "spec.serving",
    "spec.monitoring.enabled",
    "spec.monitoring.capture",
    "spec.data.sensitive_fields",
)
#: ``spec.serving`` fields that check the service but do not change it (not built in).
BUILD_EXCLUDED_FIELDS: tuple[str, ...] = ("spec.serving.smoke", "spec.serving.slo")


def _under(path: str, prefix: str) -> bool:
    return path == prefix or path.startswith(prefix + ".")


def touches_build(path: str) -> bool:
    """Whether a dotted resolved-spec ``path`` is one the build digest covers.

    From :data:`BUILD_SPEC_FIELDS` minus :data:`BUILD_EXCLUDED_FIELDS` (which mirror
    ``reconciler.build.bento.build_inputs``).
    """
    if any(_under(path, p) for p in BUILD_EXCLUDED_FIELDS):
        return False
    return any(_under(path, p) for p in BUILD_SPEC_FIELDS)


def _flatten(value, prefix: str, out: dict) -> None:
    if isinstance(value, dict) and value:
        for key, item in value.items():
            _flatten(item, f"{prefix}.{key}" if prefix else str(key), out)
    else:
        out[prefix] = value


def field_changes(old: dict | None, new: dict | None) -> list[tuple[str, object, object]]:
    """The fields that differ between two documents, as ``(dotted path, old, new)``.

    Mappings are walked key by key; a list of scalars is one value (overlays replace
    lists whole, so a list is what a spec author changes); a list of mappings is walked
    item by item (``spec.secrets.0.from``). A field present on one side only has
    ``None`` on the other. A value whose type changed (``1`` → ``"1"``) is a change.
    Sorted by path.

    Args:
        old: the resolved document at the base (``Deployment.data``), or ``None``.
        new: the resolved document at the head, or ``None``.
    """
    a: dict = {}
    b: dict = {}
    _flatten(_walk_lists(old or {}), "", a)
    _flatten(_walk_lists(new or {}), "", b)

    def grown(path: str, side: dict) -> bool:  # {} on one side, keys below it on the other
        return path not in side and any(k.startswith(path + ".") for k in side)

    out = []
    for path in sorted(set(a) | set(b)):
        va, vb = a.get(path), b.get(path)
        if (va == {} and grown(path, b)) or (vb == {} and grown(path, a)):
            continue
        if va != vb or type(va) is not type(vb):
            out.append((path, va, vb))
    return out


def _walk_lists(value):
    """Lists of mappings become ``{"0": ..., "1": ...}`` so they are walked item by item."""
    if isinstance(value, dict):
        return {k: _walk_lists(v) for k, v in value.items()}
    if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
        return {str(i): _walk_lists(v) for i, v in enumerate(value)}
    return value

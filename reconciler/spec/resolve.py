"""Environment overlays: base spec + ``spec.environments.<env>`` → :class:`Deployment`."""

from __future__ import annotations

import copy

from reconciler.core.config import Config
from reconciler.core.diagnostics import Diagnostic
from reconciler.spec.model import Deployment, Spec
from reconciler.spec.validate import schema_diagnostics, semantic_diagnostics


def deep_merge(base, overlay):
    """Merge ``overlay`` over ``base``: mappings merge key by key, anything else replaces.

    Lists replace (they are not concatenated), as in Kustomize's strategic merge for
    plain lists and Helm's values. Neither argument is modified.
    """
    if isinstance(base, dict) and isinstance(overlay, dict):
        merged = {k: copy.deepcopy(v) for k, v in base.items()}
        for key, value in overlay.items():
            merged[key] = deep_merge(base[key], value) if key in base else copy.deepcopy(value)
        return merged
    return copy.deepcopy(overlay)


def resolve(spec: Spec, env: str, config: Config) -> tuple[Deployment | None, list[Diagnostic]]:
    """Resolve ``spec`` for ``env`` and validate the result.

    Returns:
        ``(deployment, diagnostics)``; ``deployment`` is ``None`` when the spec has no
        overlay for ``env``. The merged document is validated again against the schema
        (positions point into the overlay for overlaid values) and by the semantic checks.
    """
    envs = spec.data.get("spec", {}).get("environments") or {}
    if env not in envs:
        return None, []
    overlay = envs.get(env) or {}
    body = {k: v for k, v in spec.data.get("spec", {}).items() if k != "environments"}
    doc = {k: copy.deepcopy(v) for k, v in spec.data.items() if k != "spec"}
    doc["spec"] = deep_merge(body, overlay)
    dep = Deployment(spec=spec, env=env, data=doc)
    check = copy.deepcopy(doc)
    check["spec"]["environments"] = {env: None}
    diags = [
        Diagnostic(d.position, d.field, f"{d.message} [env {env}]", d.severity, d.code)
        for d in schema_diagnostics(check, dep.locate)
    ]
    if not diags:
        diags.extend(semantic_diagnostics(dep, config))
    return dep, diags

"""A strict offline check of custom resources against their vendored CRD schemas.

The schemas in ``tests/support/crds/`` are the OpenAPI v3 schemas of the CRDs as the npm
packages of kubernetes-models-ts ship them (``scripts/fetch_crds.py`` fetches them again;
``SOURCES.json`` names package, version and digests). An API server prunes fields a
structural schema does not declare, silently; this check rejects them instead, as
kubernetes-validate's strict mode does for the built-in kinds:

* every object schema that lists ``properties`` (and neither ``additionalProperties`` nor
  ``x-kubernetes-preserve-unknown-fields``) gets ``additionalProperties: false``;
* ``nullable: true`` becomes a ``null`` alternative of the node's type (JSON Schema has no
  ``nullable``);
* ``metadata`` is checked against the strict ObjectMeta of Kubernetes 1.30 bundled with
  kubernetes-validate.

:func:`crd_errors` returns every finding (``"<path>: <message>"``), ``[]`` when valid.
"""

from __future__ import annotations

import copy
import functools
import json
from pathlib import Path

import jsonschema
import kubernetes_validate
import kubernetes_validate.utils as kv_utils
from referencing import Registry, Resource

CRD_DIR = Path(__file__).parent / "crds"
K8S_VERSION = "1.30.0"
_OBJECT_META = "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"
_DEFINITIONS_URI = "https://kubernetes.io/api/_definitions.json"


def _strict(node):
    if isinstance(node, list):
        return [_strict(n) for n in node]
    if not isinstance(node, dict):
        return node
    out = {k: _strict(v) for k, v in node.items()}
    if out.get("$ref") == f"{_OBJECT_META}#":
        out["$ref"] = f"{_DEFINITIONS_URI}#/$defs/{_OBJECT_META}"
    if out.pop("nullable", False) and isinstance(out.get("type"), str):
        out["type"] = [out["type"], "null"]
    if (
        "properties" in out
        and "additionalProperties" not in out
        and not out.get("x-kubernetes-preserve-unknown-fields")
    ):
        out["additionalProperties"] = False
    return out


@functools.cache
def _registry() -> Registry:
    defs = kv_utils.schema_contents(
        f"kubernetes-json-schema/v{K8S_VERSION}-local-strict/_definitions.json", K8S_VERSION
    )
    return Resource.from_contents(defs) @ Registry()


@functools.cache
def crd_schema(api_version: str, kind: str) -> dict:
    """The strict schema of ``kind`` in ``api_version`` (``monitoring.coreos.com/v1``).

    Raises:
        FileNotFoundError: no vendored schema for that kind.
    """
    path = CRD_DIR / f"{api_version.replace('/', '_')}_{kind}.json"
    return _strict(json.loads(path.read_text(encoding="utf-8")))


def crd_errors(manifest: dict) -> list[str]:
    """Every schema finding of ``manifest`` (a custom resource), ``[]`` when it is valid."""
    schema = copy.deepcopy(crd_schema(manifest["apiVersion"], manifest["kind"]))
    validator = jsonschema.Draft202012Validator(schema, registry=_registry())
    return sorted(
        f"{'.'.join(str(p) for p in e.absolute_path) or '<root>'}: {e.message}"
        for e in validator.iter_errors(manifest)
    )


def vendored_kinds() -> set[tuple[str, str]]:
    """``{(apiVersion, kind)}`` of every vendored schema."""
    out = set()
    for path in CRD_DIR.glob("*.json"):
        if path.name == "SOURCES.json":
            continue
        group_version, _, kind = path.stem.rpartition("_")
        out.add((group_version.replace("_", "/"), kind))
    return out


def assert_valid_manifest(manifest: dict) -> None:
    """Check one rendered manifest, strictly and offline: a built-in kind against the
    Kubernetes 1.30 schemas (kubernetes-validate), a custom resource against its vendored
    CRD schema (:func:`crd_errors`).

    Raises:
        AssertionError: the findings; or a custom resource whose schema is not vendored
            (it would otherwise go unchecked).
    """
    try:
        kubernetes_validate.validate(manifest, K8S_VERSION, strict=True)
        return
    except kubernetes_validate.SchemaNotFoundError:
        pass
    key = (manifest["apiVersion"], manifest["kind"])
    assert key in vendored_kinds(), f"no CRD schema vendored for {key}: scripts/fetch_crds.py"
    errors = crd_errors(manifest)
    assert not errors, f"{manifest['kind']}/{manifest['metadata']['name']}: {errors}"

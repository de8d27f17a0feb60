"""Digests the flow computes before building: a deployment's inputs, its model file.

The inputs digest decides stalled detection and rollback holds (``docs/state.md``).
"""

from __future__ import annotations

from pathlib import Path

from reconciler.build.fetch import FetchError, is_remote, resolve_model
from reconciler.core.config import Config
from reconciler.core.digests import file_sha256, json_sha256
from reconciler.spec.files import spec_dependencies
from reconciler.spec.model import Deployment


def file_digest(path: Path | None) -> str:
    """SHA-256 hex of a file's bytes, or ``"missing"`` when it cannot be read."""
    if path is None:
        return "missing"
    try:
        return file_sha256(path)
    except OSError:
        return "missing"


def inputs_digest(dep: Deployment, config: Config) -> str:
    """SHA-256 hex of everything in the repository that determines one deployment.

    Covers the resolved document (overlay merged), the environment, and the bytes of
    each repository file it names (model file, smoke request files), computed before
    anything is built so that a failed build still has a digest. Equal digest ⇒ the
    spec and its inputs did not change (used for stalled detection and rollback holds).
    """
    files = {}
    for rel in sorted(spec_dependencies({"spec": dep.data.get("spec", {})})):
        files[rel] = file_digest(config.repo_path(rel))
    doc = {"deployment": dep.data, "environment": dep.env, "files": files}
    if is_remote(dep.get("spec.model.uri")):
        doc["model"] = {k: v for k, v in remote_model(dep, config).items() if k != "error"}
    return json_sha256(doc)


def remote_model(dep: Deployment, config: Config) -> dict:
    """``{"resolved", "version", "sha256"}`` of a remote model (an MLflow alias resolved to
    its version now; the bytes fetched into the cache once), or ``{"resolved": "",
    "version": "", "sha256": "", "error": why}`` when it cannot be resolved."""
    try:
        source = resolve_model(dep, config)
    except FetchError as exc:
        return {"resolved": "", "version": "", "sha256": "", "error": exc.message}
    return {"resolved": source.resolved, "version": source.version, "sha256": source.sha256}


def model_info(dep: Deployment | None, config: Config | None) -> dict | None:
    """``{"framework", "uri", "sha256", "version"}`` of a deployment's model, or None.

    ``sha256`` is the spec's digest when it gives one, else the file's (repository
    paths), else ``""``. A remote model (``s3://``, ``models:/``) also has ``resolved``
    (``models:/<name>/<version>`` for an MLflow alias, resolved now) and ``sha256`` is
    that of the fetched bytes (:func:`remote_model`; ``""`` and ``resolved`` saying why
    when it cannot be resolved).
    """
    if dep is None:
        return None
    uri = dep.get("spec.model.uri", "")
    if config is not None and is_remote(uri):
        remote = remote_model(dep, config)
        return {
            "framework": dep.get("spec.model.framework", ""),
            "uri": uri,
            "sha256": remote["sha256"],
            "version": str(dep.get("spec.model.version", "") or ""),
            "resolved": remote["resolved"] or f"unresolved: {remote.get('error', '')}",
        }
    digest = dep.get("spec.model.sha256") or ""
    if not digest and config is not None and isinstance(uri, str):
        path = config.repo_path(uri)
        if path is not None and path.is_file():
            digest = file_digest(path)
    return {
        "framework": dep.get("spec.model.framework", ""),
        "uri": uri,
        "sha256": digest,
        "version": str(dep.get("spec.model.version", "") or ""),
    }

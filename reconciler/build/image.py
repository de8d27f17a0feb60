"""The container image of a Bento: its reference, and ``bentoml containerize`` + push.

Without a Docker engine the image is not built and the artifact says why.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import replace
from typing import Any

from reconciler.build.artifact import Artifact, BuildError
from reconciler.spec.model import Deployment


def image_reference(dep: Deployment, version: str) -> str:
    """``<spec.target.registry>/<name>:<version>``, or ``<name>:<version>`` without one."""
    registry = str(dep.get("spec.target.registry") or "").rstrip("/")
    return f"{registry}/{dep.name}:{version}" if registry else f"{dep.name}:{version}"


def docker_status() -> str:
    """'' when a Docker engine answers ``docker info``, else the reason it does not."""
    docker = shutil.which("docker")
    if docker is None:
        return "no docker command on PATH"
    try:
        proc = subprocess.run(
            [docker, "info", "--format", "{{.ServerVersion}}"],
            capture_output=True,
            text=True,
            timeout=15,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"docker info failed: {exc}"
    if proc.returncode != 0:
        return "no Docker engine answers (docker info: " + (proc.stderr.strip()[:200]) + ")"
    return ""


def containerize(bentoml: Any, artifact: Artifact) -> Artifact:
    reason = docker_status()
    if reason:
        return replace(artifact, image_built=False, image_note=f"image not built: {reason}")
    try:
        ok = bentoml.container.build(
            artifact.bento_tag, backend="docker", image_tag=(artifact.image,)
        )
    except Exception as exc:  # noqa: BLE001 - reported, not raised: the Bento itself is fine
        raise BuildError(f"bentoml containerize {artifact.bento_tag} failed: {exc}") from None
    if not ok:
        raise BuildError(f"bentoml containerize {artifact.bento_tag} failed")
    if "/" in artifact.image:
        proc = subprocess.run(
            [shutil.which("docker") or "docker", "push", artifact.image],
            capture_output=True,
            text=True,
        )
        if proc.returncode != 0:
            return replace(
                artifact,
                image_built=True,
                image_note=f"image built, push failed: {proc.stderr.strip()[:300]}",
            )
        return replace(artifact, image_built=True, image_note="image built and pushed")
    return replace(artifact, image_built=True, image_note="image built (no registry to push to)")

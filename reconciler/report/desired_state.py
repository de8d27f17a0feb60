"""The DesiredState writer of ``modelops render``: JSON or YAML, and manifests.

One DesiredState per deployment × environment and, for Kubernetes targets, one plain
manifest per resource, ready for ``kubectl apply -f`` or an existing Argo CD or Flux
setup.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from reconciler.core.yaml import dump_yaml

RENDER_FORMATS = ("json", "yaml")


def dump(data, fmt: str) -> str:
    """``data`` as YAML (keys in order, block style; strings that YAML 1.1 or 1.2 would
    read as numbers or booleans quoted: :func:`reconciler.core.yaml.dump_yaml`) or as
    JSON indented by 2."""
    if fmt == "yaml":
        return dump_yaml(data)
    return json.dumps(data, indent=2) + "\n"


def manifest_filename(index: int, manifest: dict) -> str:
    """``NN-<kind>-<name>.yaml`` (kind lower-case): files sort in apply order."""
    kind = str(manifest.get("kind", "resource")).lower()
    name = re.sub(r"[^a-z0-9.-]", "-", str(manifest.get("metadata", {}).get("name", "x")))
    return f"{index:02d}-{kind}-{name}.yaml"


def write_state(state, out: Path, fmt: str) -> list[Path]:
    """Write ``state`` under ``out/<name>-<env>/``; returns the files written.

    ``desired-state.json`` (or ``.yaml``), and for Kubernetes targets
    ``manifests/NN-<kind>-<name>.yaml``, one resource per file. Files of an earlier
    render in ``manifests/`` (and its ``kustomization.yaml``, which
    ``reconciler.report.delivery`` writes) are removed first, so a deleted resource does not
    linger.
    """
    target = out / state.deployment
    target.mkdir(parents=True, exist_ok=True)
    (target / "kustomization.yaml").unlink(missing_ok=True)
    written = []
    path = target / f"desired-state.{fmt}"
    path.write_text(dump(state.to_dict(), fmt), encoding="utf-8")
    written.append(path)
    manifests = state.manifests()
    mdir = target / "manifests"
    if mdir.is_dir():
        for old in mdir.glob("*.yaml"):
            old.unlink()
    if manifests:
        mdir.mkdir(exist_ok=True)
        for i, manifest in enumerate(manifests, start=1):
            mpath = mdir / manifest_filename(i, manifest)
            mpath.write_text(dump_yaml(manifest), encoding="utf-8")
            written.append(mpath)
    return written

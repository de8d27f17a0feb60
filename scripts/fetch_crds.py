"""Fetch the CRD schemas that the offline checks use into tests/support/crds/.

The schemas come from the npm packages of kubernetes-models-ts
(https://github.com/tommy351/kubernetes-models-ts), which generate one model per CRD
kind from the project's published CRD YAML. Their early versions carry each kind's
OpenAPI v3 schema as a literal (``const schema = {...};`` in ``<group>/<version>/<Kind>.js``);
later ones ship only compiled validators, hence the pinned versions in :data:`PACKAGES`.

Run from the repository root with ``npm`` on PATH (the npm registry is the only source)::

    python scripts/fetch_crds.py

It writes ``tests/support/crds/<group>_<version>_<Kind>.json`` (the schema as the package
ships it) and ``tests/support/crds/SOURCES.json`` (package, version, the tarball's shasum and
integrity as npm reports them, and the sha256 of every written file). A schema literal
that is not JSON, or a kind missing from the package, stops the script (exit 1) and
writes nothing.
"""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "tests" / "support" / "crds"
# package → (version, ["<group>/<version>/<Kind>", ...])
PACKAGES: dict[str, tuple[str, list[str]]] = {
    "@kubernetes-models/argo-cd": ("2.5.0", ["argoproj.io/v1alpha1/Application"]),
    # the last release with schema literals (2.0.0 ships compiled validators only)
    "@kubernetes-models/argo-rollouts": (
        "0.3.2",
        ["argoproj.io/v1alpha1/Rollout", "argoproj.io/v1alpha1/AnalysisTemplate"],
    ),
    "@kubernetes-models/flux-cd": (
        "2.2.1",
        [
            "kustomize.toolkit.fluxcd.io/v1/Kustomization",
            "source.toolkit.fluxcd.io/v1/GitRepository",
        ],
    ),
    "@kubernetes-models/prometheus-operator": (
        "1.6.3",
        ["monitoring.coreos.com/v1/PrometheusRule", "monitoring.coreos.com/v1/ServiceMonitor"],
    ),
}
_SCHEMA = re.compile(r"^const schema = (\{.*?^\});$", re.MULTILINE | re.DOTALL)


def file_name(kind_path: str) -> str:
    """``monitoring.coreos.com/v1/PrometheusRule`` →
    ``monitoring.coreos.com_v1_PrometheusRule.json``."""
    return kind_path.replace("/", "_") + ".json"


def schema_of(js_text: str, where: str) -> dict:
    """The schema literal of one generated model module.

    Raises:
        SystemExit: no literal, or one that is not JSON.
    """
    found = _SCHEMA.search(js_text)
    if not found:
        raise SystemExit(f"{where}: no `const schema = {{...}};` literal (a newer package layout?)")
    try:
        return json.loads(found.group(1))
    except json.JSONDecodeError as exc:
        raise SystemExit(f"{where}: the schema literal is not JSON: {exc}") from None


def fetch(package: str, version: str, kinds: list[str], work: Path) -> tuple[dict, dict]:
    """``npm pack`` one package into ``work``; returns ({file name: schema}, source record)."""
    proc = subprocess.run(
        ["npm", "pack", "--json", f"{package}@{version}"],
        cwd=work,
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        raise SystemExit(f"npm pack {package}@{version} failed:\n{proc.stderr}")
    (info,) = json.loads(proc.stdout)
    schemas = {}
    with tarfile.open(work / info["filename"]) as tar:
        for kind in kinds:
            member = f"package/{kind}.js"
            try:
                handle = tar.extractfile(member)
            except KeyError:
                raise SystemExit(f"{package}@{version} has no {member}") from None
            text = handle.read().decode("utf-8") if handle else ""
            schemas[file_name(kind)] = schema_of(text, f"{package}@{version}/{member}")
    source = {
        "package": package,
        "version": info["version"],
        "shasum": info["shasum"],
        "integrity": info["integrity"],
        "kinds": kinds,
    }
    return schemas, source


def main() -> int:
    schemas: dict[str, dict] = {}
    sources = []
    with tempfile.TemporaryDirectory() as tmp:
        for package, (version, kinds) in sorted(PACKAGES.items()):
            got, source = fetch(package, version, kinds, Path(tmp))
            schemas.update(got)
            sources.append(source)
    OUT.mkdir(parents=True, exist_ok=True)
    files = {}
    for name, schema in sorted(schemas.items()):
        text = json.dumps(schema, indent=1, sort_keys=True) + "\n"
        (OUT / name).write_text(text, encoding="utf-8")
        files[name] = hashlib.sha256(text.encode("utf-8")).hexdigest()
    record = {"packages": sources, "files": files}
    (OUT / "SOURCES.json").write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {len(files)} schemas to {OUT.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

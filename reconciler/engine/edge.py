"""The edge engine: ``target.platform: edge`` publishes the built bundle for devices.

Apply copies the bundle the edge build wrote (``Artifact.edge``: the ``.tar.gz`` and,
with ``spec.edge.layout: oci``, the OCI image layout) to
``<spec.edge.destination>/<name>/<env>/``, a repository directory or ``s3://`` (boto3;
``AWS_ENDPOINT_URL`` points it elsewhere), and then writes ``current.json`` there: the
pointer a device polls (bundle file, SHA-256, revision, device class). The pointer is
written last, so a device never sees a pointer to a bundle that is not there yet; a
failed copy leaves the previous pointer as it was. Equal bundle digest and a pointer that
already names it make a re-apply a no-op.

The engine returns values and writes no ledger (``reconciler.state.status`` records what
it returns); what a device needs to pull bundles: ``docs/edge.md``.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

from reconciler.build.artifact import Artifact
from reconciler.core.config import Config
from reconciler.engine.base import ApplyError, ApplyResult, LiveRecord
from reconciler.runtime.uris import parse_s3_uri
from reconciler.spec.model import Deployment
from reconciler.spec.paths import SpecPathError, check_path

POINTER = "current.json"


def _files(edge: dict) -> dict[str, Path]:
    """Relative name -> local file of everything a bundle publishes (pointer excluded)."""
    tarball = Path(edge["tarball"])
    files = {tarball.name: tarball}
    oci = edge.get("oci_dir")
    if oci:
        root = Path(oci)
        for path in sorted(root.rglob("*")):
            if path.is_file():
                files[f"{root.name}/{path.relative_to(root).as_posix()}"] = path
    return files


class _Store:
    """A destination: a local directory or an S3 prefix; keys are relative POSIX names."""

    def __init__(self, location: str, config: Config) -> None:
        self.location = location.rstrip("/")
        self.s3 = None
        self.client = None
        self.folder: Path | None = None
        if location.startswith("s3://"):
            self.s3 = parse_s3_uri(location)
        else:
            try:
                checked = check_path(location, config.root, "spec.edge.destination", kind="dir")
            except SpecPathError as exc:
                raise ApplyError(exc.message) from None
            self.folder = checked.local

    def _client(self):
        if self.client is None:
            import boto3  # heavy: only for an s3:// destination

            self.client = boto3.client("s3")
        return self.client

    def _key(self, name: str) -> str:
        return f"{self.s3.key}/{name}" if self.s3.key else name

    def url(self, name: str) -> str:
        return f"{self.location}/{name}"

    def read(self, name: str) -> bytes | None:
        if self.s3 is not None:
            try:
                body = self._client().get_object(Bucket=self.s3.bucket, Key=self._key(name))
            except Exception:  # noqa: BLE001 - absent or unreadable: treated as not there
                return None
            return body["Body"].read()
        path = self.folder / name
        return path.read_bytes() if path.is_file() else None

    def write(self, name: str, data: bytes) -> None:
        if self.s3 is not None:
            self._client().put_object(Bucket=self.s3.bucket, Key=self._key(name), Body=data)
            return
        target = self.folder / name
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)

    def delete(self, name: str) -> bool:
        if self.s3 is not None:
            self._client().delete_object(Bucket=self.s3.bucket, Key=self._key(name))
            return True
        path = self.folder / name
        if path.is_file():
            path.unlink()
            return True
        return False


class EdgeEngine:
    """Publishes edge bundles (an :class:`~reconciler.engine.base.Engine`).

    Args:
        config: repository configuration (destinations are relative to its root).
    """

    def __init__(self, config: Config) -> None:
        self.config = config

    def apply(
        self,
        dep: Deployment,
        artifact: Artifact | None,
        revision: str,
        record: LiveRecord | None = None,
    ) -> ApplyResult:
        """Publish ``artifact``'s bundle to ``spec.edge.destination`` and point
        ``current.json`` at it.

        Returns:
            An :class:`ApplyResult` whose outputs are ``url`` (the published tarball),
            ``bundle``, ``sha256``, ``pointer`` (the ``current.json`` URL), ``published``
            (the names written under ``<destination>/<name>/<env>/``), ``device``,
            ``size_bytes`` and ``p99_ms``; ``ran`` False when the pointer already named
            this bundle.

        Raises:
            ApplyError: (exit 3) no edge bundle in the artifact, or the copy failed; the
                pointer still names what it named before.
        """
        edge = artifact.edge if artifact is not None else {}
        if not edge:
            raise ApplyError(f"{dep.key}: no edge bundle was built; nothing published")
        destination = str(dep.get("spec.edge.destination", ""))
        store = _Store(f"{destination.rstrip('/')}/{dep.name}/{dep.env}", self.config)
        device = dep.get("spec.target.device") or {}
        pointer = {
            "deployment": dep.name,
            "environment": dep.env,
            "bundle": edge["bundle"],
            "sha256": edge["sha256"],
            "revision": revision,
            "device": device,
            "oci": Path(edge["oci_dir"]).name if edge.get("oci_dir") else "",
        }
        files = _files(edge)
        outputs = {
            "url": store.url(edge["bundle"]),
            "bundle": edge["bundle"],
            "sha256": edge["sha256"],
            "pointer": store.url(POINTER),
            "published": sorted(files),
            "device": "/".join(
                str(device.get(k, "")) for k in ("arch", "os", "runtime") if device.get(k)
            )
            or "onnxruntime",
            "size_bytes": edge.get("size_bytes"),
            "p99_ms": edge.get("p99_ms"),
        }
        try:
            current = store.read(POINTER)
            live = json.loads(current) if current else {}
        except (OSError, ValueError):
            live = {}
        if (
            record is not None
            and record.inputsDigest == edge["sha256"]
            and live.get("sha256") == edge["sha256"]
        ):
            return ApplyResult(
                False,
                outputs,
                f"bundle {edge['bundle']} already published",
                edge["sha256"],
                ran=False,
            )
        try:
            for name, path in files.items():
                store.write(name, path.read_bytes())
            store.write(POINTER, (json.dumps(pointer, indent=2, sort_keys=True) + "\n").encode())
        except Exception as exc:  # noqa: BLE001 - one clear message; pointer untouched
            raise ApplyError(
                f"{dep.key}: publishing {edge['bundle']} to {store.location} failed: "
                f"{type(exc).__name__}: {exc}; {POINTER} still names the previous bundle"
            ) from None
        return ApplyResult(
            True,
            outputs,
            f"published {edge['bundle']} to {store.location}",
            edge["sha256"],
        )

    def destroy(self, record: LiveRecord) -> bool:
        """Remove the pointer, then the files the last apply published.

        Returns:
            True when the pointer or a published file was removed.

        Raises:
            ApplyError: (exit 3) the destination cannot be reached or changed.
        """
        pointer = str(record.outputs.get("pointer", ""))
        if not pointer.endswith("/" + POINTER):
            return False
        store = _Store(pointer[: -len(POINTER) - 1], self.config)
        try:
            removed = store.delete(POINTER)
            for name in record.outputs.get("published", []) or []:
                removed = store.delete(str(name)) or removed
        except Exception as exc:  # noqa: BLE001 - one clear message
            raise ApplyError(f"{record.key}: removing the published bundle failed: {exc}") from None
        if store.folder is not None and store.folder.is_dir():
            for folder in [*sorted(store.folder.rglob("*"), reverse=True), store.folder]:
                if folder.is_dir() and not any(folder.iterdir()):
                    folder.rmdir()  # the empty folders of the published OCI layout
        return removed

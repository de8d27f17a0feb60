"""Edge bundle: export, parity, budget, then a reproducible bundle for one deployment.

:func:`build_edge` runs the edge build of a ``target.platform: edge`` deployment:

1. load the original model (after its SHA-256 matched ``spec.model.sha256``, when set);
2. export it to ONNX and quantize when asked (:mod:`reconciler.build.edge_export`);
3. prove parity on the spec's data plus edge cases (:mod:`reconciler.build.edge_parity`);
4. measure the budget (:func:`measure_latency`): size on disk and single-row latency,
   p50/p99 over :data:`LATENCY_CALLS` calls, ONNX Runtime with one thread;
5. write the bundle (:func:`write_bundle`): a directory and a ``.tar.gz`` holding
   ``model.onnx``, ``parity.json`` and ``manifest.json`` (signature, device, converter
   and runtime versions, spec revision, the SHA-256 of every other file), built so
   that the same inputs give the same bytes; with ``spec.edge.layout: oci`` also an OCI
   image layout directory (:func:`write_oci_layout`). The newest :data:`KEEP_BUNDLES`
   bundles of a deployment are kept (:func:`prune_bundles`).

A missed parity threshold or budget raises :class:`EdgeBuildError` listing every miss;
nothing is written to the destination by the build (apply publishes). Rationale,
formats and what a device needs: ``docs/edge.md``.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import shutil
import tarfile
import time
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

import numpy as np

from reconciler.build.artifact import Artifact
from reconciler.build.edge_export import EdgeBuildError, Export, export, quantize
from reconciler.build.edge_parity import (
    DEFAULT_MAX_ABS_DIFF,
    DEFAULT_MAX_ROWS,
    DEFAULT_MIN_LABEL_AGREEMENT,
    ParityReport,
    check_parity,
    read_parity_rows,
)
from reconciler.core.config import Config
from reconciler.core.digests import file_sha256
from reconciler.core.git import last_change_revision
from reconciler.runtime import frameworks
from reconciler.spec.edge import parity_data_field
from reconciler.spec.model import Deployment
from reconciler.spec.paths import S3_UNREACHABLE, spec_path

BUNDLE_FORMAT = "modelops.edge/v1"
LATENCY_CALLS = 300  # single-row calls timed (after LATENCY_WARMUP untimed ones)
LATENCY_WARMUP = 30
MEDIA_BUNDLE = "application/vnd.modelops.edge.bundle.v1.tar+gzip"
MEDIA_CONFIG = "application/vnd.modelops.edge.manifest.v1+json"
ARTIFACT_TYPE = "application/vnd.modelops.edge.bundle.v1"
KEEP_BUNDLES = 5  # bundles kept per deployment under <state_dir>/edge/ (newest first)


@dataclass
class Budget:
    """Size and single-request latency of the exported model, against the spec.

    Attributes:
        size_bytes: ``model.onnx`` on disk (bytes).
        p50_ms, p99_ms: single-row latency (ms), ONNX Runtime with one thread, over
            ``calls`` calls.
        calls: timed calls.
        max_bytes, max_p99_ms: the spec's budget (``None``: not set).
        failures: one sentence per budget missed.
    """

    size_bytes: int
    p50_ms: float
    p99_ms: float
    calls: int
    max_bytes: int | None = None
    max_p99_ms: float | None = None
    failures: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {
            "size_bytes": self.size_bytes,
            "p50_ms": round(self.p50_ms, 4),
            "p99_ms": round(self.p99_ms, 4),
            "calls": self.calls,
            "max_bytes": self.max_bytes,
            "max_p99_ms": self.max_p99_ms,
        }


@dataclass
class EdgeBuild:
    """What :func:`build_edge` produced.

    Attributes:
        bundle_dir: the bundle directory (``<state_dir>/edge/<key>/<name>-<digest12>``).
        tarball: the ``.tar.gz`` beside it.
        sha256: SHA-256 hex of the tarball (the bundle's identity).
        oci_dir: the OCI image layout directory, or ``None``.
        manifest: the bundle's ``manifest.json`` content.
        parity: the parity report.
        budget: the measured budget.
        export: the exported model (converter, operators, quantization notes).
    """

    bundle_dir: Path
    tarball: Path
    sha256: str
    oci_dir: Path | None
    manifest: dict
    parity: ParityReport
    budget: Budget
    export: Export

    @property
    def name(self) -> str:
        """The tarball's file name (``<name>-<digest12>.tar.gz``)."""
        return self.tarball.name

    def summary(self) -> dict:
        """The JSON-ready summary kept on the artifact and in the ledger."""
        return {
            "bundle": self.name,
            "sha256": self.sha256,
            "bundle_dir": str(self.bundle_dir),
            "tarball": str(self.tarball),
            "oci_dir": str(self.oci_dir) if self.oci_dir else "",
            "converter": self.export.converter,
            "quantization": self.export.quantization,
            "notes": list(self.export.notes),
            "size_bytes": self.budget.size_bytes,
            "p50_ms": round(self.budget.p50_ms, 4),
            "p99_ms": round(self.budget.p99_ms, 4),
            "label_agreement": self.parity.label_agreement,
            "max_abs_diff": self.parity.max_abs_diff,
            "parity_rows": self.parity.rows,
        }


def session_of(onnx_bytes: bytes, threads: int = 1):
    """An ONNX Runtime CPU session of ``onnx_bytes`` with ``threads`` intra-op threads,
    sequential execution, warnings off."""
    import onnxruntime as ort  # heavy: only for an edge build

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.log_severity_level = 3
    return ort.InferenceSession(onnx_bytes, options, providers=["CPUExecutionProvider"])


def measure_latency(call, row: np.ndarray, calls: int = LATENCY_CALLS) -> tuple[float, float]:
    """(p50, p99) in ms of ``call(row)`` over ``calls`` calls after :data:`LATENCY_WARMUP`."""
    for _ in range(LATENCY_WARMUP):
        call(row)
    times = np.empty(calls)
    for i in range(calls):
        start = time.perf_counter_ns()
        call(row)
        times[i] = (time.perf_counter_ns() - start) / 1e6
    return float(np.quantile(times, 0.5)), float(np.quantile(times, 0.99))


def measure_budget(
    onnx_bytes: bytes, row: np.ndarray, *, max_bytes=None, max_p99_ms=None
) -> Budget:
    """Size and single-row latency of ``onnx_bytes`` (one thread), checked against the
    spec's ``max_bytes`` and ``max_p99_ms``."""
    session = session_of(onnx_bytes)
    name = session.get_inputs()[0].name
    p50, p99 = measure_latency(lambda r: session.run(None, {name: r}), row[None, :])
    budget = Budget(len(onnx_bytes), p50, p99, LATENCY_CALLS, max_bytes, max_p99_ms)
    if max_bytes is not None and budget.size_bytes > max_bytes:
        budget.failures.append(
            f"model.onnx is {budget.size_bytes} bytes, above spec.edge.max_bytes {max_bytes}"
        )
    if max_p99_ms is not None and budget.p99_ms > max_p99_ms:
        budget.failures.append(
            f"single-request p99 {budget.p99_ms:.3f} ms (ONNX Runtime, 1 thread, "
            f"{LATENCY_CALLS} calls) is above spec.edge.max_p99_ms {max_p99_ms}"
        )
    return budget


# -- reproducible files -------------------------------------------------------------------


def _json_bytes(doc: dict) -> bytes:
    return (json.dumps(doc, indent=2, sort_keys=True) + "\n").encode()


def reproducible_tar_gz(files: dict[str, bytes], prefix: str) -> bytes:
    """A ``.tar.gz`` of ``files`` under ``prefix/``: entries sorted, mtime 0, uid/gid 0,
    no owner names, mode 0644, gzip header mtime 0 and no file name: the same files give
    the same bytes."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name in sorted(files):
            info = tarfile.TarInfo(f"{prefix}/{name}")
            info.size = len(files[name])
            info.mtime = 0
            info.mode = 0o644
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            tar.addfile(info, io.BytesIO(files[name]))
    out = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=out, mtime=0, compresslevel=9) as gz:
        gz.write(raw.getvalue())
    return out.getvalue()


def write_bundle(
    out: Path, name: str, files: dict[str, bytes], manifest: dict
) -> tuple[Path, Path, str]:
    """Write the bundle directory ``out/<name>/`` and ``out/<name>.tar.gz``.

    ``manifest.json`` gets ``files``: the SHA-256 and size of every other file.

    Returns:
        (directory, tarball, SHA-256 hex of the tarball).
    """
    manifest = {
        **manifest,
        "files": {
            n: {"sha256": hashlib.sha256(b).hexdigest(), "bytes": len(b)}
            for n, b in sorted(files.items())
        },
    }
    every = {**files, "manifest.json": _json_bytes(manifest)}
    folder = out / name
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    for file_name, data in every.items():
        (folder / file_name).write_bytes(data)
    blob = reproducible_tar_gz(every, name)
    tarball = out / f"{name}.tar.gz"
    tarball.write_bytes(blob)
    return folder, tarball, hashlib.sha256(blob).hexdigest()


def write_oci_layout(folder: Path, tarball: Path, manifest: dict, ref: str) -> Path:
    """An OCI image layout (image-spec v1.1) at ``folder`` carrying the bundle as one
    layer and its manifest as the config, tagged ``ref`` (``org.opencontainers.image.ref.name``).

    ``oras pull`` / ``oras cp`` or any OCI client that reads layouts can push it to a
    registry. Deterministic: same bundle, same bytes.
    """
    if folder.exists():
        shutil.rmtree(folder)
    blobs = folder / "blobs" / "sha256"
    blobs.mkdir(parents=True)

    def blob(data: bytes, media: str) -> dict:
        digest = hashlib.sha256(data).hexdigest()
        (blobs / digest).write_bytes(data)
        return {"mediaType": media, "digest": f"sha256:{digest}", "size": len(data)}

    config = blob(_json_bytes(manifest), MEDIA_CONFIG)
    layer = blob(tarball.read_bytes(), MEDIA_BUNDLE)
    layer["annotations"] = {"org.opencontainers.image.title": tarball.name}
    image_manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "artifactType": ARTIFACT_TYPE,
        "config": config,
        "layers": [layer],
    }
    top = blob(_json_bytes(image_manifest), "application/vnd.oci.image.manifest.v1+json")
    top["annotations"] = {"org.opencontainers.image.ref.name": ref}
    (folder / "oci-layout").write_bytes(_json_bytes({"imageLayoutVersion": "1.0.0"}))
    (folder / "index.json").write_bytes(_json_bytes({"schemaVersion": 2, "manifests": [top]}))
    return folder


# -- the build ----------------------------------------------------------------------------


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "none"


def _model_file(dep: Deployment, config: Config) -> tuple[Path, str]:
    uri = dep.get("spec.model.uri")
    checked = spec_path(
        dep,
        config,
        "spec.model.uri",
        uri,
        s3="the edge build reads a repository model file",
        must_exist=True,
        what="model file",
        valid="a repository path to the model file",
        error=EdgeBuildError,
    )
    want = dep.get("spec.model.sha256")
    if isinstance(want, str) and want:
        have = file_sha256(checked.local)
        if have != want:
            raise EdgeBuildError(
                f"{dep.locate('spec.model.sha256')}: spec.model.sha256: digest mismatch for "
                f"{uri}: spec says {want}, file is {have}; the model is not loaded"
            )
    return checked.local, uri


def _parity_rows(dep: Deployment, config: Config, width: int, dtype: str) -> tuple[np.ndarray, str]:
    """The parity rows and the root-relative file they came from."""
    field_ = parity_data_field(dep)
    if field_ is None:
        raise EdgeBuildError(
            f"{dep.locate('spec.edge')}: spec.edge: parity needs data (spec.edge.parity.data)"
        )
    checked = spec_path(
        dep,
        config,
        field_,
        s3=S3_UNREACHABLE,
        must_exist=True,
        what="parity data",
        error=EdgeBuildError,
    )
    names = dep.get("spec.model.signature.inputs.names")
    rows = read_parity_rows(
        checked.local,
        f"{dep.locate(field_)}: {field_}",
        width=width,
        dtype=dtype,
        names=names if isinstance(names, list) and names else None,
        max_rows=int(dep.get("spec.edge.parity.max_rows", DEFAULT_MAX_ROWS)),
    )
    return rows, str(dep.get(field_))


def _task(framework: str, model, task: str) -> str:
    if task in ("classification", "regression"):
        return task
    if framework == "onnx":
        return "classification" if len(model.get_outputs()) > 1 else "regression"
    return "classification" if frameworks.classes(framework, model) is not None else "regression"


def build_edge(dep: Deployment, config: Config, revision: str = "") -> EdgeBuild:
    """Export, prove parity, measure and bundle ``dep`` under ``<state_dir>/edge/<key>/``.

    Args:
        dep: a valid ``target.platform: edge`` deployment.
        config: repository configuration (root, state directory).
        revision: the Git revision being built; the manifest records the spec revision:
            the newest commit that changed the spec file, the model or the parity data
            (:func:`~reconciler.core.git.last_change_revision`), so that an unrelated
            commit gives the same bundle; ``revision`` outside a Git repository.

    Returns:
        An :class:`EdgeBuild`.

    Raises:
        EdgeBuildError: the model cannot be loaded or converted (the estimator or
            operator is named), the parity data has the wrong columns, or parity or the
            budget misses the spec's thresholds (every miss is listed). Nothing is
            published.
    """
    framework = dep.get("spec.model.framework")
    path, display = _model_file(dep, config)
    shape = dep.get("spec.model.signature.inputs.shape") or [-1, 0]
    width = int(shape[-1])
    dtype = dep.get("spec.model.signature.inputs.dtype", "float32")
    raw_task = dep.get("spec.model.task", "")
    try:
        original = frameworks.load_model(framework, path, raw_task)
    except frameworks.FrameworkError as exc:
        raise EdgeBuildError(str(exc).replace(str(path), display)) from None
    task = _task(framework, original, raw_task)
    source = path.read_bytes() if framework == "onnx" else original
    exported = export(framework, source, width=width, dtype=dtype, task=task, display=display)
    rows, parity_file = _parity_rows(dep, config, width, dtype)
    exported = quantize(exported, dep.get("spec.edge.quantization", "none"), rows)
    parity = check_parity(
        framework,
        original,
        session_of(exported.onnx),
        rows,
        task=task,
        min_label_agreement=float(
            dep.get("spec.edge.parity.min_label_agreement", DEFAULT_MIN_LABEL_AGREEMENT)
        ),
        max_abs_diff=float(dep.get("spec.edge.parity.max_abs_diff", DEFAULT_MAX_ABS_DIFF)),
    )
    budget = measure_budget(
        exported.onnx,
        rows[0],
        max_bytes=dep.get("spec.edge.max_bytes"),
        max_p99_ms=dep.get("spec.edge.max_p99_ms"),
    )
    failures = [*parity.failures, *budget.failures]
    inputs = [dep.spec.file, display] + ([parity_file] if parity_file else [])
    spec_revision = last_change_revision(config.root, inputs) or revision
    if failures:
        raise EdgeBuildError(
            f"{dep.spec.file}: edge build of {dep.key} failed, nothing published: "
            + "; ".join(failures)
        )
    manifest = {
        "format": BUNDLE_FORMAT,
        "deployment": dep.name,
        "environment": dep.env,
        "revision": spec_revision,
        "spec_file": dep.spec.file,
        "model": {
            "framework": framework,
            "task": task,
            "source": display,
            "sha256": file_sha256(path),
            "version": dep.get("spec.model.version", ""),
        },
        "signature": {
            "inputs": {"name": "input", "shape": [-1, width], "dtype": dtype},
            "names": dep.get("spec.model.signature.inputs.names") or [],
            "outputs": ["label", "probabilities"] if task == "classification" else ["variable"],
        },
        "device": dep.get("spec.target.device") or {},
        "converter": exported.converter,
        "operators": exported.operators,
        "quantization": exported.quantization,
        "notes": exported.notes,
        "runtime": {"onnxruntime": f">={_version('onnxruntime')}", "onnx": _version("onnx")},
    }
    files = {"model.onnx": exported.onnx, "parity.json": _json_bytes(parity.to_dict())}
    content = hashlib.sha256(
        _json_bytes(manifest) + b"".join(hashlib.sha256(files[n]).digest() for n in sorted(files))
    ).hexdigest()
    out = Path(config.state_dir) / "edge" / dep.key
    out.mkdir(parents=True, exist_ok=True)
    name = f"{dep.name}-{content[:12]}"
    folder, tarball, sha = write_bundle(out, name, files, manifest)
    oci = None
    if dep.get("spec.edge.layout") == "oci":
        oci = write_oci_layout(out / f"{name}.oci", tarball, manifest, f"{dep.name}:{content[:12]}")
    prune_bundles(out, keep=KEEP_BUNDLES, current=name)
    return EdgeBuild(folder, tarball, sha, oci, manifest, parity, budget, exported)


def prune_bundles(out: Path, *, keep: int, current: str) -> list[str]:
    """Remove all but the ``keep`` newest bundles (tarball, directory, OCI layout) in
    ``out``; ``current`` is never removed. Returns the names removed. A published bundle
    lives on at its destination; a rollback builds its bundle again."""
    tarballs = sorted(out.glob("*.tar.gz"), key=lambda p: p.stat().st_mtime, reverse=True)
    names = [t.name.removesuffix(".tar.gz") for t in tarballs]
    old = [n for n in names if n != current][max(keep - 1, 0) :]
    for name in old:
        (out / f"{name}.tar.gz").unlink(missing_ok=True)
        for folder in (out / name, out / f"{name}.oci"):
            shutil.rmtree(folder, ignore_errors=True)
    return old


#: The parts of a resolved spec an edge bundle is built from (besides the files).
EDGE_BUILD_FIELDS = ("metadata.name", "spec.model", "spec.target.device", "spec.edge")
#: ``spec.edge`` fields that say where the bundle goes, not what is in it.
EDGE_PUBLISH_FIELDS = ("destination", "layout")


def edge_build_inputs(dep: Deployment, config: Config) -> dict:
    """What an edge bundle is built from, for the PR plan's "is there a new bundle?":
    ``deployment``, ``model``, ``device``, ``edge`` (without where it is published) and
    the SHA-256 of the model file and the parity data (``"missing"`` when unreadable)."""
    edge = {k: v for k, v in (dep.get("spec.edge") or {}).items() if k not in EDGE_PUBLISH_FIELDS}
    files = {}
    for key, field_ in (("model_file", "spec.model.uri"), ("parity_data", parity_data_field(dep))):
        path = config.repo_path(dep.get(field_)) if field_ and dep.get(field_) else None
        files[key] = file_sha256(path) if path is not None and path.is_file() else "missing"
    return {
        "deployment": dep.name,
        "model": dep.get("spec.model"),
        "device": dep.get("spec.target.device"),
        "edge": edge,
        **files,
    }


def edge_artifact(build: EdgeBuild, framework: str) -> Artifact:
    """The :class:`Artifact` an edge build hands to the engines: no Bento, no image; the
    bundle's summary under ``edge``."""
    return Artifact(
        bento_tag="",
        digest=build.sha256,
        model_sha256=build.manifest["model"]["sha256"],
        framework=framework,
        image_note="edge bundle: no image",
        edge=build.summary(),
    )

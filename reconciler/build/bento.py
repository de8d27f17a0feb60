"""Build stage: one Deployment -> one Bento, cached by a digest of its inputs.

:func:`build` writes the service (``service.py``, ``modelops.json``, the
``modelops_runtime`` helpers), imports the model file's bytes into the model store and
builds the Bento offline; its version is the first 16 hex digits of :func:`build_digest`.
Unchanged inputs reuse the stored Bento. What the digest covers, and the serving
contract (environment variables ``bentoml serve`` reads): ``docs/build.md``.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import shutil
import sys
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Any

from reconciler.build.artifact import Artifact, BuildError
from reconciler.build.fetch import ModelSource, resolve_model
from reconciler.build.image import containerize, image_reference
from reconciler.build.store import bento_exists, bentoml_env, import_model
from reconciler.core.config import Config
from reconciler.core.digests import json_sha256
from reconciler.runtime import frameworks
from reconciler.spec.model import Deployment

RUNTIME_DIR = Path(__file__).resolve().parents[1] / "runtime"
#: files that make up the generated service: destination in the build context -> source
RUNTIME_FILES: dict[str, Path] = {
    "service.py": RUNTIME_DIR / "service.py",
    "modelops_runtime/frameworks.py": RUNTIME_DIR / "frameworks.py",
    "modelops_runtime/capture.py": RUNTIME_DIR / "capture.py",
    "modelops_runtime/request.py": RUNTIME_DIR / "request.py",
    "modelops_runtime/batching.py": RUNTIME_DIR / "batching.py",
    "modelops_runtime/uris.py": RUNTIME_DIR / "uris.py",
    "modelops_runtime/signals.py": RUNTIME_DIR / "signals.py",
    "modelops_runtime/pickles.py": RUNTIME_DIR / "pickles.py",
}
SERVICE_CLASS = "ModelService"
VERSION_LEN = 16
#: request bodies above this are answered 413 (bytes)
MAX_REQUEST_BYTES = 10 * 1024 * 1024
#: BentoML's adaptive batching needs max_batch_size > 1; these are used when the spec
#: enables batching without numbers (BentoML's own default latency is 10 s, far too long
#: for a realtime SLO).
DEFAULT_BATCHING = {"max_batch_size": 32, "max_latency_ms": 10}


def template_digest() -> str:
    """SHA-256 over the service template and runtime helper sources (name + bytes)."""
    h = hashlib.sha256()
    for dest, src in sorted(RUNTIME_FILES.items()):
        h.update(dest.encode() + b"\0" + src.read_bytes() + b"\0")
    return h.hexdigest()


def _batching(dep: Deployment) -> dict:
    raw = dep.get("spec.serving.batching") or {}
    mode = dep.get("spec.serving.mode", "realtime")
    size = int(raw.get("max_batch_size", DEFAULT_BATCHING["max_batch_size"]))
    enabled = bool(raw.get("enabled", bool(raw))) and size > 1 and mode != "batch"
    return {
        "enabled": enabled,
        "max_batch_size": size,
        "max_latency_ms": int(raw.get("max_latency_ms", DEFAULT_BATCHING["max_latency_ms"])),
    }


def _capture(dep: Deployment) -> dict | None:
    cap = dep.get("spec.monitoring.capture")
    if not isinstance(cap, dict) or not cap.get("enabled", True):
        return None
    if dep.get("spec.monitoring.enabled") is False or not cap.get("sink"):
        return None
    return {
        "sink": cap["sink"],
        "sample_rate": float(cap.get("sample_rate", 0.0)),
        "format": cap.get("format", "jsonl"),
        "redact": cap.get("redact", "none"),
    }


def build_inputs(dep: Deployment, config: Config, source: ModelSource | None = None) -> dict:
    """Everything the Bento is made from, as a JSON-ready mapping (the digest's input).

    Args:
        source: the resolved model (:func:`reconciler.build.fetch.resolve_model`); resolved
            here when not given. The digest covers the model's bytes (its SHA-256), not
            where they came from: the same bytes from another MLflow version are the same
            Bento.

    Raises:
        BuildError: the model file is missing, leaves the repository, cannot be fetched,
            does not match ``spec.model.sha256`` (:class:`~reconciler.build.fetch.FetchError`),
            or its framework is not installed.
    """
    source = source or resolve_model(dep, config)
    path, model_sha = source.path, source.sha256
    uri = source.uri if source.kind == "path" else f"{source.uri} ({path.name})"
    framework = dep.get("spec.model.framework", "sklearn")
    try:
        dist, fw_version = frameworks.distribution(framework)
    except frameworks.FrameworkError as exc:
        raise BuildError(
            f"{dep.locate('spec.model.framework')}: spec.model.framework: {exc}"
        ) from None
    import bentoml  # heavy (about 1 s to import): only when building

    model = dict(dep.get("spec.model") or {})
    serving = {
        k: v for k, v in (dep.get("spec.serving") or {}).items() if k not in ("smoke", "slo")
    }
    return {
        "deployment": dep.name,
        "env": dep.env,
        "model_file": {"uri": uri, "name": path.name, "sha256": model_sha},
        "model": model,
        "serving": serving,
        "capture": _capture(dep),
        "sensitive_fields": list(dep.get("spec.data.sensitive_fields") or []),
        "framework": {"name": framework, "package": dist, "version": fw_version},
        "template": template_digest(),
        "bentoml": bentoml.__version__,
    }


def build_digest(inputs: dict) -> str:
    """SHA-256 hex of the canonical JSON (:func:`reconciler.core.digests.json_sha256`) of
    :func:`build_inputs`."""
    return json_sha256(inputs)


def _service_config(dep: Deployment, inputs: dict, digest: str, model_tag: str) -> dict:
    model = inputs["model"]
    framework = inputs["framework"]["name"]
    signature = model.get("signature") or {"inputs": {"shape": [-1], "dtype": "float32"}}
    signature = json.loads(json.dumps(signature))  # a copy: _check_model may fill the width
    return {
        "deployment": dep.name,
        "env": dep.env,
        "service_name": dep.name.replace("-", "_"),
        "bento_tag": f"{dep.name}:{digest[:VERSION_LEN]}",
        "digest": digest,
        "model_tag": model_tag,
        "model_file": frameworks.model_file_name(framework, inputs["model_file"]["name"]),
        "model_sha256": inputs["model_file"]["sha256"],
        "model_version": str(model.get("version") or inputs["model_file"]["sha256"][:12]),
        "framework": framework,
        "framework_version": inputs["framework"]["version"],
        "task": model.get("task", ""),
        "signature": signature,
        "batching": _batching(dep),
        "workers": int(inputs["serving"].get("workers", 1)),
        "access_log": bool(inputs["serving"].get("access_log", True)),
        "capture": inputs["capture"],
        "sensitive_fields": inputs["sensitive_fields"],
        "max_request_bytes": MAX_REQUEST_BYTES,
    }


def _check_model(framework: str, path: Path, display: str, cfg: dict) -> None:
    """Load the model and run it on one zero row of the signature's width.

    Without a ``[-1, N]`` shape in the spec, N is taken from the model
    (:func:`frameworks.n_features`) and written into ``cfg["signature"]`` (deterministic:
    it follows from the model bytes, which are in the digest).

    Raises:
        BuildError: the model cannot be loaded, has no known width, or rejects the row.
    """
    import numpy as np  # heavy: only when a model is checked

    try:
        model = frameworks.load_model(framework, path, cfg["task"])
    except frameworks.FrameworkError as exc:
        raise BuildError(str(exc).replace(str(path), display)) from None
    shape = cfg["signature"]["inputs"].get("shape", [-1])
    if len(shape) != 2 or shape[1] <= 0:  # no width in the spec: take the model's own
        n = frameworks.n_features(framework, model)
        if n is None:
            raise BuildError(
                f"{display}: spec.model.signature.inputs.shape is not [-1, N] and the "
                f"{framework} model does not say how many features it takes; "
                "declare spec.model.signature.inputs.shape: [-1, N]"
            )
        cfg["signature"] = {**cfg["signature"], "inputs": {**cfg["signature"]["inputs"]}}
        cfg["signature"]["inputs"]["shape"] = [-1, n]
        shape = [-1, n]
    width = shape[1]
    dtype = cfg["signature"]["inputs"].get("dtype", "float32")
    try:
        frameworks.predict(framework, model, np.zeros((1, width), dtype=dtype), cfg["task"])
    except frameworks.FrameworkError as exc:
        raise BuildError(
            f"{display}: the model does not accept the spec's signature "
            f"(shape [-1, {width}], {dtype}): {exc}"
        ) from None


def _write_context(ctx: Path, cfg: dict) -> None:
    for dest, src in RUNTIME_FILES.items():
        target = ctx / dest
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, target)
    (ctx / "modelops_runtime" / "__init__.py").write_text(
        '"""modelops runtime helpers, copied from reconciler.build."""\n', encoding="utf-8"
    )
    (ctx / "modelops.json").write_text(
        json.dumps(cfg, indent=2, sort_keys=True) + "\n", encoding="utf-8"
    )


def _packages(inputs: dict, cfg: dict) -> list[str]:
    import bentoml  # heavy: only when building
    import numpy  # heavy: only when building

    pkgs = [
        f"bentoml=={bentoml.__version__}",
        f"numpy=={numpy.__version__}",
        f"{inputs['framework']['package']}=={inputs['framework']['version']}",
    ]
    if cfg["capture"] and cfg["capture"]["format"] == "parquet":
        import pyarrow  # heavy: only for a parquet capture

        pkgs.append(f"pyarrow=={pyarrow.__version__}")
    if cfg["capture"] and str(cfg["capture"].get("sink", "")).startswith("s3://"):
        import boto3  # the service uploads captured files (modelops_runtime.capture)

        pkgs.append(f"boto3=={boto3.__version__}")
    return sorted(pkgs)


def build(dep: Deployment, config: Config, *, revision: str = "", image: bool = False) -> Artifact:
    """Build (or reuse) the Bento for one deployment.

    Args:
        dep: the resolved deployment (its ``spec.model``, ``spec.serving``,
            ``spec.monitoring.capture``, ``spec.data.sensitive_fields``, ``spec.target.registry``).
        config: repository configuration (``root`` for model paths, ``state_dir`` for the
            BentoML home).
        revision: the Git revision of the specs, recorded as the Bento label
            ``modelops.revision`` when the Bento is first built (not part of the digest;
            ``/metadata`` prefers ``MODELOPS_SPEC_REVISION`` at serve time).
        image: also containerize (``bentoml containerize``) and push to the registry when a
            Docker engine answers; otherwise ``image_built=False`` with the reason.

    Returns:
        :class:`Artifact` with ``bento_tag`` ``<name>:<digest[:16]>``, the full digest, the
        image reference, ``reused`` True when the Bento was already in the store.

    Raises:
        BuildError: model file missing or outside the repository, digest mismatch, model
            cannot be loaded or does not accept the signature, framework not installed,
            BentoML build failure; the message names the file (and spec line).
    """
    source = resolve_model(dep, config)
    inputs = build_inputs(dep, config, source)
    digest = build_digest(inputs)
    version = digest[:VERSION_LEN]
    tag = f"{dep.name}:{version}"
    model_tag = f"{dep.name}-model:{inputs['model_file']['sha256'][:VERSION_LEN]}"
    cfg = _service_config(dep, inputs, digest, model_tag)
    model_path, uri = source.path, inputs["model_file"]["uri"]
    with bentoml_env(config) as bentoml:
        from bentoml.exceptions import BentoMLException, NotFound  # heavy: bentoml

        existing = None
        try:
            existing = bentoml.bentos.get(tag)
        except NotFound:
            existing = None
        if existing is not None and (Path(existing.path) / "src" / "modelops.json").is_file():
            # the Bento refers to its model by tag: put it back if it was removed by hand
            import_model(bentoml, model_tag, model_path, cfg)
            bento_tag, bento_path, reused = tag, str(existing.path), True
        else:
            if existing is not None:  # a broken leftover: rebuild it
                bentoml.bentos.delete(tag)
            _check_model(cfg["framework"], model_path, uri, cfg)
            import_model(bentoml, model_tag, model_path, cfg)
            with tempfile.TemporaryDirectory(prefix="modelops-build-") as tmp:
                ctx = Path(tmp)
                _write_context(ctx, cfg)
                try:
                    bento = _build_in_ctx(
                        bentoml, ctx, dep, version, model_tag, revision, inputs, cfg
                    )
                except BentoMLException as exc:
                    if bento_exists(bentoml, tag):  # built meanwhile by a concurrent build
                        bento = bentoml.bentos.get(tag)
                    else:
                        raise BuildError(
                            f"{dep.spec.file}: BentoML build of {tag} failed: {exc}"
                        ) from None
            bento_tag, bento_path, reused = str(bento.tag), str(bento.path), False
        artifact = Artifact(
            bento_tag=bento_tag,
            digest=digest,
            image=image_reference(dep, version),
            bento_path=bento_path,
            reused=reused,
            model_sha256=inputs["model_file"]["sha256"],
            model_tag=model_tag,
            framework=cfg["framework"],
            model_source=source.to_dict(),
        )
        if image:
            artifact = containerize(bentoml, artifact)
        else:
            artifact = replace(artifact, image_note="image not built (build without --image)")
    return artifact


def _build_in_ctx(
    bentoml: Any,
    ctx: Path,
    dep: Deployment,
    version: str,
    model_tag: str,
    revision: str,
    inputs: dict,
    cfg: dict,
) -> Any:

    # BentoML imports the service from the build context; drop modules another build left
    # behind so each build imports its own copy.
    for mod in [m for m in sys.modules if m in ("service",) or m.startswith("modelops_runtime")]:
        del sys.modules[mod]
    labels = {
        "modelops.deployment": dep.name,
        "modelops.env": dep.env,
        "modelops.revision": revision or "unknown",
        "modelops.framework": cfg["framework"],
    }
    try:
        return bentoml.bentos.build(
            f"service:{SERVICE_CLASS}",
            name=dep.name,
            version=version,
            build_ctx=str(ctx),
            include=["service.py", "modelops.json", "modelops_runtime/*.py"],
            labels=labels,
            description=f"modelops: {dep.name} ({dep.env}), model {model_tag}",
            models=[model_tag],
            python={"lock_packages": False, "packages": _packages(inputs, cfg)},
        )
    finally:
        for mod in [m for m in sys.modules if m == "service" or m.startswith("modelops_runtime")]:
            del sys.modules[mod]
        with contextlib.suppress(ValueError):
            sys.path.remove(str(ctx))

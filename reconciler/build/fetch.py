"""Model sources: where ``spec.model.uri`` points, fetched once into a content-addressed cache.

``spec.model.uri`` is one of

- a repository path (the file itself; nothing is fetched);
- ``bentoml:<tag>`` (a model in this repository's BentoML store, ``build/store.py``);
- ``s3://bucket/key`` (one object; boto3's credential chain and ``AWS_ENDPOINT_URL``);
- ``models:/<name>@<alias>`` or ``models:/<name>/<version>`` (an MLflow model registry,
  ``MLFLOW_REGISTRY_URI`` or ``MLFLOW_TRACKING_URI``; the alias is resolved to a version).

Remote models land in ``$MODELOPS_CACHE_DIR`` (default ``<state_dir>/cache``) under
``models/sha256/<digest>/<file name>``; an immutable reference (an S3 object's ETag and
version id, an MLflow model version and its source) is remembered in ``models/refs/``,
so the bytes are fetched once. A remote model is used only after its SHA-256 matches
``spec.model.sha256`` when the spec gives one (the prod policy MDL-013 requires it).
Rationale and the cache layout: ``docs/build.md`` ("Model sources").
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from reconciler.build.artifact import BuildError
from reconciler.build.store import store_model_file
from reconciler.core.config import Config
from reconciler.core.digests import CHUNK_BYTES, file_sha256, json_sha256
from reconciler.core.modeluri import MLFLOW_PREFIX, parse_mlflow_uri
from reconciler.runtime.uris import bentoml_tag, parse_s3_uri
from reconciler.spec.model import Deployment
from reconciler.spec.paths import spec_path

CACHE_ENV = "MODELOPS_CACHE_DIR"
REGISTRY_ENVS = ("MLFLOW_REGISTRY_URI", "MLFLOW_TRACKING_URI")
#: MLflow retries a registry that does not answer 7 times with exponential backoff (about
#: two minutes); a plan should say "unreachable" sooner. Used unless the variable is set.
MLFLOW_RETRIES = "2"
#: files MLflow writes beside a logged model: never the model file itself
MLFLOW_METADATA = frozenset(
    {
        "MLmodel",
        "conda.yaml",
        "python_env.yaml",
        "requirements.txt",
        "input_example.json",
        "serving_input_example.json",
        "registered_model_meta",
    }
)
FIELD = "spec.model.uri"
NO_MLFLOW = (
    "models:/ URIs need the MLflow client, which is not installed: "
    "pip install 'modelops-gitops[registry]'"
)


class FetchError(BuildError):
    """A model source cannot be resolved or fetched, or its digest does not match.

    The message names the URI (and the spec's file:line:col); exit 2 for validate,
    plan and build (a configuration problem), recorded as a failed attempt (exit 3) by
    apply.
    """


class SourceUnreachable(FetchError, ConnectionError):
    """The registry or S3 did not answer: transient (``reconciler.flow.transient`` treats a
    ``ConnectionError`` so): apply retries it and does not count it toward Stalled."""


@dataclass(frozen=True)
class ModelSource:
    """One deployment's model, resolved to immutable bytes on this machine.

    Attributes:
        uri: ``spec.model.uri`` as written.
        kind: ``path``, ``bentoml``, ``s3`` or ``mlflow``.
        resolved: the immutable reference that was fetched: ``models:/<name>/<version>``
            for an MLflow alias or version, the ``s3://`` URI for S3, the URI otherwise.
        version: the MLflow model version, or the S3 object's version id (else ETag);
            ``""`` for a repository path, a BentoML tag, and an S3 object served from the
            cache by its digest alone.
        sha256: SHA-256 hex of the model file.
        path: the local model file (in the repository, the BentoML store or the cache).
        fetched: the bytes were downloaded by this call (``False``: cache or local).
    """

    uri: str
    kind: str
    resolved: str
    version: str
    sha256: str
    path: Path
    fetched: bool = False

    @property
    def remote(self) -> bool:
        """Whether the model comes from S3 or an MLflow registry."""
        return self.kind in ("s3", "mlflow")

    def to_dict(self) -> dict:
        """``{"uri", "kind", "resolved", "version", "sha256"}`` (JSON-ready: for the plan
        and, through the artifact, the ledger; no local path)."""
        out = asdict(self)
        out.pop("path")
        out.pop("fetched")
        return out


def cache_root(config: Config) -> Path:
    """``$MODELOPS_CACHE_DIR/models``, default ``<state_dir>/cache/models``."""
    return Path(os.environ.get(CACHE_ENV) or Path(config.state_dir) / "cache") / "models"


def is_remote(uri: object) -> bool:
    """Whether ``uri`` names a model on S3 or in an MLflow registry."""
    return isinstance(uri, str) and uri.startswith(("s3://", MLFLOW_PREFIX))


def resolve_model(dep: Deployment, config: Config) -> ModelSource:
    """The model file of ``dep``, fetched into the cache when remote, digest checked.

    Raises:
        FetchError: missing or malformed URI; a repository path leaving the repository or
            missing; a BentoML tag not in the store; an S3 object missing or forbidden,
            no credentials, S3 unreachable; an MLflow registry not configured or not
            answering, a model, version or alias that does not exist, a version with
            not exactly one model file; a digest that differs from
            ``spec.model.sha256``. Each message names the URI.
    """
    uri = dep.get(FIELD)
    pos = dep.locate(FIELD)
    if not isinstance(uri, str) or not uri:
        raise FetchError(f"{pos}: {FIELD}: missing; expected a repository path to the model file")
    want = dep.get("spec.model.sha256") or ""
    if bentoml_tag(uri) is not None:
        try:
            path = store_model_file(dep, config, uri)
        except BuildError as exc:
            raise FetchError(str(exc)) from None
        return _checked(dep, ModelSource(uri, "bentoml", uri, "", file_sha256(path), path), want)
    if uri.startswith(MLFLOW_PREFIX):
        return _checked(dep, _mlflow(uri, pos, cache_root(config), want), want)
    if uri.startswith("s3://"):
        return _checked(dep, _s3(uri, pos, cache_root(config), want), want)
    checked = spec_path(
        dep,
        config,
        FIELD,
        uri,
        s3=True,
        must_exist=True,
        what="model file",
        valid="a repository path to the model file, bentoml:<tag>, s3://bucket/key or "
        "models:/name@alias",
        error=FetchError,
    )
    path = checked.local
    assert path is not None  # an s3:// value was handled above
    return _checked(dep, ModelSource(uri, "path", uri, "", file_sha256(path), path), want)


def _checked(dep: Deployment, source: ModelSource, want: str) -> ModelSource:
    if want and want != source.sha256:
        shown = source.uri if source.resolved == source.uri else f"{source.uri} ({source.resolved})"
        raise FetchError(
            f"{dep.locate('spec.model.sha256')}: spec.model.sha256: model {shown} has "
            f"sha256 {source.sha256}, the spec says {want}; refusing to load it "
            "(update the digest only if the new model is intended)"
        )
    return source


# --- the content-addressed cache -------------------------------------------------------


def _blob(cache: Path, digest: str) -> Path | None:
    """The cached file of ``digest``, or ``None`` (checked again: a cache can be edited)."""
    folder = cache / "sha256" / digest
    files = [p for p in folder.iterdir() if p.is_file()] if folder.is_dir() else []
    if len(files) == 1 and file_sha256(files[0]) == digest:
        return files[0]
    return None


def _ref_file(cache: Path, ref: dict) -> Path:
    return cache / "refs" / f"{json_sha256(ref)}.json"


def _lookup(cache: Path, ref: dict) -> Path | None:
    """The cached file of an immutable reference, or ``None``."""
    try:
        digest = _ref_file(cache, ref).read_text(encoding="utf-8").strip()
    except OSError:
        return None
    return _blob(cache, digest) if len(digest) == 64 else None


def _store(cache: Path, ref: dict, part: Path, name: str, digest: str) -> Path:
    """Move a downloaded file into ``sha256/<digest>/<name>`` and remember ``ref``."""
    folder = cache / "sha256" / digest
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / name
    for old in folder.iterdir():  # one file per digest: the first name wins
        if old.is_file() and old.name != name:
            target = old
    if not target.is_file():
        part.replace(target)
    refs = cache / "refs"
    refs.mkdir(parents=True, exist_ok=True)
    tmp = refs / f".{os.getpid()}.tmp"
    tmp.write_text(digest + "\n", encoding="utf-8")
    tmp.replace(_ref_file(cache, ref))
    return target


@contextlib.contextmanager
def _staging(cache: Path):
    """A temporary directory inside the cache (same file system: the move is a rename)."""
    cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".fetch-", dir=cache) as tmp:
        yield Path(tmp)


# --- S3 ----------------------------------------------------------------------------------


#: boto3 exception class names of an S3 endpoint that does not answer (transient)
_UNREACHABLE = frozenset({"EndpointConnectionError", "ConnectTimeoutError", "ReadTimeoutError"})


def _s3_problem(uri: str, exc: Exception) -> str:
    """One sentence for a boto3 error on ``uri``."""
    code = ""
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        code = str(response.get("Error", {}).get("Code", ""))
    name = type(exc).__name__
    if code in ("404", "NoSuchKey", "NotFound"):
        return f"{uri} does not exist (no such object)"
    if code == "NoSuchBucket":
        return f"{uri}: the bucket does not exist"
    if code in ("403", "AccessDenied", "Forbidden"):
        return f"{uri}: access denied (the credentials need s3:GetObject on it)"
    if name in ("NoCredentialsError", "PartialCredentialsError"):
        return f"{uri}: no AWS credentials (set them up for boto3, e.g. AWS_PROFILE)"
    if name in _UNREACHABLE:
        return f"{uri}: S3 is unreachable ({exc})"
    return f"{uri} could not be read: {name}: {exc}"


def _s3(uri: str, pos: str, cache: Path, want: str) -> ModelSource:
    try:
        bucket, key = parse_s3_uri(uri)
    except ValueError as exc:
        raise FetchError(f"{pos}: {FIELD}: {exc}") from None
    if not key:
        raise FetchError(f"{pos}: {FIELD}: {uri} names a bucket, not a model object")
    name = key.rsplit("/", 1)[-1]
    if want and (hit := _blob(cache, want)) is not None:
        return ModelSource(uri, "s3", uri, "", want, hit)
    try:
        import boto3  # heavy (botocore's service models): only for s3:// models

        client = boto3.client("s3")
        head = client.head_object(Bucket=bucket, Key=key)
        etag = str(head.get("ETag", "")).strip('"')
        version = str(head.get("VersionId") or "")
        ref = {"s3": uri, "etag": etag, "version": version}
        shown = version or etag
        if (hit := _lookup(cache, ref)) is not None:
            return ModelSource(uri, "s3", uri, shown, hit.parent.name, hit)
        with _staging(cache) as tmp:
            part = tmp / name
            extra = {"VersionId": version} if version else {"IfMatch": head["ETag"]}
            body = client.get_object(Bucket=bucket, Key=key, **extra)["Body"]
            digest = hashlib.sha256()
            with open(part, "wb") as out:
                while block := body.read(CHUNK_BYTES):
                    digest.update(block)
                    out.write(block)
            sha = digest.hexdigest()
            path = _store(cache, ref, part, name, sha)
    except FetchError:
        raise
    except Exception as exc:  # noqa: BLE001 - botocore raises many kinds; each is named
        kind = SourceUnreachable if type(exc).__name__ in _UNREACHABLE else FetchError
        raise kind(f"{pos}: {FIELD}: {_s3_problem(uri, exc)}") from None
    return ModelSource(uri, "s3", uri, shown, sha, path, fetched=True)


# --- MLflow ------------------------------------------------------------------------------


def registry_uri() -> str:
    """The MLflow registry this process uses (``MLFLOW_REGISTRY_URI``, else
    ``MLFLOW_TRACKING_URI``), or ``""`` when neither is set."""
    for name in REGISTRY_ENVS:
        if value := os.environ.get(name, "").strip():
            return value
    return ""


def _first_line(exc: Exception) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _mlflow_problem(registry: str, uri: str, exc: Exception) -> str:
    code = str(getattr(exc, "error_code", ""))
    text = _first_line(exc)
    if code in ("RESOURCE_DOES_NOT_EXIST", "NOT_FOUND") or "not found" in text.lower():
        return f"{uri}: not in the MLflow registry {registry} ({text})"
    return f"{uri}: the MLflow registry {registry} did not answer ({text})"


def _model_file(folder: Path, uri: str, version: str) -> Path:
    """The one model file of a downloaded MLflow model version (a file or a directory)."""
    if folder.is_file():
        return folder
    files = sorted(
        p
        for p in folder.rglob("*")
        if p.is_file() and p.name not in MLFLOW_METADATA and not p.name.startswith(".")
    )
    if len(files) != 1:
        found = ", ".join(p.relative_to(folder).as_posix() for p in files) or "none"
        raise FetchError(
            f"{uri} (version {version}) holds {len(files)} model files ({found}); modelops "
            "serves exactly one model file (log it with mlflow.log_artifact)"
        )
    return files[0]


def _mlflow(uri: str, pos: str, cache: Path, want: str) -> ModelSource:
    try:
        ref_uri = parse_mlflow_uri(uri)
    except ValueError as exc:
        raise FetchError(f"{pos}: {FIELD}: {exc}") from None
    registry = registry_uri()
    if not registry:
        raise FetchError(
            f"{pos}: {FIELD}: {uri} is in an MLflow registry, but neither MLFLOW_REGISTRY_URI "
            "nor MLFLOW_TRACKING_URI says where it is; set one (e.g. "
            "MLFLOW_TRACKING_URI=https://mlflow.example.com)"
        )
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", MLFLOW_RETRIES)
    try:
        mv = _registry_version(registry, ref_uri)
    except FetchError:
        raise
    except ImportError:
        raise FetchError(f"{pos}: {FIELD}: {uri}: {NO_MLFLOW}") from None
    except Exception as exc:  # noqa: BLE001 - MLflow, requests and SQLAlchemy errors alike
        problem = _mlflow_problem(registry, uri, exc)
        kind = FetchError if ": not in the MLflow registry" in problem else SourceUnreachable
        raise kind(f"{pos}: {FIELD}: {problem}") from None
    version = str(mv.version)
    resolved = f"{MLFLOW_PREFIX}{ref_uri.name}/{version}"
    ref = {"mlflow": registry, "name": ref_uri.name, "version": version, "source": mv.source}
    if (hit := _lookup(cache, ref)) is not None:
        return ModelSource(uri, "mlflow", resolved, version, hit.parent.name, hit)
    try:
        with _staging(cache) as tmp:
            local = _download_version(registry, ref_uri.name, version, tmp)
            path = _model_file(local, resolved, version)
            sha = file_sha256(path)
            path = _store(cache, ref, path, path.name, sha)
    except FetchError as exc:
        raise FetchError(f"{pos}: {FIELD}: {exc}") from None
    except Exception as exc:  # noqa: BLE001 - the artifact store's errors, named below
        raise FetchError(
            f"{pos}: {FIELD}: {resolved}: the model files could not be downloaded from "
            f"{mv.source} into {cache} ({type(exc).__name__}: {_first_line(exc)})"
        ) from None
    return ModelSource(uri, "mlflow", resolved, version, sha, path, fetched=True)


def _client(registry: str) -> Any:
    from mlflow import MlflowClient  # heavy (about 2 s): only for models:/ URIs

    tracking = os.environ.get("MLFLOW_TRACKING_URI") or registry
    return MlflowClient(tracking_uri=tracking, registry_uri=registry)


def _registry_version(registry: str, ref: Any) -> Any:
    """The registry's ``ModelVersion`` of an alias or a version."""
    client = _client(registry)
    if ref.alias:
        return client.get_model_version_by_alias(ref.name, ref.alias)
    return client.get_model_version(ref.name, ref.version)


def _download_version(registry: str, name: str, version: str, dest: Path) -> Path:
    """Download a model version's files into ``dest``; the local file or directory."""
    from mlflow.artifacts import download_artifacts  # heavy: only for models:/ URIs

    client = _client(registry)
    source = client.get_model_version_download_uri(name, version)
    tracking = os.environ.get("MLFLOW_TRACKING_URI") or registry
    return Path(download_artifacts(artifact_uri=source, dst_path=str(dest), tracking_uri=tracking))

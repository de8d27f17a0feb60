"""A retrained model published to the spec's model store before it is proposed.

When ``spec.model.uri`` (as resolved for the environment) names a model store, the
candidate goes there and the proposal changes only the reference and the digest; no
model binary is committed to Git:

- ``s3://bucket/dir/model.joblib``: uploaded beside it as
  ``s3://bucket/dir/model-<sha256[:12]>.joblib`` (content-addressed: publishing the
  same bytes twice writes one object);
- ``models:/<name>@<alias>`` or ``models:/<name>/<version>``: logged as the artifact
  ``model/<file>`` of a run in the MLflow experiment :data:`EXPERIMENT` and registered as
  a new version of ``<name>``; the proposal pins ``models:/<name>/<new version>`` (moving
  an alias would deploy without review).

A repository path keeps today's behaviour: the file is committed on the proposal branch.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from reconciler.build.fetch import NO_MLFLOW, registry_uri
from reconciler.core.diagnostics import ModelopsError
from reconciler.core.modeluri import MLFLOW_PREFIX, parse_mlflow_uri
from reconciler.runtime.uris import parse_s3_uri
from reconciler.spec.model import Deployment

EXPERIMENT = "modelops-retraining"
"""The MLflow experiment whose runs hold the published candidates' files."""


class PublishError(ModelopsError):
    """The candidate could not be uploaded or registered (exit 2); the message names the
    store. Nothing is proposed then."""


@dataclass(frozen=True)
class Published:
    """A candidate in the model store.

    Attributes:
        uri: the value ``spec.model.uri`` gets in the proposal.
        sha256: SHA-256 hex of the uploaded file.
        store: ``s3`` or ``mlflow``.
        version: the new MLflow model version (``""`` for S3).
        run_id: the MLflow run holding the file (``""`` for S3).
    """

    uri: str
    sha256: str
    store: str
    version: str = ""
    run_id: str = ""

    def to_dict(self) -> dict:
        """JSON-ready mapping."""
        return asdict(self)


def model_store(uri: object) -> str:
    """``s3`` or ``mlflow`` when ``uri`` names a model store, else ``""``."""
    if isinstance(uri, str) and uri.startswith("s3://"):
        return "s3"
    if isinstance(uri, str) and uri.startswith(MLFLOW_PREFIX):
        return "mlflow"
    return ""


def content_name(name: str, sha256: str) -> str:
    """``model.joblib`` → ``model-<sha256[:12]>.joblib`` (an earlier ``-<12 hex>`` suffix
    of the stem is replaced)."""
    path = PurePosixPath(name)
    stem = re.sub(r"-[0-9a-f]{12}$", "", path.stem)
    return f"{stem}-{sha256[:12]}{path.suffix}"


def publish_candidate(dep: Deployment, candidate: Path, sha256: str) -> Published | None:
    """Upload or register ``candidate`` in the store ``dep``'s model URI names.

    Returns:
        The :class:`Published` reference, or ``None`` when the model is a repository
        path or a BentoML tag (nothing is published: the proposal commits the file).

    Raises:
        PublishError: the upload or registration failed; the message names the store.
    """
    uri = dep.get("spec.model.uri")
    store = model_store(uri)
    if store == "s3":
        return _to_s3(uri, candidate, sha256)
    if store == "mlflow":
        return _to_mlflow(dep, uri, candidate, sha256)
    return None


def _to_s3(uri: str, candidate: Path, sha256: str) -> Published:
    bucket, key = parse_s3_uri(uri)
    folder = PurePosixPath(key).parent.as_posix()
    name = content_name(candidate.name, sha256)
    new_key = name if folder in ("", ".") else f"{folder}/{name}"
    target = f"s3://{bucket}/{new_key}"
    try:
        import boto3  # heavy (botocore's service models): only for s3:// models

        client = boto3.client("s3")
        with open(candidate, "rb") as body:
            client.put_object(Bucket=bucket, Key=new_key, Body=body)
    except Exception as exc:  # noqa: BLE001 - botocore raises many kinds; all are named
        raise PublishError(
            f"uploading the candidate to {target} failed: {type(exc).__name__}: {exc}; "
            "nothing was proposed"
        ) from None
    return Published(target, sha256, "s3")


def _client(registry: str) -> Any:
    from mlflow import MlflowClient  # heavy (about 2 s): only for models:/ URIs

    return MlflowClient(tracking_uri=registry, registry_uri=registry)


def _to_mlflow(dep: Deployment, uri: str, candidate: Path, sha256: str) -> Published:
    name = parse_mlflow_uri(uri).name
    registry = registry_uri()
    if not registry:
        raise PublishError(
            f"{uri}: neither MLFLOW_REGISTRY_URI nor MLFLOW_TRACKING_URI says where the MLflow "
            "registry is; nothing was proposed"
        )
    try:
        client = _client(registry)
        experiment = client.get_experiment_by_name(EXPERIMENT)
        exp_id = experiment.experiment_id if experiment else client.create_experiment(EXPERIMENT)
        run = client.create_run(
            exp_id,
            tags={"modelops.deployment": dep.name, "modelops.env": dep.env, "sha256": sha256},
        )
        client.log_artifact(run.info.run_id, str(candidate), "model")
        client.set_terminated(run.info.run_id)
        mv = client.create_model_version(
            name,
            source=f"{run.info.artifact_uri}/model",
            run_id=run.info.run_id,
            tags={"sha256": sha256, "modelops.deployment": dep.name},
            description=f"retrained by modelops for {dep.name} ({dep.env})",
        )
    except ImportError:
        raise PublishError(f"{uri}: {NO_MLFLOW}; nothing was proposed") from None
    except Exception as exc:  # noqa: BLE001 - MLflow, HTTP and database errors alike
        text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise PublishError(
            f"registering the candidate as a new version of {name} in the MLflow registry "
            f"{registry} failed: {text}; nothing was proposed"
        ) from None
    version = str(mv.version)
    return Published(f"{MLFLOW_PREFIX}{name}/{version}", sha256, "mlflow", version, run.info.run_id)

"""Batch inference: ``serving.mode: batch`` deployments score a file on a schedule.

The Kubernetes stack renders a CronJob on ``spec.serving.batch.schedule`` that runs
``modelops batch NAME --env ENV --input … --output …``; this module is that command's
work, and it runs the same way on a laptop. The model is loaded only after its SHA-256
matches ``spec.model.sha256`` (DESIGN.md, security model: a pickled model runs code when
loaded); features are read by name from the model's signature, so a file with extra
columns is fine and one missing a feature is an error naming it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from reconciler.build.fetch import FetchError, resolve_model
from reconciler.core.config import Config
from reconciler.core.diagnostics import ModelopsError
from reconciler.core.digests import file_sha256
from reconciler.monitor.data import features_of, read_table
from reconciler.runtime.frameworks import FrameworkError, load_model, predict
from reconciler.runtime.uris import URI_SCHEMES
from reconciler.spec.model import Deployment
from reconciler.spec.paths import S3_UNREACHABLE, check_path

if TYPE_CHECKING:  # annotations only
    pass

CHUNK_ROWS = 50_000  # rows per predict call: bounds memory (~6 MB of float32 at 30 features)


class BatchError(ModelopsError):
    """Batch inference cannot run (bad input, model, or output path); exit code 2."""


@dataclass
class BatchResult:
    """What one batch run did.

    Attributes:
        rows: rows scored.
        input: the input file; output: the file written.
        seconds: wall time in seconds.
    """

    rows: int
    input: str
    output: str
    seconds: float

    def to_dict(self) -> dict:
        """JSON-ready mapping."""
        return dict(self.__dict__)


def _local_path(
    config: Config,
    dep: Deployment,
    value: str,
    field: str,
    *,
    option: str | None = None,
    must_exist: bool = False,
    what: str = "file",
) -> Path:
    """The local file for ``value`` (:func:`reconciler.spec.paths.check_path`).

    Args:
        value: the spec's ``field``, or the command-line ``option`` when one is given.
        field: the spec field (``spec.serving.batch.input``) named in messages.
        option: ``--input``/``--output`` when the value came from the command line: then
            an absolute path is accepted too (data outside the spec repository).
        must_exist: the file must exist (input data, the model).
        what: what the file is, for messages.

    Raises:
        BatchError: an ``s3://`` location (no credentials here), another URI, a path
            leaving the repository, or a missing file (``must_exist``).
    """
    origin = option or f"{dep.locate(field)}: {field}"
    if option:
        valid = "a local path, relative to the repository root or absolute"
    elif field == "spec.model.uri":
        valid = "a repository path to the model file"
    else:
        valid = f"a repository path (or give --{field.rsplit('.', 1)[-1]} PATH)"
    return check_path(
        value,
        config.root,
        origin,
        s3=S3_UNREACHABLE,
        must_exist=must_exist,
        what=what,
        valid=valid,
        allow_absolute=option is not None,
        error=BatchError,
    ).local


def run_batch(
    dep: Deployment, config: Config, *, input: str | None = None, output: str | None = None
) -> BatchResult:
    """Score ``input`` with the deployment's model and write predictions to ``output``.

    Args:
        dep: a deployment whose model ``uri`` is a repository path.
        config: repository configuration.
        input: Parquet or CSV with the signature's feature columns (default
            ``spec.serving.batch.input``).
        output: where to write; ``.parquet`` or ``.csv`` (default
            ``spec.serving.batch.output``). Columns: ``prediction``, and for classifiers
            that expose them, ``probability_<class>`` per class.

    Returns:
        A :class:`BatchResult`.

    Raises:
        BatchError: no input/output, s3:// input or output locations (the data is read
            and written here), a model that cannot be fetched
            (:func:`reconciler.build.fetch.resolve_model`: S3, MLflow, the BentoML store),
            a digest mismatch, or a model that fails to load.
        reconciler.monitor.data.MonitorInputError: the input is missing, unreadable, lacks
            feature columns or has non-numeric ones.
    """
    import numpy as np  # heavy: loaded when this runs, not at every `modelops` start
    import pandas as pd  # heavy: loaded when this runs, not at every `modelops` start

    started = time.perf_counter()
    src = input or dep.get("spec.serving.batch.input")
    dst = output or dep.get("spec.serving.batch.output")
    if not src or not dst:
        raise BatchError(
            f"{dep.locate('spec.serving.batch')}: spec.serving.batch: batch inference needs "
            "an input and an output (serving.batch.input/output, or --input/--output)"
        )
    in_path = _local_path(
        config,
        dep,
        src,
        "spec.serving.batch.input",
        option="--input" if input else None,
        must_exist=True,
        what="batch input",
    )
    out_path = _local_path(
        config, dep, dst, "spec.serving.batch.output", option="--output" if output else None
    )
    if out_path.suffix.lower() not in (".parquet", ".csv"):
        raise BatchError(f"output {dst}: expected a .parquet or .csv file name")
    uri = dep.get("spec.model.uri", "")
    if uri.startswith(URI_SCHEMES):  # S3, an MLflow registry, the BentoML store: fetched once
        try:
            model_path = resolve_model(dep, config).path  # digest checked against the spec
        except FetchError as exc:
            raise BatchError(exc.message) from None
    else:
        model_path = _local_path(
            config, dep, uri, "spec.model.uri", must_exist=True, what="model file"
        )
    want = dep.get("spec.model.sha256")
    if want and model_path.is_file() and file_sha256(model_path) != want:
        raise BatchError(f"{model_path}: digest does not match spec.model.sha256; not loading it")
    framework, task = dep.get("spec.model.framework"), dep.get("spec.model.task", "")
    try:
        model = load_model(framework, model_path, task)
    except FrameworkError as exc:
        raise BatchError(str(exc)) from None
    features = features_of(dep)
    origin = (
        "--input" if input else f"{dep.locate('spec.serving.batch.input')}: serving.batch.input"
    )
    frame = read_table(in_path, features.names, what="batch input", origin=origin)
    dtype = np.dtype(features.dtype if features.dtype != "bool" else "float32")
    predictions, probabilities = [], []
    for start in range(0, len(frame), CHUNK_ROWS):
        rows = frame.iloc[start : start + CHUNK_ROWS].to_numpy(dtype=dtype)
        try:
            pred, proba = predict(framework, model, rows, task)
        except FrameworkError as exc:
            raise BatchError(f"{model_path}: {exc}") from None
        predictions.append(np.asarray(pred))
        if proba is not None:
            probabilities.append(np.asarray(proba))
    out = pd.DataFrame({"prediction": np.concatenate(predictions)})
    if probabilities:
        proba = np.concatenate(probabilities)
        for i in range(proba.shape[1]):
            out[f"probability_{i}"] = proba[:, i]
    out_path.parent.mkdir(parents=True, exist_ok=True)
    if out_path.suffix.lower() == ".parquet":
        out.to_parquet(out_path, index=False)
    else:
        out.to_csv(out_path, index=False)
    return BatchResult(len(out), str(in_path), str(out_path), time.perf_counter() - started)

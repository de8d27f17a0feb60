"""Write the ``.pyc`` files the test suite needs, once, before its workers start.

``make test`` runs this beside the linters (``make bytecode``). The install does not
byte-compile (39,000 files, of which the suite imports about 7,000), so Python compiles a
module the first time a process imports it. Without this step the xdist workers, started
together, each compiled the same modules at the same time (evidently, mlflow, scipy,
sklearn, bentoml, pulumi...): about 26 s of CPU per process, paid about four times over on
a fresh clone (docs/testing.md, "Measured times").

It imports every module of ``reconciler``, ``stacks`` and the test support code, then the libraries
the suite imports lazily (inside functions, or in the processes it starts: ``bentoml
serve`` and its workers, the model loads, the MLflow registry, moto's S3 server). A module
missing here is only compiled later, by whichever process imports it first; nothing fails.

Two processes share the work, one per part (:data:`SCIENCE`: the numeric and monitoring
stack and the registry; :data:`PLATFORM`: serving, infrastructure and then this project's own
packages, whose imports of the first part are mostly compiled by then): one process left
a core idle for the 25 s this takes on a fresh clone.

Usage: ``python tests/support/bytecode.py`` from the repository root (``--part NAME``
imports one part only: how the second process is started). Prints how many modules each
part imported; exits 0 even when some cannot be (they are listed).
"""

from __future__ import annotations

import importlib
import os
import pkgutil
import subprocess
import sys
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

# Imported inside functions or by the processes the suite starts; the top-level imports of
# reconciler/ and tests/support/ are reached by walking those packages (end of PLATFORM).
# The numeric and monitoring stack: Evidently reports, their plots and text descriptors,
# the statistics; the frameworks' training scripts, model loads and columnar capture; the
# registry (MLflow's client and its SQL store: alembic migrations run on creation).
SCIENCE = (
    "pandas",
    "scipy.stats",
    "sklearn.ensemble",
    "sklearn.linear_model",
    "sklearn.model_selection",
    "sklearn.metrics",
    "sklearn.pipeline",
    "sklearn.preprocessing",
    "sklearn.datasets",
    "sklearn.svm",
    "sklearn.naive_bayes",
    "sklearn.isotonic",
    "joblib",
    "evidently",
    "evidently.presets",
    "evidently.metrics",
    "evidently.legacy.tests.utils",
    "plotly.graph_objects",
    "lightgbm",
    "xgboost",
    "pyarrow.parquet",
    "pyarrow.json",
    "pyarrow.compute",
    "mlflow",
    "mlflow.artifacts",
    "mlflow.exceptions",
    "mlflow.tracking",
    "mlflow.store.tracking.sqlalchemy_store",
    "mlflow.store.model_registry.sqlalchemy_store",
)
# Serving (the bentoml CLI that `bentoml serve` runs, its arbiter and its workers),
# infrastructure (Pulumi programs under mocks, moto's S3 server) and the edge exports
# (which import scikit-learn: last, when the other part has compiled it).
PLATFORM = (
    "pulumi",
    "pulumi.automation",
    "pulumi_aws",
    "pulumi_aws.iam",
    "pulumi_aws.cloudwatch",
    "pulumi_aws.sagemaker",
    "pulumi_aws.kms",
    "pulumi_aws.appautoscaling",
    "pulumi_aws.scheduler",
    "pulumi_kubernetes",
    "pulumi_kubernetes.core.v1",
    "pulumi_kubernetes.apps.v1",
    "pulumi_kubernetes.networking.v1",
    "pulumi_kubernetes.batch.v1",
    "pulumi_kubernetes.policy.v1",
    "pulumi_kubernetes.autoscaling.v2",
    "pulumi_kubernetes.meta.v1",
    "boto3",
    "moto.server",
    "bentoml",
    "bentoml_cli.cli",
    "_bentoml_impl.worker.service",
    "_bentoml_sdk",
    "circus.arbiter",
    "uvicorn",
    "fastapi",
    "starlette.testclient",
    "onnx",
    "onnxruntime",
    "skl2onnx",
    "onnxmltools",
)


def _walk(package: str, path: Path) -> list[str]:
    """Every module name under ``path`` (a package directory named ``package``)."""
    names = [package]
    for info in pkgutil.walk_packages([str(path)], prefix=package + "."):
        names.append(info.name)
    return names


def _own_modules() -> list[str]:
    """This project's modules (``reconciler``, ``stacks``, the test support code)."""
    names = [
        *_walk("reconciler", ROOT / "reconciler"),
        *_walk("stacks", ROOT / "stacks"),
        *_walk("support", ROOT / "tests/support"),
    ]
    # the Bento's service source runs only inside a built Bento; __main__ would run the CLI
    return [n for n in names if n not in ("reconciler.runtime.service", "reconciler.__main__")]


def _import_all(part: str, names: list[str]) -> None:
    """Import ``names``; print a one-line summary and the failures."""
    failed = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name in names:
            try:
                importlib.import_module(name)
            except Exception as exc:  # noqa: BLE001 - a warm-up: report and go on
                failed.append(f"{name}: {type(exc).__name__}: {exc}"[:200])
    print(f"bytecode: {part}: imported {len(names) - len(failed)} modules", flush=True)
    for line in failed:
        print(f"bytecode: {part}: not imported: {line}", flush=True)


def main(argv: list[str]) -> int:
    """Import both parts, the platform part in a second process (see the module doc)."""
    os.environ.setdefault("BENTOML_DO_NOT_TRACK", "True")
    sys.dont_write_bytecode = False
    sys.path[:0] = [str(ROOT), str(ROOT / "tests")]
    if argv[:1] == ["--part"]:
        part = argv[1]
        _import_all(part, [*PLATFORM, *_own_modules()] if part == "platform" else [*SCIENCE])
        return 0
    other = subprocess.Popen([sys.executable, __file__, "--part", "platform"])
    _import_all("science", [*SCIENCE])
    return other.wait()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

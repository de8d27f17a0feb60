"""The retraining command: its environment, and one run in its own process group."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from reconciler.core.config import Config
from reconciler.core.diagnostics import ModelopsError
from reconciler.core.procs import start_group, stop_group
from reconciler.spec.model import Deployment
from reconciler.spec.paths import spec_path


def reference_path(dep: Deployment, config: Config) -> Path | None:
    """The local ``spec.monitoring.reference`` for ``MODELOPS_REFERENCE_DATA``, if any.

    ``None`` when the spec has no reference or it is an ``s3://`` URI: the variable is
    then not set and the retraining command reads its data from its own source.

    Raises:
        ModelopsError: a local reference that leaves the repository, or a malformed
            ``s3://`` URI (:func:`reconciler.spec.paths.spec_path`).
    """
    field = "spec.monitoring.reference"
    if dep.get(field) is None:
        return None
    return spec_path(dep, config, field, s3=True, what="reference data").local


#: The forge tokens modelops itself uses to push the proposal and open its pull request
#: (``gitops/forge.py``; the scheduled workflows and jobs hold one): the retraining
#: command runs the repository's training code and never needs them, so it does not get
#: them.
WITHHELD = ("GITHUB_TOKEN", "GH_TOKEN")
#: Git configuration from the environment (``GIT_CONFIG_COUNT``, ``GIT_CONFIG_KEY_<n>``,
#: ``GIT_CONFIG_VALUE_<n>``): a scheduled job's Authorization header
#: (``state/checkout.py``), withheld with the tokens.
WITHHELD_PREFIX = "GIT_CONFIG_"


def command_env(
    dep: Deployment,
    config: Config,
    *,
    output: Path,
    holdout: Path,
    reason: str,
    training_data: str | None,
) -> dict[str, str]:
    """The retraining command's environment: the parent's without :data:`WITHHELD` and
    :data:`WITHHELD_PREFIX`, plus the ``MODELOPS_*`` variables.

    modelops's Python comes first on ``PATH`` (``python`` is the interpreter modelops runs
    on); ``MODELOPS_OUTPUT_DIR`` (``output``), ``MODELOPS_HOLDOUT_DATA`` (``holdout``),
    ``MODELOPS_DEPLOYMENT``, ``MODELOPS_ENV`` and ``MODELOPS_REASON`` are always set;
    ``MODELOPS_REFERENCE_DATA`` when the reference is a local file
    (:func:`reference_path`); ``MODELOPS_TRAINING_DATA`` only when ``training_data`` is
    given (absolute, relative paths from ``config.root``), else removed.

    Raises:
        ModelopsError: ``training_data`` is not a file; see :func:`reference_path`.
    """
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in WITHHELD and not k.startswith(WITHHELD_PREFIX)
    }
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    env.update(
        MODELOPS_OUTPUT_DIR=str(output),
        MODELOPS_HOLDOUT_DATA=str(holdout),
        MODELOPS_DEPLOYMENT=dep.name,
        MODELOPS_ENV=dep.env,
        MODELOPS_REASON=reason,
    )
    env.pop("MODELOPS_TRAINING_DATA", None)
    ref = reference_path(dep, config)
    if ref is not None:
        env["MODELOPS_REFERENCE_DATA"] = str(ref)
    if training_data:
        tpath = Path(training_data)
        tpath = tpath if tpath.is_absolute() else (config.root / tpath)
        if not tpath.is_file():
            raise ModelopsError(f"--training-data: {training_data} not found")
        env["MODELOPS_TRAINING_DATA"] = str(tpath.resolve())
    return env


def run_command(argv: list[str], cwd: Path, env: dict, timeout_s: int, log: Path) -> float:
    """Run ``argv`` in its own process group; return its wall time (s).

    stdout and stderr go to ``log``; stdin is ``/dev/null``. On time-out the group gets
    SIGTERM, then SIGKILL after 5 s.

    Raises:
        ModelopsError: the program cannot be started, it timed out (and was stopped), or
            it exited non-zero (the message quotes the last five lines of ``log``).
    """
    started = time.perf_counter()
    with open(log, "wb") as out:
        try:
            proc = start_group(argv, cwd=cwd, env=env, stdout=out)
        except OSError as exc:
            raise ModelopsError(
                f"cannot start the retraining command {argv[0]!r}: {exc.strerror}; "
                "spec.retraining.command must be an argv list whose first item is a program "
                "on PATH or a path in the repository"
            ) from None
        try:
            code = proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            stop_group(proc, grace_s=5)
            raise ModelopsError(
                f"the retraining command timed out after {timeout_s} s "
                f"(spec.retraining.timeout_s) and was stopped; log: {log}"
            ) from None
    if code != 0:
        tail = log.read_text(errors="replace").strip().splitlines()[-5:]
        raise ModelopsError(
            f"the retraining command exited with code {code}; last lines of {log}:\n  "
            + "\n  ".join(tail or ["(no output)"])
        )
    return time.perf_counter() - started

"""Will the build be able to load this model file? Checked at validate time.

The build loads the model with the framework's own loader
(:func:`reconciler.runtime.frameworks.load_model`) and fails when it cannot; validate
finds that out first, at ``spec.model.uri``:

- a file in a format the framework's loader does not read, recognised by its bytes
  without loading it: a Python pickle (``joblib.dump`` of an ``LGBMClassifier`` or an
  ``XGBClassifier``) where LightGBM or XGBoost need their native model file, with the
  call that writes one;
- otherwise the loader itself runs in a child process with a time-out
  (:data:`LOAD_TIMEOUT_S`), so a file that crashes or hangs the loader cannot take
  validate with it. A scikit-learn model is a pickle, whose loading runs code: it is
  loaded only when the spec pins its ``sha256`` and the file matches (the design's
  rule: a model file is loaded only after its digest matches), and, because in a pull
  request its author writes both, only under the pickle guard
  (:mod:`reconciler.runtime.pickles`: a global outside numpy, scipy, scikit-learn... is
  refused before it is imported), in a process whose environment holds no credential
  (:data:`CHILD_ENV`).

Verdicts are cached by the file's SHA-256, the framework, the task and the framework's
version, under ``$MODELOPS_CACHE_DIR`` (default ``<state dir>/cache``)/``model-load/``,
so repeated validates of the same bytes cost a file hash. Verdicts are sealed with this
machine's key (:mod:`reconciler.core.sealed`): a verdict committed by a pull request into
a state directory inside the repository is not one.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from reconciler.core import sealed
from reconciler.core.digests import json_sha256
from reconciler.runtime import frameworks

LOAD_TIMEOUT_S = 60.0
CACHE_ENV = "MODELOPS_CACHE_DIR"
# pickle protocol 2+ starts with PROTO (0x80); joblib writes one unless compressed
_PICKLE = b"\x80"
NATIVE_SAVE = {
    "lightgbm": "a LightGBM Booster text file: model.booster_.save_model('model.txt') "
    "(or booster.save_model)",
    "xgboost": "an XGBoost model file: model.save_model('model.json')",
    "onnx": "an ONNX file: skl2onnx / torch.onnx.export write one",
    "pytorch": "a TorchScript file: torch.jit.script(model).save('model.pt')",
}
_LOADER = (
    "import sys\n"
    "from reconciler.runtime.frameworks import load_model\n"
    "try:\n"
    "    load_model(sys.argv[1], sys.argv[2], sys.argv[3])\n"
    "except Exception as exc:\n"
    "    print(str(exc).splitlines()[0] if str(exc) else type(exc).__name__, file=sys.stderr)\n"
    "    sys.exit(1)\n"
)


def cache_dir(state_dir: Path) -> Path:
    """Where load verdicts are cached: ``$MODELOPS_CACHE_DIR`` or ``<state_dir>/cache``."""
    return Path(os.environ.get(CACHE_ENV) or Path(state_dir) / "cache") / "model-load"


def format_problem(framework: str, head: bytes) -> str | None:
    """A sentence when the file's first bytes show a format the loader does not read."""
    if framework in NATIVE_SAVE and head.startswith(_PICKLE):
        return (
            f"is a Python pickle (joblib.dump or pickle.dump), which the {framework} loader "
            f"does not read; save {NATIVE_SAVE[framework]}"
        )
    return None


def load_problem(
    framework: str,
    path: Path,
    digest: str,
    task: str,
    state_dir: Path,
    *,
    root: Path,
) -> str | None:
    """Why the build's loader cannot read ``path`` (a sentence), or ``None``.

    Args:
        framework: ``spec.model.framework``.
        path: the model file (inside the repository).
        digest: the file's SHA-256 (hex), the cache key.
        task: ``spec.model.task`` (XGBoost loads the wrapper of the task).
        state_dir: for the default cache directory.
        root: the repository root (the child's working directory).

    Never raises: an unreadable cache or a child that cannot start only skip the cache
    or report the failure to load.
    """
    try:
        with open(path, "rb") as handle:
            head = handle.read(16)
    except OSError as exc:
        return f"cannot be read: {exc.strerror or exc}"
    problem = format_problem(framework, head)
    if problem:
        return problem
    try:
        version = frameworks.framework_version(framework)
    except frameworks.FrameworkError as exc:
        return str(exc)
    key = json_sha256({"digest": digest, "framework": framework, "task": task, "v": version})
    cached = cache_dir(state_dir) / f"{key}.json"
    blob = sealed.read(cached)  # only a verdict modelops on this machine wrote
    try:
        verdict = json.loads(blob) if blob is not None else None
        if isinstance(verdict, dict) and "problem" in verdict:
            return verdict["problem"] or None
    except ValueError:
        pass
    problem = _load_in_child(framework, path, task, root)
    # a read-only cache only costs time
    sealed.write(cached, json.dumps({"problem": problem or ""}).encode("utf-8"))
    return problem


#: The only variables the loader process inherits: what Python and the model libraries
#: need to start. A pull request's model is loaded here (validate runs on every pull
#: request), so no token, cloud credential or CI variable reaches it.
CHILD_ENV = (
    "PATH",
    "HOME",
    "LANG",
    "LC_ALL",
    "LC_CTYPE",
    "TMPDIR",
    "TEMP",
    "TMP",
    "SYSTEMROOT",
    "LD_LIBRARY_PATH",
    "OMP_NUM_THREADS",
    "PYTHONDONTWRITEBYTECODE",
    "PYTHONHASHSEED",
)


def child_env() -> dict[str, str]:
    """The loader process's environment: :data:`CHILD_ENV` from this one, and a
    ``PYTHONPATH`` that finds this package."""
    package_root = str(Path(__file__).resolve().parents[2])
    env = {k: os.environ[k] for k in CHILD_ENV if k in os.environ}
    env["PYTHONPATH"] = os.pathsep.join([package_root, os.environ.get("PYTHONPATH", "")])
    return env


def _load_in_child(framework: str, path: Path, task: str, root: Path) -> str | None:
    env = child_env()
    try:
        proc = subprocess.run(
            [sys.executable, "-c", _LOADER, framework, str(path), task or ""],
            cwd=root,
            env=env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=LOAD_TIMEOUT_S,
        )
    except subprocess.TimeoutExpired:
        return f"the {framework} loader did not finish within {LOAD_TIMEOUT_S:g} s"
    except OSError as exc:
        return f"could not start a loader process: {exc}"
    if proc.returncode == 0:
        return None
    lines = [line for line in proc.stderr.strip().splitlines() if line.strip()]
    detail = lines[-1] if lines else f"exit code {proc.returncode}"
    detail = detail.replace(str(path), "").lstrip(": ")
    return f"cannot be loaded by the {framework} loader: {detail}"

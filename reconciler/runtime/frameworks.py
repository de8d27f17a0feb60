"""Loading, saving and calling models, one small adapter per framework.

Shipped in every Bento; imports only the framework's own package, lazily.
``predict`` takes a 2-D array (rows × features) and returns ``(predictions,
probabilities or None)``. Frameworks and model files: ``docs/runtime.md``.
"""

from __future__ import annotations

import importlib
import importlib.metadata
from pathlib import Path
from typing import Any

import numpy as np

from .pickles import UnsafePickleError, restricted

#: framework name -> (import name, pip distribution names tried in order)
PACKAGES: dict[str, tuple[str, tuple[str, ...]]] = {
    "sklearn": ("sklearn", ("scikit-learn",)),
    "xgboost": ("xgboost", ("xgboost", "xgboost-cpu")),
    "lightgbm": ("lightgbm", ("lightgbm",)),
    "onnx": ("onnxruntime", ("onnxruntime", "onnxruntime-gpu")),
    "pytorch": ("torch", ("torch",)),
}

#: The modelops-gitops extra that installs each framework's package (pytorch: none; torch
#: is installed on its own, CPU or GPU build as the team needs).
EXTRAS: dict[str, str] = {"xgboost": "frameworks", "lightgbm": "frameworks", "onnx": "frameworks"}

#: file name the model gets inside the BentoML model store, by framework
MODEL_FILES: dict[str, str] = {
    "sklearn": "model.joblib",
    "xgboost": "model.json",
    "lightgbm": "model.txt",
    "onnx": "model.onnx",
    "pytorch": "model.pt",
}


class FrameworkError(Exception):
    """A framework is unknown or not installed, or a model cannot be loaded or called."""


def _check(framework: str) -> None:
    if framework not in PACKAGES:
        raise FrameworkError(
            f"unknown framework {framework!r}; supported: {', '.join(sorted(PACKAGES))}"
        )


def distribution(framework: str) -> tuple[str, str]:
    """``(pip distribution name, version)`` of the installed package for ``framework``.

    Raises:
        FrameworkError: unknown framework, or its package is not installed (the message
            says what to ``pip install``).
    """
    _check(framework)
    _module, dists = PACKAGES[framework]
    for dist in dists:
        try:
            return dist, importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            continue
    extra = EXTRAS.get(framework)
    how = (
        f"install modelops' {extra!r} extra: pip install 'modelops-gitops[{extra}]'"
        if extra
        else f"pip install {dists[0]}"
    )
    raise FrameworkError(
        f"framework {framework!r} needs the Python package {dists[0]!r}, which is not "
        f"installed; {how}"
    )


def framework_version(framework: str) -> str:
    """Installed version of ``framework``'s package (``"1.9.1"``); see :func:`distribution`."""
    return distribution(framework)[1]


def model_file_name(framework: str, source: str | Path = "") -> str:
    """File name for the model inside the model store: ``model`` + the source's suffix.

    XGBoost keeps ``.ubj``/``.json`` (its loader picks the format from the suffix);
    other frameworks use the fixed names of :data:`MODEL_FILES`.
    """
    _check(framework)
    suffix = Path(str(source)).suffix.lower()
    if framework == "xgboost" and suffix in (".ubj", ".json", ".bst", ".model"):
        return "model" + (suffix if suffix in (".ubj", ".json") else ".ubj")
    return MODEL_FILES[framework]


def _import(framework: str) -> Any:
    distribution(framework)  # clear error when missing
    return importlib.import_module(PACKAGES[framework][0])


def load_model(framework: str, path: str | Path, task: str = "") -> Any:
    """Load the model at ``path`` with ``framework``'s own loader.

    Args:
        framework: one of :data:`PACKAGES`.
        path: the model file (for sklearn a joblib pickle: loading it runs code, so call
            this only after the file's SHA-256 was checked against the spec; the pickle
            may name only what :func:`pickles.check_global` allows).
        task: ``classification`` or ``regression`` (``spec.model.task``); XGBoost loads
            its scikit-learn wrapper for the task so that class labels and probabilities
            are available.

    Returns:
        the framework's model object (estimator, Booster, InferenceSession, ScriptModule).

    Raises:
        FrameworkError: the package is missing or the file cannot be loaded; the message
            names the file and the loader's error.
    """
    mod = _import(framework)
    path = str(path)
    try:
        if framework == "sklearn":
            import joblib  # heavy: only for a scikit-learn model

            try:
                with restricted():  # a pickle runs what it names: see pickles.py
                    model = joblib.load(path)
            except UnsafePickleError as exc:
                raise FrameworkError(f"{path}: {exc}") from None
            if not hasattr(model, "predict"):
                raise FrameworkError(
                    f"{path}: loaded a {type(model).__name__}, which has no predict() "
                    "(expected a scikit-learn estimator or pipeline)"
                )
            return model
        if framework == "xgboost":
            if task == "classification":
                model = mod.XGBClassifier()
            elif task == "regression":
                model = mod.XGBRegressor()
            else:
                model = mod.Booster()
            model.load_model(path)
            return model
        if framework == "lightgbm":
            return mod.Booster(model_file=path)
        if framework == "onnx":
            return mod.InferenceSession(path, providers=["CPUExecutionProvider"])
        if framework == "pytorch":
            model = mod.jit.load(path, map_location="cpu")
            model.eval()
            return model
    except FrameworkError:
        raise
    except Exception as exc:  # noqa: BLE001 - any loader failure becomes one clear message
        raise FrameworkError(
            f"{path}: cannot be loaded as a {framework} model: {type(exc).__name__}: {exc}"
        ) from None
    raise FrameworkError(f"unknown framework {framework!r}")


def save_model(framework: str, model: Any, path: str | Path) -> Path:
    """Write ``model`` to ``path`` in the format :func:`load_model` reads back.

    Used by training scripts and tests. sklearn: ``joblib.dump``; xgboost and lightgbm:
    the booster's ``save_model``; onnx: ``model`` is an ``onnx.ModelProto`` (or bytes);
    pytorch: ``model`` is a ``torch.nn.Module``, scripted with ``torch.jit.script``.

    Returns:
        ``path`` as a :class:`~pathlib.Path`.

    Raises:
        FrameworkError: unknown framework or package missing.
    """
    path = Path(path)
    mod = _import(framework)
    if framework == "sklearn":
        import joblib  # heavy: only for a scikit-learn model

        joblib.dump(model, path)
    elif framework in ("xgboost", "lightgbm"):
        model.save_model(str(path))
    elif framework == "onnx":
        data = model if isinstance(model, bytes) else model.SerializeToString()
        path.write_bytes(data)
    elif framework == "pytorch":
        scripted = model if isinstance(model, mod.jit.ScriptModule) else mod.jit.script(model)
        mod.jit.save(scripted, str(path))
    return path


def classes(framework: str, model: Any) -> list | None:
    """Class labels of a classifier (``classes_``) or ``None`` when the model has none."""
    labels = getattr(model, "classes_", None)
    if labels is None:
        return None
    return np.asarray(labels).tolist()


def n_features(framework: str, model: Any) -> int | None:
    """How many input features ``model`` takes, when the framework records it, else None.

    sklearn/xgboost wrappers: ``n_features_in_``; LightGBM Booster: ``num_feature()``;
    raw XGBoost Booster: ``num_features()``; ONNX: the second dimension of the first
    input when fixed; PyTorch: None (TorchScript does not record it).
    """
    n = getattr(model, "n_features_in_", None)
    if isinstance(n, int | np.integer):
        return int(n)
    for method in ("num_feature", "num_features"):
        fn = getattr(model, method, None)
        if callable(fn):
            try:
                return int(fn())
            except Exception:  # noqa: BLE001 - not recorded
                return None
    if framework == "onnx":
        shape = list(model.get_inputs()[0].shape)
        if len(shape) == 2 and isinstance(shape[1], int):
            return shape[1]
    return None


def _softmax(x: np.ndarray) -> np.ndarray:
    z = x - x.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def predict(
    framework: str, model: Any, inputs: np.ndarray, task: str = ""
) -> tuple[np.ndarray, np.ndarray | None]:
    """Run the model on a batch.

    Args:
        framework: one of :data:`PACKAGES`.
        model: what :func:`load_model` returned.
        inputs: 2-D array rows × features, dtype of the spec's signature.
        task: ``classification`` / ``regression`` / ``""`` (``spec.model.task``).

    Returns:
        ``(predictions, probabilities)``: 1-D array of length rows; 2-D rows × classes or
        ``None``.

    Raises:
        FrameworkError: the model raised (the message carries its error).
    """
    try:
        return _predict(framework, model, inputs, task)
    except FrameworkError:
        raise
    except Exception as exc:  # noqa: BLE001 - surfaced as one message
        raise FrameworkError(f"{framework} model failed: {type(exc).__name__}: {exc}") from None


#: scikit-learn classifiers whose ``predict`` is ``classes_[argmax(predict_proba)]`` by
#: scikit-learn's own definitions: trees and forests take the argmax of the probabilities;
#: linear, boosting, naive Bayes and MLP models take the argmax (or the sign) of a score
#: that ``predict_proba`` maps monotonically (sigmoid, softmax, normalised exp);
#: calibrated classifiers take the argmax of their probabilities. For these (alone or as
#: a Pipeline's last step), one ``predict_proba`` call gives both answers: it halves the
#: model's time per request (the fraud example: 2.1 ms instead of 4.2-5.6 ms for a row on
#: the loaded 2-core machine). The answers equal ``predict`` except where two classes'
#: probabilities are equal to float precision. Not here: SVC (its Platt-scaled
#: probabilities can disagree with ``predict``), subclasses (``predict`` may be overridden).
PREDICT_IS_ARGMAX = frozenset(
    {
        "LogisticRegression",
        "LogisticRegressionCV",
        "DecisionTreeClassifier",
        "ExtraTreeClassifier",
        "RandomForestClassifier",
        "ExtraTreesClassifier",
        "GradientBoostingClassifier",
        "HistGradientBoostingClassifier",
        "GaussianNB",
        "BernoulliNB",
        "MultinomialNB",
        "ComplementNB",
        "MLPClassifier",
        "CalibratedClassifierCV",
    }
)


def _argmax_classifier(model: Any) -> bool:
    """Whether ``model`` (or a Pipeline's last step) is in :data:`PREDICT_IS_ARGMAX`."""
    steps = getattr(model, "steps", None)
    final = steps[-1][1] if isinstance(steps, list) and steps else model
    kind = type(final)
    return kind.__module__.startswith("sklearn.") and kind.__name__ in PREDICT_IS_ARGMAX


def _predict(
    framework: str, model: Any, inputs: np.ndarray, task: str
) -> tuple[np.ndarray, np.ndarray | None]:
    if framework == "sklearn" and task != "regression" and _argmax_classifier(model):
        proba = np.asarray(model.predict_proba(inputs), dtype=np.float64)
        classes = np.asarray(getattr(model, "classes_", []))
        if proba.ndim == 2 and classes.ndim == 1 and proba.shape[1] == len(classes) > 0:
            return classes[proba.argmax(axis=1)], proba
    if (
        framework in ("sklearn", "xgboost")
        and hasattr(model, "predict")
        and (framework == "sklearn" or hasattr(model, "get_params"))
    ):
        preds = np.asarray(model.predict(inputs))
        proba = None
        if task != "regression" and hasattr(model, "predict_proba"):
            try:
                proba = np.asarray(model.predict_proba(inputs), dtype=np.float64)
            except (AttributeError, NotImplementedError):
                proba = None  # e.g. SVC(probability=False): predict_proba is not available
        return preds.reshape(len(inputs), -1)[:, 0] if preds.ndim > 1 else preds, proba
    if framework == "xgboost":  # raw Booster: no task known
        import xgboost  # heavy: only for an XGBoost model

        out = np.asarray(model.predict(xgboost.DMatrix(inputs)))
        return (out if out.ndim == 1 else out.argmax(axis=1)), None
    if framework == "lightgbm":
        out = np.asarray(model.predict(inputs))
        if task == "classification":
            if out.ndim == 1:  # binary: probability of class 1
                proba = np.stack([1.0 - out, out], axis=1)
            else:
                proba = out
            return proba.argmax(axis=1), proba.astype(np.float64)
        return out.reshape(len(inputs)), None
    if framework == "onnx":
        first = model.get_inputs()[0]
        onnx_type = {"tensor(float)": np.float32, "tensor(double)": np.float64}
        feed = inputs.astype(onnx_type.get(first.type, inputs.dtype), copy=False)
        outs = model.run(None, {first.name: feed})
        preds = np.asarray(outs[0])
        proba = None
        if len(outs) > 1:
            second = outs[1]
            if isinstance(second, list) and second and isinstance(second[0], dict):
                keys = sorted(second[0])  # skl2onnx ZipMap output: one {label: p} per row
                second = [[row[k] for k in keys] for row in second]
            proba = np.asarray(second, dtype=np.float64)
        if preds.ndim > 1 and preds.shape[1] == 1:
            preds = preds[:, 0]
        elif preds.ndim > 1 and task == "classification" and proba is None:
            proba = _softmax(preds.astype(np.float64))
            preds = proba.argmax(axis=1)
        return preds, proba
    if framework == "pytorch":
        import torch  # heavy: only for a PyTorch model

        with torch.no_grad():
            out = model(torch.from_numpy(np.ascontiguousarray(inputs))).cpu().numpy()
        if task == "classification" and out.ndim == 2 and out.shape[1] > 1:
            proba = _softmax(out.astype(np.float64))
            return proba.argmax(axis=1), proba
        return out.reshape(len(inputs)), None
    raise FrameworkError(f"unknown framework {framework!r}")

"""The pickle guard of every scikit-learn model load (reconciler/runtime/pickles.py).

Real models are saved with joblib and pickle and loaded through
:func:`reconciler.runtime.frameworks.load_model`; hostile pickles name globals that
would run code when loaded. Each hostile payload would write a marker file; the marker
must never appear.
"""

from __future__ import annotations

import os
import pickle
import subprocess

import joblib
import numpy as np
import pytest
from sklearn.ensemble import GradientBoostingClassifier, RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer, StandardScaler

from reconciler.runtime import pickles
from reconciler.runtime.frameworks import FrameworkError, load_model

X = np.random.default_rng(0).normal(size=(60, 4))
Y = (X[:, 0] > 0).astype(int)


def _clean(x):  # a team's own function: the served Bento could not import it either
    return x


@pytest.mark.parametrize(
    "model",
    [
        Pipeline([("scale", StandardScaler()), ("lr", LogisticRegression())]),
        RandomForestClassifier(n_estimators=3, random_state=np.random.RandomState(0)),
        GradientBoostingClassifier(n_estimators=3),
        Pipeline([("log", FunctionTransformer(np.log1p)), ("lr", LogisticRegression())]),
    ],
    ids=["pipeline", "forest-randomstate", "boosting", "ufunc-transformer"],
)
@pytest.mark.parametrize("compress", [0, 3], ids=["plain", "zlib"])
def test_fitted_models_load(model, compress, tmp_path):
    model.fit(np.abs(X), Y)
    path = tmp_path / "model.joblib"
    joblib.dump(model, path, compress=compress)
    loaded = load_model("sklearn", path, "classification")
    assert (loaded.predict(np.abs(X)) == model.predict(np.abs(X))).all()


def test_the_example_models_load():
    for name in ("fraud", "diabetes"):
        assert hasattr(load_model("sklearn", f"examples/{name}/model.joblib"), "predict")


class _Call:
    """A pickle that calls ``func(*args)`` when loaded."""

    def __init__(self, func, *args):
        self.func, self.args = func, args

    def __reduce__(self):
        return (self.func, self.args)


def _payloads(marker):
    shell = f"touch {marker}"
    return {
        "os.system": _Call(os.system, shell),
        "subprocess.call": _Call(subprocess.call, ["touch", str(marker)]),
        "builtins.eval": _Call(eval, f"open({str(marker)!r}, 'w')"),
        "builtins.getattr": _Call(getattr, 1, "real"),
        "numpy.load": _Call(np.load, str(marker), True),
        "numpy.memmap": _Call(np.memmap, str(marker), np.uint8, "w+", 0, (8,)),
        "numpy.testing": _Call(np.testing.assert_equal, 1, 1),
        "own function": _Call(_clean, 1),
    }


@pytest.mark.parametrize("kind", ["joblib", "joblib-zlib", "pickle"])
def test_hostile_pickles_are_refused_before_anything_runs(kind, tmp_path):
    marker = tmp_path / "pwned"
    for name, payload in _payloads(marker).items():
        path = tmp_path / f"{name}.bin"
        if kind == "pickle":
            path.write_bytes(pickle.dumps(payload))
        else:
            joblib.dump(payload, path, compress=3 if kind.endswith("zlib") else 0)
        with pytest.raises(FrameworkError, match="refused to load: the pickle names") as err:
            load_model("sklearn", path)
        assert "docs/runtime.md" in str(err.value), name
        assert not marker.exists(), f"{name}: the payload ran"


def test_a_payload_nested_inside_a_real_model_is_refused(tmp_path):
    marker = tmp_path / "pwned"
    model = Pipeline([("scale", StandardScaler()), ("lr", LogisticRegression())]).fit(X, Y)
    model.steps[0][1].hidden = _Call(os.system, f"touch {marker}")
    path = tmp_path / "model.joblib"
    joblib.dump(model, path)
    with pytest.raises(FrameworkError, match=r"names posix\.system|names os\.system"):
        load_model("sklearn", path)
    assert not marker.exists()


def test_the_guard_covers_only_the_block_and_its_thread(tmp_path):
    path = tmp_path / "x.pkl"
    path.write_bytes(pickle.dumps(_Call(len, "abc")))  # builtins.len: refused inside
    with pytest.raises(pickles.UnsafePickleError, match="builtins.len"), pickles.restricted():
        pickle.loads(path.read_bytes())
    assert pickle.loads(path.read_bytes()) == 3  # modelops' own pickles are not affected

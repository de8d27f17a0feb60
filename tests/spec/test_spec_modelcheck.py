"""validate loads the model file as the build would (in a child process, cached)."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

from reconciler.core import sealed
from reconciler.core.config import load_config
from reconciler.spec import modelcheck
from reconciler.spec.repo import load_all

FRAUD = "specs/fraud-detector.yaml"


def _edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new, 1))


def _load_errors(root: Path) -> list:
    result = load_all(load_config(root), ["fraud-detector"])
    return [d for d in result.diagnostics if d.code == "model-load"]


def test_a_pickle_where_lightgbm_needs_its_booster_file_names_the_fix(spec_repo):
    # the fraud model is a joblib pickle; declared as LightGBM the build cannot load it
    _edit(spec_repo / FRAUD, "framework: sklearn", "framework: lightgbm")
    diags = _load_errors(spec_repo)
    assert diags, "a LightGBM spec with a pickled model must fail validate"
    message = diags[0].message
    assert "is a Python pickle" in message and "booster_.save_model('model.txt')" in message
    assert diags[0].field == "spec.model.uri" and diags[0].position.line == 15


def test_a_pinned_file_the_loader_cannot_read_fails_validate_and_is_cached(
    spec_repo, tmp_path, monkeypatch
):
    monkeypatch.setenv("MODELOPS_CACHE_DIR", str(tmp_path / "cache"))
    model = spec_repo / "examples/fraud/model.joblib"
    model.write_bytes(b"\x80\x04this is not a joblib file")
    digest = hashlib.sha256(model.read_bytes()).hexdigest()
    pinned = "cc8cd22265aa7df3578322bf234a37cbbc80e683a07aafd1b290e0b9c8233267"
    _edit(spec_repo / FRAUD, pinned, digest)
    diags = _load_errors(spec_repo)
    assert diags and "cannot be loaded by the sklearn loader" in diags[0].message
    cached = list((tmp_path / "cache" / "model-load").glob("*.json"))
    assert len(cached) == 1  # both environments: one load, then the cached verdict
    # the verdict is keyed by the file's digest: a cached verdict is what is reported
    # (without the spec load cache above it, which would reuse the whole result)
    sealed.write(cached[0], b'{"problem": "cached verdict"}')
    shutil.rmtree(load_config(spec_repo).state_dir / "cache" / "load")
    assert "cached verdict" in _load_errors(spec_repo)[0].message
    # a verdict modelops did not write (committed by a pull request) is not one: the
    # file is loaded again and the real verdict reported
    cached[0].write_text('{"problem": ""}')
    shutil.rmtree(load_config(spec_repo).state_dir / "cache" / "load")
    assert "cannot be loaded by the sklearn loader" in _load_errors(spec_repo)[0].message


def test_an_unpinned_pickle_is_never_loaded(spec_repo, monkeypatch):
    calls = []
    monkeypatch.setattr(modelcheck, "_load_in_child", lambda *a: calls.append(a))
    lines = (spec_repo / FRAUD).read_text().splitlines(keepends=True)
    (spec_repo / FRAUD).write_text("".join(ln for ln in lines if "sha256:" not in ln))
    assert _load_errors(spec_repo) == [] and calls == []


def test_the_example_models_load(spec_repo):
    assert _load_errors(spec_repo) == []


def test_format_problem_by_bytes():
    assert modelcheck.format_problem("lightgbm", b"\x80\x04\x95") is not None
    assert modelcheck.format_problem("xgboost", b"\x80\x05") is not None
    assert modelcheck.format_problem("lightgbm", b"tree\nversion=v4") is None
    assert modelcheck.format_problem("sklearn", b"\x80\x04") is None


class _Shell:
    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self):
        import os

        return (os.system, (self.command,))


def test_a_pinned_hostile_pickle_is_refused_by_validate_and_never_runs(spec_repo, tmp_path):
    # in a pull request its author writes the model and its digest: the pin is no trust
    import joblib

    marker = tmp_path / "pwned"
    model = spec_repo / "examples/fraud/model.joblib"
    joblib.dump(_Shell(f"touch {marker}"), model)
    digest = hashlib.sha256(model.read_bytes()).hexdigest()
    pinned = "cc8cd22265aa7df3578322bf234a37cbbc80e683a07aafd1b290e0b9c8233267"
    _edit(spec_repo / FRAUD, pinned, digest)
    diags = _load_errors(spec_repo)
    assert diags and diags[0].field == "spec.model.uri" and diags[0].position.line == 15
    assert "refused to load: the pickle names posix.system" in diags[0].message
    assert not marker.exists()


def test_the_loader_process_inherits_no_credential(monkeypatch):
    for name in ("GITHUB_TOKEN", "AWS_SECRET_ACCESS_KEY", "ACTIONS_RUNTIME_TOKEN", "MODELOPS_X"):
        monkeypatch.setenv(name, "secret")
    env = modelcheck.child_env()
    assert not any(v == "secret" for v in env.values())
    assert set(env) <= {*modelcheck.CHILD_ENV, "PYTHONPATH"} and "PATH" in env

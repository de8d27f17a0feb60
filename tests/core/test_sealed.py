"""Sealed cache entries (reconciler/core/sealed.py) and the caches that use them: an
entry committed into a repository's state directory (a pull request's) is a miss."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest

from reconciler.core import sealed
from reconciler.core.config import load_config
from reconciler.spec import files
from reconciler.spec.repo import load_all


@pytest.fixture
def own_key(tmp_path, monkeypatch):
    monkeypatch.setenv(sealed.KEY_ENV, str(tmp_path / "keys" / "cache.key"))
    sealed._key.cache_clear()
    yield tmp_path / "keys" / "cache.key"
    sealed._key.cache_clear()


def test_a_sealed_entry_reads_back_and_any_change_is_a_miss(tmp_path, own_key):
    path = tmp_path / "entry"
    assert sealed.write(path, b"payload") and sealed.read(path) == b"payload"
    assert own_key.stat().st_mode & 0o777 == 0o600
    blob = path.read_bytes()
    path.write_bytes(blob[:-1] + b"X")  # payload changed
    assert sealed.read(path) is None
    path.write_bytes(b"payload")  # never sealed
    assert sealed.read(path) is None
    assert sealed.read(tmp_path / "absent") is None


def test_another_machines_key_does_not_verify(tmp_path, own_key, monkeypatch):
    path = tmp_path / "entry"
    sealed.write(path, b"payload")
    monkeypatch.setenv(sealed.KEY_ENV, str(tmp_path / "other.key"))
    sealed._key.cache_clear()
    assert sealed.read(path) is None


def test_without_a_usable_key_nothing_is_cached(tmp_path, monkeypatch):
    blocker = tmp_path / "file"
    blocker.write_text("")
    monkeypatch.setenv(sealed.KEY_ENV, str(blocker / "cache.key"))  # under a file
    sealed._key.cache_clear()
    try:
        assert not sealed.write(tmp_path / "entry", b"x") and not (tmp_path / "entry").exists()
    finally:
        sealed._key.cache_clear()


class _Marker:
    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self):
        return (Path.touch, (self.path,))


def test_a_committed_pickle_in_the_parsed_spec_cache_is_never_loaded(tmp_path, own_key):
    # a pull request commits .modelops/cache/quick/<the key of its spec>.pickle
    spec = b"apiVersion: modelops/v1\nkind: ModelDeployment\nmetadata: {name: x}\n"
    folder = tmp_path / "cache" / "quick"
    folder.mkdir(parents=True)
    marker = tmp_path / "pwned"
    files._disk_path(folder, spec).write_bytes(pickle.dumps(_Marker(marker)))
    files._QUICK.clear()
    assert files.quick_load(spec, folder)["kind"] == "ModelDeployment"
    assert not marker.exists()


def test_a_committed_entry_in_the_load_cache_is_never_loaded(spec_repo, own_key, tmp_path):
    config = load_config(spec_repo)
    assert not load_all(config, ["fraud-detector"]).errors  # writes sealed entries
    entries = list((config.state_dir / "cache" / "load").glob("*.pickle"))
    assert entries
    marker = tmp_path / "pwned"
    for entry in entries:  # replaced by what a pull request would commit
        entry.write_bytes(pickle.dumps(_Marker(marker)))
    assert not load_all(config, ["fraud-detector"]).errors
    assert not marker.exists()

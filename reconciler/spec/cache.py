"""A disk cache of what loading one spec file gave: the spec, its diagnostics, its
deployments (:func:`reconciler.spec.repo.load_files`).

Parsing a spec (the hardened YAML reader), validating it against the JSON Schema twice
(the base and each resolved overlay) and its semantic checks cost about 20 ms of CPU per
spec file here: 20 s for a ``plan --all`` or a full self-heal pass over 1,000 specs in
which nothing changed. A result is reused only when everything it was computed from is
the same (:meth:`LoadCache.get`):

* the file's bytes (SHA-256) and display path, and the environments resolved;
* the settings validation reads (root, environments, state directory);
* the code that loads and validates (the source of ``reconciler/spec``, ``core``, the
  policy encoding, the runtime's framework table and the JSON Schema) and the versions of
  the model libraries the model-load check imports;
* every repository file the spec names (any string value that is a repository path: the
  model, reference data, smoke requests, sinks...): its type, size, modification time and
  inode, by ``os.stat`` and ``os.lstat`` (a file replaced, edited, removed or turned
  into a link invalidates the result).

Entries live under ``<state_dir>/cache/load/`` (one pickle per key, written atomically
and sealed with this machine's key, :mod:`reconciler.core.sealed`: the default state
directory is inside the repository, where a pull request could commit an entry, a pickle
that would run code when read); at most :data:`DISK_ENTRIES` are kept. A cache is never
the truth: an unreadable or unsealed entry is a miss.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import pickle
from importlib import metadata
from pathlib import Path
from typing import Any

from reconciler.core import sealed
from reconciler.core.config import Config

DISK_ENTRIES = 5000
#: Model libraries whose versions decide the model-load check (runtime/frameworks.py).
_LIBRARIES = ("scikit-learn", "xgboost", "lightgbm", "onnxruntime", "torch", "numpy", "joblib")
_PACKAGE = Path(__file__).resolve().parents[1]


@functools.cache
def code_digest() -> str:
    """SHA-256 of the loading and validating code, the schema and the model libraries'
    versions (computed once per process)."""
    digest = hashlib.sha256()
    files = sorted(
        [
            *(_PACKAGE / "spec").glob("*.py"),
            *(_PACKAGE / "spec").glob("*.json"),
            *(_PACKAGE / "core").glob("*.py"),
            _PACKAGE / "policy" / "encoding.py",
            _PACKAGE / "runtime" / "frameworks.py",
        ]
    )
    for path in files:
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
    for dist in _LIBRARIES:
        try:
            digest.update(f"{dist}=={metadata.version(dist)}".encode())
        except metadata.PackageNotFoundError:
            digest.update(f"{dist}==none".encode())
    return digest.hexdigest()


def _path_values(value: Any, out: set[str]) -> set[str]:
    """Every string in ``value`` (nested dicts/lists) that can name a repository file."""
    if isinstance(value, dict):
        for item in value.values():
            _path_values(item, out)
    elif isinstance(value, list):
        for item in value:
            _path_values(item, out)
    elif (
        isinstance(value, str)
        and value
        and "://" not in value
        and ":" not in value[:12]
        and ("/" in value or "." in value)
        and "\n" not in value
        and len(value) < 1024
    ):
        out.add(value)
    return out


def _stat(path: str | Path) -> list:
    """``[lstat mode, stat mode, size, mtime_ns, inode]``, or ``[]`` when it is missing."""
    try:
        link = os.lstat(path)
    except (OSError, ValueError):
        return []
    try:
        st = os.stat(path)
    except (OSError, ValueError):
        return [link.st_mode]
    return [link.st_mode, st.st_mode, st.st_size, st.st_mtime_ns, st.st_ino]


def fingerprint(root: Path, paths: list[str], seen: dict[str, list] | None = None) -> list:
    """The state of the repository files ``paths`` name (see the module doc).

    ``seen``: states already read in this load, by path (1,000 specs of a full plan name
    the same example files: each is read once per load, not once per spec)."""
    base = str(root)
    out = []
    for p in paths:
        state = seen.get(p) if seen is not None else None
        if state is None:
            state = _stat(os.path.join(base, p))
            if seen is not None:
                seen[p] = state
        out.append([p, state])
    return out


class LoadCache:
    """The load cache of one repository (see the module doc).

    Args:
        config: repository configuration (root, environments, state directory).
        envs: the environments :func:`~reconciler.spec.repo.load_files` resolves
            (``None``: each spec's own).
    """

    def __init__(self, config: Config, envs: list[str] | None) -> None:
        self.root = Path(config.root)
        self.dir = Path(config.state_dir) / "cache" / "load"
        self.context = json.dumps(
            {
                "code": code_digest(),
                "root": str(config.root),
                "state_dir": str(config.state_dir),
                "environments": list(config.environments),
                "envs": envs,
            },
            sort_keys=True,
        )
        self._pruned = False
        self._seen: dict[str, list] = {}  # file states read by get() in this load

    def _key(self, raw: bytes, file: str) -> str:
        digest = hashlib.sha256(self.context.encode())
        digest.update(b"\0" + file.encode() + b"\0")
        digest.update(hashlib.sha256(raw).digest())
        return digest.hexdigest()

    def get(self, raw: bytes, file: str) -> tuple | None:
        """``(spec, diagnostics, deployments)`` loaded from these bytes before, when
        every input is unchanged; ``None`` otherwise."""
        path = self.dir / f"{self._key(raw, file)}.pickle"
        try:
            blob = sealed.read(path)
            if blob is None:  # absent, or not written by modelops on this machine
                return None
            entry = pickle.loads(blob)
            paths = entry["paths"]
            if fingerprint(self.root, paths, self._seen) != entry["files"]:
                return None
            return entry["value"]
        except Exception:  # noqa: BLE001 - absent, unreadable or stale: load again
            return None

    def put(self, raw: bytes, file: str, data: Any, value: tuple) -> None:
        """Remember ``value`` for these bytes with the state of the files ``data`` names.
        A write that fails is ignored (the next run loads again)."""
        paths = sorted(_path_values(data, set()))
        entry = {"paths": paths, "files": fingerprint(self.root, paths), "value": value}
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
            self._prune()
            blob = pickle.dumps(entry, protocol=pickle.HIGHEST_PROTOCOL)
            sealed.write(self.dir / f"{self._key(raw, file)}.pickle", blob)
        except Exception:  # noqa: BLE001 - a cache that cannot be written is only slower
            return

    def _prune(self) -> None:
        """Keep the newest :data:`DISK_ENTRIES` entries (checked once per cache object)."""
        if self._pruned:
            return
        self._pruned = True
        entries = list(self.dir.glob("*.pickle"))
        if len(entries) <= DISK_ENTRIES:
            return
        entries.sort(key=lambda p: p.stat().st_mtime)
        for old in entries[: len(entries) - DISK_ENTRIES]:
            old.unlink(missing_ok=True)

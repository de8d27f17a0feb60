"""What a spec names, read without validating it: its name and the repository files it needs.

Change detection and the flow read many specs at other revisions only to match them by
``metadata.name`` and to know which files (model, smoke requests) they depend on; full
loading with positions and validation happens later, for the specs that are planned.
"""

from __future__ import annotations

import hashlib
import pickle
from collections import OrderedDict
from pathlib import Path

from reconciler.core import sealed
from reconciler.core.yaml import YamlLoadError, load_yaml
from reconciler.runtime.uris import repo_relative
from reconciler.spec.cache import code_digest


def _section_deps(section: dict) -> set[str]:
    out: set[str] = set()
    if not isinstance(section, dict):
        return out
    model = section.get("model")
    if isinstance(model, dict):
        if p := repo_relative(model.get("uri")):
            out.add(p)
    serving = section.get("serving")
    smoke = serving.get("smoke") if isinstance(serving, dict) else None
    if isinstance(smoke, dict):
        if p := repo_relative(smoke.get("request")):
            out.add(p)
        for item in smoke.get("requests") or []:
            if isinstance(item, dict) and (p := repo_relative(item.get("request"))):
                out.add(p)
    edge = section.get("edge")
    parity = edge.get("parity") if isinstance(edge, dict) else None
    if isinstance(parity, dict) and (p := repo_relative(parity.get("data"))):
        out.add(p)  # the edge build's parity data decides whether the bundle is built
    return out


def spec_dependencies(data: dict) -> set[str]:
    """Repository files one spec depends on, besides itself and the shared inputs.

    Args:
        data: the spec document as parsed (plain dicts).

    Returns:
        Root-relative POSIX paths: the model file, smoke request files and edge parity
        data (``spec.edge.parity.data``) named in the
        base ``spec`` and in every ``spec.environments.<env>`` overlay. URIs
        (``s3://``, ``bentoml:``...) and paths leaving the repository are not files of
        the repository and are left out (validation reports the latter).
    """
    if not isinstance(data, dict):
        return set()
    body = data.get("spec")
    if not isinstance(body, dict):
        return set()
    deps = _section_deps(body)
    envs = body.get("environments")
    if isinstance(envs, dict):
        for overlay in envs.values():
            deps |= _section_deps(overlay or {})
    return deps


#: Parsed specs kept in memory by :func:`quick_load`, by SHA-256 of the bytes: a change
#: detection reads each unchanged spec at both revisions (the same bytes), and a full
#: plan or self-heal pass reads them again; parsing is about 1.5-5 ms of CPU per spec.
QUICK_ENTRIES = 4096
_QUICK: OrderedDict[bytes, bytes] = OrderedDict()
#: Parsed specs kept on disk (:func:`quick_cache_dir`), at most this many: a new process
#: (each CLI run) parsed every spec again, 1,000 specs at two revisions in a full plan.
QUICK_DISK_ENTRIES = 5000
_PRUNED: set[Path] = set()


def quick_cache_dir(config) -> Path:
    """Where :func:`quick_load` keeps parsed specs on disk for a repository:
    ``<state_dir>/cache/quick/``; entries are sealed with this machine's key
    (:mod:`reconciler.core.sealed`: the default state directory is inside the
    repository, where a pull request could commit a pickle)."""
    return Path(config.state_dir) / "cache" / "quick"


def _disk_path(folder: Path, raw: bytes) -> Path:
    """The entry of ``raw``: keyed by its SHA-256 and the loading code's digest (a change
    to the YAML reader invalidates every entry)."""
    digest = hashlib.sha256(code_digest().encode() + b"\0" + raw).hexdigest()
    return folder / f"{digest}.pickle"


def _disk_put(folder: Path, raw: bytes, blob: bytes) -> None:
    """Write one entry atomically (temp file, rename); a write that fails is ignored."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        if folder not in _PRUNED:  # once per process and folder
            _PRUNED.add(folder)
            entries = list(folder.glob("*.pickle"))
            if len(entries) > QUICK_DISK_ENTRIES:
                entries.sort(key=lambda p: p.stat().st_mtime)
                for old in entries[: len(entries) - QUICK_DISK_ENTRIES]:
                    old.unlink(missing_ok=True)
        sealed.write(_disk_path(folder, raw), blob)
    except OSError:
        return


def quick_load(raw: bytes | None, cache_dir: Path | None = None) -> dict | None:
    """Parse a spec with the one YAML reader, or ``None`` if unreadable.

    Used only to find names and dependencies; its diagnostics are dropped here because
    full validation with positions happens later, in the load stage, for the specs that
    are planned (an alias bomb or a duplicate key is refused here as well, so that a
    revision's spec cannot expand in a diff).

    Results are kept in memory by content; with ``cache_dir``
    (:func:`quick_cache_dir`) also on disk, for the next process. An entry that cannot
    be read is a miss (a cache is never the truth).
    """
    if raw is None:
        return None
    raw = raw if isinstance(raw, bytes) else raw.encode()
    key = hashlib.sha256(raw).digest()
    kept = _QUICK.get(key)
    if kept is not None:
        _QUICK.move_to_end(key)
        return pickle.loads(kept)  # a fresh copy: callers may change what they get
    if cache_dir is not None:
        try:
            blob = sealed.read(_disk_path(cache_dir, raw))
            if blob is None:  # absent, or not written by modelops on this machine
                raise LookupError
            data = pickle.loads(blob)
            if data is None or isinstance(data, dict):
                _remember(key, blob)
                return data
        except Exception:  # noqa: BLE001 - absent or unreadable: parse again
            pass
    try:
        data, _ = load_yaml(raw, "<spec>")
    except YamlLoadError:
        return None
    data = data if isinstance(data, dict) else None
    blob = pickle.dumps(data, protocol=pickle.HIGHEST_PROTOCOL)
    _remember(key, blob)
    if cache_dir is not None:
        _disk_put(cache_dir, raw, blob)
    return data


def _remember(key: bytes, blob: bytes) -> None:
    _QUICK[key] = blob
    if len(_QUICK) > QUICK_ENTRIES:
        _QUICK.popitem(last=False)


def spec_name(data: dict | None) -> str:
    """``metadata.name`` of a quickly loaded spec, or ``""``."""
    meta = data.get("metadata") if isinstance(data, dict) else None
    name = meta.get("name") if isinstance(meta, dict) else None
    return name if isinstance(name, str) else ""

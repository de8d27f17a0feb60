"""Cache entries that only modelops on this machine can have written (HMAC-SHA256).

modelops keeps caches under the state directory (parsed specs, load results, model-load
verdicts, rendered manifests), and by default that is ``<repository>/.modelops``. In a
pull request the repository is the author's: a committed ``.modelops/cache/...`` file
would otherwise be read as a cache entry, a pickle that runs code when loaded, or a
verdict or rendering that makes validate and plan show what the author wants. So every
entry is sealed with a key kept outside any repository (:func:`key_path`, created on
first use, 32 random bytes, mode 0600) and an entry whose seal does not verify is a miss.

The key is per machine (per user): a hosted CI runner starts with a new one and an empty
cache. Without a usable key (no writable home) nothing is cached.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import os
import secrets
import tempfile
from pathlib import Path

#: The first bytes of every sealed entry (a format version: a change misses every entry).
MAGIC = b"modelops-sealed-1\n"
KEY_ENV = "MODELOPS_CACHE_KEY"
_TAG = hashlib.sha256().digest_size


def key_path() -> Path:
    """``$MODELOPS_CACHE_KEY``, else ``$XDG_CACHE_HOME/modelops/cache.key``, else
    ``~/.cache/modelops/cache.key``."""
    env = os.environ
    return _key_path(env.get(KEY_ENV), env.get("XDG_CACHE_HOME"), env.get("HOME"))


@functools.lru_cache(maxsize=8)
def _key_path(given: str | None, xdg: str | None, home: str | None) -> Path:
    """:func:`key_path` of these variables (a plan reads thousands of entries: building
    the path each time cost about 0.1 ms)."""
    if given:
        return Path(given)
    base = xdg or str(Path.home() / ".cache")
    return Path(base) / "modelops" / "cache.key"


@functools.cache
def _key(path: Path) -> bytes | None:
    """The key at ``path``, created atomically when absent (two processes creating it at
    once agree on one); ``None`` when it can be neither read nor created."""
    for _ in range(2):
        try:
            key = path.read_bytes()
            return key if len(key) >= 32 else None
        except FileNotFoundError:
            pass
        except OSError:
            return None
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".key-")
            with os.fdopen(fd, "wb") as fh:
                fh.write(secrets.token_bytes(32))
            os.chmod(tmp, 0o600)
            try:
                os.link(tmp, path)  # fails when another process made it first: use theirs
            except FileExistsError:
                pass
            finally:
                os.unlink(tmp)
        except OSError:
            return None
    return None


def _tag(key: bytes, payload: bytes) -> bytes:
    return hmac.new(key, payload, hashlib.sha256).digest()


def seal(payload: bytes) -> bytes | None:
    """``payload`` with its seal, to write as a cache entry; ``None`` when there is no key
    (then do not cache)."""
    key = _key(key_path())
    if key is None:
        return None
    return MAGIC + _tag(key, payload) + payload


def unseal(blob: bytes) -> bytes | None:
    """The payload of a sealed entry, or ``None`` when ``blob`` was not sealed with this
    machine's key (forged, truncated, from another machine or format): a cache miss."""
    key = _key(key_path())
    if key is None or not blob.startswith(MAGIC) or len(blob) < len(MAGIC) + _TAG:
        return None
    tag, payload = blob[len(MAGIC) : len(MAGIC) + _TAG], blob[len(MAGIC) + _TAG :]
    return payload if hmac.compare_digest(tag, _tag(key, payload)) else None


def read(path: Path) -> bytes | None:
    """The payload of the sealed entry at ``path``; ``None`` when absent, unreadable or
    not sealed by this machine."""
    try:
        return unseal(path.read_bytes())
    except OSError:
        return None


def write(path: Path, payload: bytes) -> bool:
    """Write ``payload`` sealed at ``path`` atomically (temporary file, rename).

    Returns:
        False when nothing was written (no key, or an OS error: a cache only costs time).
    """
    blob = seal(payload)
    if blob is None:
        return False
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
        with os.fdopen(fd, "wb") as fh:
            fh.write(blob)
        os.replace(tmp, path)
    except OSError:
        return False
    return True

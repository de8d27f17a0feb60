"""SHA-256 digests: of a file's bytes, and of a JSON-ready value in canonical form.

The one place these are computed (build digests, inputs digests, model digests), so
that equal inputs give equal digests everywhere.
"""

from __future__ import annotations

import hashlib
import json
import os

CHUNK_BYTES = 1 << 20
"""Files are read in chunks of 1 MiB (model files can be large)."""


def file_sha256(path: str | os.PathLike) -> str:
    """SHA-256 hex digest of a file's bytes, read in chunks of :data:`CHUNK_BYTES`.

    Raises:
        OSError: the file cannot be read (missing, a directory, no permission).
    """
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(CHUNK_BYTES):
            digest.update(block)
    return digest.hexdigest()


def canonical_json(value: object) -> str:
    """``value`` as canonical JSON text: sorted keys, no spaces, ``str()`` for any value
    JSON has no type for (paths, dates)."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)


def json_sha256(value: object) -> str:
    """SHA-256 hex digest of :func:`canonical_json` of ``value`` (UTF-8)."""
    return hashlib.sha256(canonical_json(value).encode()).hexdigest()

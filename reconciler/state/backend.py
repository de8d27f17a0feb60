"""Where the ledger and the lock are kept: a local directory (the default) or S3.

Both backends store small documents under keys (``lock``, ``ledger/<name>-<env>.json``,
``retrain/<name>-<env>/last-completed.json``) and write them **conditionally**, so two
writers never silently overwrite each other (``docs/state.md``, "Shared state"):

* ``expect=ABSENT`` creates a key only when it does not exist (the lock; S3
  ``If-None-Match: *``, as Terraform's S3 backend takes its lock);
* ``expect=<etag>`` replaces a key only while it still has the version that was read
  (a ledger record; S3 ``If-Match``); a refused write raises :class:`StateConflict` and the
  one status writer (``state/status.py``) reads the record again and redoes its change;
* ``expect=None`` writes unconditionally (a record put without being read first).

:class:`LocalBackend` keeps today's layout in the state directory (temp file, fsync,
rename; the lock created with ``os.link``); its version tag is the SHA-256 of the bytes and
conditional replaces hold ``flock`` on the directory. :class:`S3Backend` keeps the same
keys below ``s3://bucket/prefix`` (``MODELOPS_STATE_URL`` or ``state_url``), with the ETag
S3 returns as version tag. boto3 uses the standard AWS credential chain (and
``AWS_ENDPOINT_URL`` when set).
"""

from __future__ import annotations

import errno
import fcntl
import functools
import hashlib
import os
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from reconciler.core.config import Config
from reconciler.core.diagnostics import ModelopsError
from reconciler.runtime.uris import parse_s3_uri

#: ``expect`` value of :meth:`StateBackend.write`: the key must not exist yet.
ABSENT = ""

_WRITE_PROBLEMS = {
    errno.ENOSPC: "no space left on the device",
    errno.EDQUOT: "the disk quota is exceeded",
    errno.EROFS: "the file system is read-only",
    errno.EACCES: "permission denied",
    errno.EPERM: "permission denied",
}


class StateWriteError(ModelopsError):
    """The state directory cannot be written (full, read-only, no permission); exit 2.

    The message names the directory and what to do; the file being written is left as
    it was (the temp file is removed).
    """

    def __init__(self, directory: Path, exc: OSError) -> None:
        why = _WRITE_PROBLEMS.get(exc.errno or 0, exc.strerror or str(exc))
        super().__init__(
            f"cannot write the state directory {directory}: {why}. Free space or make it "
            "writable (or point --state-dir / MODELOPS_STATE_DIR elsewhere); the file being "
            "written was left as it was"
        )
        self.errno = exc.errno


class StateStoreError(ModelopsError):
    """The shared state store (``s3://``) cannot be read or written; exit 2.

    The message names the URI, what failed and what to check (bucket, credentials,
    endpoint); nothing was written.
    """


class StateConflict(ModelopsError):
    """A conditional write was refused: the key changed (or appeared, or vanished) since it
    was read. ``key`` is the backend key; nothing was written."""

    def __init__(self, message: str, key: str) -> None:
        super().__init__(message)
        self.key = key


@dataclass(frozen=True)
class Stored:
    """One stored document: its bytes and version tag (SHA-256 locally, ETag on S3)."""

    data: bytes
    etag: str


class StateBackend(Protocol):
    """The storage under the ledger and the lock (keys are ``/``-separated, relative)."""

    #: the state location for messages: a directory path or ``s3://bucket/prefix``.
    location: str

    def describe(self, key: str) -> str:
        """Where ``key`` is, for messages: a file path or an ``s3://`` URI."""
        ...

    def read(self, key: str) -> Stored | None:
        """The document at ``key``, or ``None`` when there is none.

        Raises:
            StateStoreError: the store cannot be read (S3: bucket missing, forbidden,
                unreachable).
        """
        ...

    def write(self, key: str, data: bytes, *, expect: str | None = None) -> str:
        """Store ``data`` at ``key``; returns its new version tag.

        Args:
            expect: ``None`` writes unconditionally; :data:`ABSENT` only creates;
                a version tag replaces only that version.

        Raises:
            StateConflict: ``expect`` did not hold; nothing was written.
            StateWriteError | StateStoreError: the store cannot be written.
        """
        ...

    def delete(self, key: str, *, expect: str | None = None) -> bool:
        """Remove ``key`` (only at version ``expect`` when given); whether it existed.

        Raises:
            StateConflict: the key has another version than ``expect``; nothing removed.
        """
        ...

    def keys(self, prefix: str) -> list[str]:
        """The keys below ``prefix`` (e.g. ``ledger/``), sorted."""
        ...


def etag_of(data: bytes) -> str:
    """The local backend's version tag of ``data``: its SHA-256, hex."""
    return hashlib.sha256(data).hexdigest()


class LocalBackend:
    """The state directory (created on first write).

    Args:
        root: the state directory; ``key`` ``a/b.json`` is the file ``root/a/b.json``.
    """

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.location = str(self.root)

    def path(self, key: str) -> Path:
        """The file of ``key``."""
        return self.root / key

    def describe(self, key: str) -> str:
        return str(self.path(key))

    def read(self, key: str) -> Stored | None:
        try:
            data = self.path(key).read_bytes()
        except FileNotFoundError:
            return None
        return Stored(data, etag_of(data))

    def write(self, key: str, data: bytes, *, expect: str | None = None) -> str:
        target = self.path(key)
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            if expect == ABSENT:
                if not _link_new(target, data):
                    raise StateConflict(f"{target} exists already", key)
            elif expect is None:
                replace_atomically(target, data)
            else:
                with _dir_locked(target.parent):
                    current = self.read(key)
                    if current is None or current.etag != expect:
                        raise StateConflict(f"{target} changed since it was read", key)
                    replace_atomically(target, data)
        except OSError as exc:
            raise StateWriteError(target.parent, exc) from None
        return etag_of(data)

    def delete(self, key: str, *, expect: str | None = None) -> bool:
        target = self.path(key)
        if expect is None:
            try:
                target.unlink()
                return True
            except FileNotFoundError:
                return False
        if not target.parent.is_dir():
            return False
        with _dir_locked(target.parent):
            current = self.read(key)
            if current is None:
                return False
            if current.etag != expect:
                raise StateConflict(f"{target} changed since it was read", key)
            target.unlink()
            return True

    def keys(self, prefix: str) -> list[str]:
        base = self.path(prefix)
        if not base.is_dir():
            return []
        return sorted(
            f"{prefix.rstrip('/')}/{p.name}"
            for p in base.iterdir()
            if p.is_file() and not p.name.startswith(".")
        )


@contextmanager
def _dir_locked(directory: Path):
    """``flock`` on ``directory`` (exclusive) for the block: conditional local replaces of
    two processes do not interleave their compare and their rename."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the flock


def _fsync_dir(directory: Path) -> None:
    dir_fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def _temp_copy(target: Path, data: bytes) -> str:
    """A synced temp file holding ``data`` beside ``target``; returns its path."""
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return tmp


def replace_atomically(target: Path, data: bytes) -> None:
    """Temp file, fsync, rename, fsync of the directory: the old file or the new, never
    half of one."""
    tmp = _temp_copy(target, data)
    try:
        os.replace(tmp, target)
        _fsync_dir(target.parent)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _link_new(target: Path, data: bytes) -> bool:
    """Create ``target`` holding ``data`` only if it does not exist (``os.link`` of a synced
    temp file: atomic, and never a half-written file); False when it exists."""
    tmp = _temp_copy(target, data)
    try:
        os.link(tmp, target)
    except FileExistsError:
        return False
    finally:
        Path(tmp).unlink(missing_ok=True)
    return True


#: S3 error codes that mean "the condition did not hold" (412 PreconditionFailed; 409
#: ConditionalRequestConflict when a concurrent conditional write won; NoSuchKey for an
#: If-Match on a key deleted meanwhile).
_CONFLICT_CODES = {"PreconditionFailed", "ConditionalRequestConflict", "412", "409"}


class S3Backend:
    """The keys below ``s3://bucket/prefix``, written with S3 conditional writes.

    Args:
        url: ``s3://bucket/prefix`` (the prefix may be empty).
        client: an S3 client (default ``boto3.client("s3")``, made on first use).

    Raises:
        ValueError: ``url`` is not a valid S3 URI (the message says why).
    """

    def __init__(self, url: str, client: Any = None) -> None:
        self.bucket, self.prefix = parse_s3_uri(url)
        self.location = f"s3://{self.bucket}/{self.prefix}".rstrip("/")
        self._client = client

    @property
    def client(self) -> Any:
        if self._client is None:
            self._client = _s3_client(*(os.environ.get(v, "") for v in _CLIENT_ENV))
        return self._client

    def _key(self, key: str) -> str:
        return f"{self.prefix}/{key}" if self.prefix else key

    def describe(self, key: str) -> str:
        return f"s3://{self.bucket}/{self._key(key)}"

    def _failure(self, what: str, key: str, exc: Exception) -> StateStoreError:
        code = _error_code(exc)
        hint = {
            "NoSuchBucket": "the bucket does not exist: create it, or fix MODELOPS_STATE_URL "
            "/ state_url",
            "AccessDenied": "access is forbidden: give the credentials s3:GetObject, "
            "s3:PutObject, s3:DeleteObject and s3:ListBucket on this prefix",
            "403": "access is forbidden: give the credentials s3:GetObject, s3:PutObject, "
            "s3:DeleteObject and s3:ListBucket on this prefix",
        }.get(code, "check the bucket, the AWS credentials and the endpoint")
        return StateStoreError(
            f"cannot {what} the shared state {self.describe(key)}: "
            f"{type(exc).__name__}: {exc}; {hint}. Nothing was written."
        )

    def read(self, key: str) -> Stored | None:
        try:
            got = self.client.get_object(Bucket=self.bucket, Key=self._key(key))
            return Stored(got["Body"].read(), got["ETag"])
        except Exception as exc:  # noqa: BLE001 - botocore raises many kinds; all are named
            if _error_code(exc) in ("NoSuchKey", "404"):
                return None
            raise self._failure("read", key, exc) from None

    def write(self, key: str, data: bytes, *, expect: str | None = None) -> str:
        condition = (
            {}
            if expect is None
            else {"IfNoneMatch": "*"}
            if expect == ABSENT
            else {"IfMatch": expect}
        )
        try:
            put = self.client.put_object(
                Bucket=self.bucket, Key=self._key(key), Body=data, **condition
            )
        except Exception as exc:  # noqa: BLE001 - botocore raises many kinds; all are named
            code = _error_code(exc)
            if expect is not None and (code in _CONFLICT_CODES or code == "NoSuchKey"):
                what = "exists already" if expect == ABSENT else "changed since it was read"
                raise StateConflict(
                    f"{self.describe(key)} {what} (S3 refused the conditional write: {code})",
                    key,
                ) from None
            raise self._failure("write", key, exc) from None
        return put["ETag"]

    def delete(self, key: str, *, expect: str | None = None) -> bool:
        if self.read(key) is None:
            return False
        try:
            self.client.delete_object(
                Bucket=self.bucket, Key=self._key(key), **({"IfMatch": expect} if expect else {})
            )
        except Exception as exc:  # noqa: BLE001 - botocore raises many kinds; all are named
            code = _error_code(exc)
            if code == "NoSuchKey":
                return False
            if expect is not None and code in _CONFLICT_CODES:
                raise StateConflict(
                    f"{self.describe(key)} changed since it was read; not removed", key
                ) from None
            raise self._failure("delete", key, exc) from None
        return True

    def keys(self, prefix: str) -> list[str]:
        start = self._key(prefix)
        strip = len(self._key(""))
        try:
            pages = self.client.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=start
            )
            return sorted(obj["Key"][strip:] for page in pages for obj in page.get("Contents", []))
        except Exception as exc:  # noqa: BLE001 - botocore raises many kinds; all are named
            raise self._failure("list", prefix, exc) from None


#: Environment variables a client depends on: one client per distinct set (a process
#: makes one; tests that point AWS_ENDPOINT_URL at another fake get another).
_CLIENT_ENV = ("AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_PROFILE", "AWS_DEFAULT_REGION")


@functools.cache
def _s3_client(*env: str) -> Any:
    """One S3 client per :data:`_CLIENT_ENV` values (boto3 clients are thread-safe; making
    one costs about 50 ms, and every ledger read would otherwise make its own)."""
    import boto3  # heavy (botocore's service models): only s3:// state needs it

    return boto3.client("s3")


def _error_code(exc: Exception) -> str:
    """The S3 error code of a botocore ``ClientError`` (``""`` for other exceptions)."""
    response = getattr(exc, "response", None)
    if not isinstance(response, dict):
        return ""
    return str(response.get("Error", {}).get("Code", ""))


def open_backend(config: Config) -> StateBackend:
    """The backend of a repository: ``S3Backend(config.state_url)`` when set, else the
    state directory.

    Raises:
        ModelopsError: (exit 2) ``state_url`` is not a valid ``s3://`` URI.
    """
    if config.state_url:
        try:
            return S3Backend(config.state_url)
        except ValueError as exc:
            raise ModelopsError(f"state URL: {exc}") from None
    return LocalBackend(config.state_dir)

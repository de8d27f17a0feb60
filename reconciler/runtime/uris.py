"""The URIs a spec writes: ``s3://``, ``bentoml:<tag>``, ``models:/...`` and repository paths.

Shipped in every Bento as ``modelops_runtime/uris.py`` (the capture writer parses its
sink with it), so it imports nothing from ``reconciler``; everything else in the package
parses URIs here too. Its source is part of the build digest.
"""

from __future__ import annotations

import posixpath
import re
from typing import NamedTuple

#: Prefixes of the URI schemes a spec may write where a repository path could stand.
URI_SCHEMES = ("bentoml:", "s3://", "models:/", "gs://", "https://")

S3_FORM = (
    "s3://<bucket>/<key> with a bucket name of 3-63 lowercase letters, digits, dots and "
    "hyphens that starts and ends with a letter or digit"
)
"""What a valid S3 URI looks like, for messages (AWS S3 User Guide, "General purpose
bucket naming rules")."""

_BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
_IPV4 = re.compile(r"\d{1,3}(\.\d{1,3}){3}")


class S3Uri(NamedTuple):
    """A parsed ``s3://`` URI (unpacks as ``bucket, key``).

    Attributes:
        bucket: the bucket name (valid by the AWS naming rules).
        key: the object key or prefix, without leading or trailing ``/``; ``""`` for the
            whole bucket.
    """

    bucket: str
    key: str

    def __str__(self) -> str:
        return f"s3://{self.bucket}/{self.key}"


def s3_uri_problem(uri: str) -> str | None:
    """Why ``uri`` is not a usable ``s3://<bucket>/<key>`` URI, or None when it is.

    Rules: the ``s3://`` scheme (lower case); a bucket name by the AWS naming rules
    (3-63 characters of lowercase letters, digits, dots and hyphens, starting and ending
    with a letter or digit, no ``..``, not an IP address); no ``.``/``..`` segment in the
    key (the key becomes a local spool path, which must not leave the spool).
    """
    if not uri.startswith("s3://"):
        return "it does not start with s3://"
    bucket, _, key = uri[len("s3://") :].partition("/")
    if not bucket:
        return "it names no bucket"
    if _IPV4.fullmatch(bucket):
        return f"{bucket!r} is an IP address, not an S3 bucket name"
    if not _BUCKET.fullmatch(bucket) or ".." in bucket:
        return f"{bucket!r} is not a valid S3 bucket name"
    if any(part in (".", "..") for part in key.split("/")):
        return f"the key {key!r} has a '.' or '..' segment"
    return None


def parse_s3_uri(uri: str) -> S3Uri:
    """``s3://bucket/some/prefix/`` → ``S3Uri("bucket", "some/prefix")``.

    Raises:
        ValueError: the URI breaks a rule of :func:`s3_uri_problem`; the message says
            which, and what a valid URI looks like.
    """
    problem = s3_uri_problem(uri)
    if problem:
        raise ValueError(f"{uri!r} is not a valid S3 URI: {problem}; expected {S3_FORM}")
    bucket, _, key = uri[len("s3://") :].partition("/")
    return S3Uri(bucket, key.strip("/"))


def is_uri(value: str) -> bool:
    """Whether ``value`` starts with one of :data:`URI_SCHEMES` (it is not a file path)."""
    return value.startswith(URI_SCHEMES)


def bentoml_tag(uri: str) -> str | None:
    """The tag of ``bentoml:<tag>`` (``name`` or ``name:version``), or None for another
    kind of URI."""
    if not uri.startswith("bentoml:"):
        return None
    return uri[len("bentoml:") :].strip()


def repo_relative(value: object) -> str | None:
    """A repository-relative POSIX path (normalized), or ``None`` for a URI, an absolute
    path, a path whose ``..`` leaves the repository, or anything but a non-empty string.

    A lexical check only: symbolic links are resolved by
    ``reconciler.spec.paths.check_path``.
    """
    if not isinstance(value, str) or not value or is_uri(value):
        return None
    if "://" in value or value.startswith("/"):
        return None
    path = posixpath.normpath(value)
    if path.startswith("../") or path == "..":
        return None
    return path

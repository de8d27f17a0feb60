"""Paths written in specs: a repository-relative path or an ``s3://`` URI, checked once.

:func:`check_path` (and :func:`spec_path` for a deployment's field) refuses paths that
leave the repository (``..``, symbolic links) and malformed or refused URIs, raising the
caller's error class with file, line and field. Rationale: ``docs/spec.md``.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from reconciler.core.config import Config
from reconciler.core.diagnostics import Diagnostic, ModelopsError
from reconciler.runtime.uris import S3_FORM, S3Uri, parse_s3_uri, s3_uri_problem
from reconciler.spec.model import Deployment

S3_UNREACHABLE = (
    "it is on S3, which needs AWS credentials and network access that are not available here"
)
"""Refusal reason for ``s3=`` where the data would have to be downloaded by this process."""

_URI_RE = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*):/")
"""A URI scheme followed by ``/`` (``s3://``, ``gs://``, ``https://``, ``models:/``)."""


class SpecPathError(ModelopsError):
    """A path in a spec is not valid (the default error of :func:`check_path`); exit 2."""


@dataclass(frozen=True)
class SpecPath:
    """A checked spec path: exactly one of ``local`` and ``s3`` is set.

    Attributes:
        value: the value as written in the spec (or on the command line).
        local: the absolute path with ``..`` and symbolic links resolved (inside the
            repository unless ``allow_absolute`` accepted an absolute path), or ``None``.
        s3: the parsed URI when the value is an accepted ``s3://`` URI, else ``None``.
    """

    value: str
    local: Path | None = None
    s3: S3Uri | None = None


def check_path(
    value: object,
    root: Path,
    where: str,
    *,
    s3: bool | str = False,
    must_exist: bool = False,
    kind: str = "file",
    what: str = "file",
    valid: str = "",
    allow_absolute: bool = False,
    error: type[ModelopsError] = SpecPathError,
) -> SpecPath:
    """Check one path from a spec (or the command line) and resolve it.

    Args:
        value: the value as written; anything but a non-empty string is refused.
        root: the repository root (``config.root``); relative paths are relative to it.
        where: what to name in messages, normally ``"<file>:<line>:<col>: <field>"``
            (:func:`spec_path` builds it), or an option name such as ``"--input"``.
        s3: ``True`` accepts ``s3://`` URIs (checked by
            :func:`reconciler.runtime.uris.parse_s3_uri`); a string refuses them with that
            reason (e.g. :data:`S3_UNREACHABLE`); ``False`` refuses them as "not
            supported here".
        must_exist: the local path must exist (as ``kind``).
        kind: ``"file"`` or ``"dir"``: what must exist when ``must_exist``.
        what: what the path is, for messages (``"model file"``, ``"reference data"``).
        valid: what would be valid, for messages; default "a path relative to the
            repository root that stays inside it" (plus "or an s3:// URI" when accepted).
        allow_absolute: accept an absolute path as it is (only for paths given on the
            command line; a spec's paths are always repository-relative).
        error: the exception class to raise (a :class:`ModelopsError`, exit code 2).

    Returns:
        A :class:`SpecPath` with ``local`` (absolute, resolved) or ``s3`` set.

    Raises:
        error: the value is not a non-empty string; a URI of another scheme; an ``s3://``
            URI where refused, or malformed (no bucket, bad bucket name, ``..`` in the
            key); an absolute path; a path whose ``..`` climbs above the root; a path
            that resolves outside the root through a symbolic link; a missing path or
            one of the wrong kind (with ``must_exist``). The message is
            ``"<where>: <value and what is wrong>; expected <what would be valid>"``.
    """
    if not valid:
        valid = "a path relative to the repository root that stays inside it"
        if s3 is True:
            valid += f", or an {S3_FORM}"

    def fail(problem: str, hint: str = "") -> ModelopsError:
        return error(f"{where}: {problem}; {hint or 'expected ' + valid}")

    if not isinstance(value, str) or not value:
        raise fail("not set" if value in (None, "") else f"{value!r} is not a path")
    if value[:3].lower() == "s3:":  # also s3:/x and S3://x, which are not valid URIs
        if s3 is not True:
            raise fail(f"{value!r}: {s3 if s3 else 'S3 URIs are not supported here'}")
        problem = s3_uri_problem(value)
        if problem:
            raise fail(f"{value!r} is not a valid S3 URI: {problem}")
        return SpecPath(value, s3=parse_s3_uri(value))
    if scheme := _URI_RE.match(value):
        raise fail(f"{value!r}: {scheme.group(1)}: URIs are not supported here")
    if "\0" in value:
        raise fail(f"{value!r} contains a NUL character")
    root = Path(root).resolve()
    if Path(value).is_absolute():
        if not allow_absolute:
            raise fail(f"{value!r} is an absolute path, which leaves the repository")
        lexical = Path(value)
    else:
        if os.path.normpath(value).split(os.sep)[0] == "..":
            raise fail(f"{value!r} leaves the repository (its '..' climbs above the root)")
        lexical = root / value
    try:
        path = lexical.resolve()
    except (OSError, RuntimeError) as exc:  # a symbolic link loop
        raise fail(f"{value!r} cannot be resolved ({exc})") from None
    if not (allow_absolute and Path(value).is_absolute()) and not path.is_relative_to(root):
        raise fail(
            f"{value!r} leaves the repository (a symbolic link on the way resolves it to {path})"
        )
    if must_exist:
        shown = path.relative_to(root) if path.is_relative_to(root) else path
        noun = "directory" if kind == "dir" else "file"
        hint = f"expected an existing {noun}, relative to the repository root {root}"
        if not path.exists():
            also = f" ({shown} does not exist)" if str(shown) != value else ""
            raise fail(f"{what} {value} not found{also}", hint)
        if kind == "file" and not path.is_file():
            raise fail(f"{what} {value} is not a file ({shown})", hint)
        if kind == "dir" and not path.is_dir():
            raise fail(f"{what} {value} is not a directory ({shown})", hint)
    return SpecPath(value, local=path)


def spec_path(
    dep: Deployment, config: Config, field: str, value: object = None, **options
) -> SpecPath:
    """:func:`check_path` for the field ``field`` of a resolved deployment.

    Args:
        dep: a :class:`reconciler.spec.model.Deployment`; its spec file, line and column
            of ``field`` (overlay-aware, :meth:`Deployment.locate`) start every message.
        config: the repository configuration (``config.root``).
        field: the dotted field (``spec.monitoring.reference``).
        value: the value to check; default ``dep.get(field)``.
        **options: the keyword options of :func:`check_path` (``s3``, ``must_exist``,
            ``kind``, ``what``, ``valid``, ``error``).

    Returns:
        A :class:`SpecPath`.

    Raises:
        SpecPathError: (or the ``error`` class given) as :func:`check_path`.
    """
    if value is None:
        value = dep.get(field)
    return check_path(value, config.root, f"{dep.locate(field)}: {field}", **options)


#: The spec fields that name a path (besides ``spec.model.uri`` and the smoke requests,
#: checked with their contents by validate): each must stay inside the repository, symbolic
#: links resolved. ``s3://`` URIs are checked where they are read.
PATH_FIELDS = (
    "spec.monitoring.capture.sink",
    "spec.monitoring.reference",
    "spec.monitoring.labels.sink",
    "spec.retraining.holdout",
    "spec.serving.batch.input",
    "spec.serving.batch.output",
)


def path_diagnostics(dep: Deployment, config: Config) -> list[Diagnostic]:
    """Every path field of ``dep`` (:data:`PATH_FIELDS`) confined to the repository.

    A value that is absolute, climbs out with ``..``, resolves outside through a symbolic
    link (also one created after the file was written: the link is followed now), or
    cannot be resolved (a symbolic link loop) is an error at the field's
    ``file:line:col`` (overlay-aware), code ``path``. Whether the file exists is left to
    the stage that reads it (capture sinks and batch outputs are written later). The
    runtime checks a capture sink again before it writes
    (:func:`reconciler.runtime.capture.resolve_sink`).

    Returns:
        One :class:`Diagnostic` per refused field (``[]`` when all stay inside).
    """
    out = []
    for field in PATH_FIELDS:
        value = dep.get(field)
        if not isinstance(value, str) or not value or value[:3].lower() == "s3:":
            continue
        try:
            check_path(value, config.root, field, s3=True)
        except SpecPathError as exc:
            message = exc.message.removeprefix(f"{field}: ")
            out.append(
                Diagnostic(dep.locate(field), field, f"{message} [env {dep.env}]", code="path")
            )
    return out

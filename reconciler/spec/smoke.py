"""Smoke request files a spec names: the JSON body a smoke case POSTs to ``/predict``.

:func:`read_request_file` is the one rule, used by ``modelops validate`` (the file is
sendable) and by ``modelops smoke`` (the body it sends).
"""

from __future__ import annotations

import json
from pathlib import Path


class RequestFileError(ValueError):
    """A smoke request file that cannot be sent: unreadable, not JSON, or without
    instances. The message names the file and what is wrong with it."""


def read_request_file(path: Path, name: str, status: int = 200) -> dict:
    """Read one smoke request file: the JSON body a case POSTs to ``/predict``.

    Args:
        path: the file.
        name: how to name it in messages (the path as the spec gives it).
        status: the HTTP status the case expects (``expect.status``, default 200).

    Returns:
        The decoded body, a JSON object with an ``instances`` key.

    Raises:
        RequestFileError: the file is missing or unreadable, not UTF-8, not valid JSON
            (with line and column in the file), not an object with ``instances``, or,
            for a case expecting a 2xx answer, ``instances`` is not a non-empty list (a
            case may send an empty or malformed batch only when it expects an error
            status such as 400).
    """
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise RequestFileError(f"smoke request file {name} does not exist") from None
    except UnicodeDecodeError as exc:
        raise RequestFileError(
            f"smoke request file {name} is not UTF-8 text (byte {exc.start}); expected JSON"
        ) from None
    except OSError as exc:
        raise RequestFileError(
            f"smoke request file {name} cannot be read: {exc.strerror or exc}"
        ) from None
    try:
        body = json.loads(text)
    except json.JSONDecodeError as exc:
        raise RequestFileError(
            f"smoke request file {name} is not valid JSON: line {exc.lineno} column "
            f"{exc.colno}: {exc.msg}"
        ) from None
    except (ValueError, RecursionError) as exc:  # e.g. an integer over 4300 digits
        reason = "nested too deeply" if isinstance(exc, RecursionError) else str(exc)[:120]
        raise RequestFileError(f"smoke request file {name} is not valid JSON: {reason}") from None
    want = 'expected a JSON object {"instances": [[...], ...]}'
    if not isinstance(body, dict):
        kind = "a list" if isinstance(body, list) else type(body).__name__
        raise RequestFileError(f"smoke request file {name} is {kind}; {want}")
    if "instances" not in body:
        keys = ", ".join(sorted(map(str, body))) or "none"
        raise RequestFileError(
            f'smoke request file {name} has no "instances" (keys: {keys}); {want}'
        )
    instances = body["instances"]
    if 200 <= int(status) < 300 and not (isinstance(instances, list) and instances):
        got = "an empty list" if instances == [] else f"not a list ({type(instances).__name__})"
        raise RequestFileError(
            f'smoke request file {name}: "instances" is {got}, so the case cannot expect '
            f"HTTP {status}; give at least one row, or, to check a refusal, make it a "
            "spec.serving.smoke.requests case with expect.status (e.g. 400)"
        )
    return body

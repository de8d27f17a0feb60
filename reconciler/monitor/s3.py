"""Monitoring data on S3: download one deployment's capture files for a time window;
list, download and write the label files of an ``s3://`` label sink.

Objects are ``s3://<bucket>/<prefix>/<deployment>/<env>/<YYYY-MM-DD>/capture-*.<ext>``
(as ``reconciler.runtime.capture.CaptureShipper`` uploads them); the local cache has the
same layout below ``dest``. boto3 uses the standard AWS credential chain.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from reconciler.runtime.uris import parse_s3_uri


def fetch_capture(
    uri: str,
    name: str,
    env: str,
    days: list[str],
    ext: str,
    dest: Path,
    client: Any = None,
) -> tuple[list[Path], str | None]:
    """Download the capture files of ``days`` from the sink ``uri`` into ``dest``.

    Args:
        uri: the capture sink, ``s3://bucket/prefix``.
        name, env: the deployment (``metadata.name``) and environment.
        days: UTC days (``YYYY-MM-DD``) of the window.
        ext: ``jsonl`` or ``parquet``.
        dest: local cache directory; files land in ``dest/<day>/<file>``. A file already
            there with the object's size is not downloaded again.
        client: an S3 client (default ``boto3.client("s3")``).

    Returns:
        ``(paths, None)``: the local copies, sorted by day then name; or ``([], reason)``
        when S3 could not be listed or read (no credentials, no network, no such bucket),
        ``reason`` saying why in one line.

    Raises:
        ValueError: ``uri`` is not a valid ``s3://`` URI (see ``parse_s3_uri``).
    """
    bucket, prefix = parse_s3_uri(uri)
    base = f"{prefix}/{name}/{env}" if prefix else f"{name}/{env}"
    try:
        if client is None:
            import boto3  # heavy (botocore's service models); only s3:// sinks need it

            client = boto3.client("s3")
        paths: list[Path] = []
        paginator = client.get_paginator("list_objects_v2")
        for day in days:
            for page in paginator.paginate(Bucket=bucket, Prefix=f"{base}/{day}/"):
                for obj in page.get("Contents", []):
                    file_name = obj["Key"].rsplit("/", 1)[-1]
                    if not (file_name.startswith("capture-") and file_name.endswith(f".{ext}")):
                        continue
                    local = dest / day / file_name
                    if not (local.is_file() and local.stat().st_size == obj["Size"]):
                        local.parent.mkdir(parents=True, exist_ok=True)
                        part = local.with_name(local.name + ".part")
                        client.download_file(bucket, obj["Key"], str(part))
                        part.replace(local)
                    paths.append(local)
    except Exception as exc:  # noqa: BLE001 - botocore raises many kinds; all mean "not here"
        return [], f"s3://{bucket}/{base}/ could not be read: {type(exc).__name__}: {exc}"
    return sorted(paths), None


def fetch_objects(uri: str, prefix: str, suffix: str, dest: Path, client: Any = None) -> list[Path]:
    """Download every object below ``uri`` whose file name starts with ``prefix`` and ends
    with ``suffix`` into ``dest`` (same relative layout; an object already there with the
    object's size is not downloaded again).

    Returns:
        The local copies of the objects listed now, sorted (a file left in ``dest`` from
        an object since deleted is not returned).

    Raises:
        ValueError: ``uri`` is not a valid ``s3://`` URI.
        Exception: botocore's error when the bucket cannot be listed or an object read
            (no such bucket, access denied, no credentials); the caller names the URI.
    """
    bucket, base = parse_s3_uri(uri)
    client = client or _client()
    paths: list[Path] = []
    for page in client.get_paginator("list_objects_v2").paginate(
        Bucket=bucket, Prefix=f"{base}/" if base else ""
    ):
        for obj in page.get("Contents", []):
            rel = obj["Key"][len(base) + 1 :] if base else obj["Key"]
            file_name = rel.rsplit("/", 1)[-1]
            if not (file_name.startswith(prefix) and file_name.endswith(suffix)):
                continue
            local = dest / rel
            if not (local.is_file() and local.stat().st_size == obj["Size"]):
                local.parent.mkdir(parents=True, exist_ok=True)
                part = local.with_name(local.name + ".part")
                client.download_file(bucket, obj["Key"], str(part))
                part.replace(local)
            paths.append(local)
    return sorted(paths)


def put_objects(uri: str, objects: dict[str, bytes], client: Any = None) -> list[str]:
    """Write each ``{relative key: body}`` below ``uri`` whole (one PutObject each, which
    S3 makes visible only complete). When one fails, the ones already written by this
    call are deleted again, so the set lands whole or not at all.

    Returns:
        The ``s3://`` URIs written, in the order given.

    Raises:
        ValueError: ``uri`` is not a valid ``s3://`` URI.
        Exception: botocore's error of the failed PutObject (after the clean-up).
    """
    bucket, base = parse_s3_uri(uri)
    client = client or _client()
    done: list[str] = []
    try:
        for rel, body in objects.items():
            key = f"{base}/{rel}" if base else rel
            client.put_object(Bucket=bucket, Key=key, Body=body)
            done.append(key)
    except Exception:
        for key in done:
            try:
                client.delete_object(Bucket=bucket, Key=key)
            except Exception:  # noqa: BLE001, S110 - best effort; the first error is raised
                pass
        raise
    return [f"s3://{bucket}/{key}" for key in done]


def _client() -> Any:
    import boto3  # heavy (botocore's service models); only s3:// sinks need it

    return boto3.client("s3")

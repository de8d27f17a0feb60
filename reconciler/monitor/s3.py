"""Captured traffic on S3: download one deployment's capture files for a time window.

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

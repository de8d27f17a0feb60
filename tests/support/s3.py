"""moto's S3 server on loopback: a fake S3 (no AWS here), named as such in every test.

:func:`moto_server` starts one ``ThreadedMotoServer`` on a free loopback port;
:func:`use_fake_s3` points this process's (and its children's) boto3 at it with dummy
credentials and an empty store. moto 5.2 honours ``If-None-Match: *`` and ``If-Match``
on PutObject and ``If-Match`` on DeleteObject (412 PreconditionFailed), which the shared
state relies on (``reconciler/state/backend.py``).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import pytest

FAKE_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}


@contextmanager
def moto_server() -> Iterator[str]:
    """A running fake S3 server; yields its endpoint URL (``http://127.0.0.1:PORT``)."""
    # imported here: this module is a plugin of every test session (tests/conftest.py),
    # and moto's server (Flask, its backends) costs about a second to import
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0)
    server.start()
    try:
        host, port = server.get_host_and_port()
        yield f"http://{host}:{port}"
    finally:
        server.stop()


def use_fake_s3(endpoint: str, monkeypatch: pytest.MonkeyPatch, *buckets: str):
    """Empty the fake, point boto3 at it (environment, inherited by child processes), and
    create ``buckets``; returns a client of the fake."""
    httpx.post(f"{endpoint}/moto-api/reset").raise_for_status()
    for key, value in {**FAKE_CREDENTIALS, "AWS_ENDPOINT_URL": endpoint}.items():
        monkeypatch.setenv(key, value)
    import boto3  # heavy (botocore's service models): only tests that use the fake

    client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
    for bucket in buckets:
        client.create_bucket(Bucket=bucket)
    return client


@pytest.fixture(scope="session")
def fake_s3_endpoint() -> Iterator[str]:
    """One fake S3 server (moto, on loopback) per test session (per xdist worker)."""
    with moto_server() as url:
        yield url


@pytest.fixture
def fake_s3(fake_s3_endpoint: str, monkeypatch: pytest.MonkeyPatch):
    """The fake S3 (moto), empty, with boto3 pointed at it (:func:`use_fake_s3`); a
    client of it. Registered for every test by ``pytest_plugins`` in
    ``tests/conftest.py``; a module may shadow it (tests/state/test_shared_state.py)."""
    return use_fake_s3(fake_s3_endpoint, monkeypatch)

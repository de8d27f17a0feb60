"""Loopback ports with a known state for the whole of a test.

A port found free (``free_port``) can be taken by another process before the test uses
it (another xdist worker starting a server, say); a test that needs nothing to answer on
a port holds it instead.
"""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Iterator


@contextlib.contextmanager
def refused_port() -> Iterator[int]:
    """A 127.0.0.1 port that refuses every connection while the block runs.

    The port is bound by this process and not listening: a connection gets a reset
    (connection refused), and no other process can bind it meanwhile.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]

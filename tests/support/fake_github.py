"""GitHub's pull-request API for the tests: a FAKE, named as such (no forge here).

A loopback HTTP server implementing the two endpoints ``reconciler.gitops.forge`` uses:
``GET /repos/{owner}/{repo}/pulls?head=owner:branch&state=open`` and ``POST
/repos/{owner}/{repo}/pulls``, with bearer-token checking, in GitHub's JSON shapes. It
records every request and can be told to answer with an error status.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

import pytest

TOKEN = "fake-token"


@dataclass
class FakeGitHub:
    """State of the fake: ``url`` (the API base), requests seen, pulls opened, and
    ``fail``: ``{method: (status, message)}`` to answer requests of a method with."""

    url: str = ""
    requests: list[dict] = field(default_factory=list)
    pulls: list[dict] = field(default_factory=list)
    fail: dict[str, tuple[int, str]] = field(default_factory=dict)


def _handler(state: FakeGitHub):
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args) -> None:  # quiet
            pass

        def _answer(self, status: int, doc) -> None:
            data = json.dumps(doc).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _route(self, method: str) -> None:
            url = urlparse(self.path)
            size = int(self.headers.get("Content-Length") or 0)
            body = json.loads(self.rfile.read(size) or b"null") if size else None
            state.requests.append(
                {"method": method, "path": url.path, "query": parse_qs(url.query), "body": body}
            )
            parts = url.path.strip("/").split("/")
            if len(parts) != 4 or parts[0] != "repos" or parts[3] != "pulls":
                return self._answer(404, {"message": "Not Found"})
            if self.headers.get("Authorization") != f"Bearer {TOKEN}":
                return self._answer(401, {"message": "Bad credentials"})
            if method in state.fail:
                status, message = state.fail[method]
                return self._answer(status, {"message": message})
            slug = f"{parts[1]}/{parts[2]}"
            if method == "GET":
                head = parse_qs(url.query).get("head", [""])[0]
                found = [p for p in state.pulls if f"{parts[1]}:{p['head']['ref']}" == head]
                return self._answer(200, found)
            if not body or not all(body.get(k) for k in ("title", "head", "base")):
                return self._answer(422, {"message": "Validation Failed"})
            number = len(state.pulls) + 1
            pr = {
                "number": number,
                "html_url": f"https://github.example/{slug}/pull/{number}",
                "head": {"ref": body["head"]},
                "base": {"ref": body["base"]},
                "title": body["title"],
                "body": body.get("body", ""),
                "state": "open",
            }
            state.pulls.append(pr)
            return self._answer(201, pr)

        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            self._route("GET")

        def do_POST(self) -> None:  # noqa: N802 - http.server's name
            self._route("POST")

    return Handler


@pytest.fixture
def fake_github(monkeypatch) -> Iterator[FakeGitHub]:
    """The fake API on loopback; ``GITHUB_API_URL``, ``GITHUB_TOKEN`` and
    ``GITHUB_REPOSITORY`` (``acme/specs``) point the code under test at it."""
    state = FakeGitHub()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    monkeypatch.setenv("GITHUB_API_URL", state.url)
    monkeypatch.setenv("GITHUB_TOKEN", TOKEN)
    monkeypatch.setenv("GITHUB_REPOSITORY", "acme/specs")
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()

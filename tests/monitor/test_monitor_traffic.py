"""Traffic helpers: the documented shift, and real HTTP requests to a live endpoint.

The endpoint here is a small real HTTP server on loopback standing in for the Bento
service (serving a Bento is covered by the build tests); it records each request body.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest
from support.monitor import reference

from reconciler.core.diagnostics import ModelopsError
from reconciler.monitor.traffic import SCALE, SHIFT_SD, send_traffic, shifted


def test_shift_moves_the_first_half_of_the_columns_as_documented() -> None:
    ref = reference()
    out = shifted(ref, seed=3)
    assert out.shape == ref.shape and list(out.columns) == list(ref.columns)
    assert (out.dtypes == ref.dtypes).all()
    assert out.equals(shifted(ref, seed=3))  # same seed, same copy
    for i, col in enumerate(ref.columns):
        moved = (out[col].mean() - ref[col].mean()) / ref[col].std(ddof=0)
        if i < 15:
            assert moved == pytest.approx(SHIFT_SD, abs=0.35)
            assert out[col].std() / ref[col].std() == pytest.approx(SCALE, rel=0.25)
        else:
            assert abs(moved) < 0.35  # only resampled


class _Recorder(BaseHTTPRequestHandler):
    bodies: list = []
    status = 200

    def do_POST(self):  # noqa: N802 - http.server's name
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        type(self).bodies.append((self.path, body))
        payload = json.dumps({"predictions": [0] * len(body["instances"])}).encode()
        self.send_response(type(self).status)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args):  # quiet
        pass


@pytest.fixture
def server():
    _Recorder.bodies = []
    _Recorder.status = 200
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


def test_send_traffic_posts_batches_to_predict(server: str) -> None:
    rows = np.arange(20 * 3, dtype=np.float32).reshape(20, 3)
    assert send_traffic(server, rows, batch=8) == 3
    assert [p for p, _ in _Recorder.bodies] == ["/predict"] * 3
    sent = [r for _, b in _Recorder.bodies for r in b["instances"]]
    assert np.array_equal(np.array(sent, dtype=np.float32), rows)


def test_send_traffic_reports_errors(server: str) -> None:
    _Recorder.status = 500
    with pytest.raises(ModelopsError, match="answered 500"):
        send_traffic(server, np.zeros((2, 3)))
    with pytest.raises(ModelopsError, match="cannot reach"):
        send_traffic("http://127.0.0.1:9", np.zeros((2, 3)))

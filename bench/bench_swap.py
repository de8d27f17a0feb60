"""Swap benchmark: requests dropped by a local re-apply, and the router's cost per request.

Issue 17 measured 95 of 494 requests dropped over a 9 s re-apply on a pinned port (the old
server was stopped before the new one could take the port). Now the deployment's router
owns the stable port (``docs/engine.md``). In one run, on a copy of the fraud-detector
example (staging, local):

1. apply it; then, while the spec changes and is applied again, two steady clients send
   single-row ``/predict`` requests: **router** to the deployment's stable URL, and the
   peer **pinned** to the old server's own port (what a client of a server without a
   router sees when that server is replaced). Prints requests, failures and the share
   dropped for both; target: 0 dropped through the router.
2. with the new server live, ``--requests`` sequential single-row requests go to the
   router and to the server's own port in turn: p50/p99 (ms) of both and the ratio (the
   router's hop).

Usage: ``.venv/bin/python bench/bench_swap.py [--requests N]``
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

PROJECT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT))

from reconciler.build.bento import build  # noqa: E402
from reconciler.build.smoke import percentiles_ms  # noqa: E402
from reconciler.core.config import load_config  # noqa: E402
from reconciler.engine.local import LocalEngine  # noqa: E402
from reconciler.flow.apply import converge  # noqa: E402
from reconciler.spec.repo import load_all  # noqa: E402
from reconciler.state.ledger import Ledger  # noqa: E402

ROW = {"instances": [[14.0] * 30]}


class Client(threading.Thread):
    """Single-row requests to ``url`` in a loop until :meth:`stop`; counts answers."""

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True)
        self.url, self.sent, self.failed = url, 0, 0
        self.done = threading.Event()

    def run(self) -> None:
        with httpx.Client(timeout=30, trust_env=False) as client:
            while not self.done.is_set():
                self.sent += 1
                try:
                    if client.post(f"{self.url}/predict", json=ROW).status_code != 200:
                        self.failed += 1
                except httpx.HTTPError:
                    self.failed += 1
                time.sleep(0.01)

    def stop(self) -> None:
        self.done.set()
        self.join(timeout=60)


def latencies(url: str, n: int) -> list[float]:
    out = []
    with httpx.Client(timeout=30, trust_env=False) as client:
        for _ in range(n):
            start = time.perf_counter()
            client.post(f"{url}/predict", json=ROW).raise_for_status()
            out.append((time.perf_counter() - start) * 1000)
    return out


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=300)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="bench-swap-")) / "repo"
    shutil.copytree(PROJECT / "examples", root / "examples")
    (root / "specs").mkdir()
    spec = root / "specs" / "fraud-detector.yaml"
    text = (PROJECT / "specs" / "fraud-detector.yaml").read_text()
    # the smoke load test and SLO are relaxed: this measures drops, not the machine's speed
    for old, new in (
        ("workers: 2\n", "workers: 1\n"),
        ("load: {requests: 200, concurrency: 8}", "load: {requests: 20, concurrency: 2}"),
        ("p99_latency_ms: 200}", "p99_latency_ms: 5000}"),
        ("max_latency_ms: 20}", "max_latency_ms: 500}"),
    ):
        text = text.replace(old, new)
    spec.write_text(text)
    (root / "modelops.yaml").write_text("state_dir: .modelops\n")
    config = load_config(root)
    engine, ledger = LocalEngine(config), Ledger(config.state_dir)

    def apply(revision: str):
        (dep,) = [d for d in load_all(config, ["fraud-detector"], "staging").deployments]
        return converge(dep, build(dep, config), config, ledger, engine, revision)

    try:
        first = apply("rev1").outputs
        spec.write_text(spec.read_text().replace('version: "1.0.0"', 'version: "1.0.1"'))
        router, pinned = Client(first["url"]), Client(first["backend_url"])
        router.start()
        pinned.start()
        started = time.perf_counter()
        second = apply("rev2").outputs
        seconds = time.perf_counter() - started
        router.stop()
        pinned.stop()
        print(f"re-apply took {seconds:.1f} s under two steady clients")
        for name, c in (("router", router), ("pinned", pinned)):
            share = c.failed / c.sent if c.sent else 0.0
            print(f"  {name:7s} {c.sent:5d} requests, {c.failed:4d} failed ({share:.1%})")
        via_router = percentiles_ms(latencies(second["url"], args.requests))
        direct = percentiles_ms(latencies(second["backend_url"], args.requests))
        print(f"{args.requests} sequential single-row requests, ms:")
        for name, p in (("router", via_router), ("direct", direct)):
            print(f"  {name:7s} p50 {p['p50_ms']:.2f}  p99 {p['p99_ms']:.2f}")
        print(f"  router/direct p50 ratio {via_router['p50_ms'] / direct['p50_ms']:.2f}x")
        rec = ledger.get("fraud-detector", "staging")
        engine.destroy(rec)
    finally:
        shutil.rmtree(root.parent, ignore_errors=True)
    return 0 if router.failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())

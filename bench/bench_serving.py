"""Serving benchmark: the modelops-built Bento against a hand-written FastAPI endpoint.

Issue 6, "Performance": serve the example fraud model two ways in the same run

* **bento**: the fraud-detector Bento built by modelops (``reconciler.build.bento.build``)
  from ``specs/fraud-detector.yaml`` (staging: platform local), served by ``bentoml serve``
  via :func:`reconciler.build.serve.start_server` (loopback, adaptive batching from the
  spec, ``--workers`` BentoML workers);
* **hand-written**: what a team would write by hand, a FastAPI app that loads the same
  ``model.joblib`` and calls ``model.predict`` once per request, under uvicorn with one
  worker (this script, started again with ``--handwritten-server PORT``);

and at 1, 8 and 32 concurrent clients send the same single-row request
(``{"instances": [[30 floats]]}``, the first row of ``examples/fraud/request.json``) to
each in turn (closed loop: every client sends its next request when the previous answer
arrives; keep-alive connections; aiohttp on one event loop, see :func:`measure`). Prints
p50/p99 latency (ms), throughput (req/s), errors and the servers' CPU time per request
(ms, from psutil) for both, and the ratios bento/hand-written; with ``--rounds`` R, per
round the throughput ratio and the ratio of server CPU per request (hand-written/bento:
above 1 the Bento spends less), their medians, and the load average before and after
(CPU per request hardly moves with other load on the machine; throughput and latency
do). Target (issue 6): at 32
clients, throughput >= 2x the hand-written endpoint's with p99 < 200 ms, on this 2-core
machine; issue 17: at 1 client, throughput >= 1.0x (a lone request skips the batcher's
thread hop; ``--inline-max-ms 0`` measures the Bento without that fast path).

Bounded: ``--requests`` per measurement (default 600; 1 client: a third of it), warm-up
requests first, every server on 127.0.0.1 only and stopped at the end. The client runs
on the same two cores as the servers, so absolute figures include its CPU use; the
ratios compare like with like.

Usage: ``.venv/bin/python bench/bench_serving.py [--requests N] [--workers W]
[--max-latency-ms MS] [--max-batch-size N] [--levels 1,8,32] [--rounds R]
[--inline-max-ms MS]``
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import psutil

PROJECT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT))

from reconciler.build.bento import build  # noqa: E402
from reconciler.build.serve import (  # noqa: E402
    free_port,
    server_processes,
    start_server,
    stop_server,
)
from reconciler.build.smoke import REQUEST_TIMEOUT_S, percentiles_ms  # noqa: E402
from reconciler.core.config import load_config  # noqa: E402
from reconciler.spec.repo import load_all  # noqa: E402

TARGET_RATIO = 2.0
TARGET_LONE_RATIO = 1.0  # issue 17: a single client at least as fast as the hand-written
TARGET_P99_MS = 200.0


def handwritten_server(port: int, model_path: str) -> None:
    """The hand-written baseline: FastAPI + joblib, one ``predict`` per request, 1 worker."""
    import joblib
    import numpy as np
    import uvicorn
    from fastapi import FastAPI

    model = joblib.load(model_path)
    app = FastAPI()

    @app.post("/predict")
    def predict(body: dict) -> dict:
        x = np.asarray(body["instances"], dtype=np.float32)
        return {"predictions": model.predict(x).tolist()}

    @app.get("/health")
    def health() -> dict:
        return {"status": "ok"}

    uvicorn.run(app, host="127.0.0.1", port=port, workers=1, log_level="warning")


def start_handwritten(model_path: Path, log_path: Path) -> tuple[subprocess.Popen, str]:
    """Start the baseline in its own process group; wait until /health answers."""
    port = free_port()
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            [sys.executable, __file__, "--handwritten-server", str(port), str(model_path)],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"hand-written server exited; see {log_path}")
        try:
            if httpx.get(url + "/health", timeout=2).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)
    raise SystemExit("hand-written server did not start within 120 s")


def stop_handwritten(proc: subprocess.Popen) -> None:
    """SIGTERM its group, then SIGKILL after 10 s."""
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=10)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait()


def cpu_seconds(procs: list[psutil.Process]) -> float:
    """User + system CPU seconds used so far by ``procs`` (gone processes count 0)."""
    total = 0.0
    for proc in procs:
        try:
            times = proc.cpu_times()
            total += times.user + times.system
        except psutil.NoSuchProcess:
            continue
    return total


async def _aio_load(url: str, payload: bytes, requests: int, concurrency: int) -> dict:
    """Closed-loop load with aiohttp: ``concurrency`` clients, ``requests`` POSTs in all."""
    import aiohttp

    latencies: list[float] = []
    errors: list[str] = []
    remaining = [requests]
    headers = {"content-type": "application/json"}
    timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_S)
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:

        async def client() -> None:
            while remaining[0] > 0:
                remaining[0] -= 1
                start = time.perf_counter()
                try:
                    async with session.post(url, data=payload, headers=headers) as resp:
                        text = await resp.read()
                        ok = 200 <= resp.status < 300
                        err = "" if ok else f"HTTP {resp.status}: {text[:200]!r}"
                except (aiohttp.ClientError, TimeoutError) as exc:
                    ok, err = False, f"{type(exc).__name__}: {exc}"
                if ok:
                    latencies.append((time.perf_counter() - start) * 1000)
                else:
                    errors.append(err)

        started = time.perf_counter()
        await asyncio.gather(*(client() for _ in range(concurrency)))
        duration = time.perf_counter() - started
    return {
        "requests": requests,
        "concurrency": concurrency,
        "completed": len(latencies),
        "errors": len(errors),
        "first_error": errors[0] if errors else "",
        **percentiles_ms(latencies),
        "throughput_rps": len(latencies) / duration if duration > 0 else 0.0,
    }


def measure(url: str, body: dict, conc: int, n: int, procs: list[psutil.Process]) -> dict:
    """One closed-loop measurement after a warm-up of 2 requests per client (+20).

    The load generator is aiohttp on one asyncio loop: it costs about 0.5-0.8 ms of CPU
    per request here, against 2.5-6 ms for the thread-per-client httpx generator of
    ``modelops smoke`` (measured; at 32 threads the GIL makes httpx the bottleneck), and
    the client shares the two cores with the server under test.

    Adds ``cpu_ms_per_req``: the server processes' CPU time (user + system) per answered
    request, in ms (unlike throughput it hardly depends on what else the machine runs), and
    ``client_cpu_ms_per_req``: the load generator's own (this process).
    """
    payload = json.dumps(body).encode()
    asyncio.run(_aio_load(url + "/predict", payload, 2 * conc + 20, conc))
    before, client_before = cpu_seconds(procs), time.process_time()
    result = asyncio.run(_aio_load(url + "/predict", payload, n, conc))
    used, client = cpu_seconds(procs) - before, time.process_time() - client_before
    done = result["completed"]
    result["cpu_ms_per_req"] = 1000 * used / done if done else 0.0
    result["client_cpu_ms_per_req"] = 1000 * client / done if done else 0.0
    return result


def main() -> None:
    """Run the benchmark and print the table (see the module docstring)."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--handwritten-server", nargs=2, metavar=("PORT", "MODEL"), help="internal")
    ap.add_argument("--requests", type=int, default=600, help="requests per measurement")
    ap.add_argument("--workers", type=int, default=None, help="BentoML workers (default: spec)")
    ap.add_argument("--max-latency-ms", type=int, default=None, help="override batching")
    ap.add_argument("--max-batch-size", type=int, default=None, help="override batching")
    ap.add_argument(
        "--access-log", choices=("on", "off"), default=None, help="override spec.serving.access_log"
    )
    ap.add_argument("--levels", default="1,8,32", help="client counts, comma-separated")
    ap.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="alternate bento and hand-written this many times per level (each a share of "
        "the requests) and print the median throughput ratio: less sensitive to other load "
        "that comes and goes on the machine",
    )
    ap.add_argument(
        "--inline-max-ms",
        type=float,
        default=None,
        help="the Bento's MODELOPS_INLINE_MAX_MS (0: a lone request also takes the thread hop)",
    )
    args = ap.parse_args()
    if args.handwritten_server:
        handwritten_server(int(args.handwritten_server[0]), args.handwritten_server[1])
        return
    levels = [int(v) for v in args.levels.split(",") if v.strip()]

    with tempfile.TemporaryDirectory(prefix="bench-serving-") as tmp:
        root = Path(tmp) / "repo"
        root.mkdir()
        for name in ("specs", "examples"):
            shutil.copytree(PROJECT / name, root / name)
        (root / "modelops.yaml").write_text("state_dir: .modelops\n")
        config = load_config(root)
        dep = load_all(config, ["fraud-detector"], "staging").deployments[0]
        dep = copy.deepcopy(dep)
        batching = dep.data["spec"]["serving"].setdefault("batching", {})
        if args.max_latency_ms is not None:
            batching["max_latency_ms"] = args.max_latency_ms
        if args.max_batch_size is not None:
            batching["max_batch_size"] = args.max_batch_size
        if args.access_log is not None:
            dep.data["spec"]["serving"]["access_log"] = args.access_log == "on"
        if args.workers is not None:
            dep.data["spec"]["serving"]["workers"] = args.workers
        workers = dep.get("spec.serving.workers", 1)
        access_log = dep.get("spec.serving.access_log", True)
        artifact = build(dep, config)
        model_path = root / dep.get("spec.model.uri")
        request = json.loads((root / "examples/fraud/request.json").read_text())
        body = {"instances": request["instances"][:1]}
        print(
            f"bento {artifact.bento_tag}: batching {json.dumps(batching)}, workers {workers}, "
            f"access log {'on' if access_log else 'off'}; "
            f"hand-written: FastAPI + joblib, uvicorn 1 worker; body: 1 row x 30 features; "
            f"{args.requests} requests per level (1 client: {max(100, args.requests // 3)})",
            flush=True,
        )
        if args.inline_max_ms is not None:  # the server inherits the environment
            os.environ["MODELOPS_INLINE_MAX_MS"] = str(args.inline_max_ms)
        handle = start_server(artifact, config, timeout_s=180, workers=workers)
        hand_proc, hand_url = start_handwritten(model_path, config.state_dir / "handwritten.log")
        rows = []
        medians: dict[int, float] = {}
        cpu_medians: dict[int, float] = {}
        load_before = os.getloadavg()
        try:
            bento_procs = server_processes(handle.pid, handle.server_id)
            hand_root = psutil.Process(hand_proc.pid)
            hand_procs = [hand_root, *hand_root.children(recursive=True)]
            for conc in levels:
                n = args.requests if conc > 1 else max(100, args.requests // 3)
                rounds = max(1, args.rounds)
                ratios, cpu_ratios = [], []
                for _ in range(rounds):
                    bento = measure(handle.url, body, conc, max(20, n // rounds), bento_procs)
                    hand = measure(hand_url, body, conc, max(20, n // rounds), hand_procs)
                    if hand["throughput_rps"]:
                        ratios.append(bento["throughput_rps"] / hand["throughput_rps"])
                    if bento["cpu_ms_per_req"]:
                        cpu_ratios.append(hand["cpu_ms_per_req"] / bento["cpu_ms_per_req"])
                rows.append((conc, bento, hand))
                medians[conc] = statistics.median(ratios) if ratios else 0.0
                cpu_medians[conc] = statistics.median(cpu_ratios) if cpu_ratios else 0.0
                shown = " ".join(f"{r:.2f}" for r in ratios)
                cpu_shown = " ".join(f"{r:.2f}" for r in cpu_ratios)
                print(
                    f"  measured {conc} client(s); per round, throughput ratio: {shown}; "
                    f"hand-written/bento server CPU per request: {cpu_shown}",
                    flush=True,
                )
        finally:
            stop_server(handle)
            stop_handwritten(hand_proc)

    cols = ("p50 ms", "p99 ms", "req/s", "errors", "CPU ms/req", "client CPU")
    head = f"{'clients':>7}  {'server':<12} " + " ".join(f"{c:>10}" for c in cols)
    print()
    print(head)
    print("-" * len(head))
    for conc, bento, hand in rows:
        for label, r in (("bento", bento), ("hand-written", hand)):
            print(
                f"{conc:>7}  {label:<12} {r['p50_ms']:>10.1f} {r['p99_ms']:>10.1f} "
                f"{r['throughput_rps']:>10.1f} {r['errors']:>10} {r['cpu_ms_per_req']:>10.2f} "
                f"{r['client_cpu_ms_per_req']:>10.2f}"
            )

        def ratio_of(key: str, b: dict = bento, h: dict = hand) -> str:
            return f"{b[key] / h[key]:.2f}x" if h[key] else "-"

        print(
            f"{'':>7}  {'bento/hand':<12} {ratio_of('p50_ms'):>10} {ratio_of('p99_ms'):>10} "
            f"{ratio_of('throughput_rps'):>10} {'':>10} {ratio_of('cpu_ms_per_req'):>10}"
        )
    if args.rounds > 1:
        print("\n(the table shows the last round; targets use the median ratio of the rounds)")
    load_after = os.getloadavg()
    print(
        f"load average (1, 5, 15 min) before {' '.join(f'{v:.2f}' for v in load_before)}, "
        f"after {' '.join(f'{v:.2f}' for v in load_after)}"
    )
    lone = next((r for r in rows if r[0] == 1), None)
    if lone is not None:
        _, bento, hand = lone
        ratio = medians[1]
        print(
            f"\ntarget at 1 client (throughput >= {TARGET_LONE_RATIO:g}x hand-written, no "
            f"errors): {'MET' if ratio >= TARGET_LONE_RATIO and not bento['errors'] else 'MISSED'}"
            f" (throughput {ratio:.2f}x, p50 {bento['p50_ms']:.2f} vs {hand['p50_ms']:.2f} ms; "
            f"CPU per request {cpu_medians[1]:.2f}x less than hand-written's)"
        )
    top = next((r for r in rows if r[0] == 32), None)
    if top is not None:
        _, bento, hand = top
        ratio = medians[32]
        met = ratio >= TARGET_RATIO and bento["p99_ms"] < TARGET_P99_MS and not bento["errors"]
        print(
            f"\ntarget at 32 clients (throughput >= {TARGET_RATIO:g}x hand-written, p99 < "
            f"{TARGET_P99_MS:g} ms, no errors): {'MET' if met else 'MISSED'} "
            f"(throughput {ratio:.2f}x, bento p99 {bento['p99_ms']:.1f} ms, "
            f"errors {bento['errors']}; CPU per request {cpu_medians[32]:.2f}x less)"
        )
        if bento["errors"]:
            print(f"first bento error: {bento['first_error']}")


if __name__ == "__main__":
    main()

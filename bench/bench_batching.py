"""Does adaptive batching help? The same Bento with and without ``serving.batching``.

Builds the fraud-detector example twice in a temp copy of the repository (batching as in
the spec: max_batch_size 64, max_latency_ms 20; and batching disabled), serves each with
``bentoml serve`` (1 worker, loopback), and sends single-row requests at 1, 8 and 32
concurrent clients (closed loop, keep-alive; ``reconciler.build.smoke.load_test``).
Prints p50/p99 latency (ms), throughput (requests/s), errors and mean rows per model call
(from ``/metadata``) per setting, and the throughput ratio batching/no batching. The
client runs on the same machine (2 cores here), so absolute figures include its CPU use;
other load on the machine makes single runs noisy (use ``--rounds``).

Usage: ``.venv/bin/python bench/bench_batching.py [--requests N] [--rounds R]``
"""

from __future__ import annotations

import argparse
import copy
import json
import shutil
import tempfile
from pathlib import Path

from reconciler.build.bento import build
from reconciler.build.serve import start_server, stop_server
from reconciler.build.smoke import load_test
from reconciler.core.config import load_config
from reconciler.spec.repo import load_all

PROJECT = Path(__file__).resolve().parents[1]


def _stats(url: str) -> dict:
    """The served worker's ``batching_stats`` from ``/metadata`` ({} without batching)."""
    import httpx

    return httpx.get(url + "/metadata", timeout=30).json().get("batching_stats", {})


def main() -> None:
    """Run the benchmark and print one table (see the module docstring)."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=1500, help="requests per measurement")
    ap.add_argument("--rounds", type=int, default=2, help="alternating rounds per setting")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-batching-") as tmp:
        root = Path(tmp) / "repo"
        root.mkdir()
        for name in ("specs", "examples"):
            shutil.copytree(PROJECT / name, root / name)
        (root / "modelops.yaml").write_text("state_dir: .modelops\n")
        config = load_config(root)
        dep = load_all(config, ["fraud-detector"], "staging").deployments[0]
        off = copy.deepcopy(dep)
        off.data["spec"]["serving"]["batching"] = {"enabled": False}
        settings = {"batching": build(dep, config), "no batching": build(off, config)}
        request = json.loads((root / "examples/fraud/request.json").read_text())
        body = {"instances": request["instances"][:1]}
        results: dict[tuple[str, int], list[dict]] = {}
        for _ in range(args.rounds):
            for label, artifact in settings.items():
                handle = start_server(artifact, config, timeout_s=120)
                try:
                    url = handle.url + "/predict"
                    load_test(url, body, requests=200, concurrency=8)  # warm up
                    for conc in (1, 8, 32):
                        before = _stats(handle.url)
                        n = args.requests if conc > 1 else max(200, args.requests // 5)
                        r = load_test(url, body, requests=n, concurrency=conc)
                        after = _stats(handle.url)
                        if after and before:
                            batches = after["batches"] - before["batches"]
                            rows = after["rows"] - before["rows"]
                            r["rows_per_batch"] = rows / batches if batches else 0.0
                        results.setdefault((label, conc), []).append(r)
                finally:
                    stop_server(handle)
    print(
        f"{'setting':<12} {'clients':>7} {'p50 ms':>8} {'p99 ms':>8} {'req/s':>8} "
        f"{'errors':>7} {'rows/batch':>10}"
    )
    best: dict[tuple[str, int], float] = {}
    for (label, conc), runs in sorted(results.items(), key=lambda kv: (kv[0][1], kv[0][0])):
        top = max(runs, key=lambda r: r["throughput_rps"])
        best[(label, conc)] = top["throughput_rps"]
        print(
            f"{label:<12} {conc:>7} {top['p50_ms']:>8.2f} {top['p99_ms']:>8.2f} "
            f"{top['throughput_rps']:>8.1f} {sum(r['errors'] for r in runs):>7} "
            f"{top.get('rows_per_batch', 1.0) if label == 'batching' else 1.0:>10.2f}"
        )
    for conc in (1, 8, 32):
        on, off_rps = best.get(("batching", conc), 0.0), best.get(("no batching", conc), 0.0)
        ratio = on / off_rps if off_rps else float("nan")
        print(f"throughput ratio batching/no batching at {conc:>2} clients: {ratio:.2f}x")


if __name__ == "__main__":
    main()

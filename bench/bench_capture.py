"""What traffic capture costs on the request path (issue 6: at most 1 ms at p99).

The service's request path does only ``writer.sampled()`` and ``writer.submit(...)``;
encoding, redaction and file writes happen on the writer thread. This measures those two
calls, per request, while the writer thread is busy writing JSON Lines to a temp
directory: fraud-sized records (1 row x 30 features, one hashed sensitive field),
sample rate 1.0 (the worst case), ``--requests`` calls paced like a server at
``--rps`` requests/s. Prints p50/p99/max in microseconds, records written and dropped.

Usage: ``.venv/bin/python bench/bench_capture.py [--requests N] [--rps R]``
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

from reconciler.runtime.capture import CaptureWriter


def main() -> None:
    """Run the measurement and print one line per format."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=20000)
    ap.add_argument("--rps", type=float, default=2000.0, help="pace of submitted requests")
    args = ap.parse_args()
    row = [[float(i) + 0.5 for i in range(30)]]
    gap = 1.0 / args.rps if args.rps > 0 else 0.0
    print(f"{'format':<8} {'p50 us':>8} {'p99 us':>8} {'max us':>9} {'written':>8} {'dropped':>8}")
    for fmt in ("jsonl", "parquet"):
        with tempfile.TemporaryDirectory(prefix="bench-capture-") as tmp:
            writer = CaptureWriter(
                tmp, "fraud-detector", "bench", 1.0, fmt=fmt, redact="hash", sensitive_idx=[0]
            )
            costs: list[float] = []
            next_at = time.perf_counter()
            for i in range(args.requests):
                start = time.perf_counter()
                if writer.sampled():
                    writer.submit(f"req-{i}", "1.0.0", 2.5, row, [1])
                costs.append((time.perf_counter() - start) * 1e6)
                next_at += gap
                while time.perf_counter() < next_at:
                    pass
            writer.close(timeout_s=30)
            costs.sort()
            p99 = costs[int(len(costs) * 0.99) - 1]
            print(
                f"{fmt:<8} {statistics.median(costs):>8.1f} {p99:>8.1f} {costs[-1]:>9.1f} "
                f"{writer.written:>8} {writer.dropped:>8}"
            )


if __name__ == "__main__":
    main()

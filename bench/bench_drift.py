"""Benchmark: the drift job vs Evidently's full DataDriftPreset, 100k and 1M rows × 30.

What is measured (each case in a fresh Python process, so peak memory is its own):

* ``job``: :func:`reconciler.monitor.drift.run_drift` end to end: Evidently import
  (started on a thread while data is read), reading only the feature columns,
  sampling to ``sample_size`` (default 50 000 per side, seed 0), one ``ValueDrift`` per
  feature plus prediction drift (the live model predicts on the reference sample), the
  HTML report, the JSON summary and the ledger record.
  - ``parquet``: current data from a Parquet file (``--current PATH``);
  - ``capture``: the same rows as captured traffic, JSON Lines files in the capture
    layout (8 rows per request), read with Arrow's JSON reader.
* ``preset``: ``Report([DataDriftPreset()]).run(current, reference)`` on all rows of the
  same Parquet data (read with pandas) and ``save_html``: what one gets without choosing
  metrics or sampling. Run once per size (the 1M run takes minutes).

Both timers start before ``import evidently`` (the import is about 5 s here and part of
what a scheduled job pays). Reference data: 100 000 rows; current data: the same
distribution with 6 of the 30 features shifted. Wall time from ``time.perf_counter``;
peak memory is the process's peak resident set (``ru_maxrss``), with the resident set
after the base imports (numpy, pandas, reconciler) shown for comparison.

Usage: ``python bench/bench_drift.py [--quick]``: about 4 minutes of CPU on 2 cores, most
of it the preset on 1M rows (``--quick`` runs the drift job cases only); wall time grows
with the machine's load, which the output prints together with CPU seconds.
"""

from __future__ import annotations

import hashlib
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from reconciler.core.config import load_config
from reconciler.monitor.drift import run_drift
from reconciler.spec.repo import load_all

ROOT = Path(__file__).resolve().parents[1]
FEATURES = 30
REFERENCE_ROWS = 100_000
SIZES = (100_000, 1_000_000)


def _status_mb(field: str) -> float:
    """``VmHWM`` (peak) or ``VmRSS`` (current) resident set of this process, in MB.

    ``VmHWM`` is per address space, so unlike ``ru_maxrss`` it does not carry the
    parent's peak across fork + exec.
    """
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024  # kB
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _names() -> list[str]:
    spec = yaml.safe_load((ROOT / "specs" / "fraud-detector.yaml").read_text())
    return spec["spec"]["model"]["signature"]["inputs"]["names"]


def _frame(rows: int, seed: int, shift: bool) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    scale = np.linspace(0.5, 20.0, FEATURES)
    x = rng.normal(size=(rows, FEATURES)) * scale + np.arange(FEATURES)
    if shift:
        x[:, :6] += 0.5 * scale[:6]
    return pd.DataFrame(x.astype(np.float32), columns=_names())


def prepare(work: Path) -> None:
    """Write the bench repository: spec, model, reference, current data, capture."""
    import joblib  # only the parent prepares data: keep it out of the measured children
    from sklearn.linear_model import LogisticRegression  # same: scikit-learn is about 1 s

    (work / "specs").mkdir(parents=True)
    (work / "data").mkdir()
    ref = _frame(REFERENCE_ROWS, 1, False)
    ref.to_parquet(work / "data" / "reference.parquet", index=False)
    y = (ref.iloc[:, :6].sum(axis=1) > ref.iloc[:, :6].sum(axis=1).median()).astype(int)
    model = LogisticRegression(max_iter=500).fit(ref.to_numpy()[:20000], y[:20000])
    joblib.dump(model, work / "data" / "model.joblib")
    sha = hashlib.sha256((work / "data" / "model.joblib").read_bytes()).hexdigest()
    text = (ROOT / "specs" / "fraud-detector.yaml").read_text()
    text = text.replace("uri: examples/fraud/model.joblib", "uri: data/model.joblib")
    text = text.replace("cc8cd22265aa7df3578322bf234a37cbbc80e683a07aafd1b290e0b9c8233267", sha)
    text = text.replace(
        "reference: examples/fraud/reference.parquet", "reference: data/reference.parquet"
    )
    text = text.replace("sink: .modelops/capture", "sink: capture").replace(
        "redact: hash", "redact: none"
    )
    text = text.replace("request: examples/fraud/request.json", "request: data/request.json")
    text = text.replace(
        "holdout: examples/fraud/holdout.parquet", "holdout: data/reference.parquet"
    )
    (work / "data" / "request.json").write_text('{"instances": [[0]]}\n')
    (work / "specs" / "fraud-detector.yaml").write_text(text)
    (work / "modelops.yaml").write_text("state_dir: .modelops\n")
    for rows in SIZES:
        cur = _frame(rows, 2, True)
        cur.to_parquet(work / "data" / f"current-{rows}.parquet", index=False)
    # capture: 1M rows as JSON Lines requests of 8 rows (12 500 unique lines, repeated)
    cur = _frame(100_000, 3, True).to_numpy()
    now = time.time()
    day = time.strftime("%Y-%m-%d", time.gmtime(now - 1800))
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime(now - 1800))
    lines = []
    for i in range(0, len(cur), 8):
        rows = np.round(cur[i : i + 8], 4).tolist()
        rec = {
            "timestamp": stamp,
            "request_id": str(i),
            "model_version": "1",
            "latency_ms": 2.5,
            "inputs": rows,
            "outputs": [0] * len(rows),
        }
        lines.append(json.dumps(rec, separators=(",", ":")))
    block = ("\n".join(lines) + "\n").encode()
    out = work / "capture" / "fraud-detector" / "staging" / day
    out.mkdir(parents=True)
    for part in range(10):
        (out / f"capture-1-{part}.jsonl").write_bytes(block)


def run_case(work: Path, case: str, rows: int) -> dict:
    """One measured case in this process; returns seconds and memory figures."""
    config = load_config(work)
    dep = load_all(config, ["fraud-detector"], "staging").deployments[0]
    base_rss = _status_mb("VmRSS")
    current = work / "data" / f"current-{rows}.parquet"
    started = time.perf_counter()
    cpu = time.process_time()
    info: dict = {}
    if case in ("job", "capture"):
        result = run_drift(dep, config, current=str(current) if case == "job" else None)
        info = {
            "drifted_features": len(result.drifted_features),
            "sampled": result.sampled,
            "rows": result.rows["current"],
        }
    else:
        from evidently import Report  # timed: the import is part of what the preset costs
        from evidently.presets import DataDriftPreset  # same

        cur = pd.read_parquet(current)
        ref = pd.read_parquet(work / "data" / "reference.parquet")
        snapshot = Report([DataDriftPreset()]).run(cur, ref)
        snapshot.save_html(str(work / f"preset-{rows}.html"))
        drifted = [
            m for m in snapshot.dict()["metrics"] if "DriftedColumnsCount" in m["metric_name"]
        ]
        info = {
            "drifted_features": drifted[0]["value"]["count"] if drifted else None,
            "rows": len(cur),
        }
    seconds = time.perf_counter() - started
    return {
        "case": case,
        "rows": rows,
        "seconds": round(seconds, 2),
        "cpu_seconds": round(time.process_time() - cpu, 2),
        "base_rss_mb": round(base_rss),
        "peak_rss_mb": round(_status_mb("VmHWM")),
        **info,
    }


def main() -> int:
    """Prepare the data, run every case in a child process, print the table."""
    if len(sys.argv) == 4 and sys.argv[1] == "--case":
        print(json.dumps(run_case(Path(os.environ["BENCH_WORK"]), sys.argv[2], int(sys.argv[3]))))
        return 0
    os.environ.setdefault("BENTOML_DO_NOT_TRACK", "True")
    work = Path(tempfile.mkdtemp(prefix="bench-drift-"))
    try:
        t = time.perf_counter()
        prepare(work)
        print(
            f"data prepared in {time.perf_counter() - t:.1f} s under {work} "
            f"(load average {os.getloadavg()[0]:.1f})",
            flush=True,
        )
        cases = [
            ("job", 100_000),
            ("job", 1_000_000),
            ("capture", 1_000_000),
            ("preset", 100_000),
            ("preset", 1_000_000),
        ]
        if "--quick" in sys.argv:  # the drift job only, no preset (no ratios)
            cases = [c for c in cases if c[0] != "preset"]
        results = []
        for case, rows in cases:
            proc = subprocess.run(
                [sys.executable, "-W", "ignore", __file__, "--case", case, str(rows)],
                env={**os.environ, "BENCH_WORK": str(work)},
                capture_output=True,
                text=True,
            )
            if proc.returncode != 0:
                print(proc.stderr[-2000:], file=sys.stderr)
                return 1
            res = json.loads(proc.stdout.strip().splitlines()[-1])
            results.append(res)
            print(
                f"  {case:8s} {rows:>9,} rows: {res['seconds']:7.2f} s wall, "
                f"{res['cpu_seconds']:7.2f} s CPU, peak RSS {res['peak_rss_mb']:,} MB "
                f"(after base imports {res['base_rss_mb']} MB)",
                flush=True,
            )
        by = {(r["case"], r["rows"]): r for r in results}
        if "--quick" in sys.argv:
            return 0
        print()
        print(
            f"drift job vs Evidently DataDriftPreset, {FEATURES} features, reference "
            f"{REFERENCE_ROWS:,} rows, {os.cpu_count()} CPUs; load average at the end "
            f"{os.getloadavg()[0]:.1f} (wall time grows with load, CPU time much less)"
        )
        head = ["rows", "job s", "job cpu", "job MB", "preset s", "preset cpu", "preset MB"]
        print(" ".join(f"{h:>10}" for h in [*head, "wall ratio", "cpu ratio", "mem ratio"]))
        for rows in SIZES:
            j, p = by[("job", rows)], by[("preset", rows)]
            cells = [
                f"{rows:,}",
                f"{j['seconds']:.2f}",
                f"{j['cpu_seconds']:.2f}",
                f"{j['peak_rss_mb']:,}",
                f"{p['seconds']:.2f}",
                f"{p['cpu_seconds']:.2f}",
                f"{p['peak_rss_mb']:,}",
                f"{p['seconds'] / j['seconds']:.1f}x",
                f"{p['cpu_seconds'] / j['cpu_seconds']:.1f}x",
                f"{p['peak_rss_mb'] / j['peak_rss_mb']:.1f}x",
            ]
            print(" ".join(f"{c:>10}" for c in cells))
        c = by[("capture", 1_000_000)]
        print(
            f"drift job on 1,000,000 captured rows (JSON Lines, 125,000 requests): "
            f"{c['seconds']:.2f} s wall, {c['cpu_seconds']:.2f} s CPU, "
            f"peak RSS {c['peak_rss_mb']:,} MB"
        )
        target = by[("job", 1_000_000)]
        print(
            f"target: 1M rows x 30 features under 15 s: "
            f"{'met' if target['seconds'] < 15 else 'NOT met'} ({target['seconds']:.2f} s "
            f"wall, {target['cpu_seconds']:.2f} s CPU)"
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Benchmark: offline render of 100 deployments, and a no-change plan over them.

Builds a temporary spec repository with 100 specs (copies of the three examples, a
third each: kubernetes, aws-sagemaker, aws-serverless, renamed), then:

1. renders every prod deployment under Pulumi mocks, render cache off, and prints ms
   per deployment (overall and per platform) and the peak resident memory;
2. records each DesiredState in the ledger, then times a no-change plan (load and
   validate the specs, read each ledger record, render, diff; all plans must be empty)
   twice: with an empty render cache (a fresh CI runner) and with the cache the first
   plan left in the state directory (a new process: the in-memory cache is cleared).

Targets (issue 4): render < 50 ms per deployment; no-change plan over 100 < 5 s.
Run: ``.venv/bin/python bench/bench_render.py [N]``.
"""

from __future__ import annotations

import os
import resource
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("BENTOML_DO_NOT_TRACK", "True")

from reconciler.core.config import load_config  # noqa: E402
from reconciler.engine import render as render_mod  # noqa: E402
from reconciler.engine.plan import diff  # noqa: E402
from reconciler.engine.render import render  # noqa: E402
from reconciler.spec.repo import load_all  # noqa: E402
from reconciler.state.ledger import Ledger, LedgerRecord  # noqa: E402

EXAMPLES = ["fraud-detector", "diabetes-progression", "fraud-scorer-serverless"]


def make_repo(base: Path, n: int) -> Path:
    """A spec repository with ``n`` specs derived from the examples."""
    root = base / "repo"
    (root / "specs").mkdir(parents=True)
    shutil.copytree(ROOT / "examples", root / "examples")
    (root / "modelops.yaml").write_text("state_dir: .modelops\n")
    texts = {name: (ROOT / "specs" / f"{name}.yaml").read_text() for name in EXAMPLES}
    for i in range(n):
        name = EXAMPLES[i % len(EXAMPLES)]
        new = f"{name}-{i:03d}"
        (root / "specs" / f"{new}.yaml").write_text(
            texts[name].replace(f"name: {name}", f"name: {new}", 1)
        )
    return root


def peak_rss_mb() -> float:
    """Peak resident set size of this process in MiB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main(n: int = 100) -> None:
    """Run the benchmark over ``n`` deployments and print the figures (see the docstring)."""
    with tempfile.TemporaryDirectory() as tmp:
        root = make_repo(Path(tmp), n)
        config = load_config(root)
        result = load_all(config, None, "prod")
        assert not result.errors, [str(d) for d in result.errors[:3]]
        deps = result.deployments
        render(deps[0])  # import Pulumi and the providers once (not part of a render)
        rss_before = peak_rss_mb()

        per_platform: dict[str, list[float]] = {}
        states = {}
        start, cpu_start = time.perf_counter(), time.process_time()
        for dep in deps:
            t0 = time.process_time()
            states[dep.key] = render(dep, None, config, cache=False)
            per_platform.setdefault(dep.platform, []).append((time.process_time() - t0) * 1000)
        total_ms = (time.perf_counter() - start) * 1000
        cpu_ms = (time.process_time() - cpu_start) * 1000
        load = os.getloadavg()[0]
        print(
            f"render (cache off): {len(deps)} deployments, {total_ms / len(deps):.1f} ms wall "
            f"and {cpu_ms / len(deps):.1f} ms CPU per deployment (target < 50 ms; "
            f"1-min load average {load:.1f} on {os.cpu_count()} cores)"
        )
        print("  CPU ms per render by platform:")
        for platform, times in sorted(per_platform.items()):
            resources = len(next(s for s in states.values() if s.platform == platform).resources)
            print(
                f"  {platform:<15} n={len(times):3d}  median {statistics.median(times):6.1f} ms  "
                f"p95 {sorted(times)[int(len(times) * 0.95) - 1]:6.1f} ms  "
                f"({resources} resources each)"
            )
        print(f"  peak RSS {peak_rss_mb():.0f} MiB (after imports: {rss_before:.0f} MiB)")

        ledger = Ledger(config.state_dir)
        for dep in deps:
            record = LedgerRecord(name=dep.name, environment=dep.env, platform=dep.platform)
            record.desiredState = states[dep.key].to_dict()
            ledger.put(record)

        for label in ("empty render cache", "warm render cache"):
            render_mod._MEMORY.clear()  # as in a new process; the disk cache stays
            cpu = time.process_time()
            start = time.perf_counter()
            loaded = load_all(config, None, "prod")
            plans = []
            for dep in loaded.deployments:
                record = ledger.get(dep.name, dep.env)
                plans.append(diff(record.desiredState, render(dep, None, config), dep.key))
            wall = time.perf_counter() - start
            cpu = time.process_time() - cpu
            changed = [p.deployment for p in plans if not p.empty]
            assert not changed, changed
            print(
                f"no-change plan over {len(plans)} deployments, {label}: {wall:.2f} s wall, "
                f"{cpu:.2f} s CPU (validate + ledger + render + diff; target < 5 s); "
                "all plans empty"
            )


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 100)

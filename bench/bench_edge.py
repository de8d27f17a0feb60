"""Benchmark: the edge build of the example fraud model, and ONNX beside scikit-learn.

Builds a temporary spec repository with the example edge spec
(``examples/edge/fraud-edge.yaml``) whose parity data is 10,000 rows drawn from the fraud
reference data (resampled with 1 % Gaussian noise per feature, fixed seed), then:

1. times the whole edge build (:func:`reconciler.build.edge_bundle.build_edge`: export,
   parity on 10,000 rows plus the generated edge cases, the latency measurement, the
   bundle), after the converters are imported (their import time is printed apart);
2. times single-row ``predict`` of the original scikit-learn pipeline and ``run`` of the
   exported ONNX model (ONNX Runtime, one thread) on the same row, the same number of
   calls, and prints p50/p99 of both and their ratio.

Target (issue 20): step 1 under 30 s; the ONNX model several times faster than the
original's ``predict``. Run: ``.venv/bin/python bench/bench_edge.py``.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("BENTOML_DO_NOT_TRACK", "True")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from reconciler.core.config import load_config  # noqa: E402
from reconciler.runtime import frameworks  # noqa: E402
from reconciler.spec.repo import load_files  # noqa: E402

ROWS = 10_000
CALLS = 2_000


def make_repo(base: Path) -> Path:
    """A spec repository with the edge example and 10,000 rows of parity data."""
    root = base / "repo"
    shutil.copytree(ROOT / "examples", root / "examples")
    (root / "specs").mkdir()
    (root / "modelops.yaml").write_text("state_dir: .modelops\n")
    reference = pd.read_parquet(root / "examples/fraud/reference.parquet")
    features = reference.drop(columns=[c for c in ("target",) if c in reference.columns])
    rng = np.random.default_rng(0)
    sample = features.sample(ROWS, replace=True, random_state=0).to_numpy(np.float64)
    sample *= 1 + 0.01 * rng.standard_normal(sample.shape)
    pd.DataFrame(sample.astype(np.float32), columns=features.columns).to_parquet(
        root / "examples/edge/parity-10k.parquet"
    )
    text = (ROOT / "examples/edge/fraud-edge.yaml").read_text()
    text = text.replace(
        "data: examples/fraud/holdout.parquet", "data: examples/edge/parity-10k.parquet"
    )
    text = text.replace("max_p99_ms: 5", "max_p99_ms: 1000")  # measured here, not gated
    text = text.replace("layout: oci", "layout: bundle")
    text = text.replace(
        "      max_abs_diff: 0.001\n", "      max_abs_diff: 0.001\n      max_rows: 10000\n"
    )
    (root / "specs/fraud-edge.yaml").write_text(text)
    return root


def _quantiles(times: np.ndarray) -> tuple[float, float]:
    return float(np.quantile(times, 0.5)), float(np.quantile(times, 0.99))


def _time_calls(call, row, n: int) -> np.ndarray:
    for _ in range(50):
        call(row)
    out = np.empty(n)
    for i in range(n):
        start = time.perf_counter_ns()
        call(row)
        out[i] = (time.perf_counter_ns() - start) / 1e6
    return out


def main() -> int:
    start = time.perf_counter()
    import skl2onnx  # noqa: F401 - imported here to time it apart from the build

    from reconciler.build.edge_bundle import build_edge, session_of

    imports = time.perf_counter() - start
    with tempfile.TemporaryDirectory(prefix="bench-edge-") as tmp:
        root = make_repo(Path(tmp))
        config = load_config(root)
        loaded = load_files(config, [root / "specs/fraud-edge.yaml"])
        assert not loaded.errors, [str(d) for d in loaded.diagnostics]
        (dep,) = loaded.deployments
        start = time.perf_counter()
        built = build_edge(dep, config, "bench")
        elapsed = time.perf_counter() - start
        print(f"converter imports: {imports:.2f} s (once per process)")
        print(
            f"edge build (export, parity on {built.parity.rows} rows = {built.parity.data_rows}"
            f" + {built.parity.edge_case_rows} edge cases, {built.budget.calls}-call latency,"
            f" bundle): {elapsed:.2f} s (target < 30 s: {'ok' if elapsed < 30 else 'MISSED'})"
        )
        print(
            f"parity: label agreement {built.parity.label_agreement:.4f}, max abs diff "
            f"{built.parity.max_abs_diff:.2g}, p99 abs diff {built.parity.p99_abs_diff:.2g}; "
            f"model.onnx {built.budget.size_bytes} bytes"
        )
        original = frameworks.load_model("sklearn", root / "examples/fraud/model.joblib")
        session = session_of(built.export.onnx)
        name = session.get_inputs()[0].name
        row = pd.read_parquet(root / "examples/edge/parity-10k.parquet").to_numpy(np.float32)[:1]
        onnx_times = _time_calls(lambda r: session.run(None, {name: r}), row, CALLS)
        sk_times = _time_calls(original.predict, row, CALLS)
        o50, o99 = _quantiles(onnx_times)
        s50, s99 = _quantiles(sk_times)
        print(f"single-row latency over {CALLS} calls (same machine, same row):")
        print(f"  ONNX Runtime, 1 thread : p50 {o50 * 1000:8.1f} us   p99 {o99 * 1000:8.1f} us")
        print(f"  scikit-learn predict   : p50 {s50 * 1000:8.1f} us   p99 {s99 * 1000:8.1f} us")
        print(f"  ratio (sklearn / ONNX) : p50 {s50 / o50:5.1f}x      p99 {s99 / o99:5.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())

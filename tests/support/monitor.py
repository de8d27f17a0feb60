"""Helpers for the monitoring tests: a real Git spec repository with the fraud example,
and captured traffic written by the serving runtime's own capture writer (no tests here)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd

from reconciler.core.config import load_config
from reconciler.runtime.capture import CaptureWriter
from reconciler.spec.repo import load_all
from support.repo import PROJECT, make_repo

NOW = datetime.now(UTC).replace(microsecond=0)
"""The "now" of the tests (window end): the time the test session started."""


def fraud_repo(tmp_path: Path, edit=None) -> Path:
    """A committed Git repository at ``tmp_path / "repo"``: the fraud-detector spec,
    examples/fraud and examples/train.py, no policies.

    ``edit`` (text -> text) may change the spec before the first commit.
    """
    return make_repo(
        tmp_path / "repo",
        specs=["fraud-detector"],
        examples=["fraud", "train.py"],
        policies=False,
        edit=edit,
        git=True,
    ).root


def deployment(root: Path, env: str = "staging"):
    """``(config, deployment)`` of fraud-detector × ``env`` in ``root``."""
    config = load_config(root)
    result = load_all(config, ["fraud-detector"], env)
    assert not result.errors, [str(d) for d in result.errors]
    return config, result.deployments[0]


def reference() -> pd.DataFrame:
    """The real reference data of the fraud example (426 rows × 30 float32 features)."""
    return pd.read_parquet(PROJECT / "examples" / "fraud" / "reference.parquet")


def holdout_features() -> pd.DataFrame:
    """The real holdout rows of the fraud example, without the target (143 rows)."""
    return pd.read_parquet(PROJECT / "examples" / "fraud" / "holdout.parquet").drop(
        columns="target"
    )


def capture(
    root: Path,
    frame: pd.DataFrame,
    *,
    when: datetime = NOW,
    batch: int = 8,
    fmt: str = "jsonl",
    env: str = "staging",
) -> int:
    """Write ``frame``'s rows as captured requests with the runtime's CaptureWriter.

    Outputs are 0/1 from a fixed rule (not the model), timestamps 1 s apart ending at
    ``when - 1 min``. Returns the number of requests written.
    """
    writer = CaptureWriter(root / ".modelops" / "capture", "fraud-detector", env, 1.0, fmt=fmt)
    rows = frame.to_numpy(dtype=np.float64)
    n = 0
    for start in range(0, len(rows), batch):
        chunk = rows[start : start + batch]
        ts = when - timedelta(minutes=1) - timedelta(seconds=len(rows) - start)
        writer.submit(f"r{start}", "1.0.0", 2.5, chunk.tolist(), [0] * len(chunk), timestamp=ts)
        n += 1
    writer.close()
    return n


def write_lines(root: Path, records: list, day: str | None = None) -> Path:
    """Write raw JSON Lines records (dicts or literal strings) as one capture file."""
    day = day or NOW.strftime("%Y-%m-%d")
    path = root / ".modelops" / "capture" / "fraud-detector" / "staging" / day / "capture-1-1.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in records))
    return path


def record(values: list, *, when: datetime = NOW, outputs: list | None = None) -> dict:
    """One capture record with the given input rows (``values``: list of rows)."""
    return {
        "timestamp": (when - timedelta(minutes=5)).isoformat(),
        "request_id": "x",
        "model_version": "1.0.0",
        "latency_ms": 2.0,
        "inputs": values,
        "outputs": outputs if outputs is not None else [0] * len(values),
    }


def set_line(text: str, startswith: str, new: str) -> str:
    """Replace the (first) spec line whose stripped text starts with ``startswith``."""
    lines = text.splitlines(keepends=True)
    for i, line in enumerate(lines):
        if line.strip().startswith(startswith):
            indent = line[: len(line) - len(line.lstrip())]
            lines[i] = f"{indent}{new}\n"
            return "".join(lines)
    raise AssertionError(f"no line starting with {startswith!r}")

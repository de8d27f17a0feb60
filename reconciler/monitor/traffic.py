"""Traffic for the monitoring loop in the demo and the tests: real requests, shifted data.

:func:`send_traffic` posts rows to a live endpoint's ``POST /predict``;
:func:`shifted` builds a deliberately shifted copy of reference data.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import httpx

from reconciler.core.diagnostics import ModelopsError

if TYPE_CHECKING:  # annotations only
    import numpy as np
    import pandas as pd

SHIFT_SD = 1.5
"""Shift of the moved columns, in standard deviations of the reference column."""
SCALE = 1.25
"""Factor applied to the moved columns' spread around their mean."""


def shifted(frame: pd.DataFrame, seed: int) -> pd.DataFrame:
    """A deliberately shifted copy of ``frame``.

    The shift, applied to the numeric columns:

    - rows are drawn from ``frame`` with replacement (``numpy.random.default_rng(seed)``);
    - the first half of the columns, in column order (``ceil(k / 2)`` of ``k``), are
      moved by **+1.5 standard deviations** (:data:`SHIFT_SD`) of that column in
      ``frame`` and their spread around the mean is scaled by **1.25** (:data:`SCALE`):
      a covariate shift that PSI, KS, Wasserstein and Jensen-Shannon all flag at the
      default thresholds;
    - the other columns are unchanged (only resampled), so about half the features drift.

    Args:
        frame: reference data; numeric columns (non-numeric columns are copied as drawn).
        seed: seed of the row resampling (same seed, same result).

    Returns:
        A frame of the same shape, columns and dtypes as ``frame``.

    Raises:
        ValueError: ``frame`` has no rows.
    """
    import numpy as np  # heavy: loaded when this runs, not at every `modelops` start
    import pandas as pd  # heavy: loaded when this runs, not at every `modelops` start

    if frame.empty:
        raise ValueError("cannot shift an empty frame")
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(frame), size=len(frame))
    out = frame.iloc[idx].reset_index(drop=True).copy()
    numeric = [c for c in frame.columns if pd.api.types.is_numeric_dtype(frame[c])]
    for col in numeric[: math.ceil(len(numeric) / 2)]:
        ref = frame[col].astype("float64")
        mean, sd = float(ref.mean()), float(ref.std(ddof=0)) or 1.0
        moved = (out[col].astype("float64") - mean) * SCALE + mean + SHIFT_SD * sd
        out[col] = moved.astype(frame[col].dtype)
    return out


def send_traffic(
    url: str,
    rows: np.ndarray,
    *,
    batch: int = 8,
    timeout_s: float = 10.0,
    id_prefix: str | None = None,
) -> int:
    """Send ``rows`` to a live endpoint as real requests of ``batch`` rows each.

    Args:
        url: the endpoint's base URL (``http://127.0.0.1:PORT``; the ledger's
            ``outputs.url``); requests go to ``<url>/predict``.
        rows: ``(n, features)`` array of feature rows in signature order.
        batch: rows per request (``{"instances": [...]}``).
        timeout_s: per-request time-out (s).
        id_prefix: when given, request ``n`` (from 0) carries ``X-Request-ID:
            <id_prefix>-<n>``, so labels can later be joined to its predictions
            (``<id>/<row>``: :func:`reconciler.monitor.labels.prediction_ids`).

    Returns:
        The number of requests answered with HTTP 200.

    Raises:
        ModelopsError: the endpoint is unreachable or answers with an error status
            (the message gives the status and the first 200 characters of the body).
    """
    import numpy as np  # heavy: loaded when this runs, not at every `modelops` start

    rows = np.asarray(rows)
    if rows.ndim != 2:
        raise ModelopsError(f"send_traffic: rows must be a 2-D array, got shape {rows.shape}")
    endpoint = url.rstrip("/") + "/predict"
    sent = 0
    with httpx.Client(timeout=timeout_s) as client:
        for start in range(0, len(rows), max(1, batch)):
            chunk = rows[start : start + batch].tolist()
            try:
                headers = {"X-Request-ID": f"{id_prefix}-{sent}"} if id_prefix else None
                response = client.post(endpoint, json={"instances": chunk}, headers=headers)
            except httpx.HTTPError as exc:
                raise ModelopsError(f"cannot reach {endpoint}: {exc}") from None
            if response.status_code != 200:
                raise ModelopsError(
                    f"{endpoint} answered {response.status_code}: {response.text[:200]}"
                )
            sent += 1
    return sent

"""The smallest current window a drift test can judge (its statistical power).

A drift test on too few rows calls noise drift: with 54 rows drawn from the reference
itself, PSI over Sturges bins is about 0.2, twice the 0.1 threshold. So before any test
runs, the window's row count is compared with :func:`min_rows` for the test, and a
smaller window gets the verdict ``insufficient data`` (with both counts), never drift.

Rules (the derivations and sources are in ``docs/monitor.md``, "Minimum window"):

* binned distances (``psi``, ``kl_div``, ``jensenshannon``): with no shift, the
  statistic is approximately a chi-square variable with ``k - 1`` degrees of freedom
  times ``(1/n + 1/m)`` (PSI: Yurdakul 2018; KL divergence: half of it; Jensen-Shannon
  divergence: an eighth of it, compared as a distance, so against ``threshold**2``).
  The minimum ``n`` keeps its 95th percentile under the threshold (false alarms at most
  5%), and every bin expects at least 5 rows on average (Cochran's rule for chi-square
  approximations). ``k`` is numpy's Sturges bin count on both sides, as Evidently bins.
* ``wasserstein`` (normed by the reference's standard deviation): the 95th percentile of
  the normed distance between two samples of one distribution is about
  ``2.3 * sqrt(1/n + 1/m)`` (measured for normal data: 2.0 to 2.3 across sample sizes).
* p-value tests (``ks``, ``chisquare``, ``z``) hold their false-alarm rate at any size,
  but below a minimum they cannot reject anything useful: ``ks`` needs the window in
  which a shift of half a standard deviation (KS distance about 0.2 between normals)
  reaches the 5% critical value ``sqrt(-ln(0.025)/2) * sqrt(1/n + 1/m)``; ``chisquare``
  and ``z`` need 5 expected rows per category (Cochran).

No shift this module knows about is "detected" by these rules; they only keep a test
from answering where it cannot.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

BINNED = {"psi": 1.0, "kl_div": 0.5, "jensenshannon": 0.125}
"""Scale of the chi-square approximation per binned method (statistic ≈ scale·χ²·(1/n+1/m))."""
DEFAULT_THRESHOLDS = {
    "psi": 0.1,
    "kl_div": 0.1,
    "jensenshannon": 0.1,
    "wasserstein": 0.1,
    "ks": 0.05,
    "chisquare": 0.05,
    "z": 0.05,
}
"""Evidently 0.7's default threshold per method (a distance, or a p-value for tests)."""
WASSERSTEIN_Q95 = 2.3
"""95th percentile of normed Wasserstein / sqrt(1/n + 1/m) with no shift (measured)."""
KS_DETECTABLE = 0.2
"""KS distance of a half-standard-deviation shift between normals (2Φ(0.25) - 1 ≈ 0.197)."""
MIN_PER_BIN = 5
"""Cochran's rule: expected count per bin or category for chi-square approximations."""
LIMIT = 10**9


@dataclass(frozen=True)
class Minimum:
    """The smallest current window for one test.

    Attributes:
        method: the test (``psi``, ``ks``...) the rule is for.
        rows: the minimum number of current rows (``LIMIT`` when no window is enough
            because the reference is too small; the rule says so).
        rule: one line: the rule and the numbers it used.
    """

    method: str
    rows: int
    rule: str


def default_method(n_reference: int, categorical: bool, n_values: int = 3) -> str:
    """The test Evidently 0.7 picks for a column when the spec names none.

    Numerical columns: ``ks`` up to 1000 reference rows, else ``wasserstein``;
    categorical: ``chisquare`` (``z`` for two values) up to 1000, else ``jensenshannon``.
    """
    if n_reference <= 1000:
        if categorical:
            return "chisquare" if n_values > 2 else "z"
        return "ks"
    return "jensenshannon" if categorical else "wasserstein"


def _chi2_q95(df: int) -> float:
    from scipy.stats import chi2  # heavy: only when a minimum window is computed

    return float(chi2.ppf(0.95, max(1, df)))


def _sturges(total: int) -> int:
    return int(math.ceil(math.log2(max(2, total)))) + 1


def min_rows(
    method: str,
    threshold: float | None,
    n_reference: int,
    *,
    categories: int | None = None,
) -> Minimum:
    """The minimum current rows for ``method`` at ``threshold`` against ``n_reference`` rows.

    Args:
        method: ``psi``, ``kl_div``, ``jensenshannon``, ``wasserstein``, ``ks``,
            ``chisquare`` or ``z`` (other names get the ``ks`` rule).
        threshold: the feature threshold (``spec.monitoring.drift.feature_threshold``),
            ``None`` for Evidently's default.
        n_reference: reference rows compared (m).
        categories: distinct values of a categorical column (bins for binned methods
            on columns with at most 20 values); ``None``: Sturges bins.

    Returns:
        A :class:`Minimum` (rows are current rows, after sampling).
    """
    t = float(threshold if threshold is not None else DEFAULT_THRESHOLDS.get(method, 0.05))
    m = max(1, int(n_reference))
    if method in BINNED:
        target = t * t if method == "jensenshannon" else t
        n = MIN_PER_BIN * 2
        for _ in range(50):  # Sturges bins grow with n: iterate to a fixed point
            k = categories or _sturges(n + m)
            per_side = target / (BINNED[method] * _chi2_q95(k - 1)) - 1.0 / m
            need = LIMIT if per_side <= 0 else math.ceil(1.0 / per_side)
            need = max(need, MIN_PER_BIN * k)
            if need == n:
                break
            n = min(need, LIMIT)
        rule = (
            f"{method}: {k} bins; no-shift {method} ≈ {BINNED[method]:g}·χ²({k - 1})·"
            f"(1/n + 1/{m}) stays under {t:g} in 95% of windows, and ≥{MIN_PER_BIN} rows per bin"
        )
        return Minimum(method, n, rule)
    if method == "wasserstein":
        per_side = (t / WASSERSTEIN_Q95) ** 2 - 1.0 / m
        n = LIMIT if per_side <= 0 else math.ceil(1.0 / per_side)
        rule = (
            f"wasserstein: no-shift normed distance ≈ {WASSERSTEIN_Q95}·√(1/n + 1/{m}) "
            f"stays under {t:g} in 95% of windows"
        )
        return Minimum(method, n, rule)
    if method in ("chisquare", "z"):
        k = max(2, categories or 2)
        return Minimum(
            method, MIN_PER_BIN * k, f"{method}: ≥{MIN_PER_BIN} expected rows per category ({k})"
        )
    alpha = t if 0 < t < 1 else 0.05
    c = math.sqrt(-math.log(alpha / 2) / 2)
    per_side = (KS_DETECTABLE / c) ** 2 - 1.0 / m
    n = LIMIT if per_side <= 0 else math.ceil(1.0 / per_side)
    rule = (
        f"ks: a half-SD shift (D≈{KS_DETECTABLE}) reaches the {alpha:g} critical value "
        f"{c:.3f}·√(1/n + 1/{m})"
    )
    return Minimum("ks", n, rule)


__all__ = ["Minimum", "default_method", "min_rows"]

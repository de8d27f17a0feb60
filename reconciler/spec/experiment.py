"""The design of an A/B experiment (``spec.target.rollout.experiment``), fixed before it starts.

The sequential test is the mixture SPRT (mSPRT; Johari, Koomen, Pekelis and Walsh,
"Always Valid Inference", Operations Research 2022) on the difference of two shares;
this module holds its likelihood ratio, the always-valid interval and the per-arm sample
size, which validate, the stacks (the plan shows the size) and the verdict
(``reconciler.monitor.experiment``) share. Derivation and measurements: ``docs/rollout.md``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import NormalDist

import numpy as np

from reconciler.spec.model import Deployment

#: primary metric -> True when a larger share is better for the new version.
HIGHER_IS_BETTER = {"accuracy": True, "error_rate": False}
#: ``experiment.primary_metric`` -> where its baseline defaults from.
BASELINE_FIELDS = {
    "error_rate": "spec.serving.slo.max_error_rate",
    "accuracy": "spec.monitoring.quality.min_accuracy",
}
DEFAULT_ALPHA = 0.05
DEFAULT_POWER = 0.8
#: Largest per-arm sample size :func:`sample_size` returns (an effect too small for any
#: experiment a service could run).
MAX_SAMPLE = 10**9


def _var(x, n):
    """Variance of one arm's share estimate, from ``x`` events in ``n`` requests."""
    p = (np.asarray(x, dtype=float) + 0.5) / (np.asarray(n, dtype=float) + 1.0)
    return p * (1.0 - p) / np.asarray(n, dtype=float)


def likelihood_ratio(n_a, x_a, n_b, x_b, tau2: float):
    """The mSPRT mixture likelihood ratio against no difference (module docstring).

    Args:
        n_a, x_a: requests and events (errors, or correct predictions) of the stable
            version A; numbers or numpy arrays of one shape (vectorised over experiments
            or looks); ``n`` at least 1.
        n_b, x_b: the same for the new version B.
        tau2: variance of the normal mixture of effects (``mde**2``).

    Returns:
        ``(ratio, effect, variance)``: the ratio L, ``d = x_b/n_b - x_a/n_a`` and V, as
        floats or arrays of the inputs' shape.
    """
    n_a, x_a = np.asarray(n_a, dtype=float), np.asarray(x_a, dtype=float)
    n_b, x_b = np.asarray(n_b, dtype=float), np.asarray(x_b, dtype=float)
    d = x_b / n_b - x_a / n_a
    v = _var(x_a, n_a) + _var(x_b, n_b)
    log_ratio = 0.5 * np.log(v / (v + tau2)) + tau2 * d**2 / (2.0 * v * (v + tau2))
    return np.exp(np.minimum(log_ratio, 700.0)), d, v


def half_width(v, tau2: float, alpha: float):
    """Half-width ``h`` of the always-valid ``1 - alpha`` interval ``d ± h`` for variance ``v``.

    The effects ``theta`` with a ratio (of ``d - theta``) below ``1/alpha``:
    ``h**2 = 2 V (V + tau2) / tau2 * (ln(1/alpha) + ln((V + tau2) / V) / 2)``.
    """
    v = np.asarray(v, dtype=float)
    return np.sqrt(
        2.0 * v * (v + tau2) / tau2 * (math.log(1.0 / alpha) + 0.5 * np.log((v + tau2) / v))
    )


def sample_size(
    baseline: float, mde: float, alpha: float = DEFAULT_ALPHA, power: float = DEFAULT_POWER
) -> int:
    """Requests per arm at which the mSPRT detects an effect of ``mde`` with ``power``.

    Args:
        baseline: A's share of the primary metric (errors or correct predictions), in (0, 1).
        mde: minimum detectable effect, an absolute difference of shares in (0, 1).
        alpha: false-positive rate; power: chance of a detection at effect ``mde``.

    Returns:
        The smallest n with ``P(|d| >= h_n) >= power`` at the single look n, where
        ``d ~ N(mde, V_n)`` under the effect (B's share ``baseline ± mde``, whichever stays
        in (0, 1)); earlier looks only add detections (module docstring). At most
        :data:`MAX_SAMPLE`.

    Raises:
        ValueError: a share or probability outside (0, 1).
    """
    for name, value in (("baseline", baseline), ("mde", mde), ("alpha", alpha), ("power", power)):
        if not 0.0 < value < 1.0:
            raise ValueError(f"{name} must be between 0 and 1, got {value}")
    p_b = baseline + mde if baseline + mde < 1.0 else baseline - mde
    if not 0.0 < p_b < 1.0:
        raise ValueError(f"no share of the new version differs by {mde} from {baseline}")
    tau2 = mde**2
    unit = baseline * (1 - baseline) + p_b * (1 - p_b)
    normal = NormalDist()

    def powered(n: int) -> bool:
        v = unit / n
        h = float(half_width(v, tau2, alpha))
        return normal.cdf((mde - h) / math.sqrt(v)) >= power

    hi = 1
    while not powered(hi):
        hi *= 2
        if hi > MAX_SAMPLE:
            return MAX_SAMPLE
    lo = hi // 2
    while lo + 1 < hi:
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if powered(mid) else (mid, hi)
    return hi


@dataclass(frozen=True)
class Design:
    """An experiment's settings and its per-arm sample size (requests)."""

    metric: str
    baseline: float
    mde: float
    alpha: float
    power: float
    sample_size: int

    def note(self) -> str:
        """One line for the plan."""
        return (
            f"experiment on {self.metric}: {self.sample_size:,} requests per arm before a "
            f"verdict of no detectable difference (baseline {self.baseline:g}, minimum "
            f"detectable effect {self.mde:g}, alpha {self.alpha:g}, power {self.power:g}); "
            "sequential test (mSPRT), so a clear winner or loser stops it earlier"
        )


def design_of(dep: Deployment) -> Design | None:
    """The design of ``dep``'s experiment, ``None`` when the rollout is not an experiment
    or lacks what the size needs (validate reports those)."""
    rollout = dep.get("spec.target.rollout") or {}
    experiment = rollout.get("experiment") or {}
    metric = experiment.get("primary_metric")
    if rollout.get("strategy") != "experiment" or metric not in BASELINE_FIELDS:
        return None
    baseline = experiment.get("baseline", dep.get(BASELINE_FIELDS[metric]))
    mde = experiment.get("minimum_detectable_effect")
    if not isinstance(baseline, int | float) or not isinstance(mde, int | float):
        return None
    alpha = float(experiment.get("alpha", DEFAULT_ALPHA))
    power = float(experiment.get("power", DEFAULT_POWER))
    try:
        size = sample_size(float(baseline), float(mde), alpha, power)
    except ValueError:
        return None
    return Design(metric, float(baseline), float(mde), alpha, power, size)

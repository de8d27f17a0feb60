"""A/B experiment verdicts that can be looked at any time: the mixture SPRT.

An experiment (``spec.target.rollout.strategy: experiment``) compares a per-request
outcome (``experiment.primary_metric``: ``accuracy``, a correct prediction, or
``error_rate``, a 5xx answer) of the new version B against the stable version A. A
fixed-horizon test read before its planned end inflates false positives (reading a
z-test at 10 looks at alpha 0.05 rejects a true null about 19% of the time). This module
uses the mixture sequential probability ratio test (mSPRT; Johari, Koomen, Pekelis and
Walsh, "Always Valid Inference", Operations Research 2022; the test behind Optimizely's
stats engine) on the difference of the two shares:

* the estimate ``d = p_B - p_A`` has variance ``V = p_A(1-p_A)/n_A + p_B(1-p_B)/n_B``
  (shares smoothed as ``(x + 0.5) / (n + 1)`` so that an arm with no events has a variance);
* with a normal mixture of effects ``N(0, tau2)`` (``tau2 = mde**2``: the effect the
  experiment is sized for) the likelihood ratio against "no difference" is
  ``L = sqrt(V / (V + tau2)) * exp(tau2 * d**2 / (2 * V * (V + tau2)))``;
* under no difference, ``L`` is a nonnegative martingale, so by Ville's inequality the
  chance that it EVER reaches ``1/alpha`` is at most alpha, whatever the number of looks.
  The always-valid p-value is ``min(1, 1/max L so far)``; the confidence interval
  ``d ± h`` holds every effect whose ratio is below ``1/alpha`` (:func:`half_width`).

The sample size is fixed before the experiment starts (:func:`sample_size`): the number
of requests per arm at which the test, read only at that last look, reaches ``power``
against an effect of ``mde``; every earlier look can only add detections, so the power
at that size is at least the stated one. The experiment stops at the first look where
the p-value is at most alpha (winner or loser) or at that size (no detectable
difference). The simulation tests (``tests/monitor/test_experiment.py``) hold 1,000
experiments with no difference under alpha and 1,000 with an effect of mde at or above
the power, within simulation error.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from statistics import NormalDist

import numpy as np

#: primary metric -> True when a larger share is better for the new version.
HIGHER_IS_BETTER = {"accuracy": True, "error_rate": False}
DEFAULT_ALPHA = 0.05
DEFAULT_POWER = 0.8
#: Largest per-arm sample size :func:`sample_size` returns (an effect too small for any
#: experiment a service could run).
MAX_SAMPLE = 10**9

WINNER = "winner"
LOSER = "loser"
NO_DIFFERENCE = "no detectable difference"
RUNNING = "running"


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
class Verdict:
    """The state of one experiment after a look.

    Attributes:
        metric: the primary metric (``accuracy`` or ``error_rate``).
        verdict: ``winner`` (B is better), ``loser`` (B is worse), ``no detectable
            difference`` (the sample size was reached without a detection) or ``running``.
        effect: ``share_B - share_A`` (absolute, e.g. -0.004 = 0.4 points fewer).
        interval: the always-valid ``1 - alpha`` interval of the effect ``(low, high)``.
        p_value: the always-valid p-value (the smallest over all looks so far).
        n_a, n_b: requests per arm so far; sample_size: the planned size per arm.
        share_a, share_b: each arm's observed share.
        alpha, power, mde: the experiment's settings.
    """

    metric: str
    verdict: str
    effect: float
    interval: tuple[float, float]
    p_value: float
    n_a: int
    n_b: int
    share_a: float
    share_b: float
    sample_size: int
    alpha: float
    power: float
    mde: float

    def to_dict(self) -> dict:
        """JSON-ready fields (the ledger and the PR comment read these)."""
        out = asdict(self)
        out["interval"] = list(self.interval)
        return out

    def summary(self) -> str:
        """One line for status and the PR comment."""
        lo, hi = self.interval
        return (
            f"{self.verdict}: {self.metric} {self.share_b:.4f} vs {self.share_a:.4f} "
            f"(effect {self.effect:+.4f}, {1 - self.alpha:.0%} interval [{lo:+.4f}, {hi:+.4f}], "
            f"p={self.p_value:.3g}; n={self.n_b}/{self.n_a} of {self.sample_size} per arm)"
        )


def judge(
    metric: str,
    n_a: int,
    x_a: int,
    n_b: int,
    x_b: int,
    *,
    baseline: float,
    mde: float,
    alpha: float = DEFAULT_ALPHA,
    power: float = DEFAULT_POWER,
    best_ratio: float = 0.0,
) -> Verdict:
    """The verdict of an experiment at one look.

    Args:
        metric: a key of :data:`HIGHER_IS_BETTER`.
        n_a, x_a, n_b, x_b: requests and events per arm so far (cumulative).
        baseline, mde, alpha, power: as in :func:`sample_size`.
        best_ratio: the largest likelihood ratio of the earlier looks (0 for none), so the
            p-value stays the smallest over all looks (always valid).

    Raises:
        ValueError: an unknown metric, counts below 0, events above requests.
    """
    if metric not in HIGHER_IS_BETTER:
        raise ValueError(f"unknown primary metric {metric!r}; expected one of accuracy, error_rate")
    if min(n_a, x_a, n_b, x_b) < 0 or x_a > n_a or x_b > n_b:
        raise ValueError(f"invalid counts: A {x_a}/{n_a}, B {x_b}/{n_b}")
    planned = sample_size(baseline, mde, alpha, power)
    if n_a == 0 or n_b == 0:
        return Verdict(
            metric, RUNNING, 0.0, (-1.0, 1.0), 1.0, n_a, n_b, 0.0, 0.0, planned, alpha, power, mde
        )
    tau2 = mde**2
    ratio, d, v = likelihood_ratio(n_a, x_a, n_b, x_b, tau2)
    ratio = max(float(ratio), best_ratio)
    p_value = min(1.0, 1.0 / ratio) if ratio > 0 else 1.0
    h = float(half_width(v, tau2, alpha))
    d = float(d)
    if p_value <= alpha:
        better = (d > 0) == HIGHER_IS_BETTER[metric]
        verdict = WINNER if better else LOSER
    elif min(n_a, n_b) >= planned:
        verdict = NO_DIFFERENCE
    else:
        verdict = RUNNING
    return Verdict(
        metric,
        verdict,
        d,
        (max(-1.0, d - h), min(1.0, d + h)),
        p_value,
        n_a,
        n_b,
        x_a / n_a,
        x_b / n_b,
        planned,
        alpha,
        power,
        mde,
    )


def simulate(
    p_a: float,
    p_b: float,
    *,
    mde: float,
    alpha: float,
    n: int,
    experiments: int,
    look_every: int,
    seed: int,
) -> np.ndarray:
    """For each of ``experiments`` simulated A/B tests, whether the mSPRT rejected "no
    difference" at any look up to ``n`` requests per arm (looks every ``look_every``).

    Vectorised with numpy (one draw of binomial increments per look and arm); used by
    the simulation tests and ``bench/``. Returns a boolean array of ``experiments``.
    """
    rng = np.random.default_rng(seed)
    looks = np.arange(look_every, n + 1, look_every)
    steps = np.diff(np.concatenate([[0], looks]))
    x_a = np.cumsum(rng.binomial(steps, p_a, size=(experiments, len(looks))), axis=1)
    x_b = np.cumsum(rng.binomial(steps, p_b, size=(experiments, len(looks))), axis=1)
    ratio, _, _ = likelihood_ratio(looks, x_a, looks, x_b, mde**2)
    return (ratio >= 1.0 / alpha).any(axis=1)

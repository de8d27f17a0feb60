"""A/B verdicts (reconciler.monitor.experiment): sample size, the always-valid test, verdicts.

The simulation tests run 1,000 experiments each (vectorised: well under a second apiece)
and compare the observed rate with the claim within three binomial standard errors of
1,000 draws (the simulation error).
"""

from __future__ import annotations

import math
from statistics import NormalDist

import numpy as np
import pytest

from reconciler.monitor import experiment as ex

EXPERIMENTS = 1000
ALPHA = 0.05
POWER = 0.8


def _sim_error(p: float) -> float:
    return 3 * math.sqrt(p * (1 - p) / EXPERIMENTS)


# (baseline, mde, looks per experiment): a rare error rate, a common share, accuracy near 1
SETTINGS = [(0.02, 0.01, 100), (0.1, 0.02, 20), (0.9, 0.02, 50)]


@pytest.mark.parametrize(("baseline", "mde", "looks"), SETTINGS)
def test_no_difference_keeps_false_positives_at_or_below_alpha_while_peeking(baseline, mde, looks):
    n = ex.sample_size(baseline, mde, ALPHA, POWER)
    rejected = ex.simulate(
        baseline, baseline, mde=mde, alpha=ALPHA, n=n, experiments=EXPERIMENTS,
        look_every=n // looks, seed=11,
    )  # fmt: skip
    assert rejected.mean() <= ALPHA + _sim_error(ALPHA), (baseline, mde, rejected.mean())


@pytest.mark.parametrize(("baseline", "mde", "looks"), SETTINGS)
def test_an_effect_of_the_mde_reaches_the_stated_power_by_the_sample_size(baseline, mde, looks):
    n = ex.sample_size(baseline, mde, ALPHA, POWER)
    detected = ex.simulate(
        baseline, baseline + mde, mde=mde, alpha=ALPHA, n=n, experiments=EXPERIMENTS,
        look_every=n // looks, seed=12,
    )  # fmt: skip
    assert detected.mean() >= POWER - _sim_error(POWER), (baseline, mde, detected.mean())


def test_the_same_peeking_inflates_a_fixed_horizon_z_test():
    """The check above can fail: a plain z-test read at each of 20 looks rejects a true
    null far more often than alpha (the reason for the sequential test)."""
    baseline, mde = 0.1, 0.02
    n = ex.sample_size(baseline, mde, ALPHA, POWER)
    rng = np.random.default_rng(13)
    looks = np.arange(n // 20, n + 1, n // 20)
    steps = np.diff(np.concatenate([[0], looks]))
    x_a = np.cumsum(rng.binomial(steps, baseline, size=(EXPERIMENTS, len(looks))), axis=1)
    x_b = np.cumsum(rng.binomial(steps, baseline, size=(EXPERIMENTS, len(looks))), axis=1)
    pooled = (x_a + x_b) / (2 * looks)
    z = (x_b - x_a) / looks / np.sqrt(pooled * (1 - pooled) * 2 / looks)
    rejected = (np.abs(z) >= NormalDist().inv_cdf(1 - ALPHA / 2)).any(axis=1)
    assert rejected.mean() > ALPHA + _sim_error(ALPHA)


def test_sample_size_grows_as_the_effect_shrinks_and_exceeds_the_fixed_horizon_size():
    z = NormalDist().inv_cdf
    sizes = [ex.sample_size(0.1, mde, ALPHA, POWER) for mde in (0.04, 0.02, 0.01)]
    assert sizes == sorted(sizes) and len(set(sizes)) == 3
    fixed = (z(1 - ALPHA / 2) + z(POWER)) ** 2 * (0.1 * 0.9 + 0.12 * 0.88) / 0.02**2
    # the price of looking at any time: more requests than a test read once
    assert fixed < sizes[1] < 3 * fixed
    assert ex.sample_size(0.1, 0.02, ALPHA, 0.9) > sizes[1]
    assert ex.sample_size(0.1, 0.02, 0.01, POWER) > sizes[1]


@pytest.mark.parametrize("bad", [{"baseline": 0.0}, {"mde": 1.5}, {"alpha": 1.0}, {"power": 0}])
def test_sample_size_refuses_values_outside_zero_and_one(bad):
    args = {"baseline": 0.1, "mde": 0.02, "alpha": ALPHA, "power": POWER} | bad
    with pytest.raises(ValueError, match="between 0 and 1"):
        ex.sample_size(**args)


def test_verdicts_follow_the_metric_direction():
    kw = {"baseline": 0.02, "mde": 0.01}
    worse = ex.judge("error_rate", 5000, 100, 5000, 170, **kw)
    assert worse.verdict == ex.LOSER and worse.effect == pytest.approx(0.014)
    assert worse.interval[0] > 0 and worse.p_value <= ALPHA
    better = ex.judge("error_rate", 5000, 170, 5000, 100, **kw)
    assert better.verdict == ex.WINNER and better.interval[1] < 0
    acc = ex.judge("accuracy", 5000, 4500, 5000, 4650, baseline=0.9, mde=0.02)
    assert acc.verdict == ex.WINNER and acc.effect > 0
    assert "winner: accuracy 0.9300 vs 0.9000" in acc.summary()


def test_no_detectable_difference_only_at_the_planned_size():
    planned = ex.sample_size(0.02, 0.01)
    early = ex.judge(
        "error_rate",
        planned // 2,
        planned // 100,
        planned // 2,
        planned // 100,
        baseline=0.02,
        mde=0.01,
    )
    assert early.verdict == ex.RUNNING and early.interval[0] < 0 < early.interval[1]
    done = ex.judge(
        "error_rate", planned, planned // 50, planned, planned // 50, baseline=0.02, mde=0.01
    )
    assert done.verdict == ex.NO_DIFFERENCE and done.sample_size == planned
    assert done.to_dict()["interval"] == list(done.interval)


def test_the_p_value_is_the_smallest_of_all_looks():
    first = ex.judge("error_rate", 2000, 40, 2000, 70, baseline=0.02, mde=0.01)
    ratio = 1 / first.p_value
    later = ex.judge("error_rate", 4000, 80, 4000, 90, baseline=0.02, mde=0.01, best_ratio=ratio)
    alone = ex.judge("error_rate", 4000, 80, 4000, 90, baseline=0.02, mde=0.01)
    assert later.p_value == pytest.approx(first.p_value)
    assert first.p_value < alone.p_value


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (("ctr", 10, 1, 10, 1), "unknown primary metric"),
        (("accuracy", 10, 11, 10, 1), "invalid counts"),
    ],
)
def test_judge_refuses_unknown_metrics_and_impossible_counts(args, needle):
    with pytest.raises(ValueError, match=needle):
        ex.judge(*args, baseline=0.5, mde=0.1)

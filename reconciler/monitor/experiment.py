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

The design (the ratio, the interval, the sample size) is in
``reconciler.spec.experiment``, shared with validate and the plan; this module gives the
verdicts. The sample size is fixed before the experiment starts (:func:`sample_size`): the number
of requests per arm at which the test, read only at that last look, reaches ``power``
against an effect of ``mde``; every earlier look can only add detections, so the power
at that size is at least the stated one. The experiment stops at the first look where
the p-value is at most alpha (winner or loser) or at that size (no detectable
difference). The simulation tests (``tests/monitor/test_experiment.py``) hold 1,000
experiments with no difference under alpha and 1,000 with an effect of mde at or above
the power, within simulation error.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta

import numpy as np

from reconciler.core.config import Config
from reconciler.monitor.labels import label_settings, load_predictions, stored_labels
from reconciler.monitor.quality import join
from reconciler.spec.experiment import (
    DEFAULT_ALPHA,
    DEFAULT_POWER,
    HIGHER_IS_BETTER,
    design_of,
    half_width,
    likelihood_ratio,
    sample_size,
)
from reconciler.spec.model import Deployment

WINNER = "winner"
LOSER = "loser"
NO_DIFFERENCE = "no detectable difference"
RUNNING = "running"


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


def accuracy_counts(dep: Deployment, config: Config, since: datetime, end: datetime) -> dict:
    """``{model_version: (labelled predictions, correct ones)}`` of the captured predictions
    timestamped in ``[since, end]`` joined with the stored labels by prediction id (the
    quality job's join, ``reconciler.monitor.quality.join``).

    Raises:
        MonitorInputError: labels not configured, unreadable capture.
    """
    preds = load_predictions(dep, config, since, end)
    joined, _ = join(preds.frame, stored_labels(label_settings(dep, config)))
    out: dict[str, tuple[int, int]] = {}
    if not len(joined):
        return out
    correct = (joined["prediction"].astype(str) == joined["label"].astype(str)).to_numpy()
    versions = joined["model_version"].astype(str).to_numpy()
    for version in sorted(set(versions.tolist())):
        mine = versions == version
        out[version] = (int(mine.sum()), int(correct[mine].sum()))
    return out


def run_experiment(
    dep: Deployment, config: Config, previous: dict | None, now: datetime | None = None
) -> dict | None:
    """One look at ``dep``'s experiment (primary metric ``accuracy``), for the quality job.

    B is the spec's ``model.version``; A the other captured version with the most labelled
    predictions. The experiment's data start at ``previous["started"]`` when the previous
    look was of the same B (else at the start of this look's window,
    ``monitoring.window_hours`` back), so every look counts everything since the start,
    and the p-value stays the smallest of all looks (``best_ratio``).

    Returns:
        ``None`` when ``dep`` runs no accuracy experiment; else the :class:`Verdict`'s
        fields plus ``version_a``, ``version_b``, ``started`` (ISO 8601 UTC),
        ``best_ratio`` and ``summary``; ``verdict`` is ``running`` with a ``note`` while
        one of the versions has no labelled prediction.
    """
    design = design_of(dep)
    if design is None or design.metric != "accuracy":
        return None
    end = (now or datetime.now(UTC)).astimezone(UTC)
    version_b = str(dep.get("spec.model.version", ""))
    same = bool(previous) and previous.get("version_b") == version_b
    if same and previous.get("started"):
        started = datetime.fromisoformat(str(previous["started"]))
    else:
        started = end - timedelta(hours=int(dep.get("spec.monitoring.window_hours", 24)))
    counts = accuracy_counts(dep, config, started, end)
    others = sorted((n, v) for v, (n, _) in counts.items() if v != version_b)
    head = {"version_b": version_b, "started": started.isoformat(), "metric": design.metric}
    if version_b not in counts or not others:
        seen = ", ".join(sorted(counts)) or "none"
        return {
            **head,
            "verdict": RUNNING,
            "sample_size": design.sample_size,
            "note": f"labelled predictions of both versions needed; versions seen: {seen}",
            "best_ratio": float(previous.get("best_ratio", 0.0)) if same else 0.0,
        }
    version_a = others[-1][1]
    (n_a, x_a), (n_b, x_b) = counts[version_a], counts[version_b]
    best = float(previous.get("best_ratio", 0.0)) if same else 0.0
    verdict = judge(
        design.metric,
        n_a,
        x_a,
        n_b,
        x_b,
        baseline=design.baseline,
        mde=design.mde,
        alpha=design.alpha,
        power=design.power,
        best_ratio=best,
    )
    ratio, _, _ = likelihood_ratio(n_a, x_a, n_b, x_b, design.mde**2)
    return {
        **head,
        **verdict.to_dict(),
        "version_a": version_a,
        "best_ratio": max(best, float(ratio)),
        "summary": verdict.summary(),
    }

"""Bernoulli CUSUM on "high score" events: the worked example of adding a detector."""
from __future__ import annotations

import math
from typing import Any, Literal

import numpy as np
from pydantic import Field

from clinops.drift.detectors.base import DetectorSettings, StreamDetector, reference_array
from clinops.drift.thresholds import FalseAlarmBudget, cusum_threshold

__all__ = ["BernoulliCUSUM", "kl_bernoulli"]


class CUSUMSettings(DetectorSettings):
    """``cusum:`` in ``drift.yaml``; off unless the policy says ``enabled: true``."""

    enabled: bool = False
    quantile: float = Field(0.9, gt=0, lt=1, description="a score above this reference quantile is an event")
    odds_ratio: float = Field(2.0, gt=1, description="the rise in the odds of an event worth detecting")
    threshold: float = Field(5.0, gt=0, description="decision limit h on the log-likelihood-ratio sum")
    mode: Literal["up", "both"] = Field("up", description="'both' also watches a fall of the odds by odds_ratio")


class BernoulliCUSUM(StreamDetector):
    """Upward Bernoulli CUSUM (Page 1954; Steiner et al. 2000) on ``x >= cut`` events.

    With in-control event rate ``p0`` and the out-of-control rate ``p1`` whose odds are
    ``odds_ratio`` times ``p0``'s, each value adds its log-likelihood ratio (``ln(p1/p0)`` for
    an event, ``ln((1-p1)/(1-p0))`` otherwise) to ``S = max(0, S + llr)``; ``S >= threshold``
    is a detection, after which ``S`` restarts at 0. With ``mode='both'`` a second sum watches
    a fall of the odds by the same ratio (a binary feature may shift either way).

    On a 0/1 stream (a binary feature) :meth:`from_settings` takes ``cut = 0.5`` and ``p0``
    the reference prevalence. The expected delay after a change to rate ``p`` is about
    ``threshold / E_p[llr]``; with ``p1 = p`` that is ``threshold / KL(p || p0)``, the
    information bound (:func:`kl_bernoulli`).

    Parameters
    ----------
    p0 : float in (0, 1)
        Event rate on reference data.
    cut : float
        A value ``>= cut`` is an event (0.5 on a 0/1 stream).
    odds_ratio : float > 1
    threshold : float > 0
    mode : 'up' or 'both'

    Examples
    --------
    >>> detector = BernoulliCUSUM(p0=0.1, cut=0.5, odds_ratio=3.0, threshold=4.0)
    >>> [detector.update(x).drift_detected for x in [0] * 9 + [1]].count(True)
    0
    >>> [i for i in range(20) if detector.update(1).drift_detected][:1]
    [3]
    >>> falls = BernoulliCUSUM(p0=0.5, odds_ratio=3.0, threshold=4.0, mode="both")
    >>> [i for i in range(20) if falls.update(0).drift_detected][:1]    # the rate falls to 0
    [9]
    """

    Settings = CUSUMSettings
    flat_prefix = "cusum_"

    def __init__(self, *, p0: float, cut: float = 0.5, odds_ratio: float = 2.0, threshold: float = 5.0,
                 mode: str = "up"):
        if not 0 < p0 < 1:
            raise ValueError(f"p0: must be in (0, 1), got {p0}")
        if mode not in ("up", "both"):
            raise ValueError(f"mode: must be 'up' or 'both', got {mode!r}")
        self._steps = [_llr_steps(p0, odds_ratio)] + ([_llr_steps(p0, 1 / odds_ratio)] if mode == "both" else [])
        self.p0, self.cut, self.threshold, self.mode = float(p0), float(cut), float(threshold), mode
        self.statistics = [0.0] * len(self._steps)
        self.drift_detected = False

    @property
    def statistic(self) -> float:
        """The larger of the sums (the upward one alone with ``mode='up'``)."""
        return max(self.statistics)

    @classmethod
    def from_settings(cls, settings: CUSUMSettings, *, reference_scores: Any) -> "BernoulliCUSUM":
        """``cut`` is the reference scores' ``quantile``, ``p0`` their share at or above it; on
        0/1 reference values (a binary feature) ``cut = 0.5`` and ``p0`` their mean."""
        ref = reference_array(reference_scores)
        binary = bool(np.isin(ref, (0.0, 1.0)).all())
        cut = 0.5 if binary else float(np.quantile(ref, settings.quantile))
        return cls(p0=float(np.mean(ref >= cut)), cut=cut, odds_ratio=settings.odds_ratio,
                   threshold=settings.threshold, mode=settings.mode)

    @classmethod
    def within_budget(cls, settings: CUSUMSettings, budget: FalseAlarmBudget, n_detectors: int) -> CUSUMSettings:
        """``settings`` with ``threshold`` (nats) from this detector's share of ``budget``
        (:func:`~clinops.drift.thresholds.cusum_threshold`; with ``mode='both'`` each of the two
        sums keeps half the share).

        Examples
        --------
        >>> budget = FalseAlarmBudget(false_alarms_per_30_days=1, admissions_per_hour=10)
        >>> round(BernoulliCUSUM.within_budget(BernoulliCUSUM.Settings(), budget, n_detectors=17).threshold, 1)
        11.7
        >>> both = BernoulliCUSUM.Settings(mode="both")                 # ln(7200 * 2 sides * 4 detectors)
        >>> round(BernoulliCUSUM.within_budget(both, budget, n_detectors=4).threshold, 2)
        10.96
        """
        sides = 2 if settings.mode == "both" else 1
        return settings.model_copy(update={"threshold": cusum_threshold(budget.arl0(n_detectors, sides=sides))})

    def update(self, x: float) -> "BernoulliCUSUM":
        if self.drift_detected:
            self.statistics = [0.0] * len(self._steps)
        event = x >= self.cut
        self.statistics = [max(0.0, s + (up if event else down)) for s, (up, down) in zip(self.statistics, self._steps)]
        self.drift_detected = self.statistic >= self.threshold
        return self


def _llr_steps(p0: float, odds_ratio: float) -> tuple[float, float]:
    """Log-likelihood ratios (event, no event) of rate ``p1`` (odds ``odds_ratio`` x p0's) vs ``p0``."""
    p1 = odds_ratio * p0 / (1 - p0 + odds_ratio * p0)
    return math.log(p1 / p0), math.log((1 - p1) / (1 - p0))


def kl_bernoulli(p: float, q: float) -> float:
    """KL(Bernoulli(p) || Bernoulli(q)) in nats: the information per admission about a change q -> p.

    Examples
    --------
    >>> round(kl_bernoulli(0.72, 0.38), 3)
    0.238
    """
    if not (0 <= p <= 1 and 0 < q < 1):
        raise ValueError(f"p, q: need p in [0, 1] and q in (0, 1), got {p}, {q}")
    terms = [a * math.log(a / b) for a, b in ((p, q), (1 - p, 1 - q)) if a > 0]
    return float(sum(terms))

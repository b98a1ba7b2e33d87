"""Bernoulli CUSUM on "high score" events: the worked example of adding a detector."""
from __future__ import annotations

import math
from typing import Any

import numpy as np
from pydantic import Field

from clinops.drift.detectors.base import DetectorSettings, StreamDetector, reference_array

__all__ = ["BernoulliCUSUM"]


class CUSUMSettings(DetectorSettings):
    """``cusum:`` in ``drift.yaml``; off unless the policy says ``enabled: true``."""

    enabled: bool = False
    quantile: float = Field(0.9, gt=0, lt=1, description="a score above this reference quantile is an event")
    odds_ratio: float = Field(2.0, gt=1, description="the rise in the odds of an event worth detecting")
    threshold: float = Field(5.0, gt=0, description="decision limit h on the log-likelihood-ratio sum")


class BernoulliCUSUM(StreamDetector):
    """Upward Bernoulli CUSUM (Page 1954; Steiner et al. 2000) on ``x >= cut`` events.

    With in-control event rate ``p0`` and the out-of-control rate ``p1`` whose odds are
    ``odds_ratio`` times ``p0``'s, each value adds its log-likelihood ratio (``ln(p1/p0)`` for
    an event, ``ln((1-p1)/(1-p0))`` otherwise) to ``S = max(0, S + llr)``; ``S >= threshold``
    is a detection, after which ``S`` restarts at 0.

    Parameters
    ----------
    p0 : float in (0, 1)
        Event rate on reference data.
    cut : float
        A value ``>= cut`` is an event (0.5 on a 0/1 stream).
    odds_ratio : float > 1
    threshold : float > 0

    Examples
    --------
    >>> detector = BernoulliCUSUM(p0=0.1, cut=0.5, odds_ratio=3.0, threshold=4.0)
    >>> [detector.update(x).drift_detected for x in [0] * 9 + [1]].count(True)
    0
    >>> [i for i in range(20) if detector.update(1).drift_detected][:1]
    [3]
    """

    Settings = CUSUMSettings
    flat_prefix = "cusum_"

    def __init__(self, *, p0: float, cut: float = 0.5, odds_ratio: float = 2.0, threshold: float = 5.0):
        if not 0 < p0 < 1:
            raise ValueError(f"p0: must be in (0, 1), got {p0}")
        p1 = odds_ratio * p0 / (1 - p0 + odds_ratio * p0)
        self._up, self._down = math.log(p1 / p0), math.log((1 - p1) / (1 - p0))
        self.p0, self.cut, self.threshold = float(p0), float(cut), float(threshold)
        self.statistic = 0.0
        self.drift_detected = False

    @classmethod
    def from_settings(cls, settings: CUSUMSettings, *, reference_scores: Any) -> "BernoulliCUSUM":
        """``cut`` is the reference scores' ``quantile``, ``p0`` their share at or above it."""
        ref = reference_array(reference_scores)
        cut = float(np.quantile(ref, settings.quantile))
        return cls(p0=float(np.mean(ref >= cut)), cut=cut, odds_ratio=settings.odds_ratio,
                   threshold=settings.threshold)

    def update(self, x: float) -> "BernoulliCUSUM":
        if self.drift_detected:
            self.statistic = 0.0
        self.statistic = max(0.0, self.statistic + (self._up if x >= self.cut else self._down))
        self.drift_detected = self.statistic >= self.threshold
        return self

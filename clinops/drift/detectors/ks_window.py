"""A Kolmogorov-Smirnov window test against a fixed reference (KSWIN's idea, Raab et al. 2020).

river's ``KSWIN`` (pinned river 0.26) runs scipy's two-sample KS test on every value against a
random sample of its own older window: about 2.6 ms per value here, which for ten numeric
features over the benchmark's ~10^6 simulated admissions is hours, and its reference moves
with the stream. This detector keeps the idea (the last ``window`` values, a KS distance, a
threshold from ``alpha``) with the training values as a fixed reference and numpy only
(tens of microseconds per value).
"""
from __future__ import annotations

import math
from collections import deque
from typing import Any

import numpy as np
from pydantic import Field

from clinops.drift.detectors.base import DetectorSettings, StreamDetector, reference_array
from clinops.drift.thresholds import FalseAlarmBudget, ks_window_alpha

__all__ = ["KSWindow", "dkw_threshold"]


class KSWindowSettings(DetectorSettings):
    """``ks_window:`` in ``drift.yaml``; off on the score (it runs on numeric feature streams)."""

    enabled: bool = False
    alpha: float = Field(0.005, gt=0, lt=1, description="false-alarm probability of one test")
    window: int = Field(100, ge=5, description="most recent values compared with the reference")
    clock: int = Field(5, ge=1, description="test every `clock` values (cost only, as ADWIN's clock)")


def dkw_threshold(alpha: float, window: int) -> float:
    """KS distance above which a window of ``window`` values differs at level ``alpha``.

    The Dvoretzky-Kiefer-Wolfowitz inequality with Massart's constant,
    ``P(D > e) <= 2 exp(-2 window e^2)``, so ``e = sqrt(ln(2 / alpha) / (2 window))``: valid for
    any distribution, conservative for discrete ones.

    Examples
    --------
    >>> round(dkw_threshold(0.05, 100), 4)
    0.1358
    """
    if not (0 < alpha < 1):
        raise ValueError(f"alpha: must be in (0, 1), got {alpha}")
    if not (isinstance(window, int) and window >= 1):
        raise ValueError(f"window: must be an integer >= 1, got {window!r}")
    return math.sqrt(math.log(2 / alpha) / (2 * window))


class KSWindow(StreamDetector):
    """KS distance between the last ``window`` values and the reference values.

    Every ``clock`` values, once ``window`` values are in, the distance ``sup_x |F_recent(x) - F_ref(x)|``
    is compared with :func:`dkw_threshold`; a detection empties the window (the next test
    needs ``window`` new values).

    Parameters
    ----------
    reference : array (n,) of reference values
    alpha : float in (0, 1)
    window : int
    clock : int
        Test every ``clock`` values (a test costs ~0.2 ms).

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> detector = KSWindow(reference=rng.normal(0, 1, 2000), alpha=1e-4, window=50)
    >>> [detector.update(x).drift_detected for x in rng.normal(0, 1, 2000)].count(True)
    0
    >>> hits = [i for i, x in enumerate(rng.normal(1.5, 1, 200)) if detector.update(x).drift_detected]
    >>> 0 < hits[0] < 50
    True
    """

    Settings = KSWindowSettings
    flat_prefix = "ksw_"

    def __init__(self, *, reference: Any, alpha: float = 0.005, window: int = 100, clock: int = 5):
        self._reference = np.sort(reference_array(reference))
        self.threshold = dkw_threshold(alpha, window)
        self.alpha, self.window, self.clock = float(alpha), int(window), int(clock)
        self._since_test = 0
        self._recent: deque[float] = deque(maxlen=self.window)
        self.statistic = float("nan")
        self.drift_detected = False

    @classmethod
    def from_settings(cls, settings: KSWindowSettings, *, reference_scores: Any) -> "KSWindow":
        return cls(reference=reference_scores, alpha=settings.alpha, window=settings.window, clock=settings.clock)

    @classmethod
    def within_budget(cls, settings: KSWindowSettings, budget: FalseAlarmBudget, n_detectors: int) -> KSWindowSettings:
        """``settings`` with ``alpha`` the per-test rate of this detector's share of ``budget``
        (:func:`~clinops.drift.thresholds.ks_window_alpha`, one test every ``clock`` values).

        Examples
        --------
        >>> budget = FalseAlarmBudget(false_alarms_per_30_days=1, admissions_per_hour=10)
        >>> KSWindow.within_budget(KSWindow.Settings(clock=5), budget, n_detectors=5).alpha   # 5 / (7200 * 5)
        0.0001388888888888889
        """
        return settings.model_copy(update={"alpha": ks_window_alpha(budget.arl0(n_detectors), clock=settings.clock)})

    def update(self, x: float) -> "KSWindow":
        if self.drift_detected:
            self._recent.clear()
        self._recent.append(float(x))
        self._since_test += 1
        self.drift_detected = False
        if len(self._recent) == self.window and self._since_test >= self.clock:
            self._since_test = 0
            self.statistic = self.distance(np.fromiter(self._recent, float, self.window))
            self.drift_detected = self.statistic > self.threshold
        return self

    def distance(self, values: np.ndarray) -> float:
        """``sup_x |F_values(x) - F_ref(x)|``, checked at both limits of every value's jump."""
        xs = np.sort(values)
        n, m = len(xs), len(self._reference)
        recent_right = np.searchsorted(xs, xs, side="right") / n
        recent_left = np.searchsorted(xs, xs, side="left") / n
        ref_right = np.searchsorted(self._reference, xs, side="right") / m
        ref_left = np.searchsorted(self._reference, xs, side="left") / m
        return float(max(np.abs(recent_right - ref_right).max(), np.abs(recent_left - ref_left).max()))

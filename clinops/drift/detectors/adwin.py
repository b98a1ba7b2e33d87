"""ADWIN (Bifet & Gavalda 2007) on the predicted probability: river's implementation, wrapped."""
from __future__ import annotations

from typing import Any

import numpy as np
from pydantic import Field

from clinops.drift.detectors.base import DetectorSettings, StreamDetector
from clinops.drift.thresholds import FalseAlarmBudget, adwin_delta

__all__ = ["ADWIN"]


class ADWINSettings(DetectorSettings):
    """``adwin:`` in ``drift.yaml`` (river's defaults)."""

    enabled: bool = True
    delta: float = Field(0.002, gt=0, lt=1, description="confidence of a cut")
    clock: int = Field(32, ge=1, description="check for a cut every `clock` values")
    grace_period: int = 10
    min_window_length: int = 5


class ADWIN(StreamDetector):
    """Adaptive windowing on the probability itself (its bound assumes values in [0, 1]).

    Parameters
    ----------
    delta, clock, grace_period, min_window_length : river's ``ADWIN`` settings.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> detector = ADWIN()
    >>> hits = [i for i, x in enumerate(np.r_[rng.normal(0.2, 0.02, 500), rng.normal(0.5, 0.02, 500)])
    ...         if detector.update(float(x)).drift_detected]
    >>> 500 <= hits[0] < 600
    True
    """

    Settings = ADWINSettings
    flat_prefix = "adwin_"

    def __init__(self, *, delta: float = 0.002, clock: int = 32, grace_period: int = 10, min_window_length: int = 5):
        # river takes about a second to import: deferred so that reading a policy does not load it
        from river.drift import ADWIN as RiverADWIN

        self._adwin = RiverADWIN(delta=delta, clock=clock, grace_period=grace_period,
                                 min_window_length=min_window_length)
        self._n = 0

    @classmethod
    def from_settings(cls, settings: ADWINSettings, *, reference_scores: Any = None) -> "ADWIN":
        return cls(delta=settings.delta, clock=settings.clock, grace_period=settings.grace_period,
                   min_window_length=settings.min_window_length)

    @classmethod
    def within_budget(cls, settings: ADWINSettings, budget: FalseAlarmBudget, n_detectors: int) -> ADWINSettings:
        """``settings`` with ``delta`` the per-check rate of this detector's share of ``budget``
        (:func:`~clinops.drift.thresholds.adwin_delta`, one check every ``clock`` values).

        Examples
        --------
        >>> budget = FalseAlarmBudget(false_alarms_per_30_days=1, admissions_per_hour=10)
        >>> round(ADWIN.within_budget(ADWIN.Settings(clock=32), budget, n_detectors=4).delta, 7)   # 32 / (7200 * 4)
        0.0011111
        """
        return settings.model_copy(update={"delta": adwin_delta(budget.arl0(n_detectors), clock=settings.clock)})

    def update(self, x: float) -> "ADWIN":
        self._adwin.update(x)
        self._n += 1
        return self

    @property
    def drift_detected(self) -> bool:  # type: ignore[override]
        return bool(self._adwin.drift_detected)

    @property
    def estimation(self) -> float:
        """ADWIN's current mean estimate (over its window)."""
        return float(self._adwin.estimation)

    def alarm_value(self, batch_mean: float) -> float:
        return self.estimation

    def state(self) -> dict[str, Any]:
        return {"adwin_mean": self.estimation if self._n else np.nan, "adwin_width": float(self._adwin.width)}

"""Page-Hinkley (a two-sided CUSUM) on the logit of the score, in reference-SD units: river's, wrapped."""
from __future__ import annotations

from typing import Any, Literal

import numpy as np
from pydantic import Field

from clinops.drift.detectors.base import DetectorSettings, StreamDetector, reference_array
from clinops.drift.thresholds import FalseAlarmBudget, page_hinkley_threshold_sd

__all__ = ["PageHinkley", "TRANSFORMS", "transform_scores"]

#: Scales on which Page-Hinkley sees the score: the probability itself or its logit.
TRANSFORMS = ("identity", "logit")
_LOGIT_CLIP = 1e-6


def transform_scores(scores: Any, how: str) -> np.ndarray:
    """The score on Page-Hinkley's scale: itself ('identity') or its logit (clipped at 1e-6)."""
    s = np.asarray(scores, dtype=float)
    if how == "identity":
        return s
    p = np.clip(s, _LOGIT_CLIP, 1 - _LOGIT_CLIP)
    return np.log(p / (1 - p))


class PageHinkleySettings(DetectorSettings):
    """``page_hinkley:`` in ``drift.yaml``; delta and threshold in reference-SD units."""

    enabled: bool = True
    min_instances: int = Field(100, ge=1)
    delta_sd: float | int = Field(0.125, ge=0)
    threshold_sd: float | int = Field(25.0, gt=0)
    alpha: float | int = Field(1.0, gt=0, le=1)
    mode: Literal["up", "down", "both"] = "both"
    transform: Literal["identity", "logit"] = "logit"


class PageHinkley(StreamDetector):
    """river's ``PageHinkley`` on the transformed score, settings scaled by the score SD.

    Parameters
    ----------
    score_sd : float
        Standard deviation of the score on the ``transform`` scale on reference data; river's
        ``delta = delta_sd * score_sd`` and ``threshold = threshold_sd * score_sd``.
    min_instances, delta_sd, threshold_sd, alpha, mode : see ``drift.yaml``.
    transform : 'logit' or 'identity'

    Examples
    --------
    >>> rng = np.random.default_rng(1)
    >>> before, after = rng.beta(2, 8, 1000), rng.beta(4, 6, 300)   # mean score 0.2 -> 0.4
    >>> detector = PageHinkley.from_settings(PageHinkley.Settings(), reference_scores=before)
    >>> [detector.update(x).drift_detected for x in before].count(True)
    0
    >>> any(detector.update(x).drift_detected for x in after)
    True
    """

    Settings = PageHinkleySettings
    flat_prefix = "ph_"

    def __init__(self, *, score_sd: float, min_instances: int = 100, delta_sd: float = 0.125,
                 threshold_sd: float = 25.0, alpha: float = 1.0, mode: str = "both", transform: str = "logit"):
        # river takes about a second to import: deferred so that reading a policy does not load it
        from river.drift import PageHinkley as RiverPageHinkley

        if not (np.isfinite(score_sd) and score_sd > 0):
            raise ValueError(f"score_sd: must be a positive number, got {score_sd}")
        if transform not in TRANSFORMS:
            raise ValueError(f"transform: must be one of {TRANSFORMS}, got {transform!r}")
        self.transform = transform
        self.score_sd = float(score_sd)
        self._ph = RiverPageHinkley(min_instances=min_instances, delta=delta_sd * score_sd,
                                    threshold=threshold_sd * score_sd, alpha=alpha, mode=mode)

    @classmethod
    def from_settings(cls, settings: PageHinkleySettings, *, reference_scores: Any) -> "PageHinkley":
        """``score_sd`` is the SD (ddof 1) of the reference scores on the ``transform`` scale."""
        sd = float(np.std(transform_scores(reference_array(reference_scores), settings.transform), ddof=1))
        return cls(score_sd=sd, min_instances=settings.min_instances, delta_sd=settings.delta_sd,
                   threshold_sd=settings.threshold_sd, alpha=settings.alpha, mode=settings.mode,
                   transform=settings.transform)

    @classmethod
    def within_budget(cls, settings: PageHinkleySettings, budget: FalseAlarmBudget,
                      n_detectors: int) -> PageHinkleySettings:
        """``settings`` with ``threshold_sd`` from this detector's share of ``budget``
        (:func:`~clinops.drift.thresholds.page_hinkley_threshold_sd` at its ``delta_sd``; with
        ``mode='both'`` each side keeps half the share).

        Examples
        --------
        >>> budget = FalseAlarmBudget(false_alarms_per_30_days=1, admissions_per_hour=10)
        >>> s = PageHinkley.within_budget(PageHinkley.Settings(mode="both"), budget, n_detectors=2)
        >>> round(s.threshold_sd, 2)                      # one-sided ARL0 7200 * 2 sides * 2 detectors
        26.08
        """
        sides = 2 if settings.mode == "both" else 1
        h = page_hinkley_threshold_sd(budget.arl0(n_detectors, sides=sides), delta_sd=float(settings.delta_sd))
        return settings.model_copy(update={"threshold_sd": h})

    def update(self, x: float) -> "PageHinkley":
        self._ph.update(float(transform_scores(x, self.transform)))
        return self

    @property
    def drift_detected(self) -> bool:  # type: ignore[override]
        return bool(self._ph.drift_detected)

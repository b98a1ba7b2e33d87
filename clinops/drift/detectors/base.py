"""The contract every stream detector keeps (river's): ``update(x) -> self``, ``drift_detected``.

A detector watches one number per admission, the predicted probability, in arrival order.
Besides river's two members a detector class states what the policy and the monitor need to
build and report it:

- ``Settings``: a :class:`DetectorSettings` (a :class:`clinops.policy.PolicyModel`) whose
  fields and defaults are the detector's section of ``params/policies/drift.yaml``; its
  ``enabled`` field says whether the detector runs when the policy does not say;
- ``flat_prefix``: the prefix of its settings in the flat form the model bundle stores
  (``adwin_delta``, ``ph_threshold_sd``, ...);
- :meth:`StreamDetector.from_settings`: build it from its settings and reference scores
  (probabilities on reference data, from which scale-free settings are turned into numbers);
- :meth:`StreamDetector.within_budget`: its settings with the threshold that keeps it within its
  share of the monitor's false-alarm budget (:mod:`clinops.drift.thresholds`);
- :meth:`StreamDetector.alarm_value` and :meth:`StreamDetector.state`: what an alarm and the
  monitor's timeline report.
"""
from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from clinops.drift.thresholds import FalseAlarmBudget
from clinops.policy import PolicyModel

__all__ = ["DetectorSettings", "StreamDetector"]


class DetectorSettings(PolicyModel):
    """Base of a detector's policy section; subclasses add their fields and ``enabled``'s default."""

    enabled: bool = True


class StreamDetector:
    """Base class of the detectors in :data:`clinops.drift.detectors.DETECTORS`."""

    Settings: ClassVar[type[DetectorSettings]] = DetectorSettings
    flat_prefix: ClassVar[str] = ""

    drift_detected: bool = False

    def update(self, x: float) -> "StreamDetector":
        """Take the next value of the stream; ``drift_detected`` then says whether it is a change."""
        raise NotImplementedError

    @classmethod
    def from_settings(cls, settings: DetectorSettings, *, reference_scores: Any) -> "StreamDetector":
        """Build from the detector's policy section and reference scores (shape (n,))."""
        raise NotImplementedError

    @classmethod
    def within_budget(cls, settings: DetectorSettings, budget: FalseAlarmBudget, n_detectors: int) -> DetectorSettings:
        """``settings`` with the threshold that keeps this detector within its share of ``budget``
        (Bonferroni: one of ``n_detectors`` detectors, :meth:`FalseAlarmBudget.arl0`)."""
        raise NotImplementedError(f"{cls.__name__}: no rule for its share of the false-alarm budget")

    def alarm_value(self, batch_mean: float) -> float:
        """The number an alarm reports; by default the mean score of the evaluated batch."""
        return batch_mean

    def state(self) -> dict[str, Any]:
        """Extra columns for the monitor's timeline (none by default)."""
        return {}


def reference_array(reference_scores: Any, *, at_least: int = 2) -> np.ndarray:
    """Reference scores as a finite float array; a clear error otherwise."""
    s = np.asarray(reference_scores, dtype=float).ravel()
    if len(s) < at_least or not np.isfinite(s).all():
        raise ValueError(f"reference_scores: need at least {at_least} finite values, got {len(s)}")
    return s

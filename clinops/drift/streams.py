"""Which detectors watch which stream, with thresholds from the false-alarm budget.

A monitor watches the score stream (the policy's enabled detectors) and, with the policy's
``monitor.feature_streams``, every feature stream (the paper: "applied to both input feature
distributions and prediction output distributions"):

- a binary (0/1) feature: ADWIN on the flag and a two-sided Bernoulli CUSUM designed for an
  odds change of ``monitor.feature_odds_ratio`` (the change of a rate is a change of a
  Bernoulli parameter, for which the CUSUM is the optimal test: Moustakides 1986);
- any other feature: ADWIN and a KS window test (:class:`~clinops.drift.detectors.ks_window.KSWindow`) on the
  value's reference ECDF (its rank among the
  reference values, in [0, 1]: ADWIN's bound assumes values in [0, 1], and a KS test is
  unchanged by a monotone transform).

Missing feature values are skipped (the PSI reports missingness). With the policy's
``monitor.false_alarms_per_30_days`` every threshold comes from that budget
(:mod:`clinops.drift.thresholds`, Bonferroni over all planned detectors), each detector's by its
registry entry's rule (:func:`clinops.drift.detectors.budgeted`).
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from clinops.drift.detectors import DETECTORS, DetectorSettings, StreamDetector, budgeted
from clinops.drift.policy import DriftPolicy
from clinops.drift.thresholds import FalseAlarmBudget

__all__ = ["SCORE", "FeatureStream", "PlannedDetector", "build_planned", "feature_streams_from",
           "plan_detectors", "stream_label"]

#: the stream name of the predicted score
SCORE = "score"


def stream_label(detector: str, stream: str) -> str:
    """How reports name a detector on a stream: ``adwin`` (score) or ``cusum[mech_vent]``.

    Examples
    --------
    >>> stream_label("adwin", SCORE), stream_label("cusum", "mech_vent")
    ('adwin', 'cusum[mech_vent]')
    """
    return detector if stream == SCORE else f"{detector}[{stream}]"


class FeatureStream:
    """One feature's values as its detectors see them: a 0/1 flag as is, otherwise the reference ECDF.

    Examples
    --------
    >>> FeatureStream("hr", [60, 70, 80, 90]).transform(np.array([50, 75, 95, np.nan]))
    array([0. , 0.5, 1. , nan])
    >>> FeatureStream("vent", [0, 1, 1, 0]).binary
    True
    """

    def __init__(self, name: str, reference: Any):
        ref = np.asarray(reference, dtype=float)
        ref = ref[np.isfinite(ref)]
        if len(ref) < 2:
            raise ValueError(f"reference[{name!r}]: need at least 2 non-missing values, got {len(ref)}")
        self.name = name
        self.binary = bool(np.isin(ref, (0.0, 1.0)).all())
        self._sorted = np.sort(ref)
        self.reference = self.transform(ref)

    def transform(self, values: Any) -> np.ndarray:
        v = np.asarray(values, dtype=float)
        if self.binary:
            return v
        out = np.searchsorted(self._sorted, v, side="right") / len(self._sorted)
        return np.where(np.isfinite(v), out, np.nan)


@dataclass(frozen=True)
class PlannedDetector:
    """One detector on one stream with the settings it runs with."""

    stream: str
    detector: str
    settings: DetectorSettings

    @property
    def label(self) -> str:
        return stream_label(self.detector, self.stream)


def plan_detectors(policy: DriftPolicy, feature_streams: Mapping[str, FeatureStream] | None = None
                   ) -> list[PlannedDetector]:
    """Every detector the monitor runs (score first, then each feature), budgeted thresholds applied.

    Examples
    --------
    >>> policy = DriftPolicy.from_mapping({"monitor": {"false_alarms_per_30_days": 1, "feature_streams": True}})
    >>> plan = plan_detectors(policy, {"vent": FeatureStream("vent", [0, 1, 0, 0])})
    >>> [p.label for p in plan]
    ['adwin', 'page_hinkley', 'adwin[vent]', 'cusum[vent]']
    >>> round(plan[3].settings.threshold, 2)            # ln(7200 * 2 sides * 4 detectors / 1)
    10.96
    """
    plan = [PlannedDetector(SCORE, name, s) for name, s in policy.detector_settings.items() if s.enabled]
    if policy.monitor.feature_streams:
        for name, stream in (feature_streams or {}).items():
            cusum = policy.cusum.model_copy(update={"mode": "both", "odds_ratio": float(policy.monitor.feature_odds_ratio)})
            plan.append(PlannedDetector(name, "adwin", policy.adwin))
            plan.append(PlannedDetector(name, "cusum", cusum) if stream.binary else
                        PlannedDetector(name, "ks_window", policy.ks_window))
    if policy.monitor.false_alarms_per_30_days is None:
        return plan
    budget = FalseAlarmBudget(float(policy.monitor.false_alarms_per_30_days), float(policy.monitor.admissions_per_hour))
    return [PlannedDetector(p.stream, p.detector, budgeted(p.detector, p.settings, budget, len(plan))) for p in plan]


def build_planned(plan: list[PlannedDetector], *, reference_scores: Any,
                  feature_streams: Mapping[str, FeatureStream] | None = None) -> dict[tuple[str, str], StreamDetector]:
    """Fresh detectors, keyed by (stream, detector), from their reference values."""
    out: dict[tuple[str, str], StreamDetector] = {}
    for p in plan:
        ref = reference_scores if p.stream == SCORE else (feature_streams or {})[p.stream].reference
        ref = np.asarray(ref, dtype=float)
        out[(p.stream, p.detector)] = DETECTORS[p.detector].from_settings(p.settings, reference_scores=ref[np.isfinite(ref)])
    return out


def feature_streams_from(reference_rows: pd.DataFrame | None, features: list[str]) -> dict[str, FeatureStream]:
    """A :class:`FeatureStream` per feature of ``features`` present in ``reference_rows`` with values."""
    if reference_rows is None:
        return {}
    return {f: FeatureStream(f, reference_rows[f]) for f in features
            if f in reference_rows and reference_rows[f].notna().sum() >= 2}

"""Is a drift scenario strong enough to mean anything? Checked before simulating it.

A scenario that moves a binary feature from 0.57 to 0.72 (a hospital already at 0.57) is not
the paper's 0.38 -> 0.72; a report that says "not detected" must say how strong the change was.
The effect size is Cohen's h for a prevalence (``2 asin(sqrt(p1)) - 2 asin(sqrt(p0))``) and
Cohen's d for an additive shift (the shift over the column's SD); a scenario below
``min_effect`` (0.2, Cohen's "small") is flagged as too weak. For a prevalence change the
information bound is given too: a CUSUM with threshold ``h`` nats needs about
``h / KL(p1 || p0)`` admissions after the change (the fastest any detector with that false-alarm
rate can be, to first order: Lorden 1971).
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from clinops.drift.detectors import kl_bernoulli

__all__ = ["ScenarioStrength", "scenario_strength"]


@dataclass(frozen=True)
class ScenarioStrength:
    """How strong a one-column shift is (see :func:`scenario_strength`)."""

    column: str
    kind: str                      # 'prevalence' or 'additive'
    baseline: float                # prevalence, or mean, on the data before the shift
    target: float                  # prevalence, or mean, after
    effect_size: float             # Cohen's h (prevalence) or d (additive)
    effect_measure: str
    min_effect: float
    too_weak: bool
    kl_nats_per_admission: float   # prevalence only (NaN otherwise)
    bound_admissions: float        # threshold / KL (NaN without a threshold or KL)
    bound_hours: float

    @property
    def verdict(self) -> str:
        what = (f"{self.column}: {self.baseline:.3f} -> {self.target:.3f}, {self.effect_measure} = "
                f"{self.effect_size:.2f}")
        if self.too_weak:
            return f"{what}: TOO WEAK to mean anything (|effect| < {self.min_effect:g}, Cohen's 'small')"
        return f"{what}: at least a small effect (|effect| >= {self.min_effect:g})"

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "verdict": self.verdict}


def scenario_strength(values: Any, *, column: str, target_prevalence: float | None = None,
                      shift: float | None = None, threshold_nats: float | None = None,
                      rate_per_hour: float | None = None, min_effect: float = 0.2) -> ScenarioStrength:
    """The effect size of a scenario on ``values`` (the column before the shift), and its bound.

    Parameters
    ----------
    values : array (n,) of the column on the unshifted data (missing values ignored)
    column : its name
    target_prevalence, shift : exactly one (as :func:`clinops.drift.shift_scenario`)
    threshold_nats : a CUSUM's threshold, for the information bound (optional)
    rate_per_hour : admissions per hour, to state the bound in hours (optional)
    min_effect : |effect| below this is too weak

    Examples
    --------
    >>> paper = scenario_strength([1] * 38 + [0] * 62, column="mech_vent", target_prevalence=0.72,
    ...                           threshold_nats=12, rate_per_hour=10)
    >>> round(paper.effect_size, 2), paper.too_weak, round(paper.bound_hours, 1)
    (0.7, False, 5.1)
    >>> scenario_strength([1] * 70 + [0] * 30, column="mech_vent", target_prevalence=0.72).too_weak
    True
    >>> round(scenario_strength([0, 1, 2, 3], column="n", shift=1.0).effect_size, 2)
    0.77
    """
    if (target_prevalence is None) == (shift is None):
        raise ValueError("scenario_strength: give exactly one of target_prevalence or shift")
    if not min_effect > 0:
        raise ValueError(f"min_effect: must be > 0, got {min_effect}")
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    if len(v) < 2:
        raise ValueError(f"values: need at least 2 non-missing values of {column!r}, got {len(v)}")
    kl = math.nan
    if target_prevalence is not None:
        if not 0 <= target_prevalence <= 1:
            raise ValueError(f"target_prevalence: must lie in [0, 1], got {target_prevalence}")
        p0, p1 = float(v.mean()), float(target_prevalence)
        effect = 2 * math.asin(math.sqrt(p1)) - 2 * math.asin(math.sqrt(p0))
        kind, measure, baseline, target = "prevalence", "Cohen's h", p0, p1
        if 0 < p0 < 1:
            kl = kl_bernoulli(p1, p0)
    else:
        sd = float(v.std(ddof=1))
        effect = float(shift) / sd if sd > 0 else math.inf
        kind, measure, baseline, target = "additive", "Cohen's d", float(v.mean()), float(v.mean() + float(shift))
    bound = threshold_nats / kl if threshold_nats is not None and kl == kl and kl > 0 else math.nan
    hours = bound / rate_per_hour if rate_per_hour and bound == bound else math.nan
    return ScenarioStrength(column=column, kind=kind, baseline=baseline, target=target, effect_size=float(effect),
                            effect_measure=measure, min_effect=float(min_effect),
                            too_weak=bool(abs(effect) < min_effect), kl_nats_per_admission=float(kl),
                            bound_admissions=float(bound), bound_hours=float(hours))

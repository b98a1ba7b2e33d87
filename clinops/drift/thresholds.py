"""Detector thresholds from one stated false-alarm budget (Bonferroni over detectors).

The budget is "at most ``false_alarms_per_30_days`` false alarms per 30 days, across every
detector the monitor runs, at ``admissions_per_hour``". Bonferroni splits it equally over the
``n_detectors`` detectors (a union bound: the expected total is the sum of the parts, whatever
their dependence), so each may raise ``budget / n_detectors`` false alarms per 30 days, i.e.
must have an in-control average run length (ARL0) of at least
``admissions_per_30_days * n_detectors / budget`` admissions. Each detector turns that into its
own threshold by a stated, conservative rule (:func:`cusum_threshold`, :func:`adwin_delta`,
:func:`ks_window_alpha`, :func:`page_hinkley_threshold_sd`), applied by the detector's class in the
registry (:meth:`~clinops.drift.detectors.base.StreamDetector.within_budget`). The thresholds are
computed once, from the budget alone: never from a drift scenario.

Examples
--------
>>> budget = FalseAlarmBudget(false_alarms_per_30_days=1, admissions_per_hour=10)
>>> budget.admissions_per_30_days
7200.0
>>> round(budget.arl0(n_detectors=17))                # admissions between false alarms, per detector
122400
>>> round(cusum_threshold(budget.arl0(n_detectors=17)), 1)   # the issue's "~12 nats"
11.7
"""
from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = ["FalseAlarmBudget", "adwin_delta", "cusum_threshold", "ks_window_alpha", "page_hinkley_threshold_sd",
           "per_check_rate", "SIEGMUND_CORRECTION"]

#: Siegmund's (1985) overshoot correction for a Gaussian CUSUM, in SD units.
SIEGMUND_CORRECTION = 1.166
_HOURS_PER_30_DAYS = 720.0


@dataclass(frozen=True)
class FalseAlarmBudget:
    """At most ``false_alarms_per_30_days`` false alarms per 30 days across all detectors.

    Parameters
    ----------
    false_alarms_per_30_days : float > 0
        The whole monitor's budget.
    admissions_per_hour : float > 0
        The arrival rate the budget is stated at (the paper's 10 admissions/h).
    """

    false_alarms_per_30_days: float = 1.0
    admissions_per_hour: float = 10.0

    def __post_init__(self) -> None:
        for name in ("false_alarms_per_30_days", "admissions_per_hour"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                raise ValueError(f"{name}: must be a positive number, got {value!r}")

    @property
    def admissions_per_30_days(self) -> float:
        return float(self.admissions_per_hour) * _HOURS_PER_30_DAYS

    def per_detector(self, n_detectors: int) -> float:
        """False alarms per 30 days one of ``n_detectors`` detectors may raise (Bonferroni)."""
        if not (isinstance(n_detectors, int) and n_detectors >= 1):
            raise ValueError(f"n_detectors: must be an integer >= 1, got {n_detectors!r}")
        return float(self.false_alarms_per_30_days) / n_detectors

    def arl0(self, n_detectors: int, *, sides: int = 1) -> float:
        """In-control average run length (admissions) each side of one detector must reach."""
        if sides not in (1, 2):
            raise ValueError(f"sides: must be 1 or 2, got {sides!r}")
        return self.admissions_per_30_days * sides / self.per_detector(n_detectors)


def cusum_threshold(arl0: float) -> float:
    """Decision limit ``h`` (nats) of a log-likelihood-ratio CUSUM with in-control ARL >= ``arl0``.

    Wald's bound for a CUSUM of log-likelihood ratios gives ARL0 >= exp(h), so ``h = ln(arl0)``
    is conservative (the true false-alarm rate is lower than budgeted).

    Examples
    --------
    >>> round(cusum_threshold(math.e ** 5), 6)
    5.0
    """
    if not arl0 > 1:
        raise ValueError(f"arl0: must be > 1, got {arl0}")
    return math.log(arl0)


def per_check_rate(arl0: float, *, clock: int = 1) -> float:
    """The false-alarm probability one check may have when a detector checks every ``clock``
    values and must keep an in-control ARL >= ``arl0``: ``arl0 / clock`` checks per allowed
    false alarm, so ``clock / arl0``. ADWIN's ``delta`` and the KS window's ``alpha`` are this
    rate (:func:`adwin_delta`, :func:`ks_window_alpha`).

    Examples
    --------
    >>> per_check_rate(32_000, clock=32), per_check_rate(1e5)
    (0.001, 1e-05)
    """
    if not (isinstance(clock, int) and clock >= 1):
        raise ValueError(f"clock: must be an integer >= 1, got {clock!r}")
    if not arl0 > clock:
        raise ValueError(f"arl0: must exceed clock ({clock}), got {arl0}")
    return clock / arl0


def adwin_delta(arl0: float, *, clock: int) -> float:
    """ADWIN's ``delta`` for an in-control ARL >= ``arl0`` admissions, checking every ``clock`` values.

    ADWIN (Bifet & Gavalda 2007) bounds the chance that one check cuts a stationary window by
    ``delta``: the :func:`per_check_rate`.

    Examples
    --------
    >>> adwin_delta(32_000, clock=32)
    0.001
    """
    return per_check_rate(arl0, clock=clock)


def ks_window_alpha(arl0: float, *, clock: int = 1) -> float:
    """The KS window test's ``alpha`` for an in-control ARL >= ``arl0``, one test per ``clock``
    values: the :func:`per_check_rate`. Consecutive tests share most of their windows, so the
    true rate is lower (conservative).

    Examples
    --------
    >>> ks_window_alpha(1e5)
    1e-05
    >>> ks_window_alpha(1e5, clock=5)
    5e-05
    """
    return per_check_rate(arl0, clock=clock)


def page_hinkley_threshold_sd(arl0: float, *, delta_sd: float) -> float:
    """Page-Hinkley threshold (SD units) for a one-sided in-control ARL >= ``arl0``.

    Siegmund's approximation for a CUSUM of N(0, 1) values with allowance ``k = delta_sd``:
    ``ARL0 = (exp(2 k b) - 2 k b - 1) / (2 k^2)`` with ``b = h + 1.166``; solved for ``h`` by
    bisection (``k = 0``: ``ARL0 = b^2``).

    Examples
    --------
    >>> h = page_hinkley_threshold_sd(22_000, delta_sd=0.125)
    >>> round(h, 1)                          # drift.yaml's 25 SD gave ~22,000 per side
    25.0
    """
    if not arl0 > 1:
        raise ValueError(f"arl0: must be > 1, got {arl0}")
    if not delta_sd >= 0:
        raise ValueError(f"delta_sd: must be >= 0, got {delta_sd}")
    k = float(delta_sd)

    def arl(h: float) -> float:
        b = h + SIEGMUND_CORRECTION
        if k == 0:
            return b * b
        x = 2 * k * b
        return (math.exp(x) - x - 1) / (2 * k * k)

    lo, hi = 0.0, 1.0
    while arl(hi) < arl0:
        hi *= 2
    for _ in range(100):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if arl(mid) < arl0 else (lo, mid)
    return hi

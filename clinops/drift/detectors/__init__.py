"""Stream detectors on the predicted score and on feature streams, one file each, behind river's small contract.

Every detector has ``update(x) -> self`` and ``drift_detected`` (see
:mod:`clinops.drift.detectors.base`). :data:`DETECTORS` is the one registry: the drift policy
reads its sections from it (``drift.yaml``: one section per name), :class:`clinops.drift.StreamMonitor`
(the workflow's simulated stream), :func:`clinops.drift.stream_summary` and
:class:`clinops.monitoring.live.LiveDriftMonitor` (the server) run what it lists and the policy
enables; :func:`budgeted` asks the registered class for its share of the false-alarm budget
(:meth:`StreamDetector.within_budget`). Adding a detector: one file here and one line below
(plus its section in the policy file when it should run).

Examples
--------
>>> sorted(DETECTORS)
['adwin', 'cusum', 'ks_window', 'page_hinkley']
>>> [name for name, cls in DETECTORS.items() if cls.Settings().enabled]   # run by default
['adwin', 'page_hinkley']
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from clinops.drift.detectors.adwin import ADWIN
from clinops.drift.detectors.base import DetectorSettings, StreamDetector
from clinops.drift.detectors.cusum import BernoulliCUSUM, kl_bernoulli
from clinops.drift.detectors.ks_window import KSWindow
from clinops.drift.detectors.page_hinkley import PageHinkley
from clinops.drift.thresholds import FalseAlarmBudget

__all__ = ["DETECTORS", "ADWIN", "BernoulliCUSUM", "DetectorSettings", "KSWindow", "PageHinkley", "StreamDetector",
           "budgeted", "build_detectors", "kl_bernoulli"]

#: name (the policy section and the alarm's ``detector``) -> detector class, in report order.
DETECTORS: dict[str, type[StreamDetector]] = {
    "adwin": ADWIN,
    "page_hinkley": PageHinkley,
    "cusum": BernoulliCUSUM,
    "ks_window": KSWindow,
}


def build_detectors(settings: Mapping[str, DetectorSettings], *, reference_scores: Any) -> dict[str, StreamDetector]:
    """Fresh detectors for the enabled entries of ``settings`` (name -> section), registry order."""
    return {name: DETECTORS[name].from_settings(settings[name], reference_scores=reference_scores)
            for name in DETECTORS if name in settings and settings[name].enabled}


def budgeted(detector: str, settings: DetectorSettings, budget: FalseAlarmBudget, n_detectors: int) -> DetectorSettings:
    """``settings`` with the threshold that keeps ``detector`` (a registry name) within its share of
    ``budget``, one of ``n_detectors`` detectors: the registered class's :meth:`StreamDetector.within_budget`.

    Examples
    --------
    >>> budget = FalseAlarmBudget(false_alarms_per_30_days=1, admissions_per_hour=10)
    >>> round(budgeted("cusum", BernoulliCUSUM.Settings(), budget, n_detectors=17).threshold, 1)
    11.7
    >>> budgeted("kswin", KSWindow.Settings(), budget, n_detectors=17)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: detector: 'kswin' is not in the registry (clinops.drift.detectors.DETECTORS: adwin, ...)
    """
    if detector not in DETECTORS:
        raise ValueError(f"detector: {detector!r} is not in the registry "
                         f"(clinops.drift.detectors.DETECTORS: {', '.join(DETECTORS)})")
    return DETECTORS[detector].within_budget(settings, budget, n_detectors)

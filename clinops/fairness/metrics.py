"""The fairness metric registry: every per-group metric and every between-group gap, once.

Table 2 (:func:`clinops.fairness.subgroup_table`), the gaps
(:func:`clinops.fairness.fairness_gaps`), the policy's allowed keys
(:class:`clinops.fairness.FairnessPolicy`), the alerts, the forest plot and the paper mapping
all read :data:`SUBGROUP_METRICS` and :data:`GAP_DEFINITIONS`. Adding a metric is one entry here
(plus one entry in :data:`RATES` when its resampled form is a new rate).

Definitions
-----------
A stay is *predicted positive* when ``prob >= threshold``. Sensitivity = TP / (TP + FN),
specificity = TN / (TN + FP), PPV = TP / (TP + FP) with PPV = 0 when nothing is predicted positive
(``precision_score(zero_division=0)``, the fairlearn convention). Point estimates come from
scikit-learn metrics in fairlearn's :class:`~fairlearn.metrics.MetricFrame` (per group) and from
:func:`~fairlearn.metrics.equalized_odds_difference` /
:func:`~fairlearn.metrics.demographic_parity_difference` (gaps); bootstrap values come from the
weighted confusion counts of :mod:`clinops.bootstrap` through :data:`RATES`.

Examples
--------
>>> list(SUBGROUP_METRICS)
['auroc', 'sensitivity', 'specificity', 'ppv']
>>> SUBGROUP_METRICS["sensitivity"].point(np.array([0, 1, 1]), np.array([0.2, 0.9, 0.3]), 0.5)
0.5
>>> GAP_DEFINITIONS["equalized_odds_difference"].components
('tpr', 'fpr')
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd
from fairlearn.metrics import MetricFrame, demographic_parity_difference, equalized_odds_difference
from sklearn.metrics import precision_score, recall_score, roc_auc_score

from clinops.bootstrap import safe_div

__all__ = ["RATES", "SubgroupMetric", "GapMetric", "SUBGROUP_METRICS", "GAP_DEFINITIONS",
           "TABLE_METRICS", "GAP_METRICS"]

#: Rates from weighted confusion counts (:func:`clinops.bootstrap.confusion_counts`, plus
#: ``auroc`` from :func:`clinops.bootstrap.weighted_auroc`), each (B, n_groups).
RATES: dict[str, Callable[[Mapping[str, np.ndarray]], np.ndarray]] = {
    "auroc": lambda c: c["auroc"],
    "tpr": lambda c: safe_div(c["tp"], c["tp"] + c["fn"]),
    "fpr": lambda c: safe_div(c["fp"], c["fp"] + c["tn"]),
    "tnr": lambda c: safe_div(c["tn"], c["fp"] + c["tn"]),
    "selection_rate": lambda c: safe_div(c["tp"] + c["fp"], c["n"]),
    "ppv": lambda c: safe_div(c["tp"], c["tp"] + c["fp"], zero=0.0),
}


@dataclass(frozen=True)
class SubgroupMetric:
    """One per-group metric of Table 2.

    Attributes
    ----------
    display : str
        Name in figures.
    paper_key : str
        Short name in the paper value ids (``t2_<paper_key>_<group>``).
    point : callable (y, prob, threshold) -> float
        The point estimate (scikit-learn), as fairlearn's MetricFrame calls it per group.
    rate : str
        Its resampled form: a key of :data:`RATES`.
    requires : {'both_classes', 'events', 'non_events', 'none'}
        Which outcome classes a group needs for the metric to be defined.
    note_if_no_positive_prediction : str or None
        Written in the table's ``note`` when a group has no predicted positive.
    """

    display: str
    paper_key: str
    point: Callable[[np.ndarray, np.ndarray, float], float]
    rate: str
    requires: str = "none"
    note_if_no_positive_prediction: str | None = None


@dataclass(frozen=True)
class GapMetric:
    """One between-group disparity of :func:`clinops.fairness.fairness_gaps` (max - min).

    Attributes
    ----------
    paper_key : str
        Short name in the paper value ids (``<prefix><paper_key>_<attribute>``).
    point : callable (y, pred, sensitive) -> float
        The point estimate (fairlearn), ``pred`` the 0/1 predictions.
    components : tuple of str
        The :data:`RATES` whose between-group spread it is; with several, the largest spread
        (the first on a tie) -- e.g. equalized odds over the TPR and FPR spreads.
    """

    paper_key: str
    point: Callable[[np.ndarray, np.ndarray, pd.Series], float]
    components: tuple[str, ...]


def _auroc(y, p, threshold):
    return float(roc_auc_score(y, p)) if len(np.unique(y)) == 2 else np.nan


def _sensitivity(y, p, threshold):
    return float(recall_score(y, p >= threshold, pos_label=1, zero_division=np.nan))


def _specificity(y, p, threshold):
    return float(recall_score(y, p >= threshold, pos_label=0, zero_division=np.nan))


def _ppv(y, p, threshold):
    return float(precision_score(y, p >= threshold, zero_division=0))


def _predictive_parity_difference(y, pred, sensitive):
    mf = MetricFrame(metrics={"ppv": lambda a, b: precision_score(a, b, zero_division=0)},
                     y_true=y, y_pred=pred, sensitive_features=sensitive)
    return float(mf.difference()["ppv"])


#: Per-group metrics of Table 2, in column order.
SUBGROUP_METRICS: dict[str, SubgroupMetric] = {
    "auroc": SubgroupMetric("AUROC", "auroc", _auroc, "auroc", requires="both_classes"),
    "sensitivity": SubgroupMetric("Sensitivity", "sens", _sensitivity, "tpr", requires="events"),
    "specificity": SubgroupMetric("Specificity", "spec", _specificity, "tnr", requires="non_events"),
    "ppv": SubgroupMetric("PPV", "ppv", _ppv, "ppv", note_if_no_positive_prediction=(
        "no predicted positives: PPV = 0 by convention (zero_division=0)")),
}

#: Between-group fairness gaps, in row order.
GAP_DEFINITIONS: dict[str, GapMetric] = {
    "equalized_odds_difference": GapMetric(
        "eod", lambda y, pred, sf: float(equalized_odds_difference(y, pred, sensitive_features=sf)),
        ("tpr", "fpr")),
    "demographic_parity_difference": GapMetric(
        "dpd", lambda y, pred, sf: float(demographic_parity_difference(y, pred, sensitive_features=sf)),
        ("selection_rate",)),
    "predictive_parity_difference": GapMetric("ppd", _predictive_parity_difference, ("ppv",)),
}

#: Names of the per-group metrics of Table 2, in column order.
TABLE_METRICS: tuple[str, ...] = tuple(SUBGROUP_METRICS)
#: Names of the between-group gaps reported by :func:`clinops.fairness.fairness_gaps`.
GAP_METRICS: tuple[str, ...] = tuple(GAP_DEFINITIONS)

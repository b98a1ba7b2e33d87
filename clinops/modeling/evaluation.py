"""The single evaluation on the temporal test set.

Examples
--------
>>> import numpy as np
>>> y = np.array([0, 0, 1, 1, 0, 1, 0, 1])
>>> prob = np.array([0.1, 0.45, 0.35, 0.8, 0.2, 0.7, 0.3, 0.9])
>>> m = evaluate(y, prob, threshold=0.4, n_boot=50, seed=0)
>>> m["auroc"], m["sensitivity"], m["specificity"], m["ppv"]
(0.9375, 0.75, 0.75, 0.75)
"""
from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.metrics import average_precision_score, brier_score_loss, roc_auc_score

from clinops.bootstrap import auroc_interval
from clinops.labels import binary_labels, probabilities

__all__ = ["evaluate"]


def evaluate(
    y_true: np.ndarray | pd.Series,
    prob: np.ndarray | pd.Series,
    *,
    threshold: float = 0.40,
    n_boot: int = 1000,
    seed: int,
) -> dict[str, float]:
    """Test-set metrics: AUROC with bootstrap 95 % CI, AUPRC, Brier, and rates at a threshold.

    Parameters
    ----------
    y_true : array of shape (n,)
        Binary outcomes.
    prob : array of shape (n,)
        Predicted probabilities in [0, 1] (the calibrated probability in this project).
    threshold : float
        A case is predicted positive when ``prob >= threshold`` (paper: 0.40).
    n_boot : int
        Bootstrap resamples for the AUROC interval (percentile method, :mod:`clinops.bootstrap`).
    seed : int
        Bootstrap random state.

    Returns
    -------
    dict
        ``n``, ``prevalence``, ``auroc``, ``auroc_ci_low``, ``auroc_ci_high``, ``auprc``
        (average precision), ``brier``, ``threshold``, ``sensitivity``, ``specificity``,
        ``ppv`` (NaN when nothing is predicted positive), ``npv``.
    """
    y = binary_labels(y_true, "y_true")
    p = probabilities(prob, len(y), "prob")
    if y.min() == y.max():
        raise ValueError("y_true: needs both classes to compute AUROC")
    if not 0.0 < threshold < 1.0:
        raise ValueError(f"threshold: must be in (0, 1), got {threshold}")
    pred = p >= threshold
    tp = int(np.sum(pred & (y == 1)))
    fp = int(np.sum(pred & (y == 0)))
    fn = int(np.sum(~pred & (y == 1)))
    tn = int(np.sum(~pred & (y == 0)))
    # the same resamples, and so the same interval, as the overall row of Table 2
    lo, hi = auroc_interval(y, p, n_boot=n_boot, seed=seed)
    return {
        "n": int(len(y)),
        "prevalence": float(y.mean()),
        "auroc": float(roc_auc_score(y, p)),
        "auroc_ci_low": lo,
        "auroc_ci_high": hi,
        "auprc": float(average_precision_score(y, p)),
        "brier": float(brier_score_loss(y, p)),
        "threshold": float(threshold),
        "sensitivity": tp / (tp + fn),
        "specificity": tn / (tn + fp),
        "ppv": tp / (tp + fp) if tp + fp else float("nan"),
        "npv": tn / (tn + fn) if tn + fn else float("nan"),
    }

"""Confidence-based performance estimation (CBPE, as NannyML's): performance before outcomes arrive.

If the calibrated probabilities ``p`` are right (calibration holds on the new data), each
admission is a positive with probability ``p_i``; the expected confusion counts at every
threshold follow, and so do the expected ROC curve and its area, with no outcome. The estimate
follows a covariate shift (new inputs, same P(y | x): the probabilities move and stay right)
and, by construction, misses a concept shift (P(y | x) changes, the probabilities do not).

Examples
--------
>>> rng = np.random.default_rng(0)
>>> p = rng.beta(1, 6, 20_000)
>>> y = rng.random(20_000) < p                   # outcomes drawn from calibrated probabilities
>>> abs(expected_auroc(p) - roc_auc_score(y, p)) < 0.01
True
"""
from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.metrics import roc_auc_score

__all__ = ["expected_auroc", "expected_event_rate", "cbpe_summary"]


def _probabilities(p: Any) -> np.ndarray:
    a = np.asarray(p, dtype=float).ravel()
    if len(a) == 0 or not np.isfinite(a).all() or (a < 0).any() or (a > 1).any():
        raise ValueError(f"probabilities: need a non-empty array of values in [0, 1], got {len(a)} values")
    return a


def expected_auroc(p: Any) -> float:
    """Expected AUROC of ``p`` as its own score, if ``p`` is calibrated (NaN when undefined).

    The ratio of expectations: ``sum_{i != j} p_i (1 - p_j) [p_i > p_j] (ties 1/2)`` over
    ``sum_{i != j} p_i (1 - p_j)``: the expected share of (positive, negative) pairs ranked
    right, computed by sorting in O(n log n).

    Examples
    --------
    >>> expected_auroc([0.0, 1.0])                 # the positive is certain to rank first
    1.0
    >>> expected_auroc([0.3, 0.3, 0.3])            # one value: every pair is a tie
    0.5
    >>> round(expected_auroc([0.2, 0.8]), 4)       # 0.8*0.8 right vs 0.2*0.2 wrong
    0.9412
    """
    a = _probabilities(p)
    order = np.argsort(a, kind="mergesort")
    s, q = a[order], 1 - a[order]
    values, start = np.unique(s, return_index=True)
    # per tied group: sums of p and (1 - p)
    group_p = np.add.reduceat(s, start)
    group_q = np.add.reduceat(q, start)
    below_q = np.concatenate([[0.0], np.cumsum(group_q)[:-1]])        # negatives' weight strictly below
    within = group_p * group_q - np.add.reduceat(s * q, start)          # i != j pairs inside a tie
    right = float(np.sum(group_p * below_q) + 0.5 * np.sum(within))
    total = float(a.sum() * q.sum() - np.sum(a * (1 - a)))
    return right / total if total > 0 else float("nan")


def expected_event_rate(p: Any) -> float:
    """Expected share of positives (calibration-in-the-large: compare with the realised rate).

    Examples
    --------
    >>> expected_event_rate([0.1, 0.3])
    0.2
    """
    return float(np.mean(_probabilities(p)))


def cbpe_summary(p: Any, y: Any = None) -> dict[str, float]:
    """Expected AUROC and event rate of ``p``; with outcomes ``y`` the realised ones beside them.

    Examples
    --------
    >>> cbpe_summary([0.0, 1.0], [0, 1])
    {'n': 2, 'expected_auroc': 1.0, 'expected_event_rate': 0.5, 'realised_auroc': 1.0, 'realised_event_rate': 0.5}
    """
    a = _probabilities(p)
    out: dict[str, Any] = {"n": len(a), "expected_auroc": expected_auroc(a), "expected_event_rate": expected_event_rate(a)}
    if y is not None:
        yy = np.asarray(y, dtype=float).ravel()
        if len(yy) != len(a) or not np.isin(yy, (0.0, 1.0)).all():
            raise ValueError(f"y: need {len(a)} outcomes in {{0, 1}}, got {len(yy)}")
        both = 0 < yy.sum() < len(yy)
        out["realised_auroc"] = float(roc_auc_score(yy, a)) if both else float("nan")
        out["realised_event_rate"] = float(yy.mean())
    return out


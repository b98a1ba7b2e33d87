"""Coverage of both conformal modes for each true class and group, and the contradicting-singleton flag.

Marginal split-conformal sets cover 90 % of all stays but far fewer of the deaths (the rare
class); :func:`class_coverage_table` shows, for the marginal (paper) and the class-conditional
(Mondrian) sets side by side, what each true class gets in each group. :func:`contradicting_singleton`
is the low-confidence flag: a confident {survives} set beside a calibrated probability that the
model itself calls high.

Examples
--------
>>> import numpy as np
>>> y = np.array([0, 0, 0, 1, 1])
>>> prob = np.array([0.05, 0.1, 0.5, 0.45, 0.9])
>>> t = class_coverage_table(y, prob, threshold=0.5, class_thresholds=[0.6, 0.7], high_probability=0.4)
>>> t[["mode", "class", "attribute", "n", "coverage", "n_contradicting"]]
       mode  class attribute  n  coverage  n_contradicting
0  marginal      0   overall  3       1.0                0
1  marginal      1   overall  2       0.5                1
2  mondrian      0   overall  3       1.0                0
3  mondrian      1   overall  2       1.0                0
"""
from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
import pandas as pd

from clinops.labels import binary_labels, probabilities
from clinops.settings import CONFORMAL_MODES
from clinops.uncertainty.conformal import group_masks, sets_for_mode

__all__ = ["contradicting_singleton", "class_coverage_table"]


def contradicting_singleton(prob: np.ndarray, sets: np.ndarray, *, high_probability: float) -> np.ndarray:
    """Rows whose set is the singleton {0} while the calibrated probability is high.

    Such a set says "confidently survives" for a patient the calibrated model puts at or above
    ``high_probability`` (by default the operating threshold, where the alarm fires): the two
    outputs contradict each other, so the answer is of low confidence and goes to a person.

    Parameters
    ----------
    prob : array of shape (n,)
        Calibrated probability of label 1.
    sets : bool array of shape (n, 2)
        Conformal sets (column k = label k in the set).
    high_probability : float in (0, 1)

    Returns
    -------
    bool array of shape (n,)

    Examples
    --------
    >>> contradicting_singleton(np.array([0.5, 0.5, 0.1]),
    ...                         np.array([[True, False], [True, True], [True, False]]), high_probability=0.4)
    array([ True, False, False])
    """
    if not 0.0 < high_probability < 1.0:
        raise ValueError(f"high_probability: must be in (0, 1), got {high_probability}")
    p = np.asarray(prob, dtype=np.float64).reshape(-1)
    s = np.asarray(sets, dtype=bool)
    if s.shape != (len(p), 2):
        raise ValueError(f"sets: must have shape ({len(p)}, 2), got {s.shape}")
    return s[:, 0] & ~s[:, 1] & (p >= high_probability)


def class_coverage_table(y: np.ndarray, prob: np.ndarray, *, threshold: float,
                         class_thresholds: Sequence[float], high_probability: float,
                         groups: Mapping[str, np.ndarray] | None = None,
                         class_names: Mapping[int, str] | None = None) -> pd.DataFrame:
    """Coverage, set size and contradicting singletons per mode x true class x group.

    Parameters
    ----------
    y : array of shape (n,)
        True labels (evaluation rows, e.g. the test years).
    prob : array of shape (n,)
        Calibrated probability of label 1.
    threshold : float
        The marginal LAC quantile q (the bundle's ``conformal_threshold``).
    class_thresholds : two floats
        The Mondrian quantiles ``(q_0, q_1)`` (the bundle's ``conformal_class_thresholds``).
    high_probability : float
        See :func:`contradicting_singleton`.
    groups : mapping name -> array of shape (n,), optional
        Subgroup labels; one row per (mode, class, attribute, group) besides the overall row.
    class_names : mapping label -> name, optional
        E.g. ``{0: "survived", 1: "died"}``; default the label as text.

    Returns
    -------
    DataFrame
        Columns ``mode``, ``class``, ``class_name``, ``attribute``, ``group``, ``n``,
        ``coverage`` (share of rows whose true class is in the set), ``mean_set_size``,
        ``share_singleton``, ``n_contradicting`` and ``share_contradicting``. Empty cells
        (no row of that class in the group) are left out.
    """
    labels = binary_labels(y, "y")
    p = probabilities(prob, len(labels), like="y")
    names = {0: "0", 1: "1", **{int(k): str(v) for k, v in (class_names or {}).items()}}
    cells = group_masks(groups, len(labels))
    rows = []
    for mode in CONFORMAL_MODES:
        sets = sets_for_mode(p, mode=mode, threshold=threshold, class_thresholds=np.asarray(class_thresholds))
        covered = sets[np.arange(len(labels)), labels]
        size = sets.sum(axis=1)
        flag = contradicting_singleton(p, sets, high_probability=high_probability)
        for k in (0, 1):
            for attr, group, mask in cells:
                m = mask & (labels == k)
                n = int(m.sum())
                if n == 0:
                    continue
                rows.append({"mode": mode, "class": k, "class_name": names[k], "attribute": attr, "group": group,
                             "n": n, "coverage": float(covered[m].mean()), "mean_set_size": float(size[m].mean()),
                             "share_singleton": float((size[m] == 1).mean()), "n_contradicting": int(flag[m].sum()),
                             "share_contradicting": float(flag[m].mean())})
    return pd.DataFrame(rows)

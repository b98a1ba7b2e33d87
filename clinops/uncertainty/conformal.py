"""Split-conformal prediction sets (MAPIE, LAC score) and what they achieve.

:func:`fit_conformal` wraps MAPIE 1.6 ``SplitConformalClassifier`` (LAC score, prefit model)
for 90 % prediction sets; :func:`conformal_threshold` reads its quantile q, which the model
bundle stores; :func:`sets_from_probability` rebuilds the sets from a probability and q (what
the server does); :func:`coverage_table` reports what the sets achieve overall, per class and
per subgroup. The class-conditional (Mondrian) option -- ``uncertainty.conformal_mode: mondrian``,
default ``marginal`` -- takes one quantile per true class (:func:`class_conditional_thresholds`,
:func:`class_conditional_sets`; :func:`sets_for_mode` picks by mode). The coverage guarantee holds under exchangeability of calibration and test rows,
which a temporal split does not give: measure, do not assume.

Examples
--------
>>> import numpy as np
>>> sets_from_probability(np.array([0.05, 0.5, 0.97]), threshold=0.9)
array([[ True, False],
       [ True,  True],
       [False,  True]])
>>> coverage_table(np.array([0, 1, 1]), np.array([[True, False], [True, True], [True, False]]))[
...     ["group", "level", "n", "coverage", "mean_set_size"]]
     group level  n  coverage  mean_set_size
0  overall   all  3  0.666667       1.333333
1    class     0  1  1.000000       1.000000
2    class     1  2  0.500000       1.500000
"""
from __future__ import annotations

import math
from decimal import Decimal
from typing import Any, Mapping

import numpy as np
import pandas as pd
from mapie.classification import SplitConformalClassifier
from mapie.conformity_scores import LACConformityScore
from mapie.metrics.classification import classification_coverage_score
from scipy import stats

from clinops.labels import binary_labels
from clinops.settings import CONFORMAL_MODES

__all__ = ["fit_conformal", "conformal_threshold", "lac_threshold", "conformal_sets", "sets_from_probability",
           "class_conditional_thresholds", "class_conditional_sets", "sets_for_mode",
           "coverage_table", "SET_TOLERANCE", "CONFORMAL_MODES"]


#: Tolerance of MAPIE's set rule ``(1 - p_k) - q <= SET_TOLERANCE``. MAPIE 1.6 keeps this value
#: (1e-8) in a private module (``mapie._machine_precision.EPSILON``); it is stated here so that
#: sets rebuilt from the stored q equal MAPIE's own (``tests/test_uncertainty.py`` checks it).
SET_TOLERANCE = np.float64(1e-8)


def fit_conformal(model: Any, X_cal: np.ndarray, y_cal: np.ndarray, *,
                  confidence_level: float = 0.90) -> SplitConformalClassifier:
    """Split-conformal classifier (MAPIE, LAC score) around an already fitted model.

    Parameters
    ----------
    model : fitted sklearn-style classifier
        Must have ``predict_proba`` and ``classes_ == [0, 1]`` (e.g.
        :class:`clinops.bundle.CalibratedBooster`).
    X_cal : array of shape (n_cal, p)
        Conformalization rows, disjoint from the model's training rows and from the test set.
    y_cal : array of shape (n_cal,)
        Their labels.
    confidence_level : float
        Target marginal coverage, e.g. 0.90.

    Returns
    -------
    mapie.classification.SplitConformalClassifier
        Conformalized; ``predict_set`` gives the sets.
    """
    if not 0.0 < confidence_level < 1.0:
        raise ValueError(f"confidence_level: must be in (0, 1), got {confidence_level}")
    y = binary_labels(y_cal, "y_cal")
    if len(np.unique(y)) < 2:
        raise ValueError("y_cal: the conformalization set needs both classes")
    n_min = math.ceil(1 / (1 - confidence_level)) - 1
    if len(y) < n_min:
        raise ValueError(f"y_cal: {len(y)} rows cannot give {confidence_level:.0%} coverage "
                         f"(need at least {n_min})")
    scc = SplitConformalClassifier(estimator=model, confidence_level=confidence_level,
                                   conformity_score="lac", prefit=True)
    return scc.conformalize(X_cal, y)


def conformal_threshold(conformal: SplitConformalClassifier, *, confidence_level: float) -> float:
    """The LAC quantile q of a conformalized MAPIE classifier.

    A label k is in the set when ``1 - p_k - q <= 1e-8`` (MAPIE's rule), so q alone (with the
    model) reproduces the sets; it is what the model bundle stores.

    Parameters
    ----------
    conformal : SplitConformalClassifier
        From :func:`fit_conformal`.
    confidence_level : float
        The level it was conformalized at.
    """
    # MAPIE 1.6 computes q inside predict_set and exposes neither q nor the level; the public
    # pieces are the fitted conformity scores and the LAC score's quantile rule. MAPIE turns the
    # level into alpha through Decimal (alpha = 0.1 exactly for 0.9, not 1 - 0.9), so do we.
    alpha = float(Decimal("1") - Decimal(str(confidence_level)))
    q = LACConformityScore().get_conformity_score_quantiles(
        conformal.conformity_scores, np.array([alpha]), cv="prefit")
    return float(np.asarray(q).ravel()[0])


def lac_threshold(prob: np.ndarray, y: np.ndarray, *, confidence_level: float) -> float:
    """The marginal LAC quantile q from probabilities and labels of conformalization rows.

    What :func:`conformal_threshold` reads from MAPIE, computed from the scores ``1 - p_y``
    directly (MAPIE's own quantile rule), for probabilities that no single prefit model gives:
    the cross-fitted (out-of-fold) calibrated probabilities of ``modeling.calibration:
    cross_fit``. Cross-conformal in Vovk's sense: every training row contributes one score from
    models that did not see it. Guarantee: none in finite samples for the refitted model (the
    CV+ / jackknife+ bound of Barber et al. 2021 is 1 - 2 alpha, and holds for the ensemble of
    fold models, not a refit); in practice coverage is close to the level when the fold models
    and the refit score alike, and, as for split conformal, only under exchangeability, which
    a temporal split does not give.

    Examples
    --------
    >>> p = np.array([0.1, 0.2, 0.3, 0.4, 0.6, 0.7, 0.8, 0.9, 0.35, 0.65])
    >>> y = np.array([0, 0, 0, 0, 1, 1, 1, 1, 1, 0])
    >>> lac_threshold(p, y, confidence_level=0.8)
    0.65
    """
    labels, p1, alpha = _checked_scores(prob, y, confidence_level)
    n_min = _min_rows(confidence_level)
    if len(labels) < n_min:
        raise ValueError(f"y: {len(labels)} rows cannot give {confidence_level:.0%} coverage (need at least {n_min})")
    scores = np.where(labels == 1, 1.0 - p1, p1)  # 1 - p_y
    q = LACConformityScore().get_conformity_score_quantiles(scores[:, None], np.array([alpha]), cv="prefit")
    return float(np.asarray(q).ravel()[0])


def conformal_sets(conformal: SplitConformalClassifier, X: np.ndarray) -> np.ndarray:
    """Prediction sets from MAPIE as a boolean array of shape (n, 2): column k = label k in set."""
    _, sets = conformal.predict_set(X)
    return np.asarray(sets)[:, :, 0].astype(bool)



def _checked_scores(prob: Any, y: Any, confidence_level: float) -> tuple[np.ndarray, np.ndarray, float]:
    """``(labels, P(y = 1), alpha)`` checked: a level in (0, 1), binary labels, one probability each.

    ``alpha`` is ``1 - confidence_level`` in decimal arithmetic (0.1, not 0.09999999999999998),
    as MAPIE's quantile rule needs it."""
    if not 0.0 < confidence_level < 1.0:
        raise ValueError(f"confidence_level: must be in (0, 1), got {confidence_level}")
    labels = binary_labels(y, "y")
    p1 = np.asarray(prob, dtype=np.float64).reshape(-1)
    if len(p1) != len(labels):
        raise ValueError(f"prob: must have {len(labels)} values (one per label), got {len(p1)}")
    return labels, p1, float(Decimal("1") - Decimal(str(confidence_level)))


def _min_rows(confidence_level: float) -> int:
    """Rows a split-conformal quantile needs: ceil((n + 1)(1 - alpha)) <= n needs
    n >= (1 - alpha) / alpha (9 at 90 %), in decimal arithmetic."""
    level = Decimal(str(confidence_level))
    return math.ceil(level / (Decimal("1") - level))

def sets_from_probability(prob: np.ndarray, threshold: float) -> np.ndarray:
    """LAC sets from the positive-class probability and the stored quantile q.

    Same rule as MAPIE: label k is in the set when ``(1 - p_k) - q <= 1e-8``.

    Parameters
    ----------
    prob : array of shape (n,)
        Probability of label 1 (the model's, as conformalized).
    threshold : float
        Conformal quantile q (:func:`conformal_threshold`).

    Returns
    -------
    ndarray of bool, shape (n, 2)
    """
    p1 = np.asarray(prob, dtype=np.float64).reshape(-1)
    proba = np.column_stack([1.0 - p1, p1])
    return ((1.0 - proba) - threshold) <= SET_TOLERANCE


def class_conditional_thresholds(prob: np.ndarray, y: np.ndarray, *,
                                 confidence_level: float) -> np.ndarray:
    """Class-conditional (Mondrian) LAC quantiles ``(q_0, q_1)`` from conformalization rows.

    Each class's quantile comes from the conformity scores ``1 - p_y`` of the rows of that
    class only, so the coverage guarantee holds within each class (Vovk's label-conditional
    conformal prediction), at the price of larger sets for the rare class.

    Parameters
    ----------
    prob : array of shape (n,)
        Probability of label 1 of the conformalization rows (the calibrated model's).
    y : array of shape (n,)
        Their labels. A class with too few rows for the level (fewer than
        ``ceil(1 / (1 - confidence_level)) - 1``, e.g. 9 at 90 %) gets ``q = 1``: it is in every
        set, the only set split conformal can promise with so few examples.
    confidence_level : float
        Target coverage within each class, e.g. 0.90.

    Returns
    -------
    ndarray of shape (2,)
        ``q_k``: label k is in the set when ``(1 - p_k) - q_k <= SET_TOLERANCE``.

    Examples
    --------
    >>> p = np.array([0.1, 0.2, 0.3, 0.4, 0.6, 0.7, 0.8, 0.9, 0.35, 0.65])
    >>> y = np.array([0, 0, 0, 0, 1, 1, 1, 1, 1, 0])
    >>> class_conditional_thresholds(p, y, confidence_level=0.8).round(2)
    array([0.65, 0.65])
    """
    # MAPIE 1.x (the pinned version) has no class-conditional option for classification:
    # SplitConformalClassifier takes one quantile over all rows, and MAPIE 0.x's MondrianCP is
    # gone from its public API. The per-class quantile is therefore taken here, with MAPIE's own
    # LAC quantile rule (LACConformityScore.get_conformity_score_quantiles) on each class's
    # scores, so that marginal and Mondrian sets differ only in which rows set the quantile.
    labels, p1, alpha = _checked_scores(prob, y, confidence_level)
    n_min = _min_rows(confidence_level)
    out = np.ones(2)
    for k in (0, 1):
        p_k = p1[labels == k] if k == 1 else 1.0 - p1[labels == k]
        if len(p_k) < n_min:
            # too few rows of this class: the conformal quantile is infinite, i.e. the class is
            # in every set (LAC scores lie in [0, 1], so q = 1 does that)
            continue
        q = LACConformityScore().get_conformity_score_quantiles(
            (1.0 - p_k)[:, None], np.array([alpha]), cv="prefit")
        out[k] = float(np.asarray(q).ravel()[0])
    return out


def class_conditional_sets(prob: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """Mondrian LAC sets: label k is in the set when ``(1 - p_k) - q_k <= SET_TOLERANCE``.

    Examples
    --------
    >>> class_conditional_sets(np.array([0.05, 0.3, 0.97]), np.array([0.2, 0.9]))
    array([[ True, False],
           [False,  True],
           [False,  True]])
    """
    q = np.asarray(thresholds, dtype=np.float64).reshape(-1)
    if q.shape != (2,):
        raise ValueError(f"thresholds: must be the two class quantiles (q_0, q_1), got shape {q.shape}")
    p1 = np.asarray(prob, dtype=np.float64).reshape(-1)
    proba = np.column_stack([1.0 - p1, p1])
    return ((1.0 - proba) - q[None, :]) <= SET_TOLERANCE


def sets_for_mode(prob: np.ndarray, *, mode: str, threshold: float,
                  class_thresholds: np.ndarray | None) -> np.ndarray:
    """The sets of a conformal mode (:data:`CONFORMAL_MODES`) from the stored quantile(s).

    Examples
    --------
    >>> sets_for_mode(np.array([0.3]), mode="marginal", threshold=0.9, class_thresholds=None)
    array([[ True,  True]])
    >>> sets_for_mode(np.array([0.3]), mode="mondrian", threshold=0.9, class_thresholds=[0.2, 0.9])
    array([[False,  True]])
    """
    if mode == "marginal":
        return sets_from_probability(prob, threshold)
    if mode == "mondrian":
        if class_thresholds is None:
            raise ValueError("class_thresholds: required by conformal_mode 'mondrian' (the bundle has no "
                             "class-conditional quantiles: retrain it)")
        return class_conditional_sets(prob, np.asarray(class_thresholds))
    raise ValueError(f"conformal_mode: must be one of {list(CONFORMAL_MODES)}, got {mode!r}")



def group_masks(groups: Mapping[str, Any] | None, n: int) -> list[tuple[str, str, np.ndarray]]:
    """``('overall', 'all', all rows)`` then one ``(attribute, level, mask)`` per subgroup level.

    Parameters
    ----------
    groups : mapping name -> array of shape (n,), optional
        Subgroup labels without missing values.
    n : int
        Number of rows.

    Examples
    --------
    >>> [(a, g, m.tolist()) for a, g, m in group_masks({"sex": ["F", "M", "F"]}, 3)]
    [('overall', 'all', [True, True, True]), ('sex', 'F', [True, False, True]), ('sex', 'M', [False, True, False])]
    """
    cells = [("overall", "all", np.ones(n, dtype=bool))]
    for name, values in (groups or {}).items():
        v = pd.Series(np.asarray(values, dtype=object))
        if len(v) != n:
            raise ValueError(f"groups[{name!r}]: must have {n} values, got {len(v)}")
        if v.isna().any():
            raise ValueError(f"groups[{name!r}]: must not contain missing values")
        cells += [(name, str(level), (v == level).to_numpy()) for level in sorted(v.unique(), key=str)]
    return cells

def coverage_table(y: np.ndarray, sets: np.ndarray,
                   groups: Mapping[str, np.ndarray] | None = None) -> pd.DataFrame:
    """Empirical coverage and set composition, overall, per class and per subgroup.

    Parameters
    ----------
    y : array of shape (n,)
        True labels.
    sets : bool array of shape (n, 2)
        Prediction sets (column k = label k in the set).
    groups : mapping name -> array of shape (n,), optional
        Subgroup labels, e.g. ``{'sex': ..., 'age_group': ...}``.

    Returns
    -------
    DataFrame
        Rows ``('overall', 'all')``, ``('class', '0')``, ``('class', '1')``, then one per
        ``(group, level)``. Columns: ``group``, ``level``, ``n``, ``coverage`` (share of rows
        whose true label is in the set, via MAPIE's ``classification_coverage_score``),
        ``coverage_ci_low`` / ``coverage_ci_high`` (95 % Wilson interval), ``mean_set_size``,
        ``share_singleton``, ``share_ambiguous`` (set = {0, 1}), ``share_empty``.
    """
    y = binary_labels(y)
    s = np.asarray(sets)
    if s.shape != (len(y), 2) or s.dtype != bool:
        raise ValueError(f"sets: must be a boolean array of shape ({len(y)}, 2), got "
                         f"{s.dtype} {s.shape}")
    overall, *by_group = group_masks(groups, len(y))
    rows = [overall, ("class", "0", y == 0), ("class", "1", y == 1), *by_group]
    out = []
    size = s.sum(axis=1)
    for group, level, mask in rows:
        n = int(mask.sum())
        if n == 0:
            continue
        cov = float(classification_coverage_score(y[mask], s[mask])[0])
        ci = stats.binomtest(int(round(cov * n)), n).proportion_ci(0.95, method="wilson")
        out.append({
            "group": group, "level": level, "n": n, "coverage": cov,
            "coverage_ci_low": float(ci.low), "coverage_ci_high": float(ci.high),
            "mean_set_size": float(size[mask].mean()),
            "share_singleton": float((size[mask] == 1).mean()),
            "share_ambiguous": float((size[mask] == 2).mean()),
            "share_empty": float((size[mask] == 0).mean()),
        })
    return pd.DataFrame(out)

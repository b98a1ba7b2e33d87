"""Calibration maps from raw scores to probabilities: the isotonic step, and one that keeps the ranking.

Isotonic regression (the paper's calibrator, :func:`clinops.uncertainty.fit_isotonic`) is a step
function: every score inside one pooled block gets the same probability, so distinct raw scores
become ties and the ranking (AUROC, AUPRC) can only lose. :func:`fit_interpolated_isotonic`
keeps isotonic's block values but joins them by straight lines through the blocks' midpoints,
anchored at (0, 0) and (1, 1): a strictly increasing map of [0, 1], so the calibrated
probability ranks the rows exactly as the raw score does (the same AUROC and AUPRC, ties and
all) while staying close to isotonic's calibration.

Both maps are stored as a fitted :class:`~sklearn.isotonic.IsotonicRegression` with
``out_of_bounds='clip'``, i.e. a piecewise-linear interpolation between its thresholds
(``X_thresholds_``, ``y_thresholds_``): the model bundle's format and the server's
``np.interp`` evaluation are the same for both.

Examples
--------
>>> import numpy as np
>>> s = np.array([0.1, 0.2, 0.3, 0.4, 0.5, 0.6])
>>> y = np.array([0, 1, 0, 1, 1, 1])
>>> fit_calibrator(s, y, "isotonic").predict(s).round(3).tolist()   # ties inside a block
[0.0, 0.5, 0.5, 1.0, 1.0, 1.0]
>>> p = fit_calibrator(s, y, "isotonic_interpolated").predict(s)
>>> bool(np.all(np.diff(p) > 0))                                   # strictly increasing
True
"""
from __future__ import annotations

import numpy as np
from sklearn.isotonic import IsotonicRegression

from clinops.labels import binary_labels
from clinops.settings import CALIBRATORS
from clinops.uncertainty.calibration import fit_isotonic

__all__ = ["CALIBRATORS", "fit_calibrator", "fit_interpolated_isotonic", "isotonic_blocks", "cross_fitted_probabilities"]


def isotonic_blocks(scores: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The blocks of the isotonic fit: ``(lowest score, highest score, value)`` of each block.

    A block is a maximal run of sorted scores that isotonic regression (pool adjacent violators)
    gives one value; values increase strictly from block to block.

    Examples
    --------
    >>> lo, hi, v = isotonic_blocks(np.array([0.1, 0.2, 0.3, 0.4]), np.array([0, 1, 0, 1]))
    >>> lo.tolist(), hi.tolist(), v.tolist()
    ([0.1, 0.2, 0.4], [0.1, 0.3, 0.4], [0.0, 0.5, 1.0])
    """
    y = binary_labels(y)
    s = np.asarray(scores, dtype=np.float64)
    if s.shape != y.shape or not np.isfinite(s).all():
        raise ValueError(f"scores: must be finite with the shape of y {y.shape}, got {s.shape}")
    order = np.argsort(s, kind="mergesort")
    s_sorted = s[order]
    fitted = IsotonicRegression(y_min=0.0, y_max=1.0, increasing=True).fit(s, y).predict(s_sorted)
    # a new block starts where the fitted value changes (equal scores always share a value)
    start = np.concatenate([[True], fitted[1:] != fitted[:-1]])
    first = np.flatnonzero(start)
    last = np.concatenate([first[1:] - 1, [len(s_sorted) - 1]])
    return s_sorted[first], s_sorted[last], fitted[first]


def fit_interpolated_isotonic(scores: np.ndarray, y: np.ndarray) -> IsotonicRegression:
    """Isotonic block values joined linearly through the block midpoints: a strictly increasing map.

    Knots: (0, 0), then ``((lowest + highest score of the block) / 2, block value)`` for every
    isotonic block whose value lies strictly inside (0, 1), then (1, 1). The block values
    increase strictly, so the knots do, and linear interpolation between them is strictly
    increasing on [0, 1] (raw scores are probabilities): no two distinct raw scores get the same
    calibrated probability. Blocks valued exactly 0 or 1 are left out (keeping them would make
    the map flat at an end, i.e. ties); their scores are interpolated towards the (0, 0) or
    (1, 1) anchor instead.

    Parameters
    ----------
    scores : array of shape (n,)
        Raw scores in [0, 1] on rows the booster was not trained on (out-of-fold or held out).
    y : array of shape (n,)
        Their binary outcomes.

    Returns
    -------
    IsotonicRegression
        Fitted on the knots themselves (so ``X_thresholds_``/``y_thresholds_`` are the knots,
        ``out_of_bounds='clip'``): ``predict`` is the interpolation, and the bundle and the
        server read it as they read the plain isotonic map.

    Examples
    --------
    >>> m = fit_interpolated_isotonic(np.array([0.1, 0.2, 0.3, 0.4]), np.array([0, 1, 0, 1]))
    >>> m.X_thresholds_.tolist(), m.y_thresholds_.tolist()
    ([0.0, 0.25, 1.0], [0.0, 0.5, 1.0])
    """
    lo, hi, value = isotonic_blocks(scores, y)
    if lo[0] < 0.0 or hi[-1] > 1.0:
        raise ValueError("scores: must lie in [0, 1] (raw probabilities) for the interpolated map")
    inner = (value > 0.0) & (value < 1.0)
    x = np.concatenate([[0.0], ((lo + hi) / 2.0)[inner], [1.0]])
    v = np.concatenate([[0.0], value[inner], [1.0]])
    # a midpoint can equal an anchor only when a block sits at score 0 or 1 itself: keep the anchor
    keep = np.concatenate([[True], (x[1:-1] > 0.0) & (x[1:-1] < 1.0), [True]])
    x, v = x[keep], v[keep]
    return IsotonicRegression(out_of_bounds="clip", y_min=0.0, y_max=1.0, increasing=True).fit(x, v)


def fit_calibrator(scores: np.ndarray, y: np.ndarray, method: str) -> IsotonicRegression:
    """Fit the calibration map named ``method`` (:data:`CALIBRATORS`).

    Parameters
    ----------
    scores, y : arrays of shape (n,)
        Raw scores and outcomes of rows the booster did not see in training.
    method : {'isotonic', 'isotonic_interpolated'}
        ``uncertainty.calibrator``.

    Returns
    -------
    IsotonicRegression
        Clip outside the fitted range; evaluated by linear interpolation between thresholds.
    """
    if method == "isotonic":
        return fit_isotonic(scores, y)
    if method == "isotonic_interpolated":
        return fit_interpolated_isotonic(scores, y)
    raise ValueError(f"uncertainty.calibrator: must be one of {list(CALIBRATORS)}, got {method!r}")


def cross_fitted_probabilities(scores: np.ndarray, y: np.ndarray, folds: list[tuple[np.ndarray, np.ndarray]],
                               method: str) -> np.ndarray:
    """Calibrated out-of-fold probabilities: fold k's scores mapped by a calibrator fitted on the other folds.

    The conformity scores of ``modeling.calibration: cross_fit`` come from these, so that neither
    the booster nor the calibrator that produced a row's probability was fitted on that row's
    label (the calibrator served is fitted on all folds; see :func:`clinops.modeling.fit_final`).

    Parameters
    ----------
    scores : array of shape (n,)
        Out-of-fold raw scores (:func:`clinops.modeling.cross_fit.out_of_fold_scores`).
    y : array of shape (n,)
        Binary outcomes.
    folds : list of (train, test) positions
        The folds the scores came from.
    method : str
        As for :func:`fit_calibrator`.

    Examples
    --------
    >>> s = np.linspace(0.05, 0.95, 8)
    >>> y = np.array([0, 0, 1, 0, 1, 0, 1, 1])
    >>> folds = [(np.arange(4, 8), np.arange(4)), (np.arange(4), np.arange(4, 8))]
    >>> cross_fitted_probabilities(s, y, folds, "isotonic").tolist()  # each half clipped by the other's map
    [0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5]
    """
    labels = binary_labels(y)
    s = np.asarray(scores, dtype=np.float64)
    out = np.full(len(labels), np.nan)
    for tr, te in folds:
        out[te] = fit_calibrator(s[tr], labels[tr], method).predict(s[te])
    if np.isnan(out).any():
        raise ValueError("folds: the test parts must cover every row")
    return out

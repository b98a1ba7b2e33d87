"""The one bootstrap: row resamples as weights, and classification metrics on all of them at once.

Used by the test-set evaluation (:func:`clinops.modeling.evaluate`, AUROC interval) and by the
fairness tables (:mod:`clinops.fairness`), so that the same test AUROC gets the same interval
everywhere.

The resamples are **the ones fairlearn's** ``MetricFrame(n_boot=..., random_state=seed)`` draws:
``numpy.random.default_rng(seed)`` draws one ``uint32`` seed per resample and each resample is
``RandomState(seed_i).choice(n, n, replace=True)`` (as ``DataFrame.sample`` does). A resample is
held as row multiplicities (how often each row was drawn), so the metrics of every resample come
from weighted confusion counts and a weighted Mann-Whitney AUROC, without copying rows.
fairlearn's own bootstrap calls the scikit-learn metric once per group per resample (minutes for
1,000 resamples of Table 2) and cannot give an interval of a gap that is the maximum of two
differences within the same resample; ``tests/test_fairness.py`` checks the intervals against
``MetricFrame(...).by_group_ci`` to 1e-12.

Intervals are percentile intervals (``numpy.nanquantile``, linear interpolation, as fairlearn);
a resample in which a metric is undefined (e.g. one outcome class drawn) is left out and
counted.

Examples
--------
>>> import numpy as np
>>> y = np.array([0, 0, 1, 1, 0, 1, 0, 1])
>>> prob = np.array([0.1, 0.4, 0.35, 0.8, 0.2, 0.7, 0.6, 0.9])
>>> lo, hi = auroc_interval(y, prob, n_boot=200, seed=0)
>>> bool(0.4 < lo <= hi <= 1.0)
True
>>> next(resample_weights(4, n_boot=2, seed=0)).sum(axis=1)  # each resample draws n rows
array([4., 4.])
"""
from __future__ import annotations

from typing import Iterator

import numpy as np

from clinops.labels import binary_labels, probabilities

__all__ = ["resample_weights", "confusion_counts", "score_order", "weighted_auroc", "safe_div",
           "percentile_interval", "auroc_interval"]


def resample_weights(n: int, n_boot: int, seed: int | None, chunk: int = 100) -> Iterator[np.ndarray]:
    """Bootstrap multiplicities in chunks of shape (<= chunk, n): how often each row is drawn.

    Reproduces fairlearn's ``generate_bootstrap_samples`` exactly (see the module docstring).
    Chunked so that memory stays ``chunk * n`` floats whatever ``n_boot``.

    Raises
    ------
    ValueError
        ``seed`` is None (an unseeded bootstrap is not reproducible).
    """
    if seed is None:
        raise ValueError("seed: required (an integer), so that the bootstrap is reproducible")
    gen = np.random.default_rng(int(seed))
    seeds = gen.integers(low=0, high=np.iinfo(np.uint32).max, size=n_boot, dtype=np.uint32)
    for start in range(0, n_boot, chunk):
        block = seeds[start:start + chunk]
        weights = np.empty((len(block), n), dtype=np.float64)
        for b, s in enumerate(block):
            idx = np.random.RandomState(s).choice(n, size=n, replace=True)
            weights[b] = np.bincount(idx, minlength=n)
        yield weights


def safe_div(num: np.ndarray, den: np.ndarray, zero: float = np.nan) -> np.ndarray:
    """``num / den`` elementwise, ``zero`` where ``den`` is 0."""
    out = np.full(np.broadcast(num, den).shape, zero, dtype=float)
    np.divide(num, den, out=out, where=den > 0)
    return out


def _onehot(codes: np.ndarray, n_groups: int) -> np.ndarray:
    onehot = np.zeros((codes.shape[0], n_groups))
    onehot[np.arange(codes.shape[0]), codes] = 1.0
    return onehot


def confusion_counts(weights: np.ndarray, codes: np.ndarray, n_groups: int, y: np.ndarray,
                     pred: np.ndarray) -> dict[str, np.ndarray]:
    """Weighted confusion counts per group for many weightings at once.

    Parameters
    ----------
    weights : (B, n) row multiplicities (:func:`resample_weights`; ``np.ones((1, n))`` = the data)
    codes : (n,) group index of each row in ``[0, n_groups)``
    y, pred : (n,) 0/1 outcome and 0/1 prediction

    Returns
    -------
    dict of (B, n_groups) arrays: ``n``, ``tp``, ``fp``, ``fn``, ``tn``.
    """
    onehot = _onehot(codes, n_groups)
    pos, neg = y == 1, y == 0
    return {
        "n": weights @ onehot,
        "tp": weights @ (onehot * (pos & (pred == 1))[:, None]),
        "fn": weights @ (onehot * (pos & (pred == 0))[:, None]),
        "fp": weights @ (onehot * (neg & (pred == 1))[:, None]),
        "tn": weights @ (onehot * (neg & (pred == 0))[:, None]),
    }


def score_order(prob: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
    """``(order, tie_block, n_blocks)``: a stable argsort of the scores and, for each sorted
    position, the index of its block of equal scores (what :func:`weighted_auroc` needs)."""
    order = np.argsort(prob, kind="mergesort")
    s = prob[order]
    block = np.concatenate([[0], np.cumsum(s[1:] != s[:-1])]).astype(np.int64)
    return order, block, int(block[-1]) + 1 if len(block) else 0


def weighted_auroc(weights: np.ndarray, codes: np.ndarray, n_groups: int, y: np.ndarray,
                   order: np.ndarray, tie_block: np.ndarray, n_blocks: int) -> np.ndarray:
    """Per-group AUROC for many weightings: (B, n_groups), NaN where a group lacks a class.

    Mann-Whitney with ties counted 1/2, which equals scikit-learn's trapezoidal ROC AUC:
    ``AUC = sum_blocks Wpos_b * (Wneg_before_b + Wneg_b / 2) / (Wpos * Wneg)``.
    ``order``, ``tie_block`` and ``n_blocks`` come from :func:`score_order`.
    """
    B = weights.shape[0]
    w_sorted = weights[:, order]                               # (B, n)
    g_sorted = codes[order]
    y_sorted = y[order]
    key = g_sorted * n_blocks + tie_block                      # (n,)
    auc = np.full((B, n_groups), np.nan)
    size = n_groups * n_blocks
    for b in range(B):
        wp = np.bincount(key, weights=w_sorted[b] * y_sorted, minlength=size).reshape(n_groups, n_blocks)
        wn = np.bincount(key, weights=w_sorted[b] * (1 - y_sorted), minlength=size).reshape(n_groups, n_blocks)
        neg_before = np.cumsum(wn, axis=1) - wn
        num = (wp * (neg_before + 0.5 * wn)).sum(axis=1)
        den = wp.sum(axis=1) * wn.sum(axis=1)
        auc[b] = safe_div(num, den)
    return auc


def percentile_interval(samples: np.ndarray, ci: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Percentile interval over axis 0, ignoring NaN resamples: ``(low, high, n_defined)``.

    Parameters
    ----------
    samples : (B, k) metric values of B resamples
    ci : coverage, e.g. 0.95 -> the 2.5 % and 97.5 % quantiles
    """
    q = [(1 - ci) / 2, 1 - (1 - ci) / 2]
    n_def = np.isfinite(samples).sum(axis=0)
    lo = np.full(samples.shape[1:], np.nan)
    hi = np.full(samples.shape[1:], np.nan)
    ok = n_def > 0
    if ok.any():
        qs = np.nanquantile(samples[:, ok], q, axis=0)
        lo[ok], hi[ok] = qs[0], qs[1]
    return lo, hi, n_def


def auroc_interval(y_true, prob, *, n_boot: int, seed: int, ci: float = 0.95) -> tuple[float, float]:
    """Percentile bootstrap interval of the AUROC of all rows.

    The same number as the ``overall`` row of :func:`clinops.fairness.subgroup_table` for the
    same ``n_boot`` and ``seed``. Resamples with a single outcome class have no AUROC and are
    left out.

    Raises
    ------
    ValueError
        Every resample had a single class (or a bad input: the message names it).
    """
    y = binary_labels(y_true, "y_true")
    p = probabilities(prob, len(y), "prob")
    if not isinstance(n_boot, (int, np.integer)) or n_boot < 1:
        raise ValueError(f"n_boot: must be a positive integer, got {n_boot!r}")
    order, block, n_blocks = score_order(p)
    codes = np.zeros(len(y), dtype=np.int64)
    samples = np.concatenate([weighted_auroc(w, codes, 1, y, order, block, n_blocks)
                              for w in resample_weights(len(y), int(n_boot), seed)], axis=0)
    lo, hi, n_def = percentile_interval(samples, ci)
    if int(n_def[0]) == 0:
        raise ValueError("y_true: every bootstrap resample had a single class")
    return float(lo[0]), float(hi[0])

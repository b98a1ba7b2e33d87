"""Calibration: the isotonic map from raw scores to probabilities, ECE (with a bootstrap
interval; uniform, quantile or equal-mass bins) and reliability.

:func:`fit_isotonic` must be fitted on rows the model was not trained on (here: a stratified
held-out slice of the training years, or out-of-fold scores, see :func:`clinops.modeling.fit_final`) and never on the
test years. :func:`expected_calibration_error`, :func:`reliability_table` and
:func:`plot_reliability` measure calibration with stated binning.

Examples
--------
>>> import numpy as np
>>> y = np.array([0, 0, 1, 0, 1, 1])
>>> prob = np.array([0.1, 0.2, 0.3, 0.6, 0.7, 0.9])
>>> reliability_table(y, prob, n_bins=2)[["bin", "n", "mean_predicted", "observed_rate"]]
   bin  n  mean_predicted  observed_rate
0    0  3        0.200000       0.333333
1    1  3        0.733333       0.666667
>>> round(expected_calibration_error(y, prob, n_bins=2), 4)
0.1
>>> iso = fit_isotonic(prob, y)
>>> iso.predict([0.05, 0.95]).tolist()  # clipped to the fitted range
[0.0, 1.0]
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Mapping

import numpy as np
import pandas as pd
from sklearn.isotonic import IsotonicRegression

from clinops.bootstrap import percentile_interval, resample_weights
from clinops.labels import binary_labels, probabilities

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.figure import Figure

__all__ = ["fit_isotonic", "expected_calibration_error", "ece_interval", "reliability_table", "plot_reliability",
           "ECE_STRATEGIES"]

#: ECE binnings: equal-width bins on [0, 1], bins at the probability quantiles (ties kept
#: together), and equal-mass bins (equal counts; the adaptive ECE).
ECE_STRATEGIES: tuple[str, ...] = ("uniform", "quantile", "equal_mass")


def fit_isotonic(scores: np.ndarray, y: np.ndarray) -> IsotonicRegression:
    """Fit an increasing isotonic map from raw scores to probabilities.

    Parameters
    ----------
    scores : array of shape (n,)
        Raw model scores (e.g. uncalibrated probabilities) on rows the model was not trained on.
    y : array of shape (n,)
        Binary outcomes of the same rows.

    Returns
    -------
    IsotonicRegression
        ``out_of_bounds='clip'`` (scores outside the fitted range get the end values),
        outputs bounded to [0, 1].
    """
    y = binary_labels(y)
    s = np.asarray(scores, dtype=np.float64)
    if s.shape != y.shape or np.isnan(s).any():
        raise ValueError(f"scores: must be finite with the shape of y {y.shape}, got {s.shape}")
    return IsotonicRegression(out_of_bounds="clip", y_min=0.0, y_max=1.0,
                              increasing=True).fit(s, y)


def _bin_ids(prob: np.ndarray, n_bins: int, strategy: str) -> tuple[np.ndarray, np.ndarray]:
    # Same edges and assignment as sklearn.calibration.calibration_curve, so the table can be
    # checked against it: bins are right-closed, (e_{i-1}, e_i], the first also holds e_0.
    if n_bins < 1:
        raise ValueError(f"n_bins: must be at least 1, got {n_bins}")
    if strategy == "uniform":
        edges = np.linspace(0.0, 1.0, n_bins + 1)
    elif strategy == "quantile":
        edges = np.percentile(prob, np.linspace(0, 1, n_bins + 1) * 100)
    elif strategy == "equal_mass":
        return _equal_mass_ids(prob, n_bins)
    else:
        raise ValueError(f"strategy: must be one of {list(ECE_STRATEGIES)}, got {strategy!r}")
    return np.searchsorted(edges[1:-1], prob), edges


def _equal_mass_ids(prob: np.ndarray, n_bins: int) -> tuple[np.ndarray, np.ndarray]:
    # Adaptive ECE (Nixon et al. 2019): rows sorted by probability (stable), cut into n_bins runs
    # whose sizes differ by at most one, so equal probabilities may straddle two bins, unlike
    # 'quantile', whose edges put ties together and can leave bins unequal or empty.
    order = np.argsort(prob, kind="mergesort")
    sizes = np.array([len(a) for a in np.array_split(order, n_bins)])
    ids = np.empty(len(prob), dtype=np.int64)
    ids[order] = np.repeat(np.arange(n_bins), sizes)
    p_sorted = prob[order]
    ends = np.maximum(np.cumsum(sizes) - 1, 0)
    edges = np.concatenate([[p_sorted[0]], p_sorted[ends]]) if len(prob) else np.zeros(n_bins + 1)
    return ids, edges


def reliability_table(y: np.ndarray, prob: np.ndarray, *, n_bins: int = 10,
                      strategy: str = "uniform") -> pd.DataFrame:
    """Observed event rate against mean predicted probability, per probability bin.

    Parameters
    ----------
    y : array of shape (n,)
        Binary outcomes.
    prob : array of shape (n,)
        Predicted probabilities.
    n_bins : int
        Number of bins.
    strategy : {'uniform', 'quantile', 'equal_mass'}
        ``'uniform'``: equal-width bins on [0, 1]; ``'quantile'``: edges at the quantiles of
        ``prob`` (equal counts up to ties); ``'equal_mass'``: the rows sorted by probability cut
        into runs of equal size (counts differ by at most one; ``lower``/``upper`` are the
        lowest and highest probability of the run). Bins are right-closed ``(lower, upper]`` with the
        first bin also holding ``lower`` (the convention of
        :func:`sklearn.calibration.calibration_curve`).

    Returns
    -------
    DataFrame
        One row per non-empty bin: ``bin``, ``lower``, ``upper``, ``n``, ``mean_predicted``,
        ``observed_rate``, ``abs_gap`` (= |observed - predicted|), ``weight`` (= n / total).
    """
    y = binary_labels(y)
    p = probabilities(prob, len(y), like="y")
    ids, edges = _bin_ids(p, n_bins, strategy)
    counts = np.bincount(ids, minlength=n_bins)
    sum_p = np.bincount(ids, weights=p, minlength=n_bins)
    sum_y = np.bincount(ids, weights=y, minlength=n_bins)
    keep = counts > 0
    b = np.flatnonzero(keep)
    table = pd.DataFrame({
        "bin": b,
        "lower": edges[b],
        "upper": edges[b + 1],
        "n": counts[keep],
        "mean_predicted": sum_p[keep] / counts[keep],
        "observed_rate": sum_y[keep] / counts[keep],
    })
    table["abs_gap"] = (table["observed_rate"] - table["mean_predicted"]).abs()
    table["weight"] = table["n"] / len(y)
    return table


def expected_calibration_error(y: np.ndarray, prob: np.ndarray, *, n_bins: int = 10,
                               strategy: str = "uniform") -> float:
    """ECE = sum over bins of (n_b / n) * |observed rate_b - mean predicted_b|.

    Binning as in :func:`reliability_table` (default: 10 equal-width bins on [0, 1]).

    Returns
    -------
    float
        In [0, 1]; 0 for perfect calibration within bins.
    """
    t = reliability_table(y, prob, n_bins=n_bins, strategy=strategy)
    return float((t["weight"] * t["abs_gap"]).sum())


def ece_interval(y: np.ndarray, prob: np.ndarray, *, n_bins: int = 10, strategy: str = "uniform",
                 n_boot: int = 1000, seed: int, ci: float = 0.95) -> tuple[float, float, float]:
    """ECE with a percentile bootstrap interval: ``(ece, low, high)``.

    The resamples are the project's one bootstrap (:func:`clinops.bootstrap.resample_weights`,
    the same rows as the AUROC interval for the same ``n_boot`` and ``seed``). Each row keeps
    the bin the full sample gave it (for ``equal_mass`` and ``quantile`` the edges are not
    recomputed per resample), so the interval is that of the calibration gap over fixed bins.
    The ECE is biased upwards (an absolute value of noise), most where bins are small.

    Examples
    --------
    >>> y = np.array([0, 0, 1, 0, 1, 1])
    >>> p = np.array([0.1, 0.2, 0.3, 0.6, 0.7, 0.9])
    >>> ece, lo, hi = ece_interval(y, p, n_bins=2, n_boot=200, seed=0)
    >>> round(ece, 4), bool(0.0 <= lo <= hi <= 1.0)
    (0.1, True)
    """
    y = binary_labels(y)
    p = probabilities(prob, len(y), like="y")
    if not isinstance(n_boot, (int, np.integer)) or n_boot < 1:
        raise ValueError(f"n_boot: must be a positive integer, got {n_boot!r}")
    ids, _ = _bin_ids(p, n_bins, strategy)
    onehot = np.zeros((len(y), n_bins))
    onehot[np.arange(len(y)), ids] = 1.0
    gap_columns = onehot * (y - p)[:, None]  # per bin: sum of (outcome - probability)
    samples = np.concatenate([np.abs(w @ gap_columns).sum(axis=1) / w.sum(axis=1)
                              for w in resample_weights(len(y), int(n_boot), seed)])
    lo, hi, _ = percentile_interval(samples[:, None], ci)
    return expected_calibration_error(y, p, n_bins=n_bins, strategy=strategy), float(lo[0]), float(hi[0])


def plot_reliability(y: np.ndarray, probs: np.ndarray | Mapping[str, np.ndarray], *,
                     n_bins: int = 10, strategy: str = "uniform",
                     title: str | None = None) -> "Figure":
    """Reliability diagram (observed rate vs mean predicted probability per bin) + histogram.

    Parameters
    ----------
    y : array of shape (n,)
        Binary outcomes.
    probs : array of shape (n,) or mapping label -> array
        One or more probability vectors (e.g. ``{'raw': ..., 'isotonic': ...}``); the legend
        gives each one's ECE.
    n_bins, strategy
        As in :func:`reliability_table`.
    title : str, optional

    Returns
    -------
    matplotlib.figure.Figure
        Built without pyplot, so nothing global is touched.
    """
    # matplotlib is imported only when a figure is drawn (heavy; the server never draws).
    from matplotlib.figure import Figure

    series = {"model": probs} if not isinstance(probs, Mapping) else dict(probs)
    fig = Figure(figsize=(5.5, 6.0), layout="constrained")
    ax, hist = fig.subplots(2, 1, height_ratios=[3, 1], sharex=True)
    ax.plot([0, 1], [0, 1], ls="--", color="grey", lw=1, label="perfect calibration")
    for label, p in series.items():
        t = reliability_table(y, p, n_bins=n_bins, strategy=strategy)
        ece = float((t["weight"] * t["abs_gap"]).sum())
        ax.plot(t["mean_predicted"], t["observed_rate"], marker="o",
                label=f"{label} (ECE {ece:.3f})")
        hist.hist(np.asarray(p, dtype=float), bins=np.linspace(0, 1, 21), histtype="step",
                  label=label)
    ax.set_ylabel("observed event rate")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.legend(loc="upper left", fontsize="small")
    ax.set_title(title or f"Reliability ({n_bins} {strategy} bins)")
    hist.set_xlabel("predicted probability")
    hist.set_ylabel("count")
    return fig

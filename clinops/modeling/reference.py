"""The training-data reference stored in the bundle: PSI bins, ranges and missing rates.

Moved unchanged from ``clinops/modeling.py``; the PSI binning is to be unified with
:mod:`clinops.drift`'s (one PSI binning) when the drift redesign is merged.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

__all__ = ["reference_statistics"]


def reference_statistics(X: pd.DataFrame, *, n_bins: int = 10) -> dict[str, dict]:
    """Training-data reference for drift (PSI) and out-of-distribution checks.

    Per feature, on the observed (non-missing) training values:

    - ``min``, ``max``: the training range (an input outside it is out of distribution);
    - ``bin_edges``: the unique interior quantile cut points at 1/n_bins .. (n_bins-1)/n_bins
      (for a feature with at most ``n_bins`` distinct values: every distinct value but the
      largest, i.e. one bin per value); bins are ``(-inf, e1], (e1, e2], ..., (e_last, +inf)``,
      i.e. ``np.searchsorted(bin_edges, v, side='left')`` gives a value's bin;
    - ``proportions``: share of observed training values in each bin (sums to 1);
    - ``missing_rate``: share of rows with the feature missing.

    Parameters
    ----------
    X : DataFrame of shape (n, p)
        Encoded, not imputed, training features.
    n_bins : int
        Target number of quantile bins (fewer for features with few distinct values).

    Returns
    -------
    dict
        feature name -> statistics (plain JSON-able Python numbers).
    """
    if not isinstance(X, pd.DataFrame):
        raise TypeError("X: must be a DataFrame with one column per feature")
    if n_bins < 2:
        raise ValueError(f"n_bins: must be at least 2, got {n_bins}")
    ref = {}
    qs = np.arange(1, n_bins) / n_bins
    for name in X.columns:
        col = X[name].to_numpy(dtype=np.float64)
        observed = col[~np.isnan(col)]
        if observed.size == 0:
            raise ValueError(f"X[{name!r}]: no observed values; cannot build a reference")
        distinct = np.unique(observed)
        # Few distinct values (flags, codes, scores): one bin per value; interpolated quantiles
        # would put cut points between codes and leave bins that no value can fall in.
        edges = distinct[:-1] if len(distinct) <= n_bins else np.unique(np.quantile(observed, qs))
        counts = np.bincount(np.searchsorted(edges, observed, side="left"),
                             minlength=len(edges) + 1)
        ref[str(name)] = {
            "min": float(observed.min()),
            "max": float(observed.max()),
            "bin_edges": edges.tolist(),
            "proportions": (counts / counts.sum()).tolist(),
            "missing_rate": float(np.isnan(col).mean()),
        }
    return ref

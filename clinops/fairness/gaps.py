"""Between-group fairness gaps of one attribute, each with a bootstrap CI and its two groups.

Examples
--------
>>> import numpy as np
>>> y = np.array([1, 1, 0, 0, 1, 1, 0, 0])
>>> prob = np.array([0.9, 0.3, 0.6, 0.1, 0.8, 0.7, 0.2, 0.4])
>>> grp = np.array(["A", "A", "A", "A", "B", "B", "B", "B"])
>>> g = fairness_gaps(y, prob, grp, threshold=0.5, n_boot=0, seed=0, min_group_size=1, attribute="grp")
>>> list(g["metric"])
['equalized_odds_difference', 'demographic_parity_difference', 'predictive_parity_difference']
>>> row = g.set_index("metric").loc["equalized_odds_difference"]
>>> float(row["value"]), row["group_high"], row["group_low"], row["component"]
(0.5, 'B', 'A', 'tpr')
"""
from __future__ import annotations

import warnings
from functools import reduce
from typing import Any, Sequence

import numpy as np
import pandas as pd

from clinops.bootstrap import confusion_counts, percentile_interval, resample_weights
from clinops.fairness.groups import group_labels, group_order
from clinops.fairness.metrics import GAP_DEFINITIONS, RATES
from clinops.fairness.table import check_common
from clinops.labels import binary_labels, probabilities

__all__ = ["fairness_gaps"]


def _spread(rates: np.ndarray) -> np.ndarray:
    return np.nanmax(rates, axis=-1) - np.nanmin(rates, axis=-1)


def fairness_gaps(y_true: Any, prob: Any, sensitive: Any, *, threshold: float, n_boot: int = 1000,
                  seed: int | None, min_group_size: int = 30, ci: float = 0.95,
                  attribute: str | None = None, exclude: Sequence[str] = ()) -> pd.DataFrame:
    """Equalized-odds, demographic-parity and predictive-parity differences with bootstrap CIs.

    Parameters
    ----------
    y_true, prob : array-like of shape (n,)
        Outcome 0/1 and predicted probability.
    sensitive : array-like of shape (n,)
        Group label per row (one attribute, e.g. sex or age group).
    threshold : float
        Operating threshold; predicted positive when ``prob >= threshold``.
    n_boot, seed, ci : bootstrap settings (see :func:`clinops.fairness.subgroup_table`).
    min_group_size : int
        Groups with fewer rows, or with one outcome class only, are left out of the gaps
        (named in ``excluded_groups``): their rates are not estimable.
    attribute : str, optional
        Name written in the ``attribute`` column (default: the Series name or ``"sensitive"``).
    exclude : sequence of str
        Groups always left out of the gaps and named in ``excluded_groups`` (e.g. the sex groups
        'unknown' and 'other', :data:`~clinops.fairness.groups.SEX_OUTSIDE_GAPS`).

    Returns
    -------
    pandas.DataFrame
        One row per gap of :data:`~clinops.fairness.metrics.GAP_DEFINITIONS`; columns
        ``attribute``, ``metric``, ``value`` (fairlearn's point estimate, between-group
        max - min), ``ci_lo``, ``ci_hi``, ``group_high``, ``group_low`` (the groups whose
        difference is the value; for the equalized-odds difference the larger of the TPR and
        FPR differences), ``component`` (``tpr``/``fpr`` for equalized odds,
        ``selection_rate``, ``ppv``), ``n_groups``, ``excluded_groups`` and ``n_boot_defined``.

    Notes
    -----
    A gap is a max - min over groups, so its bootstrap distribution sits above the point
    estimate when the true gap is near zero (every resample shows *some* difference): a
    percentile CI of a small gap is shifted upwards and may not contain the point value.
    """
    y = binary_labels(y_true, "y_true")
    p = probabilities(prob, len(y), "prob")
    check_common(threshold, n_boot, ci, min_group_size)
    name = attribute or (str(sensitive.name) if isinstance(sensitive, pd.Series) and sensitive.name else "sensitive")
    labels = group_labels(sensitive, len(y), name)

    excluded = []
    for g in group_order(labels):
        m = labels == g
        if g in exclude or m.sum() < min_group_size or y[m].min() == y[m].max():
            excluded.append(g)
    keep = ~np.isin(labels, excluded)
    y, p, labels = y[keep], p[keep], labels[keep]
    order = group_order(labels)
    if len(order) < 2:
        raise ValueError(f"sensitive ({name}): fewer than two estimable groups (excluded: {excluded}); "
                         "no gap can be computed")
    pred = (p >= threshold).astype(np.int64)
    sf = pd.Series(labels, name=name)
    codes = np.array([order.index(v) for v in labels], dtype=np.int64)
    components = sorted({c for gap in GAP_DEFINITIONS.values() for c in gap.components})

    point_counts = confusion_counts(np.ones((1, len(y))), codes, len(order), y, pred)
    point = {c: RATES[c](point_counts) for c in components}

    boot_vals = {k: np.full(0, np.nan) for k in GAP_DEFINITIONS}
    if n_boot > 0:
        parts = [{c: RATES[c](confusion_counts(w, codes, len(order), y, pred)) for c in components}
                 for w in resample_weights(len(y), int(n_boot), seed)]
        bm = {c: np.concatenate([part[c] for part in parts], axis=0) for c in components}
        with warnings.catch_warnings():
            # a resample where a rate is undefined in every group gives NaN (nanmax of all-NaN
            # warns); such resamples are left out of the CI and counted in n_boot_defined
            warnings.simplefilter("ignore", RuntimeWarning)
            boot_vals = {metric: reduce(np.fmax, [_spread(bm[c]) for c in gap.components])
                         for metric, gap in GAP_DEFINITIONS.items()}

    rows = []
    for metric, gap in GAP_DEFINITIONS.items():
        value = gap.point(y, pred, sf)
        # the component whose spread is the gap: the largest, the first on a tie
        component = max(gap.components, key=lambda c: _spread(point[c])[0])
        rates = point[component][0]
        hi_g, lo_g = order[int(np.nanargmax(rates))], order[int(np.nanargmin(rates))]
        if n_boot > 0:
            lo, hi, n_def = percentile_interval(boot_vals[metric][:, None], ci)
            ci_lo, ci_hi, n_defined = float(lo[0]), float(hi[0]), int(n_def[0])
        else:
            ci_lo = ci_hi = np.nan
            n_defined = 0
        rows.append({"attribute": name, "metric": metric, "value": value, "ci_lo": ci_lo, "ci_hi": ci_hi,
                     "group_high": hi_g, "group_low": lo_g, "component": component,
                     "n_groups": len(order), "excluded_groups": ", ".join(excluded),
                     "n_boot_defined": n_defined})
    return pd.DataFrame(rows)

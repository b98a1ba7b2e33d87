"""Layer 2 fairness: disaggregated performance, fairness gaps with bootstrap CIs, alert rules.

What this module gives (paper, "Fairness evaluation", Table 2):

- :func:`age_groups`: age in years -> the paper's groups ``18-44, 45-64, 65-79, 80+``.
- :func:`subgroup_table`: AUROC, sensitivity, specificity and PPV at an operating threshold,
  overall and for every group of every sensitive attribute, each with a percentile bootstrap
  CI, plus the group's n, number of events and prevalence. A group with fewer than
  ``min_group_size`` rows, or with a single outcome class, is reported as NOT ESTIMABLE
  (NaN plus ``estimable = False`` and the reason in ``note``), never as a noisy number.
- :func:`fairness_gaps`: equalized-odds, demographic-parity and predictive-parity (PPV)
  differences for one attribute, each with a bootstrap CI and the groups that define it.
- :class:`FairnessPolicy` / :func:`fairness_alerts`: the alert rules as data
  (``params/policies/fairness.yaml``). An alert always means *human review*; the policy loader
  refuses any other action, so no fairness result can ever start retraining.
- :func:`plot_subgroups`: a forest plot of the per-group metrics with their CIs.

Definitions
-----------
A stay is *predicted positive* when ``prob >= threshold``. Sensitivity = TP / (TP + FN),
specificity = TN / (TN + FP), PPV = TP / (TP + FP) with PPV = 0 when nothing is predicted positive
(``precision_score(zero_division=0)``, the fairlearn convention). Point estimates come from
fairlearn's :class:`~fairlearn.metrics.MetricFrame` (per-group metrics) and from
:func:`~fairlearn.metrics.equalized_odds_difference` /
:func:`~fairlearn.metrics.demographic_parity_difference` (gaps).

Bootstrap
---------
fairlearn's own bootstrap (``MetricFrame(n_boot=..., random_state=...)``) calls the scikit-learn
metric functions once per group per resample; on this machine 100 resamples of three metrics on
7,000 rows took about 9 s, i.e. minutes for the 1,000 resamples of Table 2. It also cannot give a
CI for the equalized-odds difference, which is the maximum of two differences *within the same
resample*. So the resampling is done here with **the same resamples fairlearn would draw** for the
same ``seed`` (``numpy.random.default_rng(seed)`` draws one ``uint32`` seed per resample, each
resample is ``RandomState(seed_i).choice(n, n, replace=True)``, as ``DataFrame.sample`` does),
and the metrics are evaluated on all resamples at once from weighted confusion counts and a
weighted Mann-Whitney AUROC. ``tests/test_fairness.py`` checks that the CIs equal fairlearn's
``MetricFrame(..., n_boot, ci_quantiles, random_state=seed).by_group_ci`` to 1e-12. CIs are
percentile intervals (``numpy.nanquantile``, linear interpolation, as fairlearn); a resample in
which a metric is undefined for a group (for example no event drawn) is left out of that
metric's interval and the ``note`` column says how many resamples were used.
"""
from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from itertools import combinations
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd

from clinops.policy import PolicyError, read_policy

__all__ = [
    "TABLE_METRICS",
    "GAP_METRICS",
    "FairnessPolicy",
    "PolicyError",
    "FairnessAlert",
    "age_groups",
    "subgroup_table",
    "fairness_gaps",
    "fairness_alerts",
    "plot_subgroups",
]

#: Per-group metrics of Table 2, in column order.
TABLE_METRICS: tuple[str, ...] = ("auroc", "sensitivity", "specificity", "ppv")
#: Between-group fairness gaps reported by :func:`fairness_gaps`.
GAP_METRICS: tuple[str, ...] = (
    "equalized_odds_difference",
    "demographic_parity_difference",
    "predictive_parity_difference",
)
#: Label of the row that covers every stay in :func:`subgroup_table`.
OVERALL = ("overall", "all")
#: The only action a fairness alert may lead to (paper, Layer 2: alerts prompt structured review).
ALERT_ACTION = "human_review"


# --------------------------------------------------------------------------------------------
# input checks


def _as_binary_outcome(y_true: Any, name: str = "y_true") -> np.ndarray:
    y = np.asarray(y_true)
    if y.ndim != 1:
        raise ValueError(f"{name}: must be one-dimensional, got shape {y.shape}")
    if y.dtype == bool:
        return y.astype(np.int64)
    if pd.isna(y).any():
        raise ValueError(f"{name}: must not contain missing values ({int(pd.isna(y).sum())} found)")
    values = set(np.unique(y).tolist())
    if not values <= {0, 1}:
        raise ValueError(f"{name}: must be binary 0/1, found values {sorted(values)[:5]}")
    return y.astype(np.int64)


def _as_probability(prob: Any, n: int, name: str = "prob") -> np.ndarray:
    p = np.asarray(prob, dtype=float)
    if p.ndim != 1 or p.shape[0] != n:
        raise ValueError(f"{name}: must be one-dimensional with {n} values (as y_true), got shape {p.shape}")
    if not np.isfinite(p).all():
        raise ValueError(f"{name}: must be finite (no NaN/inf); {int((~np.isfinite(p)).sum())} bad values")
    if (p < 0).any() or (p > 1).any():
        raise ValueError(f"{name}: must lie in [0, 1]; range found [{p.min():.4g}, {p.max():.4g}]")
    return p


def _as_group_labels(values: Any, n: int, name: str) -> np.ndarray:
    g = pd.Series(np.asarray(values, dtype=object) if not isinstance(values, pd.Series) else values.to_numpy(dtype=object))
    if len(g) != n:
        raise ValueError(f"groups[{name!r}]: must have {n} values (as y_true), got {len(g)}")
    missing = g.isna()
    if missing.any():
        raise ValueError(f"groups[{name!r}]: must not contain missing values ({int(missing.sum())} found); "
                         "label them explicitly (e.g. 'unknown') so they are reported, not dropped")
    return g.astype(str).to_numpy()


def _check_common(threshold: float, n_boot: int, ci: float, min_group_size: int) -> None:
    if not (0.0 < float(threshold) < 1.0):
        raise ValueError(f"threshold: must lie strictly between 0 and 1, got {threshold}")
    if not isinstance(n_boot, (int, np.integer)) or n_boot < 0:
        raise ValueError(f"n_boot: must be a non-negative integer, got {n_boot!r}")
    if not (0.0 < float(ci) < 1.0):
        raise ValueError(f"ci: must lie strictly between 0 and 1, got {ci}")
    if not isinstance(min_group_size, (int, np.integer)) or min_group_size < 1:
        raise ValueError(f"min_group_size: must be a positive integer, got {min_group_size!r}")


def _group_order(labels: np.ndarray) -> list[str]:
    """Groups in a stable order: natural order for the age labels, sorted otherwise."""
    uniq = list(dict.fromkeys(sorted(set(labels.tolist()))))

    def key(s: str) -> tuple[float, str]:
        head = s.split("-")[0].rstrip("+")
        try:
            return (float(head), s)
        except ValueError:
            return (math.inf, s)

    return sorted(uniq, key=key)


# --------------------------------------------------------------------------------------------
# age groups


def age_groups(age: Any, edges: Sequence[float] = (18, 45, 65, 80)) -> pd.Series:
    """Age in years -> the paper's age-group labels.

    Parameters
    ----------
    age : array-like of shape (n,)
        Age in years (integer or fractional). Must be >= ``edges[0]`` and not missing.
    edges : increasing sequence of group lower bounds, in years
        ``(18, 45, 65, 80)`` gives ``'18-44', '45-64', '65-79', '80+'`` (groups are
        ``[lower, next lower)``; the last is open-ended).

    Returns
    -------
    pandas.Series of shape (n,)
        Ordered categorical labels; keeps the index of ``age`` when it is a Series.
    """
    edges = [float(e) for e in edges]
    if len(edges) < 1 or any(b <= a for a, b in zip(edges, edges[1:])):
        raise ValueError(f"edges: must be strictly increasing, got {list(edges)}")
    index = age.index if isinstance(age, pd.Series) else None
    a = pd.to_numeric(pd.Series(np.asarray(age), index=index), errors="coerce")
    if a.isna().any():
        raise ValueError(f"age: must be numeric and not missing ({int(a.isna().sum())} bad values)")
    if (a < edges[0]).any():
        raise ValueError(f"age: must be >= the first edge {edges[0]:g}; {int((a < edges[0]).sum())} "
                         f"values below it (minimum {a.min():g})")

    def fmt(x: float) -> str:
        return f"{x:g}"

    labels = [f"{fmt(lo)}-{fmt(hi - 1)}" for lo, hi in zip(edges, edges[1:])] + [f"{fmt(edges[-1])}+"]
    cut = pd.cut(a, bins=edges + [math.inf], right=False, labels=labels)
    return pd.Series(cut, index=a.index, name="age_group")


# --------------------------------------------------------------------------------------------
# resampling (the same resamples as fairlearn's MetricFrame bootstrap)


def _resample_weights(n: int, n_boot: int, seed: int | None, chunk: int = 100):
    """Bootstrap multiplicities in chunks of shape (<= chunk, n): how often each row is drawn.

    Reproduces fairlearn's ``generate_bootstrap_samples`` exactly: one ``uint32`` seed per
    resample from ``default_rng(seed)``, each resample ``RandomState(s).choice(n, n)``.
    Chunked so that memory stays ``chunk * n`` floats whatever ``n_boot``.
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


def _boot_metrics(n: int, n_boot: int, seed: int | None, **kwargs: Any) -> dict[str, np.ndarray]:
    """:func:`_weighted_metrics` over all resamples, concatenated: (n_boot, n_groups) arrays."""
    parts = [_weighted_metrics(w, **kwargs) for w in _resample_weights(n, n_boot, seed)]
    return {k: np.concatenate([p[k] for p in parts], axis=0) for k in parts[0]}


def _safe_div(num: np.ndarray, den: np.ndarray, zero: float = np.nan) -> np.ndarray:
    out = np.full(np.broadcast(num, den).shape, zero, dtype=float)
    np.divide(num, den, out=out, where=den > 0)
    return out


def _weighted_metrics(weights: np.ndarray, codes: np.ndarray, n_groups: int, y: np.ndarray,
                      pred: np.ndarray, tie_block: np.ndarray, n_blocks: int,
                      order: np.ndarray, want_auroc: bool = True) -> dict[str, np.ndarray]:
    """Per-group metrics for many weightings at once.

    Parameters
    ----------
    weights : (B, n) row multiplicities; ``codes`` : (n,) group index in [0, n_groups);
    y, pred : (n,) 0/1 outcome and prediction; order : (n,) argsort of the scores;
    tie_block : (n,) index of each *sorted* position's block of equal scores.

    Returns
    -------
    dict of (B, n_groups) arrays: n, events, tpr, fpr, tnr, selection_rate, ppv, auroc.
    """
    B = weights.shape[0]
    onehot = np.zeros((codes.shape[0], n_groups))
    onehot[np.arange(codes.shape[0]), codes] = 1.0
    pos, neg = y == 1, y == 0
    n_g = weights @ onehot
    tp = weights @ (onehot * (pos & (pred == 1))[:, None])
    fn = weights @ (onehot * (pos & (pred == 0))[:, None])
    fp = weights @ (onehot * (neg & (pred == 1))[:, None])
    tn = weights @ (onehot * (neg & (pred == 0))[:, None])
    out = {
        "n": n_g,
        "events": tp + fn,
        "tpr": _safe_div(tp, tp + fn),
        "fpr": _safe_div(fp, fp + tn),
        "tnr": _safe_div(tn, fp + tn),
        "selection_rate": _safe_div(tp + fp, n_g),
        "ppv": _safe_div(tp, tp + fp, zero=0.0),
    }
    if want_auroc:
        # Mann-Whitney with ties counted 1/2 (equals scikit-learn's trapezoidal ROC AUC):
        # AUC = sum_blocks Wpos_b * (Wneg_before_b + Wneg_b / 2) / (Wpos * Wneg)
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
            auc[b] = _safe_div(num, den)
        out["auroc"] = auc
    return out


def _tie_blocks(prob: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
    order = np.argsort(prob, kind="mergesort")
    s = prob[order]
    block = np.concatenate([[0], np.cumsum(s[1:] != s[:-1])]).astype(np.int64)
    return order, block, int(block[-1]) + 1 if len(block) else 0


def _quantiles(samples: np.ndarray, ci: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Percentile CI over axis 0, ignoring NaN resamples; returns (low, high, n_defined)."""
    q = [(1 - ci) / 2, 1 - (1 - ci) / 2]
    n_def = np.isfinite(samples).sum(axis=0)
    lo = np.full(samples.shape[1:], np.nan)
    hi = np.full(samples.shape[1:], np.nan)
    ok = n_def > 0
    if ok.any():
        qs = np.nanquantile(samples[:, ok], q, axis=0)
        lo[ok], hi[ok] = qs[0], qs[1]
    return lo, hi, n_def


# --------------------------------------------------------------------------------------------
# Table 2


def _sk_metrics(threshold: float) -> dict[str, Callable]:
    """scikit-learn metric functions for fairlearn's MetricFrame; ``y_pred`` is the probability."""
    from sklearn.metrics import precision_score, recall_score, roc_auc_score

    def auroc(y, p):
        return float(roc_auc_score(y, p)) if len(np.unique(y)) == 2 else np.nan

    def sensitivity(y, p):
        return float(recall_score(y, p >= threshold, pos_label=1, zero_division=np.nan))

    def specificity(y, p):
        return float(recall_score(y, p >= threshold, pos_label=0, zero_division=np.nan))

    def ppv(y, p):
        return float(precision_score(y, p >= threshold, zero_division=0))

    return {"auroc": auroc, "sensitivity": sensitivity, "specificity": specificity, "ppv": ppv}


def subgroup_table(y_true: Any, prob: Any, groups: Mapping[str, Any], *, threshold: float,
                   n_boot: int = 1000, seed: int | None, min_group_size: int = 30,
                   ci: float = 0.95) -> pd.DataFrame:
    """Disaggregated performance (Table 2) with bootstrap CIs.

    Parameters
    ----------
    y_true : array-like of shape (n,)
        Observed outcome, 0/1.
    prob : array-like of shape (n,)
        Predicted probability of the outcome, in [0, 1].
    groups : mapping attribute name -> array-like of shape (n,)
        Sensitive attributes, e.g. ``{"sex": sex, "age_group": age_groups(age)}``. Labels are
        compared as strings; missing labels are refused.
    threshold : float
        Operating threshold; predicted positive when ``prob >= threshold``.
    n_boot : int
        Bootstrap resamples (0 = no CIs). The same resamples serve every attribute.
    seed : int
        Bootstrap seed (same resamples as fairlearn's ``MetricFrame(random_state=seed)``).
    min_group_size : int
        Groups with fewer rows are reported as not estimable.
    ci : float
        Coverage of the percentile interval (0.95 -> 2.5 % and 97.5 % quantiles).

    Returns
    -------
    pandas.DataFrame
        Index ``(attribute, group)``, first row ``('overall', 'all')``. Columns ``n``,
        ``events``, ``prevalence``, then for each of :data:`TABLE_METRICS` the point value and
        ``<metric>_lo`` / ``<metric>_hi``, then ``estimable`` (bool) and ``note`` (why a value
        is missing, or how many resamples a CI rests on when fewer than ``n_boot``).
    """
    from fairlearn.metrics import MetricFrame

    y = _as_binary_outcome(y_true)
    p = _as_probability(prob, len(y))
    _check_common(threshold, n_boot, ci, min_group_size)
    if not isinstance(groups, Mapping) or not groups:
        raise ValueError("groups: must be a non-empty mapping of attribute name -> labels")
    if "overall" in groups:
        raise ValueError("groups: 'overall' is reserved for the all-stays row; rename that attribute")
    attrs = {str(k): _as_group_labels(v, len(y), str(k)) for k, v in groups.items()}
    pred = (p >= threshold).astype(np.int64)

    # point estimates: fairlearn MetricFrame with scikit-learn metrics
    metrics = _sk_metrics(float(threshold))
    rows: list[dict[str, Any]] = []
    index: list[tuple[str, str]] = []
    layouts: list[tuple[str, np.ndarray, list[str]]] = [("overall", np.zeros(len(y), dtype=np.int64), ["all"])]
    for name, labels in attrs.items():
        order = _group_order(labels)
        lookup = {g: i for i, g in enumerate(order)}
        layouts.append((name, np.array([lookup[v] for v in labels], dtype=np.int64), order))

    for name, codes, order in layouts:
        if name == "overall":
            mf_vals = {m: metrics[m](y, p) for m in TABLE_METRICS}
            per_group = {"all": mf_vals}
        else:
            mf = MetricFrame(metrics=metrics, y_true=y, y_pred=p, sensitive_features=pd.Series(attrs[name], name=name))
            by = mf.by_group
            per_group = {str(g): {m: float(by.loc[g, m]) for m in TABLE_METRICS} for g in by.index}
        for gi, g in enumerate(order):
            mask = codes == gi
            n_g, ev = int(mask.sum()), int(y[mask].sum())
            row: dict[str, Any] = {"n": n_g, "events": ev, "prevalence": ev / n_g if n_g else np.nan}
            reasons: list[str] = []
            vals = dict(per_group[g])
            if n_g < min_group_size:
                reasons.append(f"NOT ESTIMABLE: n={n_g} < min_group_size={min_group_size}")
                vals = {m: np.nan for m in TABLE_METRICS}
            elif ev == 0 or ev == n_g:
                reasons.append(f"NOT ESTIMABLE: one outcome class only ({ev} events in {n_g})")
                vals["auroc"] = np.nan
                if ev == 0:
                    vals["sensitivity"] = np.nan
                else:
                    vals["specificity"] = np.nan
            if n_g >= min_group_size and int(pred[mask].sum()) == 0:
                reasons.append("no predicted positives: PPV = 0 by convention (zero_division=0)")
            for m in TABLE_METRICS:
                row[m] = vals[m]
                row[f"{m}_lo"] = np.nan
                row[f"{m}_hi"] = np.nan
            row["estimable"] = not any(r.startswith("NOT ESTIMABLE") for r in reasons)
            row["_reasons"] = reasons
            rows.append(row)
            index.append((name, g))

    # bootstrap CIs: same resamples for every attribute (and as fairlearn would draw them)
    if n_boot > 0:
        order_idx, block, n_blocks = _tie_blocks(p)
        parts: list[list[dict[str, np.ndarray]]] = [[] for _ in layouts]
        for w in _resample_weights(len(y), int(n_boot), seed):
            for k, (_, codes, order) in enumerate(layouts):
                parts[k].append(_weighted_metrics(w, codes=codes, n_groups=len(order), y=y, pred=pred,
                                                  tie_block=block, n_blocks=n_blocks, order=order_idx))
        r = 0
        for k, (name, codes, order) in enumerate(layouts):
            boot = {key: np.concatenate([part[key] for part in parts[k]], axis=0) for key in parts[k][0]}
            boot["sensitivity"], boot["specificity"] = boot["tpr"], boot["tnr"]
            for gi in range(len(order)):
                row = rows[r + gi]
                for m in TABLE_METRICS:
                    if not np.isfinite(row[m]):
                        continue
                    lo, hi, n_def = _quantiles(boot[m][:, [gi]], ci)
                    row[f"{m}_lo"], row[f"{m}_hi"] = float(lo[0]), float(hi[0])
                    if int(n_def[0]) < n_boot:
                        row["_reasons"].append(f"{m} CI from {int(n_def[0])} of {n_boot} resamples")
            r += len(order)

    table = pd.DataFrame(rows, index=pd.MultiIndex.from_tuples(index, names=["attribute", "group"]))
    table["note"] = table.pop("_reasons").map("; ".join)
    cols = ["n", "events", "prevalence"]
    for m in TABLE_METRICS:
        cols += [m, f"{m}_lo", f"{m}_hi"]
    return table[cols + ["estimable", "note"]]


# --------------------------------------------------------------------------------------------
# fairness gaps


def fairness_gaps(y_true: Any, prob: Any, sensitive: Any, *, threshold: float, n_boot: int = 1000,
                  seed: int | None, min_group_size: int = 30, ci: float = 0.95,
                  attribute: str | None = None) -> pd.DataFrame:
    """Equalized-odds, demographic-parity and predictive-parity differences with bootstrap CIs.

    Parameters
    ----------
    y_true, prob : array-like of shape (n,)
        Outcome 0/1 and predicted probability.
    sensitive : array-like of shape (n,)
        Group label per row (one attribute, e.g. sex or age group).
    threshold : float
        Operating threshold; predicted positive when ``prob >= threshold``.
    n_boot, seed, ci : bootstrap settings (see :func:`subgroup_table`).
    min_group_size : int
        Groups with fewer rows, or with one outcome class only, are left out of the gaps
        (named in ``excluded_groups``): their rates are not estimable.
    attribute : str, optional
        Name written in the ``attribute`` column (default: the Series name or ``"sensitive"``).

    Returns
    -------
    pandas.DataFrame
        One row per metric in :data:`GAP_METRICS`; columns ``attribute``, ``metric``,
        ``value`` (fairlearn's point estimate, between-group max - min), ``ci_lo``, ``ci_hi``,
        ``group_high``, ``group_low`` (the groups whose difference is the value; for the
        equalized-odds difference the larger of the TPR and FPR differences), ``component``
        (``tpr``/``fpr`` for equalized odds, ``selection_rate``, ``ppv``), ``n_groups``,
        ``excluded_groups`` and ``n_boot_defined``.

    Notes
    -----
    A gap is a max - min over groups, so its bootstrap distribution sits above the point
    estimate when the true gap is near zero (every resample shows *some* difference): a
    percentile CI of a small gap is shifted upwards and may not contain the point value.
    """
    from fairlearn.metrics import MetricFrame, demographic_parity_difference, equalized_odds_difference
    from sklearn.metrics import precision_score

    y = _as_binary_outcome(y_true)
    p = _as_probability(prob, len(y))
    _check_common(threshold, n_boot, ci, min_group_size)
    name = attribute or (str(sensitive.name) if isinstance(sensitive, pd.Series) and sensitive.name else "sensitive")
    labels = _as_group_labels(sensitive, len(y), name)

    excluded = []
    for g in _group_order(labels):
        m = labels == g
        if m.sum() < min_group_size or y[m].min() == y[m].max():
            excluded.append(g)
    keep = ~np.isin(labels, excluded)
    y, p, labels = y[keep], p[keep], labels[keep]
    order = _group_order(labels)
    if len(order) < 2:
        raise ValueError(f"sensitive ({name}): fewer than two estimable groups (excluded: {excluded}); "
                         "no gap can be computed")
    pred = (p >= threshold).astype(np.int64)
    sf = pd.Series(labels, name=name)

    # point estimates: fairlearn
    eod = float(equalized_odds_difference(y, pred, sensitive_features=sf))
    dpd = float(demographic_parity_difference(y, pred, sensitive_features=sf))
    mf = MetricFrame(metrics={"ppv": lambda a, b: precision_score(a, b, zero_division=0)},
                     y_true=y, y_pred=pred, sensitive_features=sf)
    ppd = float(mf.difference()["ppv"])

    codes = np.array([order.index(v) for v in labels], dtype=np.int64)
    ones = np.ones((1, len(y)))
    point = _weighted_metrics(ones, codes, len(order), y, pred, np.zeros(len(y), dtype=np.int64), 1,
                              np.arange(len(y)), want_auroc=False)

    def spread(rates: np.ndarray) -> np.ndarray:
        return np.nanmax(rates, axis=-1) - np.nanmin(rates, axis=-1)

    def extremes(rates: np.ndarray) -> tuple[str, str]:
        return order[int(np.nanargmax(rates))], order[int(np.nanargmin(rates))]

    tpr_gap, fpr_gap = spread(point["tpr"])[0], spread(point["fpr"])[0]
    eod_component = "tpr" if tpr_gap >= fpr_gap else "fpr"
    spec = {
        "equalized_odds_difference": (eod, eod_component),
        "demographic_parity_difference": (dpd, "selection_rate"),
        "predictive_parity_difference": (ppd, "ppv"),
    }

    boot_vals = {k: np.full(0, np.nan) for k in GAP_METRICS}
    if n_boot > 0:
        bm = _boot_metrics(len(y), int(n_boot), seed, codes=codes, n_groups=len(order), y=y, pred=pred,
                           tie_block=np.zeros(len(y), dtype=np.int64), n_blocks=1, order=np.arange(len(y)),
                           want_auroc=False)
        with warnings.catch_warnings():
            # a resample where a rate is undefined in every group gives NaN (nanmax of all-NaN
            # warns); such resamples are left out of the CI and counted in n_boot_defined
            warnings.simplefilter("ignore", RuntimeWarning)
            boot_vals = {
                "equalized_odds_difference": np.fmax(spread(bm["tpr"]), spread(bm["fpr"])),
                "demographic_parity_difference": spread(bm["selection_rate"]),
                "predictive_parity_difference": spread(bm["ppv"]),
            }

    rows = []
    for metric in GAP_METRICS:
        value, component = spec[metric]
        hi_g, lo_g = extremes(point[component][0])
        if n_boot > 0:
            lo, hi, n_def = _quantiles(boot_vals[metric][:, None], ci)
            ci_lo, ci_hi, n_defined = float(lo[0]), float(hi[0]), int(n_def[0])
        else:
            ci_lo = ci_hi = np.nan
            n_defined = 0
        rows.append({"attribute": name, "metric": metric, "value": value, "ci_lo": ci_lo, "ci_hi": ci_hi,
                     "group_high": hi_g, "group_low": lo_g, "component": component,
                     "n_groups": len(order), "excluded_groups": ", ".join(excluded),
                     "n_boot_defined": n_defined})
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------------------------
# policy and alerts


@dataclass(frozen=True)
class FairnessPolicy:
    """Fairness alert rules (``params/policies/fairness.yaml``).

    Attributes
    ----------
    pairwise_gap_limits : metric -> largest tolerated difference (absolute units of the metric)
        between any two estimable groups of one attribute in :func:`subgroup_table`, e.g.
        ``{"auroc": 0.03}``. A larger gap raises one alert per offending pair.
    disparity_limits : metric in :data:`GAP_METRICS` -> largest tolerated value from
        :func:`fairness_gaps`.
    min_group_size : rows below which a group is not estimable (and never alerts).
    action : always ``"human_review"``.

    To override a limit from a parameter file, use :func:`dataclasses.replace`, e.g.
    ``replace(policy, pairwise_gap_limits={**policy.pairwise_gap_limits, "auroc": 0.05})``.
    """

    pairwise_gap_limits: Mapping[str, float] = field(default_factory=lambda: {"auroc": 0.03})
    disparity_limits: Mapping[str, float] = field(default_factory=dict)
    min_group_size: int = 30
    action: str = ALERT_ACTION

    def __post_init__(self) -> None:
        _validate_fairness_policy(asdict(self), "FairnessPolicy")

    @classmethod
    def load(cls, path: str | Path, *, task: str | None = None) -> "FairnessPolicy":
        """Read a policy YAML; ``task`` applies that entry of its ``tasks:`` overrides."""
        raw = read_policy(path, task)
        _validate_fairness_policy(raw, str(path))
        return cls(pairwise_gap_limits=dict(raw.get("pairwise_gap_limits", {})),
                   disparity_limits=dict(raw.get("disparity_limits", {})),
                   min_group_size=int(raw.get("min_group_size", 30)),
                   action=str(raw.get("action", ALERT_ACTION)))


_FAIRNESS_KEYS = {"pairwise_gap_limits", "disparity_limits", "min_group_size", "action"}


def _validate_fairness_policy(raw: Mapping[str, Any], where: str) -> None:
    unknown = set(raw) - _FAIRNESS_KEYS
    if unknown:
        raise PolicyError(f"{where}: unknown key(s) {sorted(unknown)}; allowed: {sorted(_FAIRNESS_KEYS)}")
    if raw.get("action", ALERT_ACTION) != ALERT_ACTION:
        raise PolicyError(f"{where}: action: must be {ALERT_ACTION!r} (a fairness alert means human review, "
                          f"never retraining), got {raw.get('action')!r}")
    for key, allowed in (("pairwise_gap_limits", TABLE_METRICS), ("disparity_limits", GAP_METRICS)):
        limits = raw.get(key) or {}
        if not isinstance(limits, Mapping):
            raise PolicyError(f"{where}: {key}: must be a mapping metric -> limit")
        for metric, limit in limits.items():
            if metric not in allowed:
                raise PolicyError(f"{where}: {key}.{metric}: unknown metric; allowed: {list(allowed)}")
            if not isinstance(limit, (int, float)) or isinstance(limit, bool) or not (0 < float(limit) <= 1):
                raise PolicyError(f"{where}: {key}.{metric}: must be a number in (0, 1], got {limit!r}")
    mgs = raw.get("min_group_size", 30)
    if not isinstance(mgs, int) or isinstance(mgs, bool) or mgs < 1:
        raise PolicyError(f"{where}: min_group_size: must be a positive integer, got {mgs!r}")


@dataclass(frozen=True)
class FairnessAlert:
    """One fairness rule broken: ``metric`` differs by ``gap`` > ``threshold`` between groups.

    ``group_a`` has the higher value (``value_a``), ``group_b`` the lower. For a gap metric
    (:data:`GAP_METRICS`) ``value_a``/``value_b`` are the two groups' component rates.
    ``action`` is always ``"human_review"``.
    """

    attribute: str
    group_a: str
    group_b: str
    metric: str
    gap: float
    threshold: float
    value_a: float = math.nan
    value_b: float = math.nan
    action: str = ALERT_ACTION

    @property
    def message(self) -> str:
        return (f"fairness alert ({self.attribute}): {self.metric} differs by {self.gap:.3f} between "
                f"{self.group_a} and {self.group_b} (limit {self.threshold:.3f}); action: human review")

    def to_dict(self) -> dict[str, Any]:
        return {k: (float(v) if isinstance(v, (float, np.floating)) else v) for k, v in asdict(self).items()}


def fairness_alerts(subgroup_table: pd.DataFrame, policy: FairnessPolicy, *,
                    gaps: pd.DataFrame | None = None) -> list[FairnessAlert]:
    """Apply the policy to a :func:`subgroup_table` (and optionally :func:`fairness_gaps` rows).

    Parameters
    ----------
    subgroup_table : DataFrame from :func:`subgroup_table`
        Only estimable groups (and, when the table has an ``n`` column, groups with at least
        ``policy.min_group_size`` rows) within the same attribute are compared; never a group
        with the overall row, never groups of different attributes.
    policy : FairnessPolicy
    gaps : DataFrame from :func:`fairness_gaps` (one or several concatenated), optional

    Returns
    -------
    list of FairnessAlert, largest gap first. A gap *strictly above* its limit alerts.
    """
    alerts: list[FairnessAlert] = []
    table = subgroup_table
    for metric, limit in policy.pairwise_gap_limits.items():
        if metric not in table.columns:
            raise KeyError(f"subgroup_table: column {metric!r} required by policy.pairwise_gap_limits")
        for attr in table.index.get_level_values(0).unique():
            if attr == OVERALL[0]:
                continue
            sub = table.loc[attr]
            keep = sub["estimable"].astype(bool) & np.isfinite(sub[metric].astype(float))
            if "n" in sub.columns:
                keep &= sub["n"] >= policy.min_group_size
            sub = sub[keep]
            for ga, gb in combinations(sub.index, 2):
                va, vb = float(sub.loc[ga, metric]), float(sub.loc[gb, metric])
                if va < vb:
                    ga, gb, va, vb = gb, ga, vb, va
                gap = va - vb
                if gap > limit:
                    alerts.append(FairnessAlert(str(attr), str(ga), str(gb), metric, gap, float(limit), va, vb))
    if gaps is not None and policy.disparity_limits:
        for _, row in gaps.iterrows():
            limit = policy.disparity_limits.get(row["metric"])
            if limit is not None and np.isfinite(row["value"]) and row["value"] > limit:
                alerts.append(FairnessAlert(str(row["attribute"]), str(row["group_high"]), str(row["group_low"]),
                                            str(row["metric"]), float(row["value"]), float(limit)))
    return sorted(alerts, key=lambda a: -a.gap)


# --------------------------------------------------------------------------------------------
# figure


def plot_subgroups(table: pd.DataFrame, *, metrics: Sequence[str] = TABLE_METRICS,
                   title: str | None = None):
    """Forest plot of per-group metrics with their CIs.

    Parameters
    ----------
    table : DataFrame from :func:`subgroup_table`
    metrics : which metric columns to draw, one panel each
    title : figure title

    Returns
    -------
    matplotlib.figure.Figure
        One panel per metric; groups on the y axis (overall first), point and CI per group,
        a dashed line at the overall value, "not estimable" written where there is no value.
    """
    from matplotlib.figure import Figure

    labels = [("Overall" if a == OVERALL[0] else f"{a}: {g}") + f" (n={int(table.loc[(a, g), 'n'])})"
              for a, g in table.index]
    ypos = np.arange(len(labels))[::-1]
    fig = Figure(figsize=(3.0 * len(metrics) + 2.0, 0.45 * len(labels) + 1.4), layout="constrained")
    axes = fig.subplots(1, len(metrics), sharey=True, squeeze=False)[0]
    names = {"auroc": "AUROC", "sensitivity": "Sensitivity", "specificity": "Specificity", "ppv": "PPV"}
    for ax, m in zip(axes, metrics):
        vals = table[m].to_numpy(dtype=float)
        lo = table[f"{m}_lo"].to_numpy(dtype=float)
        hi = table[f"{m}_hi"].to_numpy(dtype=float)
        ok = np.isfinite(vals)
        xerr = np.vstack([np.where(np.isfinite(lo), vals - lo, 0), np.where(np.isfinite(hi), hi - vals, 0)])
        ax.errorbar(vals[ok], ypos[ok], xerr=xerr[:, ok], fmt="o", color="k", ecolor="0.4", capsize=3, ms=4)
        if np.isfinite(vals[0]):
            ax.axvline(vals[0], ls="--", color="tab:blue", lw=1)
        finite = np.concatenate([vals[ok], lo[np.isfinite(lo)], hi[np.isfinite(hi)]])
        left = float(finite.min()) if finite.size else 0.0
        for yv, good in zip(ypos, ok):
            if not good:
                ax.text(left, yv, "not estimable", va="center", fontsize=8, color="tab:red")
        ax.set_title(names.get(m, m))
        ax.grid(axis="x", alpha=0.3)
    axes[0].set_yticks(ypos, labels)
    if title:
        fig.suptitle(title)
    return fig

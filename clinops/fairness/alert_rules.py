"""The two alert rules side by side: each gap with its bootstrap CI, its limit, and what each rule says.

The paper alerts on a point estimate above its limit (``point``); ``ci_excludes`` alerts only
when the gap's whole bootstrap CI lies above the limit. :func:`pairwise_gap_intervals` gives
the CI of each pairwise difference the policy limits (e.g. the AUROC of M minus that of F, on
the same resamples as Table 2), :func:`rule_fires` applies one rule, and :func:`alerts_by_rule`
lays out every limited gap with both verdicts.

Examples
--------
>>> rule_fires(0.05, 0.01, 0.03, "point"), rule_fires(0.05, 0.01, 0.03, "ci_excludes")
(True, False)
>>> rule_fires(0.08, 0.04, 0.03, "ci_excludes")
True
"""
from __future__ import annotations

from itertools import combinations
from typing import Any, Sequence

import numpy as np
import pandas as pd

from clinops.bootstrap import (confusion_counts, percentile_interval, resample_weights, score_order,
                               weighted_auroc)
from clinops.fairness.groups import group_labels, group_order
from clinops.fairness.metrics import RATES, SUBGROUP_METRICS
from clinops.fairness.policy import ALERT_RULES, FairnessPolicy
from clinops.labels import binary_labels, probabilities

__all__ = ["rule_fires", "pairwise_gap_intervals", "alerts_by_rule"]


def rule_fires(gap: float, ci_lo: float, limit: float, rule: str) -> bool:
    """Whether a gap alerts under ``rule`` (:data:`~clinops.fairness.policy.ALERT_RULES`).

    ``point``: ``gap > limit``. ``ci_excludes``: ``ci_lo > limit`` (the CI lies entirely above
    the limit); a gap without a CI (NaN) never alerts under it.
    """
    if rule == "point":
        return bool(np.isfinite(gap) and gap > limit)
    if rule == "ci_excludes":
        return bool(np.isfinite(ci_lo) and ci_lo > limit)
    raise ValueError(f"alert_rule: must be one of {list(ALERT_RULES)}, got {rule!r}")


def pairwise_gap_intervals(y_true: Any, prob: Any, sensitive: Any, *, metrics: list[str], threshold: float,
                           n_boot: int, seed: int | None, min_group_size: int = 30, ci: float = 0.95,
                           attribute: str = "sensitive", exclude: Sequence[str] = ()) -> pd.DataFrame:
    """Each pairwise difference of a per-group metric between estimable groups, with its bootstrap CI.

    Parameters
    ----------
    y_true, prob, sensitive : array-like of shape (n,)
        Outcome, calibrated probability and the group of each row (one attribute).
    metrics : list of str
        Keys of :data:`~clinops.fairness.metrics.SUBGROUP_METRICS` (the policy's pairwise limits).
    threshold, n_boot, seed, ci : as for :func:`clinops.fairness.subgroup_table` (the same
        resamples: a difference is taken within each resample).
    min_group_size : int
        Groups with fewer rows, or with an undefined point value, are not compared.
    attribute : str
        Written in the ``attribute`` column.
    exclude : sequence of str
        Groups never compared (e.g. :data:`~clinops.fairness.groups.SEX_OUTSIDE_GAPS`).

    Returns
    -------
    DataFrame
        ``attribute``, ``metric``, ``group_a`` (higher point value), ``group_b``, ``gap``
        (``value_a - value_b``), ``ci_lo``, ``ci_hi`` (percentile CI of the resampled
        ``value_a - value_b``; NaN when ``n_boot`` is 0).

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> g = np.repeat(["A", "B"], 400)
    >>> y = (rng.random(800) < 0.3).astype(int)
    >>> prob = np.clip(np.where(g == "A", 0.6 * y + 0.4 * rng.random(800), rng.random(800)), 0, 1)
    >>> out = pairwise_gap_intervals(y, prob, g, metrics=["auroc"], threshold=0.5, n_boot=200, seed=0)
    >>> out.loc[0, "group_a"], bool(out.loc[0, "ci_lo"] > 0.3)
    ('A', True)
    """
    y = binary_labels(y_true, "y_true")
    p = probabilities(prob, len(y), "prob")
    unknown = [m for m in metrics if m not in SUBGROUP_METRICS]
    if unknown:
        raise ValueError(f"metrics: unknown metric {unknown[0]!r}; allowed: {list(SUBGROUP_METRICS)}")
    labels = group_labels(sensitive, len(y), attribute)
    order = group_order(labels)
    codes = np.array([order.index(v) for v in labels], dtype=np.int64)
    pred = (p >= threshold).astype(np.int64)
    point = {m: np.array([SUBGROUP_METRICS[m].point(y[codes == i], p[codes == i], threshold)
                          if (codes == i).sum() >= min_group_size and order[i] not in exclude else np.nan
                          for i in range(len(order))])
             for m in metrics}
    boot: dict[str, np.ndarray] = {}
    if n_boot > 0:
        rates = {SUBGROUP_METRICS[m].rate for m in metrics}
        order_idx, block, n_blocks = score_order(p)
        parts: list[dict[str, np.ndarray]] = []
        for w in resample_weights(len(y), int(n_boot), seed):
            counts = confusion_counts(w, codes, len(order), y, pred)
            if "auroc" in rates:
                counts["auroc"] = weighted_auroc(w, codes, len(order), y, order_idx, block, n_blocks)
            parts.append({r: RATES[r](counts) for r in rates})
        boot = {r: np.concatenate([part[r] for part in parts], axis=0) for r in rates}
    rows = []
    for m in metrics:
        ok = [i for i in range(len(order)) if np.isfinite(point[m][i])]
        for i, j in combinations(ok, 2):
            a, b = (i, j) if point[m][i] >= point[m][j] else (j, i)
            lo = hi = np.nan
            if n_boot > 0:
                diff = boot[SUBGROUP_METRICS[m].rate][:, a] - boot[SUBGROUP_METRICS[m].rate][:, b]
                los, his, _ = percentile_interval(diff[:, None], ci)
                lo, hi = float(los[0]), float(his[0])
            rows.append({"attribute": attribute, "metric": m, "group_a": order[a], "group_b": order[b],
                         "gap": float(point[m][a] - point[m][b]), "ci_lo": lo, "ci_hi": hi})
    return pd.DataFrame(rows, columns=["attribute", "metric", "group_a", "group_b", "gap", "ci_lo", "ci_hi"])


def alerts_by_rule(policy: FairnessPolicy, *, pairwise: pd.DataFrame, gaps: pd.DataFrame | None = None
                   ) -> pd.DataFrame:
    """Every gap the policy limits, with its CI, its limit and the verdict of each rule.

    Parameters
    ----------
    policy : FairnessPolicy
        Its limits (``pairwise_gap_limits``, ``disparity_limits``); its ``alert_rule`` is
        reported in the ``rule_in_force`` column, both rules are applied.
    pairwise : DataFrame from :func:`pairwise_gap_intervals` (attributes concatenated)
    gaps : DataFrame from :func:`clinops.fairness.fairness_gaps`, optional

    Returns
    -------
    DataFrame
        ``metric``, ``attribute``, ``group_a``, ``group_b``, ``gap``, ``ci_lo``, ``ci_hi``,
        ``limit``, ``alert_point``, ``alert_ci_excludes``, ``rule_in_force``.

    Examples
    --------
    >>> pw = pd.DataFrame({"attribute": ["sex"], "metric": ["auroc"], "group_a": ["M"], "group_b": ["F"],
    ...                    "gap": [0.05], "ci_lo": [0.01], "ci_hi": [0.09]})
    >>> t = alerts_by_rule(FairnessPolicy(), pairwise=pw)
    >>> t[["gap", "limit", "alert_point", "alert_ci_excludes"]].to_dict("records")
    [{'gap': 0.05, 'limit': 0.03, 'alert_point': True, 'alert_ci_excludes': False}]
    """
    rows = []
    for _, r in pairwise.iterrows():
        limit = policy.pairwise_gap_limits.get(r["metric"])
        if limit is not None:
            rows.append({"metric": r["metric"], "attribute": r["attribute"], "group_a": r["group_a"],
                         "group_b": r["group_b"], "gap": float(r["gap"]), "ci_lo": float(r["ci_lo"]),
                         "ci_hi": float(r["ci_hi"]), "limit": float(limit)})
    for _, r in (gaps if gaps is not None else pd.DataFrame()).iterrows():
        limit = policy.disparity_limits.get(r["metric"])
        if limit is not None:
            rows.append({"metric": r["metric"], "attribute": r["attribute"], "group_a": r["group_high"],
                         "group_b": r["group_low"], "gap": float(r["value"]), "ci_lo": float(r["ci_lo"]),
                         "ci_hi": float(r["ci_hi"]), "limit": float(limit)})
    out = pd.DataFrame(rows, columns=["metric", "attribute", "group_a", "group_b", "gap", "ci_lo", "ci_hi", "limit"])
    for rule in ALERT_RULES:
        out[f"alert_{rule}"] = [rule_fires(g, lo, lim, rule) for g, lo, lim in zip(out["gap"], out["ci_lo"], out["limit"])]
    out["rule_in_force"] = policy.alert_rule
    return out

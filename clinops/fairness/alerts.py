"""Fairness alerts: the policy applied to Table 2 and the gaps; every alert means human review.

Examples
--------
>>> import pandas as pd
>>> table = pd.DataFrame({"n": [300, 120, 180], "auroc": [0.85, 0.83, 0.87], "estimable": True},
...                      index=pd.MultiIndex.from_tuples(
...                          [("overall", "all"), ("sex", "F"), ("sex", "M")], names=["attribute", "group"]))
>>> [a.message for a in fairness_alerts(table, FairnessPolicy())]  # doctest: +NORMALIZE_WHITESPACE
['fairness alert (sex): auroc differs by 0.040 between M and F (limit 0.030); action: human review']
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from itertools import combinations
from collections.abc import Collection, Mapping
from typing import Any

import numpy as np
import pandas as pd

from clinops.fairness.alert_rules import rule_fires
from clinops.fairness.groups import OVERALL
from clinops.fairness.policy import ALERT_ACTION, FairnessPolicy

__all__ = ["FairnessAlert", "fairness_alerts"]


@dataclass(frozen=True)
class FairnessAlert:
    """One fairness rule broken: ``metric`` differs by ``gap`` > ``threshold`` between groups.

    ``group_a`` has the higher value (``value_a``), ``group_b`` the lower. For a gap metric
    (:data:`~clinops.fairness.metrics.GAP_METRICS`) ``value_a``/``value_b`` are the two groups'
    component rates. ``action`` is always ``"human_review"``.
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
        """One line for reviewers: what differs, by how much, against which limit."""
        return (f"fairness alert ({self.attribute}): {self.metric} differs by {self.gap:.3f} between "
                f"{self.group_a} and {self.group_b} (limit {self.threshold:.3f}); action: human review")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return {k: (float(v) if isinstance(v, (float, np.floating)) else v) for k, v in asdict(self).items()}


def fairness_alerts(subgroup_table: pd.DataFrame, policy: FairnessPolicy, *,
                    gaps: pd.DataFrame | None = None, pairwise: pd.DataFrame | None = None,
                    exclude: Mapping[str, Collection[str]] | None = None) -> list[FairnessAlert]:
    """Apply the policy to a :func:`~clinops.fairness.subgroup_table` (and optionally gaps).

    Parameters
    ----------
    subgroup_table : DataFrame from :func:`~clinops.fairness.subgroup_table`
        Only estimable groups (and, when the table has an ``n`` column, groups with at least
        ``policy.min_group_size`` rows) within the same attribute are compared; never a group
        with the overall row, never groups of different attributes.
    policy : FairnessPolicy
    gaps : DataFrame from :func:`~clinops.fairness.fairness_gaps` (one or several
        concatenated), optional
    pairwise : DataFrame from :func:`~clinops.fairness.pairwise_gap_intervals`, optional
        The CIs of the pairwise differences; required when ``policy.alert_rule`` is
        ``ci_excludes`` and the policy has pairwise limits.
    exclude : mapping attribute -> groups, optional
        Groups of Table 2 never compared (e.g. ``{"sex": SEX_OUTSIDE_GAPS}``: reported, not gapped).

    Returns
    -------
    list of FairnessAlert, largest gap first. Under ``point`` a gap *strictly above* its limit
    alerts; under ``ci_excludes`` a gap whose CI lower bound is strictly above it.
    """
    rule = policy.alert_rule
    if rule == "ci_excludes" and policy.pairwise_gap_limits and pairwise is None:
        raise ValueError("pairwise: required when alert_rule is 'ci_excludes' (the pairwise gaps' CIs, "
                         "from pairwise_gap_intervals)")
    ci_lo = ({(str(r.attribute), str(r.metric), str(r.group_a), str(r.group_b)): float(r.ci_lo)
              for r in pairwise.itertuples()} if pairwise is not None else {})
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
            keep &= ~sub.index.isin(list((exclude or {}).get(str(attr), ())))
            sub = sub[keep]
            for ga, gb in combinations(sub.index, 2):
                va, vb = float(sub.loc[ga, metric]), float(sub.loc[gb, metric])
                if va < vb:
                    ga, gb, va, vb = gb, ga, vb, va
                gap = va - vb
                lo = ci_lo.get((str(attr), metric, str(ga), str(gb)), np.nan)
                if rule_fires(gap, lo, float(limit), rule):
                    alerts.append(FairnessAlert(str(attr), str(ga), str(gb), metric, gap, float(limit), va, vb))
    if gaps is not None and policy.disparity_limits:
        for _, row in gaps.iterrows():
            limit = policy.disparity_limits.get(row["metric"])
            if limit is not None and rule_fires(float(row["value"]), float(row.get("ci_lo", np.nan)), float(limit), rule):
                alerts.append(FairnessAlert(str(row["attribute"]), str(row["group_high"]), str(row["group_low"]),
                                            str(row["metric"]), float(row["value"]), float(limit)))
    return sorted(alerts, key=lambda a: -a.gap)

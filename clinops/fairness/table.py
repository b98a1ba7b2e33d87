"""Table 2: disaggregated performance, overall and per group, with bootstrap CIs.

Examples
--------
>>> import numpy as np
>>> y = np.array([0, 1, 0, 1, 0, 1, 1, 0])
>>> prob = np.array([0.2, 0.8, 0.6, 0.7, 0.1, 0.3, 0.9, 0.4])
>>> sex = np.array(["F", "F", "F", "F", "M", "M", "M", "M"])
>>> t = subgroup_table(y, prob, {"sex": sex}, threshold=0.5, n_boot=0, seed=0, min_group_size=2)
>>> t.index.tolist()
[('overall', 'all'), ('sex', 'F'), ('sex', 'M')]
>>> t.loc[("sex", "F"), ["auroc", "sensitivity", "specificity"]].tolist()
[1.0, 1.0, 0.5]
>>> bool(t.loc[("sex", "M"), "estimable"])
True
"""
from __future__ import annotations

from collections.abc import Mapping
from functools import partial
from typing import Any

import numpy as np
import pandas as pd
from fairlearn.metrics import MetricFrame

from clinops.bootstrap import confusion_counts, percentile_interval, resample_weights, score_order, weighted_auroc
from clinops.fairness.groups import OVERALL, group_labels, group_order
from clinops.fairness.metrics import RATES, SUBGROUP_METRICS
from clinops.labels import binary_labels, probabilities

__all__ = ["subgroup_table", "check_common"]


def check_common(threshold: float, n_boot: int, ci: float, min_group_size: int) -> None:
    """Refuse a threshold, resample count, CI level or minimum group size out of its range."""
    if not (0.0 < float(threshold) < 1.0):
        raise ValueError(f"threshold: must lie strictly between 0 and 1, got {threshold}")
    if not isinstance(n_boot, (int, np.integer)) or n_boot < 0:
        raise ValueError(f"n_boot: must be a non-negative integer, got {n_boot!r}")
    if not (0.0 < float(ci) < 1.0):
        raise ValueError(f"ci: must lie strictly between 0 and 1, got {ci}")
    if not isinstance(min_group_size, (int, np.integer)) or min_group_size < 1:
        raise ValueError(f"min_group_size: must be a positive integer, got {min_group_size!r}")


def _undefined(requires: str, events: int, n: int) -> bool:
    return ((requires == "both_classes" and (events == 0 or events == n))
            or (requires == "events" and events == 0)
            or (requires == "non_events" and events == n))


def subgroup_table(y_true: Any, prob: Any, groups: Mapping[str, Any], *, threshold: float,
                   n_boot: int = 1000, seed: int | None, min_group_size: int = 30,
                   ci: float = 0.95) -> pd.DataFrame:
    """Disaggregated performance (Table 2) with bootstrap CIs.

    A group with fewer than ``min_group_size`` rows, or with a single outcome class, is
    reported as NOT ESTIMABLE (NaN plus ``estimable = False`` and the reason in ``note``),
    never as a noisy number.

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
        Bootstrap resamples (0 = no CIs). The same resamples serve every attribute
        (:mod:`clinops.bootstrap`).
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
        ``events``, ``prevalence``, then for each metric of
        :data:`~clinops.fairness.metrics.SUBGROUP_METRICS` the point value and
        ``<metric>_lo`` / ``<metric>_hi``, then ``estimable`` (bool) and ``note`` (why a value
        is missing, or how many resamples a CI rests on when fewer than ``n_boot``).
    """
    y = binary_labels(y_true, "y_true")
    p = probabilities(prob, len(y), "prob")
    check_common(threshold, n_boot, ci, min_group_size)
    if not isinstance(groups, Mapping) or not groups:
        raise ValueError("groups: must be a non-empty mapping of attribute name -> labels")
    if OVERALL[0] in groups:
        raise ValueError("groups: 'overall' is reserved for the all-stays row; rename that attribute")
    attrs = {str(k): group_labels(v, len(y), str(k)) for k, v in groups.items()}
    pred = (p >= threshold).astype(np.int64)
    names = list(SUBGROUP_METRICS)  # read at call time: a registered metric is a new column

    # point estimates: fairlearn MetricFrame with scikit-learn metrics
    metrics = {m: partial(spec.point, threshold=float(threshold)) for m, spec in SUBGROUP_METRICS.items()}
    rows: list[dict[str, Any]] = []
    index: list[tuple[str, str]] = []
    layouts: list[tuple[str, np.ndarray, list[str]]] = [(OVERALL[0], np.zeros(len(y), dtype=np.int64), [OVERALL[1]])]
    for name, labels in attrs.items():
        order = group_order(labels)
        lookup = {g: i for i, g in enumerate(order)}
        layouts.append((name, np.array([lookup[v] for v in labels], dtype=np.int64), order))

    for name, codes, order in layouts:
        if name == OVERALL[0]:
            per_group = {OVERALL[1]: {m: metrics[m](y, p) for m in names}}
        else:
            mf = MetricFrame(metrics=metrics, y_true=y, y_pred=p, sensitive_features=pd.Series(attrs[name], name=name))
            by = mf.by_group
            per_group = {str(g): {m: float(by.loc[g, m]) for m in names} for g in by.index}
        for gi, g in enumerate(order):
            mask = codes == gi
            n_g, ev = int(mask.sum()), int(y[mask].sum())
            row: dict[str, Any] = {"n": n_g, "events": ev, "prevalence": ev / n_g if n_g else np.nan}
            reasons: list[str] = []
            vals = dict(per_group[g])
            if n_g < min_group_size:
                reasons.append(f"NOT ESTIMABLE: n={n_g} < min_group_size={min_group_size}")
                vals = {m: np.nan for m in names}
            elif ev == 0 or ev == n_g:
                reasons.append(f"NOT ESTIMABLE: one outcome class only ({ev} events in {n_g})")
                for m, spec in SUBGROUP_METRICS.items():
                    if _undefined(spec.requires, ev, n_g):
                        vals[m] = np.nan
            if n_g >= min_group_size and int(pred[mask].sum()) == 0:
                reasons += [spec.note_if_no_positive_prediction for spec in SUBGROUP_METRICS.values()
                            if spec.note_if_no_positive_prediction]
            for m in names:
                row[m] = vals[m]
                row[f"{m}_lo"] = np.nan
                row[f"{m}_hi"] = np.nan
            row["estimable"] = not any(r.startswith("NOT ESTIMABLE") for r in reasons)
            row["_reasons"] = reasons
            rows.append(row)
            index.append((name, g))

    # bootstrap CIs: same resamples for every attribute (and as fairlearn would draw them)
    if n_boot > 0:
        order_idx, block, n_blocks = score_order(p)
        rates = {spec.rate for spec in SUBGROUP_METRICS.values()}
        parts: list[list[dict[str, np.ndarray]]] = [[] for _ in layouts]
        for w in resample_weights(len(y), int(n_boot), seed):
            for k, (_, codes, order) in enumerate(layouts):
                counts = confusion_counts(w, codes, len(order), y, pred)
                if "auroc" in rates:
                    counts["auroc"] = weighted_auroc(w, codes, len(order), y, order_idx, block, n_blocks)
                parts[k].append({r: RATES[r](counts) for r in rates})
        r = 0
        for k, (name, codes, order) in enumerate(layouts):
            boot = {key: np.concatenate([part[key] for part in parts[k]], axis=0) for key in parts[k][0]}
            for gi in range(len(order)):
                row = rows[r + gi]
                for m, spec in SUBGROUP_METRICS.items():
                    if not np.isfinite(row[m]):
                        continue
                    lo, hi, n_def = percentile_interval(boot[spec.rate][:, [gi]], ci)
                    row[f"{m}_lo"], row[f"{m}_hi"] = float(lo[0]), float(hi[0])
                    if int(n_def[0]) < n_boot:
                        row["_reasons"].append(f"{m} CI from {int(n_def[0])} of {n_boot} resamples")
            r += len(order)

    table = pd.DataFrame(rows, index=pd.MultiIndex.from_tuples(index, names=["attribute", "group"]))
    table["note"] = table.pop("_reasons").map("; ".join)
    cols = ["n", "events", "prevalence"]
    for m in names:
        cols += [m, f"{m}_lo", f"{m}_hi"]
    return table[cols + ["estimable", "note"]]

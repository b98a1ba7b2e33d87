"""Sensitive groups: the paper's age groups, checked group labels and their reporting order.

Examples
--------
>>> age_groups([30, 50, 70, 85]).astype(str).tolist()
['18-44', '45-64', '65-79', '80+']
>>> group_order(np.array(["80+", "18-44", "45-64"]))
['18-44', '45-64', '80+']
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

__all__ = ["OVERALL", "SEX_OUTSIDE_GAPS", "age_groups", "sex_groups", "group_labels", "group_order"]

#: Sex groups reported in Table 2 but left out of the two-group (male/female) gaps and alerts:
#: stays whose sex is missing ('unknown') or neither M nor F ('other') are audited, not dropped,
#: and a gap "between male and unknown" would measure the recording, not the patients.
SEX_OUTSIDE_GAPS: tuple[str, ...] = ("unknown", "other")

#: Label of the row that covers every stay in :func:`clinops.fairness.subgroup_table`.
OVERALL = ("overall", "all")


def group_labels(values: Any, n: int, name: str) -> np.ndarray:
    """Group labels of one attribute as strings, refused when missing or of the wrong length."""
    g = pd.Series(np.asarray(values, dtype=object) if not isinstance(values, pd.Series) else values.to_numpy(dtype=object))
    if len(g) != n:
        raise ValueError(f"groups[{name!r}]: must have {n} values (as y_true), got {len(g)}")
    missing = g.isna()
    if missing.any():
        raise ValueError(f"groups[{name!r}]: must not contain missing values ({int(missing.sum())} found); "
                         "label them explicitly (e.g. 'unknown') so they are reported, not dropped")
    return g.astype(str).to_numpy()


def group_order(labels: np.ndarray) -> list[str]:
    """Groups in a stable order: natural order for the age labels, sorted otherwise."""
    uniq = list(dict.fromkeys(sorted(set(labels.tolist()))))

    def key(s: str) -> tuple[float, str]:
        head = s.split("-")[0].rstrip("+")
        try:
            return (float(head), s)
        except ValueError:
            return (math.inf, s)

    return sorted(uniq, key=key)


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


def sex_groups(codes: Any) -> pd.Series:
    """Sex codes of a task table ('M', 'F', 'unknown', 'other'; missing = 'unknown') as group labels.

    Examples
    --------
    >>> sex_groups(pd.Series(["M", "F", None, "other"])).tolist()
    ['male', 'female', 'unknown', 'other']
    """
    s = pd.Series(codes, dtype=object) if not isinstance(codes, pd.Series) else codes.astype(object)
    return s.map({"M": "male", "F": "female"}).fillna(s.where(s.notna(), "unknown")).astype(str)

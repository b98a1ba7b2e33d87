"""The forest plot of Table 2: per-group metrics with their CIs, one panel per metric."""
from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from clinops.fairness.groups import OVERALL
from clinops.fairness.metrics import SUBGROUP_METRICS

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.figure import Figure

__all__ = ["plot_subgroups"]


def plot_subgroups(table: pd.DataFrame, *, metrics: Sequence[str] | None = None,
                   title: str | None = None) -> "Figure":
    """Forest plot of per-group metrics with their CIs.

    Parameters
    ----------
    table : DataFrame from :func:`~clinops.fairness.subgroup_table`
    metrics : which metric columns to draw, one panel each (default: every registered metric)
    title : figure title

    Returns
    -------
    matplotlib.figure.Figure
        One panel per metric; groups on the y axis (overall first), point and CI per group,
        a dashed line at the overall value, "not estimable" written where there is no value.
    """
    # matplotlib is imported only when a figure is drawn (heavy; the server never draws).
    from matplotlib.figure import Figure

    metrics = list(SUBGROUP_METRICS) if metrics is None else list(metrics)
    labels = [("Overall" if a == OVERALL[0] else f"{a}: {g}") + f" (n={int(table.loc[(a, g), 'n'])})"
              for a, g in table.index]
    ypos = np.arange(len(labels))[::-1]
    fig = Figure(figsize=(3.0 * len(metrics) + 2.0, 0.45 * len(labels) + 1.4), layout="constrained")
    axes = fig.subplots(1, len(metrics), sharey=True, squeeze=False)[0]
    for ax, m in zip(axes, metrics):
        vals = table[m].to_numpy(dtype=float)
        lo = table[f"{m}_lo"].to_numpy(dtype=float)
        hi = table[f"{m}_hi"].to_numpy(dtype=float)
        ok = np.isfinite(vals)
        xerr = np.vstack([np.where(np.isfinite(lo), vals - lo, 0), np.where(np.isfinite(hi), hi - vals, 0)])
        # a percentile bootstrap interval need not contain the point estimate (small groups):
        # the bar then ends at the point on that side (matplotlib refuses negative lengths)
        xerr = np.maximum(np.nan_to_num(xerr), 0.0)
        ax.errorbar(vals[ok], ypos[ok], xerr=xerr[:, ok], fmt="o", color="k", ecolor="0.4", capsize=3, ms=4)
        if np.isfinite(vals[0]):
            ax.axvline(vals[0], ls="--", color="tab:blue", lw=1)
        finite = np.concatenate([vals[ok], lo[np.isfinite(lo)], hi[np.isfinite(hi)]])
        left = float(finite.min()) if finite.size else 0.0
        for yv, good in zip(ypos, ok):
            if not good:
                ax.text(left, yv, "not estimable", va="center", fontsize=8, color="tab:red")
        ax.set_title(SUBGROUP_METRICS[m].display if m in SUBGROUP_METRICS else m)
        ax.grid(axis="x", alpha=0.3)
    axes[0].set_yticks(ypos, labels)
    if title:
        fig.suptitle(title)
    return fig

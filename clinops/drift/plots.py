"""Figures of a monitored stream: the score stream with its alarms, PSI per feature over time."""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

__all__ = ["plot_psi_over_time", "plot_stream"]


def plot_stream(timeline: pd.DataFrame, alarms: pd.DataFrame, *, change_at_hours: float | None = None,
                title: str | None = None):
    """Score stream with the change point and the alarms.

    Parameters
    ----------
    timeline, alarms : from :func:`simulate_stream` (or a monitor's ``timeline()``/``alarms()``)
    change_at_hours : draws a vertical line at the change point

    Returns
    -------
    matplotlib.figure.Figure
        Top: mean score per evaluation (dots), over the PSI window (line) and ADWIN's estimate
        (line), alarms as markers. Bottom: largest feature PSI with the watch/alert levels.
    """
    # matplotlib is needed only for figures: deferred on purpose
    from matplotlib.figure import Figure

    fig = Figure(figsize=(10, 5.5), layout="constrained")
    ax, ax2 = fig.subplots(2, 1, sharex=True, height_ratios=[2, 1])
    t = timeline["t_hours"].to_numpy()
    ax.plot(t, timeline["score_mean_batch"], ".", ms=2, color="0.7", label="mean score per 15-min evaluation")
    ax.plot(t, timeline["score_mean_window"], color="tab:blue", lw=1.2, label="mean score, PSI window")
    ax.plot(t, timeline["adwin_mean"], color="tab:green", lw=1.2, label="ADWIN mean estimate")
    styles = {"adwin": ("v", "tab:green"), "page_hinkley": ("^", "tab:purple")}
    ytop = np.nanmax(timeline[["score_mean_window", "adwin_mean"]].to_numpy()) if len(timeline) else 1.0
    for det, (marker, color) in styles.items():
        sub = alarms[alarms["detector"] == det]
        if len(sub):
            ax.plot(sub["t_hours"], np.full(len(sub), ytop * 1.05), marker, color=color, ls="none",
                    label=f"{det} alarm ({len(sub)})")
    psi_cols = [c for c in timeline.columns if c.startswith("psi[")]
    if psi_cols:
        mx = timeline[psi_cols].max(axis=1)
        ax2.plot(t, mx, color="tab:red", lw=1.2, label="largest feature PSI")
        sub = alarms[(alarms["detector"] == "psi") & (alarms["kind"] == "drift")]
        if len(sub):
            ax2.plot(sub["t_hours"], sub["value"], "o", color="tab:red", ms=4, label=f"PSI drift alarm ({len(sub)})")
    for a in (ax, ax2):
        if change_at_hours is not None:
            a.axvline(change_at_hours, color="k", ls="--", lw=1, label="change point" if a is ax else None)
        a.grid(alpha=0.3)
    ax2.axhline(0.1, color="orange", ls=":", lw=1)
    ax2.axhline(0.2, color="red", ls=":", lw=1)
    ax.set_ylabel("predicted score")
    ax2.set_ylabel("PSI")
    ax2.set_xlabel("simulated time (hours)")
    ax.legend(fontsize=7, loc="upper left")
    ax2.legend(fontsize=7, loc="upper left")
    if title:
        fig.suptitle(title)
    return fig


def plot_psi_over_time(timeline: pd.DataFrame, *, features: Sequence[str] | None = None, top: int = 6,
                       watch: float = 0.1, alert: float = 0.2, change_at_hours: float | None = None,
                       title: str | None = None):
    """PSI per feature over time.

    Parameters
    ----------
    timeline : from :func:`simulate_stream` / :meth:`StreamMonitor.timeline`
    features : which features to draw (default: the ``top`` with the largest PSI reached)
    watch, alert : PSI levels drawn as horizontal lines
    change_at_hours : vertical line at the change point

    Returns
    -------
    matplotlib.figure.Figure
    """
    # matplotlib is needed only for figures: deferred on purpose
    from matplotlib.figure import Figure

    cols = {c[4:-1]: c for c in timeline.columns if c.startswith("psi[")}
    if features is None:
        peak = {f: np.nanmax(timeline[c].to_numpy()) if timeline[c].notna().any() else -1 for f, c in cols.items()}
        features = sorted(peak, key=lambda f: -peak[f])[:top]
    unknown = [f for f in features if f not in cols]
    if unknown:
        raise KeyError(f"features: no PSI column for {unknown}")
    fig = Figure(figsize=(10, 4), layout="constrained")
    ax = fig.subplots()
    for f in features:
        ax.plot(timeline["t_hours"], timeline[cols[f]], lw=1.2, label=f)
    ax.axhline(watch, color="orange", ls=":", lw=1, label=f"watch ({watch:g})")
    ax.axhline(alert, color="red", ls=":", lw=1, label=f"alert ({alert:g})")
    if change_at_hours is not None:
        ax.axvline(change_at_hours, color="k", ls="--", lw=1, label="change point")
    ax.set_xlabel("simulated time (hours)")
    ax.set_ylabel("PSI (window vs. training)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncol=2)
    if title:
        fig.suptitle(title)
    return fig

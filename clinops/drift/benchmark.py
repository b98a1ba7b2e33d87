"""The drift benchmark: detection delay and false alarms over many seeded streams, per detector.

One run is a Poisson stream (:func:`clinops.drift.simulate_stream`) through a fresh monitor
built by ``new_monitor``: ``change_at_hours`` of unshifted admissions, then ``after_hours`` of
one scenario's shifted admissions; a no-shift run streams unshifted admissions only. A
detector's delay is its first alarm after the change (simulated hours and admissions; alarms
are dated at the monitor's evaluation times); a run with no alarm within ``after_hours`` is
undetected, and counts as an infinite delay in the quantiles (a median of "not detected" is
reported as such, not hidden). False alarms per 30 days pool every alarm before a change (and
every alarm of a no-shift run) over the in-control hours streamed.

Examples
--------
>>> delay_quantiles([1.0, 2.0, 3.0, np.inf])          # one run of four undetected
(2.5, nan)
"""
from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from clinops.drift.monitor import StreamMonitor
from clinops.drift.simulate import simulate_stream
from clinops.drift.summary import stream_summary

__all__ = ["COMBINED", "NO_SHIFT", "StreamPool", "benchmark_runs", "benchmark_table", "delay_quantiles", "targets_verdict"]

#: the scenario name of the no-shift runs
NO_SHIFT = "no shift"
#: the combined monitor's row: every budgeted detector (score and feature streams), not the PSI
COMBINED = "combined"


@dataclass(frozen=True)
class StreamPool:
    """Admissions a stream draws from: scores (n,) and the encoded features (n, p)."""

    scores: np.ndarray
    X: pd.DataFrame


def delay_quantiles(delays: Sequence[float]) -> tuple[float, float]:
    """Median and 90th percentile of delays, undetected runs as +inf; NaN where that quantile is undetected."""
    d = np.sort(np.asarray(delays, dtype=float))
    if len(d) == 0:
        return float("nan"), float("nan")
    with np.errstate(invalid="ignore"):  # interpolating towards an undetected (+inf) run
        out = [float(np.quantile(d, q, method="linear")) if np.isfinite(np.quantile(d, q, method="higher")) else np.nan
               for q in (0.5, 0.9)]
    return out[0], out[1]


def benchmark_runs(new_monitor: Callable[[], StreamMonitor], *, before: StreamPool,
                   scenarios: Mapping[str, StreamPool], seeds: Sequence[int], rate_per_hour: float,
                   change_at_hours: float, after_hours: float, no_shift_hours: float) -> pd.DataFrame:
    """Every (scenario, seed, detector): false alarms, in-control hours, detection and delay.

    Parameters
    ----------
    new_monitor : callable returning a fresh :class:`StreamMonitor` (the one the workflow runs)
    before : the unshifted pool; scenarios : name -> shifted pool
    seeds : one stream per seed and scenario (and one no-shift stream per seed)
    rate_per_hour, change_at_hours, after_hours, no_shift_hours : the streams' clock
    """
    if not len(seeds):
        raise ValueError("seeds: need at least one seed")
    rows = []
    for seed in seeds:
        for name, pool in [*scenarios.items(), (NO_SHIFT, None)]:
            monitor = new_monitor()
            shifted = pool is not None
            duration = change_at_hours + after_hours if shifted else no_shift_hours
            _, alarms = simulate_stream(before.scores, pool.scores if shifted else None, before.X,
                                        pool.X if shifted else None, monitor=monitor, rate_per_hour=rate_per_hour,
                                        change_at_hours=change_at_hours if shifted else None,
                                        duration_hours=duration, seed=int(seed))
            summary = stream_summary(alarms, change_at_hours=change_at_hours if shifted else None,
                                     duration_hours=duration)
            # the combined monitor is the budgeted detectors (PSI is kept for reporting, outside the budget)
            summary = summary.drop(index=["psi_watch", "any"])
            budgeted = summary.drop(index="psi_drift")
            first = budgeted["delay_hours"].idxmin() if budgeted["detected"].any() else None
            summary.loc[COMBINED] = {"false_alarms_before_change": int(budgeted["false_alarms_before_change"].sum()),
                                     "detected": first is not None,
                                     "delay_hours": budgeted.loc[first, "delay_hours"] if first else np.nan,
                                     "delay_admissions": budgeted.loc[first, "delay_admissions"] if first else np.nan}
            for detector, r in summary.iterrows():
                rows.append({"scenario": name, "seed": int(seed), "detector": detector,
                             "false_alarms": int(r["false_alarms_before_change"]),
                             "in_control_hours": change_at_hours if shifted else duration,
                             "detected": bool(r["detected"]) if shifted else False,
                             "delay_hours": float(r["delay_hours"]) if shifted and r["detected"] else np.inf,
                             "delay_admissions": float(r["delay_admissions"]) if shifted and r["detected"] else np.inf})
    return pd.DataFrame(rows)


def benchmark_table(runs: pd.DataFrame, *, bounds: Mapping[str, tuple[float, float]] | None = None) -> pd.DataFrame:
    """Per scenario and detector: runs, share detected, delay median / p90, false alarms per 30 days.

    ``bounds``: scenario -> (admissions, hours) of the CUSUM information bound, shown beside.

    Examples
    --------
    >>> runs = pd.DataFrame({"scenario": ["a"] * 2 + [NO_SHIFT] * 2, "seed": [0, 1] * 2, "detector": "any",
    ...                      "false_alarms": [0, 0, 1, 0], "in_control_hours": [48, 48, 360, 360],
    ...                      "detected": [True, True, False, False], "delay_hours": [2.0, 4.0, np.inf, np.inf],
    ...                      "delay_admissions": [20.0, 40.0, np.inf, np.inf]})
    >>> table = benchmark_table(runs, bounds={"a": (25.0, 2.5)})
    >>> table.loc[0, ["detected_share", "delay_hours_median", "bound_hours"]].astype(float).tolist()
    [1.0, 3.0, 2.5]
    >>> round(float(table.loc[1, "false_alarms_per_30_days"]), 3)     # 1 alarm in 720 + 96 h
    0.882
    """
    rows = []
    for (scenario, detector), g in runs.groupby(["scenario", "detector"], sort=False):
        shifted = scenario != NO_SHIFT
        med_h, p90_h = delay_quantiles(g["delay_hours"]) if shifted else (np.nan, np.nan)
        med_a, p90_a = delay_quantiles(g["delay_admissions"]) if shifted else (np.nan, np.nan)
        bound = (bounds or {}).get(scenario, (np.nan, np.nan))
        # false alarms pooled over every in-control stretch of this detector (all scenarios' pre-change hours)
        fa = runs[runs["detector"] == detector]
        rows.append({"scenario": scenario, "detector": detector, "runs": len(g),
                     "detected_share": float(g["detected"].mean()) if shifted else np.nan,
                     "delay_hours_median": med_h, "delay_hours_p90": p90_h,
                     "delay_admissions_median": med_a, "delay_admissions_p90": p90_a,
                     "false_alarms_per_30_days": float(fa["false_alarms"].sum() / fa["in_control_hours"].sum() * 720),
                     "bound_admissions": bound[0], "bound_hours": bound[1]})
    return pd.DataFrame(rows)


def targets_verdict(table: pd.DataFrame, *, scenario: str, max_median_hours: float = 6.0,
                    max_false_alarms_per_30_days: float = 1.0) -> dict[str, Any]:
    """The issue's targets for the combined monitor (:data:`COMBINED`): met or not, with the numbers.

    Examples
    --------
    >>> t = pd.DataFrame({"scenario": ["p", NO_SHIFT], "detector": [COMBINED, COMBINED],
    ...                   "delay_hours_median": [5.5, np.nan], "false_alarms_per_30_days": [0.4, 0.4]})
    >>> targets_verdict(t, scenario="p")["met"]
    True
    """
    row = table[(table["scenario"] == scenario) & (table["detector"] == COMBINED)]
    if row.empty:
        raise KeyError(f"scenario: {scenario!r} has no combined-monitor ({COMBINED!r}) row")
    median = float(row["delay_hours_median"].iloc[0])
    fa = float(row["false_alarms_per_30_days"].iloc[0])
    delay_ok = bool(median == median and median <= max_median_hours)
    fa_ok = bool(fa <= max_false_alarms_per_30_days)
    return {"median_delay_hours": median, "false_alarms_per_30_days": fa, "delay_met": delay_ok,
            "false_alarms_met": fa_ok, "met": delay_ok and fa_ok,
            "max_median_hours": max_median_hours, "max_false_alarms_per_30_days": max_false_alarms_per_30_days}

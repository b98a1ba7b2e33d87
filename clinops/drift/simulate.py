"""Controlled shifts and simulated streams: the paper's drift scenario and its detection run.

- :func:`simulate_prevalence_shift` / :func:`simulate_additive_shift`: one column changed on a
  random subset, every other feature unchanged;
- :func:`shift_scenario` / :func:`prevalence_shift_scenario`: AUROC before and after such a
  shift, for any model (:class:`ShiftScenario`);
- :func:`simulate_stream`: a Poisson stream in simulated clock time through a
  :class:`clinops.drift.StreamMonitor`, with a known change point.
"""
from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score

from clinops.drift.monitor import StreamMonitor

__all__ = ["ShiftScenario", "prevalence_shift_scenario", "shift_scenario", "simulate_additive_shift",
           "simulate_prevalence_shift", "simulate_stream"]

log = logging.getLogger("clinops.drift")

def _subset(X: pd.DataFrame, n: int | None, rng: np.random.Generator) -> pd.DataFrame:
    if n is None:
        return X.copy()
    if not isinstance(n, (int, np.integer)) or not (1 <= n <= len(X)):
        raise ValueError(f"n: must be an integer in [1, {len(X)}] (rows of X), got {n!r}")
    pos = np.sort(rng.choice(len(X), size=int(n), replace=False))
    return X.iloc[pos].copy()


def simulate_prevalence_shift(X: pd.DataFrame, column: str, target_prevalence: float, *,
                              n: int | None = None, seed: int) -> pd.DataFrame:
    """A random subset with one binary column moved to a target prevalence, nothing else changed.

    Parameters
    ----------
    X : DataFrame of shape (N, p)
    column : name of a 0/1 column (missing values allowed and left missing)
    target_prevalence : float in [0, 1]
        Wanted share of 1 among the non-missing values of ``column`` in the subset.
    n : int, optional
        Rows drawn at random without replacement (default: all rows).
    seed : int

    Returns
    -------
    DataFrame of shape (n, p)
        Same index labels as the chosen rows of ``X`` (so outcomes can be looked up). The
        smallest change that reaches the target: when raising the prevalence, randomly chosen
        0s become 1 (existing 1s stay); when lowering, randomly chosen 1s become 0. The count
        of 1s is ``round(target_prevalence * non-missing)``.
    """
    if column not in X.columns:
        raise KeyError(f"column: {column!r} not in X")
    if not (0.0 <= float(target_prevalence) <= 1.0):
        raise ValueError(f"target_prevalence: must lie in [0, 1], got {target_prevalence}")
    vals = pd.unique(X[column].dropna())
    if not set(np.asarray(vals, dtype=float).tolist()) <= {0.0, 1.0}:
        raise ValueError(f"X[{column!r}]: must be binary 0/1 for a prevalence shift; use "
                         f"simulate_additive_shift for a numeric column")
    rng = np.random.default_rng(seed)
    out = _subset(X, n, rng)
    col = out[column]
    present = col.notna().to_numpy()
    ones = present & (col.to_numpy(dtype=float, na_value=np.nan) == 1)
    zeros = present & ~ones
    want = int(round(float(target_prevalence) * present.sum()))
    have = int(ones.sum())
    new = col.to_numpy(dtype=float, na_value=np.nan).copy()
    if want > have:
        flip = rng.choice(np.flatnonzero(zeros), size=want - have, replace=False)
        new[flip] = 1.0
    elif want < have:
        flip = rng.choice(np.flatnonzero(ones), size=have - want, replace=False)
        new[flip] = 0.0
    out[column] = pd.Series(new, index=out.index).astype(X[column].dtype) if not np.isnan(new).any() \
        else pd.Series(new, index=out.index)
    return out


def simulate_additive_shift(X: pd.DataFrame, column: str, shift: float, *, n: int | None = None,
                            seed: int, lower: float | None = None, upper: float | None = None) -> pd.DataFrame:
    """A random subset with ``shift`` added to one numeric column (missing values stay missing).

    Parameters
    ----------
    X : DataFrame of shape (N, p)
    column : numeric column
    shift : amount added, in the column's units (e.g. +1 prior admission)
    n : rows drawn at random without replacement (default: all)
    seed : int
    lower, upper : optional clipping bounds (e.g. 0 for counts)

    Returns
    -------
    DataFrame of shape (n, p), index labels of the chosen rows.
    """
    if column not in X.columns:
        raise KeyError(f"column: {column!r} not in X")
    if not pd.api.types.is_numeric_dtype(X[column]):
        raise ValueError(f"X[{column!r}]: must be numeric for an additive shift")
    if not np.isfinite(shift):
        raise ValueError(f"shift: must be finite, got {shift}")
    out = _subset(X, n, np.random.default_rng(seed))
    out[column] = (out[column].astype(float) + float(shift)).clip(lower=lower, upper=upper)
    return out


@dataclass
class ShiftScenario:
    """AUROC before/after a controlled shift (see :func:`prevalence_shift_scenario`).

    ``relative_drop`` = (auroc_before - auroc_after) / auroc_before on the same rows (the
    shift's own effect); ``relative_drop_vs_full`` uses the AUROC on the whole set instead (the
    paper's 0.847 -> 0.793 comparison).
    """

    column: str
    prevalence_before: float
    prevalence_after: float
    n: int
    auroc_full: float
    auroc_before: float
    auroc_after: float
    relative_drop: float
    relative_drop_vs_full: float
    X_shifted: pd.DataFrame = field(repr=False)
    y: pd.Series = field(repr=False)
    scores_before: np.ndarray = field(repr=False)
    scores_after: np.ndarray = field(repr=False)

    def summary(self) -> dict[str, float]:
        return {k: v for k, v in asdict(self).items()
                if k not in {"X_shifted", "y", "scores_before", "scores_after"}}


def shift_scenario(predict_proba: Callable[[pd.DataFrame], Any], X: pd.DataFrame, y: Any, *,
                   column: str, n: int, seed: int, target_prevalence: float | None = None,
                   shift: float | None = None) -> ShiftScenario:
    """A controlled one-column shift for any model and task: compare AUROC before and after.

    A binary column is resampled to ``target_prevalence`` (:func:`simulate_prevalence_shift`,
    the paper's scenario); a numeric column is moved by ``shift`` units
    (:func:`simulate_additive_shift`). Exactly one of the two must be given.

    Parameters
    ----------
    predict_proba : callable DataFrame (m, p) -> array (m,) of P(outcome = 1)
    X : DataFrame (N, p) of test features; y : array-like (N,) of 0/1 outcomes (aligned with X)
    column, n, seed : which column, how many randomly chosen rows, the seed
    """
    if (target_prevalence is None) == (shift is None):
        raise ValueError("shift_scenario: give exactly one of target_prevalence (binary column) or shift (numeric)")
    if column not in X.columns:
        raise KeyError(f"column: {column!r} is not a feature of this task (features: {list(X.columns)})")
    y = pd.Series(np.asarray(y), index=X.index, name="y")
    if target_prevalence is not None:
        shifted = simulate_prevalence_shift(X, column, target_prevalence, n=n, seed=seed)
    else:
        shifted = simulate_additive_shift(X, column, float(shift), n=n, seed=seed)
    before = X.loc[shifted.index]
    yy = y.loc[shifted.index]
    s_full = np.asarray(predict_proba(X), dtype=float)
    s_before = np.asarray(predict_proba(before), dtype=float)
    s_after = np.asarray(predict_proba(shifted), dtype=float)
    a_full = float(roc_auc_score(y, s_full))
    a_before, a_after = float(roc_auc_score(yy, s_before)), float(roc_auc_score(yy, s_after))
    return ShiftScenario(column=column, prevalence_before=float(before[column].mean()),
                         prevalence_after=float(shifted[column].mean()), n=len(shifted),
                         auroc_full=a_full, auroc_before=a_before, auroc_after=a_after,
                         relative_drop=(a_before - a_after) / a_before,
                         relative_drop_vs_full=(a_full - a_after) / a_full,
                         X_shifted=shifted, y=yy, scores_before=s_before, scores_after=s_after)


def prevalence_shift_scenario(predict_proba: Callable[[pd.DataFrame], Any], X: pd.DataFrame, y: Any, *,
                              column: str, target_prevalence: float, n: int, seed: int) -> ShiftScenario:
    """The paper's drift scenario: resample one binary column to ``target_prevalence``.

    See :func:`shift_scenario`; ``prevalence_before``/``prevalence_after`` are the column's
    mean before and after on the chosen rows.
    """
    return shift_scenario(predict_proba, X, y, column=column, n=n, seed=seed,
                          target_prevalence=target_prevalence)


def simulate_stream(scores_before: Any, scores_after: Any, X_before: pd.DataFrame, X_after: pd.DataFrame | None, *,
                    monitor: StreamMonitor, rate_per_hour: float, change_at_hours: float | None,
                    duration_hours: float, seed: int,
                    progress: Callable[[float], None] | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Run a monitor on a Poisson stream of admissions in simulated clock time.

    Admissions arrive as a Poisson process of ``rate_per_hour`` (exponential gaps). Before
    ``change_at_hours`` each arrival is drawn from the *before* pool, from then on from the
    *after* pool; within a pool rows are drawn without replacement (a fresh random order once a
    pool is used up). With no ``scores_after`` the stream never changes (false-alarm runs).

    Parameters
    ----------
    scores_before : array (n_b,) -- predicted probabilities of the unshifted admissions
    scores_after : array (n_a,) or None -- of the shifted admissions (None: no change)
    X_before : DataFrame (n_b, p); X_after : DataFrame (n_a, p) or None -- their features
    monitor : a fresh :class:`StreamMonitor` (no admissions yet)
    rate_per_hour : admissions per hour
    change_at_hours : clock time of the change (None with no after pool)
    duration_hours : length of the simulated stream (e.g. 720 for 30 days)
    seed : int
    progress : callable(fraction done), optional

    Returns
    -------
    timeline : DataFrame, one row per evaluation (see :meth:`StreamMonitor.timeline`) plus
        ``phase`` ('before'/'after').
    alarms : DataFrame, one row per alarm plus ``after_change`` (bool), ``hours_after_change``
        and ``admissions_after_change`` (negative before the change; NaN with no change).
    """
    if not monitor.is_fresh:
        raise ValueError("monitor: must be fresh (no admissions yet); build a new StreamMonitor per run")
    if not (rate_per_hour > 0):
        raise ValueError(f"rate_per_hour: must be > 0, got {rate_per_hour}")
    if not (duration_hours > 0):
        raise ValueError(f"duration_hours: must be > 0, got {duration_hours}")
    sb = np.asarray(scores_before, dtype=float)
    if len(sb) != len(X_before) or len(sb) == 0:
        raise ValueError(f"scores_before, X_before: need the same non-zero length ({len(sb)} vs {len(X_before)})")
    has_after = scores_after is not None
    if has_after:
        sa = np.asarray(scores_after, dtype=float)
        if X_after is None or len(sa) != len(X_after) or len(sa) == 0:
            raise ValueError("scores_after, X_after: need the same non-zero length")
        if change_at_hours is None or not (0 <= change_at_hours < duration_hours):
            raise ValueError(f"change_at_hours: required in [0, duration_hours) with an after pool, got {change_at_hours}")
    elif change_at_hours is not None:
        raise ValueError("change_at_hours: given but no scores_after / X_after")

    rng = np.random.default_rng(seed)
    # arrival times: cumulative exponential gaps, generated with margin then cut at the duration
    n_guess = int(rate_per_hour * duration_hours + 10 * math.sqrt(rate_per_hour * duration_hours) + 20)
    times = np.cumsum(rng.exponential(1.0 / rate_per_hour, size=n_guess))
    while times[-1] < duration_hours:
        times = np.concatenate([times, times[-1] + np.cumsum(rng.exponential(1.0 / rate_per_hour, size=n_guess))])
    times = times[times < duration_hours]
    after = times >= change_at_hours if has_after else np.zeros(len(times), dtype=bool)

    def draws(k: int, pool: int) -> np.ndarray:
        reps = -(-k // pool) if k else 0
        return np.concatenate([rng.permutation(pool) for _ in range(reps)])[:k] if reps else np.empty(0, dtype=int)

    idx_b = draws(int((~after).sum()), len(sb))
    idx_a = draws(int(after.sum()), len(sa)) if has_after else np.empty(0, dtype=int)
    scores = np.empty(len(times))
    scores[~after] = sb[idx_b]
    frames = [X_before.iloc[idx_b].reset_index(drop=True)]
    if has_after:
        scores[after] = sa[idx_a]
        frames.append(X_after.iloc[idx_a].reset_index(drop=True))
    X = pd.concat(frames, ignore_index=True)   # before rows then after rows: same order as times
    step = 500
    for start in range(0, len(times), step):
        monitor.add_many(times[start:start + step], scores[start:start + step], X.iloc[start:start + step])
        if progress is not None:
            progress(min(1.0, (start + step) / max(len(times), 1)))
    monitor.advance(duration_hours)

    timeline = monitor.timeline()
    alarms = monitor.alarms()
    if has_after:
        n_before = int((~after).sum())
        timeline["phase"] = np.where(timeline["t_hours"] > change_at_hours, "after", "before")
        alarms["after_change"] = alarms["t_hours"] > change_at_hours
        alarms["hours_after_change"] = alarms["t_hours"] - change_at_hours
        alarms["admissions_after_change"] = alarms["n_seen"] - n_before
    else:
        timeline["phase"] = "before"
        alarms["after_change"] = False
        alarms["hours_after_change"] = np.nan
        alarms["admissions_after_change"] = np.nan
    log.info("stream: %d admissions over %.1f h, %d alarms", len(times), duration_hours, len(alarms))
    return timeline, alarms


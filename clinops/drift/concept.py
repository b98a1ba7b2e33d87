"""A concept shift (NOT the paper's scenario): P(y | x) changes for the shifted admissions.

The paper's scenario is a covariate shift: the ventilation flag changes and the model's
P(y | x) still holds, so its AUROC barely moves (issue 18: 0.838 -> 0.837 in the same rows),
and the suspension path never runs. To show that path, this scenario changes the outcome
mechanism itself: for a random ``fraction`` of the shifted admissions the outcome is redrawn
from the base rate, independently of x (an outcome the features no longer explain, e.g. a new
treatment or a coding change). The features and therefore the scores are unchanged, so
detectors on inputs and scores, and a confidence-based estimate (CBPE), cannot see it; only
outcomes can.
"""
from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["simulate_concept_shift"]


def simulate_concept_shift(y: Any, *, fraction: float, seed: int) -> np.ndarray:
    """Outcomes of the shifted admissions after a concept shift of strength ``fraction``.

    Parameters
    ----------
    y : array (n,) of 0/1 outcomes of the shifted admissions
    fraction : float in [0, 1]
        Share of admissions whose outcome is redrawn from Bernoulli(mean of ``y``),
        independently of their features (0: no concept shift; 1: outcomes unrelated to x).
    seed : int

    Returns
    -------
    array (n,) of 0/1: the same base rate in expectation, weaker link to x.

    Examples
    --------
    >>> y = np.array([0, 1] * 500)
    >>> same = simulate_concept_shift(y, fraction=0.0, seed=0)
    >>> bool((same == y).all())
    True
    >>> moved = simulate_concept_shift(y, fraction=1.0, seed=0)
    >>> bool(0.4 < moved.mean() < 0.6), bool(0.4 < (moved == y).mean() < 0.6)
    (True, True)
    """
    yy = np.asarray(y).astype(float).ravel()
    if len(yy) == 0 or not np.isin(yy, (0.0, 1.0)).all():
        raise ValueError("y: need a non-empty array of 0/1 outcomes")
    if not 0 <= fraction <= 1:
        raise ValueError(f"fraction: must lie in [0, 1], got {fraction}")
    rng = np.random.default_rng(seed)
    redraw = rng.random(len(yy)) < fraction
    fresh = (rng.random(len(yy)) < yy.mean()).astype(float)
    return np.where(redraw, fresh, yy).astype(int)

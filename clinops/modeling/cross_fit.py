"""Cross-fitting: out-of-fold raw scores over the whole training split, so no rows are held out.

``modeling.calibration: cross_fit`` replaces the paper's held-out slice. The training split is
cut into K folds (:func:`calibration_folds`: stratified by the outcome and, when subject ids are
given, grouped so that no subject has rows on both sides); for each fold a booster with the final
configuration is fitted on the other K - 1 folds (its own frozen medians and class weight) and
scores the fold (:func:`out_of_fold_scores`). Every training row then has a raw score from a
model that did not see it. One calibrator is fitted on all of them and the served booster is
refitted on the whole split: the logic of scikit-learn's ``CalibratedClassifierCV(ensemble=False)``,
written out because the booster is an ``xgboost.Booster`` trained on imputed inputs and the
conformal step needs the folds too (:func:`clinops.modeling.fit_final`).

What the out-of-fold scores are, and are not: each comes from a booster fitted on (K - 1) / K of
the rows, whereas the served booster is fitted on all of them; the calibrator assumes the two
score on the same scale (as ``CalibratedClassifierCV(ensemble=False)`` does).

Examples
--------
>>> import numpy as np
>>> y = np.array([0, 1] * 6)
>>> subject = np.repeat(np.arange(6), 2)          # two rows per subject
>>> folds = calibration_folds(y, n_splits=3, seed=0, groups=subject)
>>> sorted(np.concatenate([test for _, test in folds]).tolist()) == list(range(12))
True
>>> all(not set(subject[tr]) & set(subject[te]) for tr, te in folds)
True
"""
from __future__ import annotations

from typing import Any, Mapping

import numpy as np
import pandas as pd
import xgboost as xgb

from clinops import features
from clinops.labels import binary_labels
from clinops.modeling.cv import as_features, check_groups, stratified_folds
from clinops.modeling.xgb_config import check_max_bin, scale_pos_weight, train_params

__all__ = ["calibration_folds", "fit_booster", "out_of_fold_scores"]


def calibration_folds(y: np.ndarray, *, n_splits: int, seed: int,
                      groups: np.ndarray | None = None) -> list[tuple[np.ndarray, np.ndarray]]:
    """K disjoint folds covering every row: ``[(train positions, test positions), ...]``.

    Parameters
    ----------
    y : array of shape (n,)
        Binary outcomes (the folds are stratified by them).
    n_splits : int
        K >= 2 (the workflow uses ``modeling.cv_folds``).
    seed : int
        Shuffling seed.
    groups : array of shape (n,), optional
        Subject ids: with them the folds come from ``StratifiedGroupKFold`` and every subject's
        rows are in one fold only (a patient's later stay never scores with a model that saw an
        earlier one).

    Raises
    ------
    ValueError
        ``n_splits`` < 2, more folds than rows (or subjects), ``groups`` of the wrong length or
        with missing values.
    """
    labels = binary_labels(y, "y")
    if not isinstance(n_splits, (int, np.integer)) or n_splits < 2:
        raise ValueError(f"n_splits: must be an integer of at least 2, got {n_splits!r}")
    if groups is None and n_splits > len(labels):
        raise ValueError(f"n_splits: {n_splits} folds need at least as many rows, got {len(labels)}")
    g = check_groups(None if groups is None else np.asarray(groups, dtype=object), len(labels))
    # subject codes in order of first appearance: StratifiedGroupKFold's folds depend on how the
    # groups are labelled, and these are the folds the cross-fitted models have always had
    return stratified_folds(labels, n_splits, seed, groups=None if g is None else pd.factorize(g)[0])


def fit_booster(X: pd.DataFrame, y: np.ndarray, *, params: Mapping[str, Any], manifest: Any, seed: int,
                max_bin: int) -> tuple[xgb.Booster, pd.Series, float]:
    """One XGBoost fit as the final model is fitted: ``(booster, frozen medians, scale_pos_weight)``.

    Medians frozen on ``X`` (:func:`clinops.features.freeze_medians`), ``scale_pos_weight`` =
    negatives / positives of ``y``, the configuration ``params`` with ``seed``.
    """
    names = manifest.names
    medians = features.freeze_medians(X, manifest=manifest)
    X_imp, _ = features.impute(X, medians)
    spw = scale_pos_weight(y)
    max_bin = check_max_bin(max_bin)
    xgb_params, rounds = train_params(params, seed, spw, max_bin)
    dtrain = xgb.QuantileDMatrix(as_features(X_imp[names], "X (imputed)"), label=y, feature_names=names,
                                 max_bin=max_bin, nthread=1)
    return xgb.train(xgb_params, dtrain, num_boost_round=rounds), medians, spw


def out_of_fold_scores(X: pd.DataFrame, y: np.ndarray, folds: list[tuple[np.ndarray, np.ndarray]], *,
                       params: Mapping[str, Any], manifest: Any, seed: int, max_bin: int) -> np.ndarray:
    """Raw booster probability of every row from the fold model that did not train on it.

    Parameters
    ----------
    X : DataFrame (n, p)
        Encoded features (NaN = missing) in the manifest's order.
    y : array (n,)
        Binary outcomes.
    folds : list of (train, test) positions
        From :func:`calibration_folds`; the test parts must be disjoint and cover every row.
    params, manifest, seed, max_bin
        As for :func:`fit_booster`; each fold model imputes with its own training part's medians.

    Returns
    -------
    ndarray of shape (n,)
    """
    labels = binary_labels(y, "y")
    covered = np.concatenate([te for _, te in folds])
    if len(covered) != len(labels) or len(np.unique(covered)) != len(labels):
        raise ValueError("folds: the test parts must be disjoint and cover every row once")
    names = manifest.names
    out = np.full(len(labels), np.nan)
    for tr, te in folds:
        booster, medians, _ = fit_booster(X.iloc[tr], labels[tr], params=params, manifest=manifest, seed=seed,
                                          max_bin=max_bin)
        X_te, _ = features.impute(X.iloc[te], medians)
        out[te] = booster.inplace_predict(as_features(X_te[names], "X (imputed)"))
    return out

"""Stage 1 of model selection: the paper's three candidates compared by stratified CV AUROC."""
from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd
import xgboost as xgb
from joblib import Parallel, delayed
from sklearn.base import clone
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from clinops.modeling.cv import check_manifest_columns, check_xy, fold_imputer, stratified_folds, t_interval
from clinops.modeling.xgb_config import scale_pos_weight

__all__ = ["candidate_models", "cross_validate_candidates"]


def candidate_models(seed: int, *, discrete: Sequence[bool] | None = None
                     ) -> dict[str, Pipeline]:
    """The paper's three stage-1 candidates, each as an unfitted scikit-learn pipeline.

    Logistic regression and random forest cannot take NaN, so both start with
    :func:`~clinops.modeling.cv.fold_imputer` (median; mode for binary / categorical columns;
    fitted on the training fold only); logistic regression is also standardised. XGBoost takes
    NaN natively, but is imputed the same way because the final model is trained on inputs
    imputed with frozen training medians (paper section 4.4).
    XGBoost uses the library's default hyperparameters (100 trees, depth 6, learning rate
    0.3), written out so a library upgrade cannot silently change them; its
    ``scale_pos_weight`` is set per training fold by :func:`cross_validate_candidates`.

    Parameters
    ----------
    seed : int
        Random state of the random forest and XGBoost.
    discrete : sequence of bool, optional
        Binary / categorical columns (:func:`~clinops.modeling.cv.discrete_mask`), imputed by
        the mode.

    Returns
    -------
    dict[str, Pipeline]
        ``{'logistic_regression', 'random_forest', 'xgboost'}`` -> unfitted pipeline.

    Examples
    --------
    >>> sorted(candidate_models(0))
    ['logistic_regression', 'random_forest', 'xgboost']
    """
    return {
        "logistic_regression": Pipeline([
            ("impute", fold_imputer(discrete)),
            ("scale", StandardScaler()),
            # l1_ratio=0 is the L2 penalty (sklearn 1.8 deprecated penalty='l2').
            ("model", LogisticRegression(C=1.0, l1_ratio=0.0, max_iter=2000)),
        ]),
        "random_forest": Pipeline([
            ("impute", fold_imputer(discrete)),
            ("model", RandomForestClassifier(
                n_estimators=300, max_depth=10, random_state=seed, n_jobs=1)),
        ]),
        "xgboost": Pipeline([
            ("impute", fold_imputer(discrete)),
            ("model", xgb.XGBClassifier(
                n_estimators=100, max_depth=6, learning_rate=0.3, tree_method="hist",
                n_jobs=1, random_state=seed, verbosity=0)),
        ]),
    }


def _fit_score_fold(estimator: Any, X: np.ndarray, y: np.ndarray,
                    train_idx: np.ndarray, val_idx: np.ndarray) -> tuple[float, float | None]:
    est = clone(estimator)
    spw = None
    final = est.steps[-1][1] if isinstance(est, Pipeline) else est
    if isinstance(final, xgb.XGBClassifier):
        spw = scale_pos_weight(y[train_idx])
        final.set_params(scale_pos_weight=spw)
    est.fit(X[train_idx], y[train_idx])
    prob = est.predict_proba(X[val_idx])[:, 1]
    return float(roc_auc_score(y[val_idx], prob)), spw


def cross_validate_candidates(
    X: pd.DataFrame | np.ndarray,
    y: pd.Series | np.ndarray,
    *,
    n_splits: int = 5,
    seed: int,
    manifest: Any = None,
    models: Mapping[str, Pipeline] | None = None,
    n_jobs: int = 2,
    groups: Any = None,
) -> pd.DataFrame:
    """Stage 1: stratified k-fold CV AUROC of each candidate on the training years.

    Parameters
    ----------
    X : array or DataFrame of shape (n, p)
        Encoded features, NaN = missing.
    y : array of shape (n,)
        Binary labels.
    n_splits : int
        Number of stratified folds (paper: 5).
    seed : int
        Seeds the fold assignment and the models (via :func:`candidate_models`).
    manifest : FeatureManifest or dict, optional
        When given, ``X`` must carry its columns in order, and binary / categorical features
        are mode-imputed inside each fold (the frozen-median rule); otherwise all median.
    models : mapping, optional
        Candidates to compare; default :func:`candidate_models` ``(seed, discrete=...)``.
    n_jobs : int
        Worker processes over (model, fold) fits.
    groups : array of shape (n,), optional
        Subject ids: folds keep each subject's rows together
        (:func:`~clinops.modeling.cv.stratified_folds`).

    Returns
    -------
    DataFrame
        One row per candidate, best first: ``model``, ``mean_auroc``, ``ci_low``, ``ci_high``
        (95 % Student-t interval of the mean over the k fold AUROCs, k - 1 degrees of
        freedom), ``std_auroc`` and ``auroc_fold1 .. auroc_foldk``. ``attrs['scale_pos_weight']``
        holds XGBoost's per-fold weight.
    """
    discrete = check_manifest_columns(X, manifest)
    Xa, ya = check_xy(X, y)
    models = dict(candidate_models(seed, discrete=discrete) if models is None else models)
    folds = stratified_folds(ya, n_splits, seed, groups=groups)
    tasks = [(name, k) for name in models for k in range(len(folds))]
    out = Parallel(n_jobs=n_jobs)(
        delayed(_fit_score_fold)(models[name], Xa, ya, *folds[k]) for name, k in tasks
    )
    rows, spws = [], {}
    for name in models:
        aucs = np.array([auc for (n_, _), (auc, _) in zip(tasks, out) if n_ == name])
        spw = [s for (n_, _), (_, s) in zip(tasks, out) if n_ == name and s is not None]
        if spw:
            spws[name] = spw
        lo, hi = t_interval(aucs)
        row = {"model": name, "mean_auroc": float(aucs.mean()), "ci_low": lo, "ci_high": hi,
               "std_auroc": float(aucs.std(ddof=1))}
        row.update({f"auroc_fold{k + 1}": float(a) for k, a in enumerate(aucs)})
        rows.append(row)
    table = pd.DataFrame(rows).sort_values("mean_auroc", ascending=False, kind="stable")
    table = table.reset_index(drop=True)
    table.attrs["scale_pos_weight"] = spws
    return table

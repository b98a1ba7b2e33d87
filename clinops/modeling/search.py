"""Stage 2 of model selection: random search over XGBoost hyperparameters with stratified CV.

Speed
-----
The random search trains 100 x 5 boosters. Each fold's training matrix is built once as an
``xgb.QuantileDMatrix`` (quantile sketch done once, not 100 times) and reused by every
configuration through ``xgb.train``; configurations run in ``n_jobs`` worker processes with one
XGBoost thread each. On a shared 2-core machine one process per core is robust, whereas two
OpenMP threads per booster slow down by an order of magnitude as soon as another process
takes a core (measured here).
"""
from __future__ import annotations

import logging
import uuid
from typing import Any, Callable, Mapping

import numpy as np
import pandas as pd
import xgboost as xgb
from joblib import Parallel, delayed
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import ParameterSampler

from clinops.modeling.cv import check_manifest_columns, check_xy, fold_imputer, stratified_folds, t_interval
from clinops.modeling.xgb_config import (
    DEFAULT_MAX_BIN,
    PAPER_XGB_SPACE,
    XGB_PARAM_NAMES,
    check_max_bin,
    scale_pos_weight,
    train_params,
)

logger = logging.getLogger(__name__)

__all__ = ["sample_configurations", "random_search_xgb"]

# Per-process cache of the current search's fold matrices (key: a token made per search), so a
# worker process builds each fold's imputer and QuantileDMatrix once, however many chunks of
# configurations it is given.
_FOLD_CACHE: dict[str, list] = {}


def _fold_matrices(token: str, X: np.ndarray, y: np.ndarray, folds: list, max_bin: int,
                   discrete: list[bool] | None) -> list:
    if token not in _FOLD_CACHE:
        _FOLD_CACHE.clear()
        built = []
        for tr, va in folds:
            imputer = fold_imputer(discrete).fit(X[tr])
            dtrain = xgb.QuantileDMatrix(imputer.transform(X[tr]), label=y[tr],
                                         max_bin=max_bin, nthread=1)
            built.append((dtrain, imputer.transform(X[va]), y[va], scale_pos_weight(y[tr])))
        _FOLD_CACHE[token] = built
    return _FOLD_CACHE[token]


def _score_configs(token: str, X: np.ndarray, y: np.ndarray, folds: list, configs: list[dict],
                   seed: int, max_bin: int, discrete: list[bool] | None) -> np.ndarray:
    """AUROC of each configuration on each fold; shape (len(configs), len(folds))."""
    matrices = _fold_matrices(token, X, y, folds, max_bin, discrete)
    scores = np.empty((len(configs), len(folds)))
    for k, (dtrain, X_val, y_val, spw) in enumerate(matrices):
        for i, config in enumerate(configs):
            params, rounds = train_params(config, seed, spw, max_bin)
            booster = xgb.train(params, dtrain, num_boost_round=rounds)
            scores[i, k] = roc_auc_score(y_val, booster.inplace_predict(X_val))
    return scores


def _relative_cost(config: Mapping[str, Any]) -> float:
    # Rough training cost: linear in rounds, growing with depth (nodes per tree); used only
    # to hand out the longest configurations first so both workers finish together.
    return float(config["n_estimators"]) * 2.0 ** (float(config["max_depth"]) / 2.0)


def sample_configurations(n_iter: int, seed: int,
                          space: Mapping[str, Any] = PAPER_XGB_SPACE) -> list[dict]:
    """Draw ``n_iter`` XGBoost configurations from ``space`` (plain Python numbers).

    Parameters
    ----------
    n_iter : int
        Number of configurations.
    seed : int
        Random state of :class:`~sklearn.model_selection.ParameterSampler`.
    space : mapping
        Parameter name -> scipy distribution or list of values; keys must be
        :data:`~clinops.modeling.XGB_PARAM_NAMES`.

    Returns
    -------
    list of dict

    Examples
    --------
    >>> [c["max_depth"] for c in sample_configurations(3, seed=0)] == [
    ...     c["max_depth"] for c in sample_configurations(3, seed=0)]
    True
    """
    if n_iter < 1:
        raise ValueError(f"n_iter: must be at least 1, got {n_iter}")
    unknown = sorted(set(space) ^ set(XGB_PARAM_NAMES))
    if unknown:
        raise ValueError(f"space: must name exactly {list(XGB_PARAM_NAMES)}; mismatched {unknown}")
    configs = []
    for c in ParameterSampler(dict(space), n_iter=n_iter, random_state=seed):
        configs.append({k: (int(v) if k in ("n_estimators", "max_depth") else float(v))
                        for k, v in sorted(c.items())})
    return configs


def random_search_xgb(
    X: pd.DataFrame | np.ndarray,
    y: pd.Series | np.ndarray,
    *,
    n_iter: int = 100,
    n_splits: int = 5,
    seed: int,
    space: Mapping[str, Any] = PAPER_XGB_SPACE,
    manifest: Any = None,
    progress: Callable[[int, int], None] | None = None,
    n_jobs: int = 2,
    max_bin: int = DEFAULT_MAX_BIN,
    groups: Any = None,
) -> tuple[dict, pd.DataFrame]:
    """Stage 2: random search over XGBoost hyperparameters with stratified k-fold CV.

    Every configuration is scored on the same folds; in each training fold the inputs are
    median-imputed with that fold's medians and ``scale_pos_weight`` is that fold's
    negatives / positives. The best configuration maximises mean CV AUROC.

    Parameters
    ----------
    X : array or DataFrame of shape (n, p)
        Encoded features of the training years, NaN = missing.
    y : array of shape (n,)
        Binary labels.
    n_iter : int
        Number of random configurations (paper: 100).
    n_splits : int
        Folds per configuration (paper: 5).
    seed : int
        Seeds the configurations, the folds and XGBoost.
    space : mapping
        Search space, default :data:`~clinops.modeling.PAPER_XGB_SPACE`.
    manifest : FeatureManifest or dict, optional
        As in :func:`~clinops.modeling.cross_validate_candidates` (mode imputation of
        discrete features).
    progress : callable(done, total), optional
        Called as chunks of configurations finish.
    n_jobs : int
        Worker processes; each trains single-threaded boosters.
    max_bin : int
        Histogram bins per feature of XGBoost's ``hist`` method (see
        :data:`~clinops.modeling.DEFAULT_MAX_BIN`); use the same value in
        :func:`~clinops.modeling.fit_final`.
    groups : array of shape (n,), optional
        Subject ids: folds keep each subject's rows together
        (:func:`~clinops.modeling.cv.stratified_folds`).

    Returns
    -------
    best_params : dict
        The winning configuration (keys :data:`~clinops.modeling.XGB_PARAM_NAMES`).
    results : DataFrame
        One row per configuration, best first: the parameters, ``mean_auroc``, ``ci_low``,
        ``ci_high`` (95 % t-interval over folds), ``std_auroc``, ``auroc_fold1..k``, ``rank``
        and ``iteration`` (draw order). ``attrs['scale_pos_weight']`` lists the per-fold
        weights used.
    """
    discrete = check_manifest_columns(X, manifest)
    Xa, ya = check_xy(X, y)
    max_bin = check_max_bin(max_bin)
    configs = sample_configurations(n_iter, seed, space)
    folds = stratified_folds(ya, n_splits, seed, groups=groups)
    # Longest configurations first, in small chunks, so the workers finish together (longest
    # processing time first); results are put back in draw order, so scheduling never changes
    # them.
    order = sorted(range(len(configs)), key=lambda i: (-_relative_cost(configs[i]), i))
    chunk = 4 if n_jobs != 1 else len(configs)
    chunks = [order[i:i + chunk] for i in range(0, len(order), chunk)]
    token = uuid.uuid4().hex
    scores = np.empty((len(configs), len(folds)))
    done = 0
    runner = Parallel(n_jobs=n_jobs, return_as="generator")
    try:
        for idx, part in zip(chunks, runner(
                delayed(_score_configs)(token, Xa, ya, folds, [configs[i] for i in idx], seed,
                                        max_bin, discrete)
                for idx in chunks)):
            scores[idx] = part
            done += len(idx)
            logger.info("random search: %d/%d configurations scored", done, len(configs))
            if progress is not None:
                progress(done, len(configs))
    finally:
        _FOLD_CACHE.pop(token, None)  # the in-process copy (n_jobs=1)
    rows = []
    for i, (config, aucs) in enumerate(zip(configs, scores)):
        lo, hi = t_interval(aucs)
        row = {"iteration": i, **config, "mean_auroc": float(aucs.mean()), "ci_low": lo,
               "ci_high": hi, "std_auroc": float(aucs.std(ddof=1))}
        row.update({f"auroc_fold{k + 1}": float(a) for k, a in enumerate(aucs)})
        rows.append(row)
    results = pd.DataFrame(rows).sort_values(
        ["mean_auroc", "iteration"], ascending=[False, True], kind="stable").reset_index(drop=True)
    results.insert(0, "rank", np.arange(1, len(results) + 1))
    results.attrs["scale_pos_weight"] = [scale_pos_weight(ya[tr]) for tr, _ in folds]
    best = configs[int(results.loc[0, "iteration"])]
    return dict(best), results

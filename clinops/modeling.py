"""Model selection, the final model and the model bundle (paper section 4.5).

The procedure follows the paper's two stages on the training years only:

1. :func:`cross_validate_candidates` -- stratified 5-fold CV of logistic regression
   (L2, C = 1.0), random forest (300 trees, depth 10) and XGBoost; mean AUROC with a 95 %
   t-interval across folds.
2. :func:`random_search_xgb` -- 100 random configurations over :data:`PAPER_XGB_SPACE`, each
   scored by stratified 5-fold CV; ``scale_pos_weight`` = negatives / positives of each
   training fold.

Then :func:`split_for_calibration` holds out a stratified slice of the training years,
:func:`fit_final` fits XGBoost on the rest and the isotonic calibrator and the split-conformal
threshold on the held-out slice, and returns a :class:`ModelBundle` -- everything the server,
the drift monitor and the audit trail need, saved as JSON + XGBoost JSON (+ one joblib file for
the fitted :class:`~sklearn.isotonic.IsotonicRegression`). :func:`evaluate` is the single use of
the temporal test set.

Missing values
--------------
Inputs are encoded float features with NaN = missing. The paper imputes with training medians
(section 4.4), so every model here sees imputed inputs, with the values computed on the
training part only: inside cross-validation by :func:`fold_imputer` fitted on each training
fold, for the final model by the frozen values of :func:`clinops.features.freeze_medians`
(median for numeric features, mode for binary / categorical ones; the CV imputer follows the
same rule when given the manifest). XGBoost could take NaN natively (it learns a default
direction per split), but it is imputed too so that CV scores the same kind of input the final,
served model receives.

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

import json
import logging
import math
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import joblib
import numpy as np
import pandas as pd
import xgboost as xgb
from scipy import stats
from sklearn.base import BaseEstimator, ClassifierMixin, clone
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import RandomForestClassifier
from sklearn.impute import SimpleImputer
from sklearn.isotonic import IsotonicRegression
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import average_precision_score, brier_score_loss, roc_auc_score
from sklearn.model_selection import ParameterSampler, StratifiedKFold, train_test_split
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

logger = logging.getLogger(__name__)

#: The paper's random-search ranges (section 4.5) as scipy distributions for
#: :class:`sklearn.model_selection.ParameterSampler`. Integers are uniform on the closed
#: ranges; ``subsample`` and ``colsample_bytree`` uniform on [0.6, 1.0]; ``learning_rate``
#: log-uniform on [0.01, 0.3] (the paper gives only the range; log-uniform is the usual choice
#: for a rate spanning more than an order of magnitude).
PAPER_XGB_SPACE: dict[str, Any] = {
    "n_estimators": stats.randint(100, 501),
    "max_depth": stats.randint(3, 9),
    "learning_rate": stats.loguniform(0.01, 0.3),
    "subsample": stats.uniform(0.6, 0.4),
    "colsample_bytree": stats.uniform(0.6, 0.4),
    "min_child_weight": stats.randint(1, 11),
}

#: The configuration the paper reports as selected (section 4.5), for comparison tables.
PAPER_XGB_CONFIG: dict[str, float] = {
    "n_estimators": 400,
    "max_depth": 5,
    "learning_rate": 0.05,
    "subsample": 0.8,
    "colsample_bytree": 0.8,
    "min_child_weight": 3,
}

#: Hyperparameter names accepted by :func:`fit_final` / :func:`random_search_xgb`.
XGB_PARAM_NAMES = tuple(PAPER_XGB_SPACE)

#: Histogram bins per feature for XGBoost's ``hist`` method. The paper does not state one;
#: XGBoost's default is 256. 64 halves the random-search time at the paper's size (measured in
#: the report) without a measurable change in CV AUROC, and keeps the two tasks' model
#: selection inside the pipeline's time budget. Both search and final fit use it.
DEFAULT_MAX_BIN = 64

BUNDLE_FORMAT_VERSION = 1


# ---------------------------------------------------------------------------------------------
# small helpers
# ---------------------------------------------------------------------------------------------
def scale_pos_weight(y: np.ndarray | pd.Series) -> float:
    """Negatives / positives of a binary label vector (XGBoost's class-weight balancing).

    Parameters
    ----------
    y : array of shape (n,)
        Binary labels in {0, 1}.

    Returns
    -------
    float
        ``#(y == 0) / #(y == 1)``.
    """
    y = _as_labels(y, "y")
    n_pos = int(y.sum())
    if n_pos == 0 or n_pos == len(y):
        raise ValueError("y: scale_pos_weight needs both classes present (got only one)")
    return (len(y) - n_pos) / n_pos


def _as_labels(y: Any, name: str) -> np.ndarray:
    arr = np.asarray(y)
    if arr.ndim != 1:
        raise ValueError(f"{name}: must be one-dimensional, got shape {arr.shape}")
    if arr.size == 0:
        raise ValueError(f"{name}: must not be empty")
    if pd.isna(arr).any():
        raise ValueError(f"{name}: must not contain missing labels")
    uniq = np.unique(arr)
    if not set(uniq.tolist()) <= {0, 1}:
        raise ValueError(f"{name}: labels must be 0 or 1, got values {uniq[:5].tolist()}")
    return arr.astype(np.int64)


def _as_features(X: Any, name: str = "X") -> np.ndarray:
    arr = np.asarray(X, dtype=np.float64)
    if arr.ndim != 2:
        raise ValueError(f"{name}: must be two-dimensional (rows x features), "
                         f"got shape {arr.shape}")
    if np.isinf(arr).any():
        raise ValueError(f"{name}: must not contain infinite values (use NaN for missing)")
    return arr


def _check_xy(X: Any, y: Any) -> tuple[np.ndarray, np.ndarray]:
    Xa, ya = _as_features(X), _as_labels(y, "y")
    if len(Xa) != len(ya):
        raise ValueError(f"X and y: must have the same number of rows, got {len(Xa)} and {len(ya)}")
    return Xa, ya


def _t_interval(values: np.ndarray, level: float = 0.95) -> tuple[float, float]:
    """Student-t interval for the mean of a few fold values (k - 1 degrees of freedom)."""
    k = len(values)
    mean = float(np.mean(values))
    if k < 2:
        return mean, mean
    half = stats.t.ppf(0.5 + level / 2, k - 1) * np.std(values, ddof=1) / math.sqrt(k)
    return mean - float(half), mean + float(half)


def _folds(y: np.ndarray, n_splits: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    if n_splits < 2:
        raise ValueError(f"n_splits: must be at least 2, got {n_splits}")
    skf = StratifiedKFold(n_splits=n_splits, shuffle=True, random_state=seed)
    return list(skf.split(np.zeros(len(y)), y))


def _xgb_base_params(seed: int, max_bin: int) -> dict[str, Any]:
    # nthread=1: parallelism comes from worker processes (see module docstring).
    return {
        "objective": "binary:logistic",
        "tree_method": "hist",
        "max_bin": int(max_bin),
        "nthread": 1,
        "seed": int(seed),
        "verbosity": 0,
    }


def _check_max_bin(max_bin: int) -> int:
    if not isinstance(max_bin, (int, np.integer)) or isinstance(max_bin, bool) or max_bin < 2:
        raise ValueError(f"max_bin: must be an integer >= 2, got {max_bin!r}")
    return int(max_bin)


def _train_params(config: Mapping[str, Any], seed: int, spw: float,
                  max_bin: int = 256) -> tuple[dict, int]:
    """Map a sklearn-style XGBoost configuration to ``xgb.train`` params + number of rounds."""
    missing = [k for k in XGB_PARAM_NAMES if k not in config]
    unknown = [k for k in config if k not in XGB_PARAM_NAMES]
    if missing or unknown:
        raise ValueError(
            f"params: XGBoost configuration must name exactly {list(XGB_PARAM_NAMES)}; "
            f"missing {missing}, unknown {unknown}"
        )
    params = _xgb_base_params(seed, max_bin)
    params.update(
        max_depth=int(config["max_depth"]),
        learning_rate=float(config["learning_rate"]),
        subsample=float(config["subsample"]),
        colsample_bytree=float(config["colsample_bytree"]),
        min_child_weight=float(config["min_child_weight"]),
        scale_pos_weight=float(spw),
    )
    return params, int(config["n_estimators"])


def fold_imputer(discrete: Sequence[bool] | None = None) -> SimpleImputer | ColumnTransformer:
    """Unfitted imputer applying :func:`clinops.features.freeze_medians`' rule inside CV.

    Numeric columns get the median of the observed training-fold values, binary and
    categorical columns (``discrete[j]`` True) the most frequent value, smallest on a tie --
    the rule of the frozen medians of the final model. Column order is kept.

    Parameters
    ----------
    discrete : sequence of bool of length p, optional
        Which columns are binary / categorical codes; default: all numeric.
    """
    if discrete is None or not any(discrete):
        return SimpleImputer(strategy="median", keep_empty_features=True)
    return ColumnTransformer(
        [(f"c{j}", SimpleImputer(strategy="most_frequent" if d else "median",
                                 keep_empty_features=True), [j])
         for j, d in enumerate(discrete)],
        remainder="drop", sparse_threshold=0.0)


def discrete_mask(manifest: Any) -> list[bool]:
    """True for the manifest's binary and categorical features, in manifest order."""
    return [s.kind != "numeric" for s in _as_manifest(manifest).specs]


def _check_manifest_columns(X: Any, manifest: Any, label: str = "X") -> list[bool] | None:
    if manifest is None:
        return None
    names = _as_manifest(manifest).names
    if not isinstance(X, pd.DataFrame) or list(X.columns) != names:
        got = list(X.columns) if isinstance(X, pd.DataFrame) else type(X).__name__
        raise ValueError(f"{label}: must be a DataFrame with the manifest features in order "
                         f"{names}; got {got}")
    return discrete_mask(manifest)


# ---------------------------------------------------------------------------------------------
# stage 1: candidates
# ---------------------------------------------------------------------------------------------
def candidate_models(seed: int, *, discrete: Sequence[bool] | None = None
                     ) -> dict[str, Pipeline]:
    """The paper's three stage-1 candidates, each as an unfitted scikit-learn pipeline.

    Logistic regression and random forest cannot take NaN, so both start with
    :func:`fold_imputer` (median; mode for binary / categorical columns; fitted on the
    training fold only); logistic regression is also standardised. XGBoost takes NaN natively,
    but is imputed the same way because the final model is trained on inputs imputed with
    frozen training medians (paper section 4.4).
    XGBoost uses the library's default hyperparameters (100 trees, depth 6, learning rate
    0.3), written out so a library upgrade cannot silently change them; its
    ``scale_pos_weight`` is set per training fold by :func:`cross_validate_candidates`.

    Parameters
    ----------
    seed : int
        Random state of the random forest and XGBoost.
    discrete : sequence of bool, optional
        Binary / categorical columns (:func:`discrete_mask`), imputed by the mode.

    Returns
    -------
    dict[str, Pipeline]
        ``{'logistic_regression', 'random_forest', 'xgboost'}`` -> unfitted pipeline.
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

    Returns
    -------
    DataFrame
        One row per candidate, best first: ``model``, ``mean_auroc``, ``ci_low``, ``ci_high``
        (95 % Student-t interval of the mean over the k fold AUROCs, k - 1 degrees of
        freedom), ``std_auroc`` and ``auroc_fold1 .. auroc_foldk``. ``attrs['scale_pos_weight']``
        holds XGBoost's per-fold weight.
    """
    from joblib import Parallel, delayed

    discrete = _check_manifest_columns(X, manifest)
    Xa, ya = _check_xy(X, y)
    models = dict(candidate_models(seed, discrete=discrete) if models is None else models)
    folds = _folds(ya, n_splits, seed)
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
        lo, hi = _t_interval(aucs)
        row = {"model": name, "mean_auroc": float(aucs.mean()), "ci_low": lo, "ci_high": hi,
               "std_auroc": float(aucs.std(ddof=1))}
        row.update({f"auroc_fold{k + 1}": float(a) for k, a in enumerate(aucs)})
        rows.append(row)
    table = pd.DataFrame(rows).sort_values("mean_auroc", ascending=False, kind="stable")
    table = table.reset_index(drop=True)
    table.attrs["scale_pos_weight"] = spws
    return table


# ---------------------------------------------------------------------------------------------
# stage 2: random search
# ---------------------------------------------------------------------------------------------
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
            params, rounds = _train_params(config, seed, spw, max_bin)
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
        :data:`XGB_PARAM_NAMES`.

    Returns
    -------
    list of dict
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
        Search space, default :data:`PAPER_XGB_SPACE`.
    manifest : FeatureManifest or dict, optional
        As in :func:`cross_validate_candidates` (mode imputation of discrete features).
    progress : callable(done, total), optional
        Called as chunks of configurations finish.
    n_jobs : int
        Worker processes; each trains single-threaded boosters.
    max_bin : int
        Histogram bins per feature of XGBoost's ``hist`` method (see
        :data:`DEFAULT_MAX_BIN`); use the same value in :func:`fit_final`.

    Returns
    -------
    best_params : dict
        The winning configuration (keys :data:`XGB_PARAM_NAMES`).
    results : DataFrame
        One row per configuration, best first: the parameters, ``mean_auroc``, ``ci_low``,
        ``ci_high`` (95 % t-interval over folds), ``std_auroc``, ``auroc_fold1..k``, ``rank``
        and ``iteration`` (draw order). ``attrs['scale_pos_weight']`` lists the per-fold
        weights used.
    """
    from joblib import Parallel, delayed

    discrete = _check_manifest_columns(X, manifest)
    Xa, ya = _check_xy(X, y)
    max_bin = _check_max_bin(max_bin)
    configs = sample_configurations(n_iter, seed, space)
    folds = _folds(ya, n_splits, seed)
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
        lo, hi = _t_interval(aucs)
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


def compare_with_paper(best_params: Mapping[str, Any]) -> pd.DataFrame:
    """Chosen configuration beside the paper's (section 4.5), one row per hyperparameter."""
    # object columns keep integers (n_estimators, max_depth) as integers in reports
    return pd.DataFrame({
        "parameter": list(XGB_PARAM_NAMES),
        "chosen": pd.Series([best_params.get(k) for k in XGB_PARAM_NAMES], dtype=object),
        "paper": pd.Series([PAPER_XGB_CONFIG[k] for k in XGB_PARAM_NAMES], dtype=object),
    })


# ---------------------------------------------------------------------------------------------
# calibration split, final fit, bundle
# ---------------------------------------------------------------------------------------------
def split_for_calibration(
    X_train: pd.DataFrame,
    y_train: pd.Series | np.ndarray,
    *,
    fraction: float,
    seed: int,
) -> tuple[pd.DataFrame, pd.DataFrame, np.ndarray, np.ndarray]:
    """Hold out a stratified slice of the training years for calibration and conformal.

    The model is fitted on the rest (``1 - fraction``, e.g. 80 %); the held-out slice is
    later split by :func:`fit_final` into an isotonic part and a disjoint conformal part. The
    test years are never used for either. Run the model selection (stages 1 and 2) on the
    fitting part too, so the held-out slice influences nothing but calibration.

    Parameters
    ----------
    X_train : DataFrame of shape (n, p)
        Training-years features (row index kept, so disjointness is checkable).
    y_train : array of shape (n,)
        Binary labels.
    fraction : float
        Share held out, in (0, 1).
    seed : int
        Random state of the stratified split.

    Returns
    -------
    X_fit, X_cal : DataFrame
    y_fit, y_cal : ndarray of int
    """
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"fraction: must be strictly between 0 and 1, got {fraction}")
    ya = _as_labels(y_train, "y_train")
    if len(X_train) != len(ya):
        raise ValueError("X_train and y_train: must have the same number of rows")
    X_fit, X_cal, y_fit, y_cal = train_test_split(
        X_train, ya, test_size=fraction, stratify=ya, random_state=seed)
    return X_fit, X_cal, np.asarray(y_fit), np.asarray(y_cal)


def reference_statistics(X: pd.DataFrame, *, n_bins: int = 10) -> dict[str, dict]:
    """Training-data reference for drift (PSI) and out-of-distribution checks.

    Per feature, on the observed (non-missing) training values:

    - ``min``, ``max``: the training range (an input outside it is out of distribution);
    - ``bin_edges``: the unique interior quantile cut points at 1/n_bins .. (n_bins-1)/n_bins
      (for a feature with at most ``n_bins`` distinct values: every distinct value but the
      largest, i.e. one bin per value); bins are ``(-inf, e1], (e1, e2], ..., (e_last, +inf)``,
      i.e. ``np.searchsorted(bin_edges, v, side='left')`` gives a value's bin;
    - ``proportions``: share of observed training values in each bin (sums to 1);
    - ``missing_rate``: share of rows with the feature missing.

    Parameters
    ----------
    X : DataFrame of shape (n, p)
        Encoded, not imputed, training features.
    n_bins : int
        Target number of quantile bins (fewer for features with few distinct values).

    Returns
    -------
    dict
        feature name -> statistics (plain JSON-able Python numbers).
    """
    if not isinstance(X, pd.DataFrame):
        raise TypeError("X: must be a DataFrame with one column per feature")
    if n_bins < 2:
        raise ValueError(f"n_bins: must be at least 2, got {n_bins}")
    ref = {}
    qs = np.arange(1, n_bins) / n_bins
    for name in X.columns:
        col = X[name].to_numpy(dtype=np.float64)
        observed = col[~np.isnan(col)]
        if observed.size == 0:
            raise ValueError(f"X[{name!r}]: no observed values; cannot build a reference")
        distinct = np.unique(observed)
        # Few distinct values (flags, codes, scores): one bin per value; interpolated quantiles
        # would put cut points between codes and leave bins that no value can fall in.
        edges = distinct[:-1] if len(distinct) <= n_bins else np.unique(np.quantile(observed, qs))
        counts = np.bincount(np.searchsorted(edges, observed, side="left"),
                             minlength=len(edges) + 1)
        ref[str(name)] = {
            "min": float(observed.min()),
            "max": float(observed.max()),
            "bin_edges": edges.tolist(),
            "proportions": (counts / counts.sum()).tolist(),
            "missing_rate": float(np.isnan(col).mean()),
        }
    return ref


class CalibratedBooster(ClassifierMixin, BaseEstimator):
    """A fitted booster followed by isotonic calibration, as a prefit sklearn classifier.

    It exists so MAPIE can conformalize the *calibrated* probability (the number clinicians
    see). Input: imputed features in the booster's feature order, shape (n, p).
    """

    def __init__(self, booster: xgb.Booster | None = None,
                 calibrator: IsotonicRegression | None = None):
        self.booster = booster
        self.calibrator = calibrator

    def __sklearn_is_fitted__(self) -> bool:
        return self.booster is not None and self.calibrator is not None

    @property
    def classes_(self) -> np.ndarray:
        return np.array([0, 1])

    def fit(self, X, y):  # noqa: D401 - prefit only
        raise NotImplementedError("CalibratedBooster is prefit; build it from a fitted booster")

    def predict_proba(self, X) -> np.ndarray:
        raw = self.booster.inplace_predict(np.asarray(X, dtype=np.float64))
        p1 = self.calibrator.predict(raw)
        return np.column_stack([1.0 - p1, p1])

    def predict(self, X) -> np.ndarray:
        return (self.predict_proba(X)[:, 1] >= 0.5).astype(int)


@dataclass
class ModelBundle:
    """Everything needed to serve, monitor and trace one trained model.

    Attributes
    ----------
    booster : xgb.Booster
        Trained on median-imputed features in ``feature_names`` order.
    feature_names : list[str]
        Model input order (= the manifest's feature order).
    manifest : dict
        The feature manifest as a dict (``FeatureManifest.to_dict()``).
    frozen_medians : dict[str, float]
        Training medians used to fill missing inputs.
    calibrator : IsotonicRegression
        Raw score -> calibrated probability, fitted on the isotonic part of the held-out slice.
    conformal_threshold : float
        LAC quantile q: label k is in the set when ``1 - p_k - q <= 1e-8`` (p = calibrated
        probability), fitted by MAPIE on the conformal part of the held-out slice.
    confidence_level : float
        Target coverage of the conformal sets (e.g. 0.90).
    threshold : float
        Operating threshold on the calibrated probability (paper: 0.40).
    reference : dict
        :func:`reference_statistics` of the fitting data (PSI bins, min/max, missing rates).
    lineage : dict
        Dataset SHA-256s, feature SQL / manifest SHA-256s, hyperparameters, seed, sizes,
        ``run_id`` once logged to MLflow.
    settings : dict or None
        The task's resolved settings (:meth:`clinops.settings.TaskSettings.to_dict`): the
        policies, age edges and thresholds the server applies. None only for bundles built
        outside the workflow without settings; the server refuses those.
    """

    booster: xgb.Booster
    feature_names: list[str]
    manifest: dict
    frozen_medians: dict[str, float]
    calibrator: IsotonicRegression
    conformal_threshold: float
    confidence_level: float
    threshold: float
    reference: dict
    lineage: dict = field(default_factory=dict)
    settings: dict | None = None

    def task_settings(self):
        """The :class:`clinops.settings.TaskSettings` this model was trained and reported with.

        Raises
        ------
        clinops.settings.SettingsError : the bundle carries no settings.
        """
        from clinops.settings import SettingsError, TaskSettings

        if not self.settings:
            raise SettingsError("bundle.json: settings: missing (the bundle was written without resolved "
                                "settings; retrain it with `make all`)")
        return TaskSettings.from_dict(self.settings)

    @property
    def run_id(self) -> str | None:
        """MLflow run id = the model version recorded in audit records (None if not logged)."""
        return self.lineage.get("run_id")

    @property
    def median_vector(self) -> np.ndarray:
        """Frozen medians in ``feature_names`` order, shape (p,)."""
        return np.array([self.frozen_medians[n] for n in self.feature_names], dtype=np.float64)

    def calibrated_model(self) -> CalibratedBooster:
        """Booster + calibrator as a prefit sklearn classifier on imputed inputs."""
        return CalibratedBooster(self.booster, self.calibrator)

    def raw_scores(self, X_imputed: np.ndarray) -> np.ndarray:
        """Uncalibrated booster probabilities, shape (n,), for imputed inputs (n, p)."""
        return self.booster.inplace_predict(np.asarray(X_imputed, dtype=np.float64))

    def save(self, directory: str | Path) -> Path:
        """Write ``model.json`` (XGBoost), ``calibrator.joblib`` and ``bundle.json``.

        Returns the directory. Existing files of the same names are replaced.
        """
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        self.booster.save_model(d / "model.json")
        joblib.dump(self.calibrator, d / "calibrator.joblib")
        meta = {
            "format_version": BUNDLE_FORMAT_VERSION,
            "feature_names": list(self.feature_names),
            "manifest": self.manifest,
            "frozen_medians": {k: float(v) for k, v in self.frozen_medians.items()},
            "conformal_threshold": float(self.conformal_threshold),
            "confidence_level": float(self.confidence_level),
            "threshold": float(self.threshold),
            "reference": self.reference,
            "lineage": self.lineage,
            "settings": self.settings,
        }
        (d / "bundle.json").write_text(
            json.dumps(meta, indent=2, sort_keys=True, default=_json_default))
        return d

    @classmethod
    def load(cls, directory: str | Path) -> "ModelBundle":
        """Read a bundle written by :meth:`save`."""
        d = Path(directory)
        for name in ("model.json", "calibrator.joblib", "bundle.json"):
            if not (d / name).is_file():
                raise FileNotFoundError(f"model bundle {d}: missing file {name}")
        meta = json.loads((d / "bundle.json").read_text())
        if meta.get("format_version") != BUNDLE_FORMAT_VERSION:
            raise ValueError(f"bundle.json: format_version must be {BUNDLE_FORMAT_VERSION}, "
                             f"got {meta.get('format_version')!r}")
        booster = xgb.Booster()
        booster.load_model(d / "model.json")
        calibrator = joblib.load(d / "calibrator.joblib")
        if not isinstance(calibrator, IsotonicRegression):
            raise TypeError("calibrator.joblib: must hold a fitted IsotonicRegression")
        return cls(
            booster=booster,
            feature_names=list(meta["feature_names"]),
            manifest=meta["manifest"],
            frozen_medians=dict(meta["frozen_medians"]),
            calibrator=calibrator,
            conformal_threshold=float(meta["conformal_threshold"]),
            confidence_level=float(meta["confidence_level"]),
            threshold=float(meta["threshold"]),
            reference=meta["reference"],
            lineage=meta["lineage"],
            settings=meta.get("settings"),
        )


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def _as_manifest(manifest: Any):
    from clinops.features import FeatureManifest

    if isinstance(manifest, FeatureManifest):
        return manifest
    if isinstance(manifest, Mapping):
        return FeatureManifest.from_dict(manifest)
    raise TypeError("manifest: must be a FeatureManifest or its dict form, got "
                    f"{type(manifest).__name__}")


def fit_final(
    X_fit: pd.DataFrame,
    y_fit: np.ndarray | pd.Series,
    X_cal: pd.DataFrame,
    y_cal: np.ndarray | pd.Series,
    *,
    params: Mapping[str, Any],
    manifest: Any,
    seed: int,
    confidence_level: float = 0.90,
    threshold: float = 0.40,
    isotonic_fraction: float = 0.5,
    max_bin: int = DEFAULT_MAX_BIN,
    lineage: Mapping[str, Any] | None = None,
    settings: Any | None = None,
) -> ModelBundle:
    """Fit the final XGBoost model, its isotonic calibrator and conformal threshold.

    Steps: frozen medians from ``X_fit`` (:func:`clinops.features.freeze_medians`); XGBoost
    with ``params`` and ``scale_pos_weight`` = negatives / positives of ``y_fit`` on the
    imputed ``X_fit``; the held-out slice ``X_cal`` is split (stratified, seeded) into an
    isotonic part (``isotonic_fraction``) and a disjoint conformal part, so the conformity
    scores come from a calibrated model that never saw them (split-conformal validity).

    Parameters
    ----------
    X_fit, y_fit : DataFrame (n_fit, p), array (n_fit,)
        Training-years rows the model is fitted on.
    X_cal, y_cal : DataFrame (n_cal, p), array (n_cal,)
        Held-out training-years rows (:func:`split_for_calibration`), disjoint from ``X_fit``.
    params : mapping
        XGBoost configuration with keys :data:`XGB_PARAM_NAMES` (e.g. the random-search best).
    manifest : FeatureManifest or dict
        Columns of ``X_fit`` must equal its feature names, in order.
    seed : int
        XGBoost seed and isotonic/conformal split seed.
    confidence_level : float
        Conformal target coverage (paper: 0.90).
    threshold : float
        Operating threshold on the calibrated probability (paper: 0.40).
    isotonic_fraction : float
        Share of ``X_cal`` used for isotonic calibration; the rest conformalizes.
    max_bin : int
        XGBoost ``hist`` bins per feature, as in :func:`random_search_xgb`.
    lineage : mapping, optional
        Extra lineage (dataset / feature SHA-256s ...) stored in the bundle.
    settings : clinops.settings.TaskSettings, optional
        The task's resolved settings, stored in the bundle. When given, its conformal level,
        operating threshold and PSI bin count replace ``confidence_level``, ``threshold`` and
        the default of 10 bins.

    Returns
    -------
    ModelBundle
    """
    from clinops import features
    from clinops.uncertainty import conformal_threshold, fit_conformal, fit_isotonic

    manifest = _as_manifest(manifest)
    names = manifest.names
    for label, frame in (("X_fit", X_fit), ("X_cal", X_cal)):
        if not isinstance(frame, pd.DataFrame):
            raise TypeError(f"{label}: must be a DataFrame with the manifest's feature columns")
        if list(frame.columns) != names:
            raise ValueError(f"{label}: columns must equal the manifest features in order; "
                             f"got {list(frame.columns)}, expected {names}")
    # Row labels identify rows (e.g. stay ids, or the index kept by split_for_calibration);
    # a fresh 0..n-1 RangeIndex carries no identity and is not checked.
    positional = [isinstance(f.index, pd.RangeIndex) and f.index.start == 0
                  for f in (X_fit, X_cal)]
    if (not any(positional) and X_fit.index.is_unique and X_cal.index.is_unique
            and X_fit.index.intersection(X_cal.index).size):
        raise ValueError("X_cal: shares row index labels with X_fit; the calibration slice "
                         "must be disjoint from the fitting rows")
    psi_bins = 10
    if settings is not None:
        confidence_level, threshold = settings.confidence_level, settings.operating_threshold
        psi_bins = settings.drift.psi_bins
    if not 0.0 < confidence_level < 1.0:
        raise ValueError(f"confidence_level: must be in (0, 1), got {confidence_level}")
    if not 0.0 < threshold < 1.0:
        raise ValueError(f"threshold: must be in (0, 1), got {threshold}")
    if not 0.0 < isotonic_fraction < 1.0:
        raise ValueError(f"isotonic_fraction: must be in (0, 1), got {isotonic_fraction}")
    y_fit_a = _as_labels(y_fit, "y_fit")
    y_cal_a = _as_labels(y_cal, "y_cal")

    medians = features.freeze_medians(X_fit, manifest=manifest)
    Xf_imp, _ = features.impute(X_fit, medians)
    Xc_imp, _ = features.impute(X_cal, medians)
    Xf_imp = _as_features(Xf_imp[names], "X_fit (imputed)")
    Xc_imp = _as_features(Xc_imp[names], "X_cal (imputed)")

    spw = scale_pos_weight(y_fit_a)
    max_bin = _check_max_bin(max_bin)
    train_params, rounds = _train_params(params, seed, spw, max_bin)
    dtrain = xgb.QuantileDMatrix(Xf_imp, label=y_fit_a, feature_names=names, max_bin=max_bin,
                                 nthread=1)
    booster = xgb.train(train_params, dtrain, num_boost_round=rounds)

    iso_idx, conf_idx = train_test_split(
        np.arange(len(y_cal_a)), train_size=isotonic_fraction, stratify=y_cal_a, random_state=seed)
    calibrator = fit_isotonic(booster.inplace_predict(Xc_imp[iso_idx]), y_cal_a[iso_idx])
    conformal = fit_conformal(CalibratedBooster(booster, calibrator), Xc_imp[conf_idx],
                              y_cal_a[conf_idx], confidence_level=confidence_level)

    lineage_out = {
        "params": {k: params[k] for k in XGB_PARAM_NAMES},
        "scale_pos_weight": spw,
        "max_bin": max_bin,
        "seed": int(seed),
        "n_fit": int(len(y_fit_a)),
        "n_isotonic": int(len(iso_idx)),
        "n_conformal": int(len(conf_idx)),
        "calibration": "isotonic on a stratified held-out slice of the training years; "
                       "split-conformal (MAPIE LAC) on a disjoint part of that slice",
    }
    lineage_out["manifest_sha256"] = manifest.sha256
    lineage_out.update(dict(lineage or {}))
    return ModelBundle(
        booster=booster,
        feature_names=names,
        manifest=manifest.to_dict(),
        frozen_medians={k: float(medians[k]) for k in names},
        calibrator=calibrator,
        conformal_threshold=conformal_threshold(conformal),
        confidence_level=float(confidence_level),
        threshold=float(threshold),
        reference=reference_statistics(X_fit, n_bins=psi_bins),
        lineage=lineage_out,
        settings=settings.to_dict() if settings is not None else None,
    )


# ---------------------------------------------------------------------------------------------
# the single evaluation on the temporal test set
# ---------------------------------------------------------------------------------------------
def bootstrap_auroc_ci(y_true: np.ndarray, prob: np.ndarray, *, n_boot: int = 1000,
                       seed: int, level: float = 0.95) -> tuple[float, float]:
    """Percentile bootstrap interval of AUROC (rows resampled with replacement).

    Resamples that contain a single class have no AUROC and are skipped (count logged).
    """
    y, p = _as_labels(y_true, "y_true"), np.asarray(prob, dtype=np.float64)
    rng = np.random.default_rng(seed)
    n = len(y)
    aucs = []
    skipped = 0
    for _ in range(n_boot):
        idx = rng.integers(0, n, n)
        yb = y[idx]
        if yb.min() == yb.max():
            skipped += 1
            continue
        aucs.append(roc_auc_score(yb, p[idx]))
    if skipped:
        logger.info("bootstrap AUROC: %d of %d resamples had one class and were skipped",
                    skipped, n_boot)
    if not aucs:
        raise ValueError("y_true: every bootstrap resample had a single class")
    alpha = (1 - level) / 2
    lo, hi = np.quantile(aucs, [alpha, 1 - alpha])
    return float(lo), float(hi)


def evaluate(
    y_true: np.ndarray | pd.Series,
    prob: np.ndarray | pd.Series,
    *,
    threshold: float = 0.40,
    n_boot: int = 1000,
    seed: int,
) -> dict[str, float]:
    """Test-set metrics: AUROC with bootstrap 95 % CI, AUPRC, Brier, and rates at a threshold.

    Parameters
    ----------
    y_true : array of shape (n,)
        Binary outcomes.
    prob : array of shape (n,)
        Predicted probabilities in [0, 1] (the calibrated probability in this project).
    threshold : float
        A case is predicted positive when ``prob >= threshold`` (paper: 0.40).
    n_boot : int
        Bootstrap resamples for the AUROC interval (percentile method).
    seed : int
        Bootstrap random state.

    Returns
    -------
    dict
        ``n``, ``prevalence``, ``auroc``, ``auroc_ci_low``, ``auroc_ci_high``, ``auprc``
        (average precision), ``brier``, ``threshold``, ``sensitivity``, ``specificity``,
        ``ppv`` (NaN when nothing is predicted positive), ``npv``.
    """
    y = _as_labels(y_true, "y_true")
    p = np.asarray(prob, dtype=np.float64)
    if p.shape != y.shape:
        raise ValueError(f"prob: must have the shape of y_true {y.shape}, got {p.shape}")
    if np.isnan(p).any() or (p < 0).any() or (p > 1).any():
        raise ValueError("prob: must be probabilities in [0, 1] without NaN")
    if y.min() == y.max():
        raise ValueError("y_true: needs both classes to compute AUROC")
    if not 0.0 < threshold < 1.0:
        raise ValueError(f"threshold: must be in (0, 1), got {threshold}")
    pred = p >= threshold
    tp = int(np.sum(pred & (y == 1)))
    fp = int(np.sum(pred & (y == 0)))
    fn = int(np.sum(~pred & (y == 1)))
    tn = int(np.sum(~pred & (y == 0)))
    lo, hi = bootstrap_auroc_ci(y, p, n_boot=n_boot, seed=seed)
    return {
        "n": int(len(y)),
        "prevalence": float(y.mean()),
        "auroc": float(roc_auc_score(y, p)),
        "auroc_ci_low": lo,
        "auroc_ci_high": hi,
        "auprc": float(average_precision_score(y, p)),
        "brier": float(brier_score_loss(y, p)),
        "threshold": float(threshold),
        "sensitivity": tp / (tp + fn),
        "specificity": tn / (tn + fp),
        "ppv": tp / (tp + fp) if tp + fp else float("nan"),
        "npv": tn / (tn + fn) if tn + fn else float("nan"),
    }


__all__ = [
    "PAPER_XGB_SPACE", "PAPER_XGB_CONFIG", "XGB_PARAM_NAMES", "ModelBundle", "CalibratedBooster",
    "candidate_models", "cross_validate_candidates", "random_search_xgb", "sample_configurations",
    "compare_with_paper", "split_for_calibration", "fit_final", "reference_statistics",
    "scale_pos_weight", "evaluate", "bootstrap_auroc_ci",
]

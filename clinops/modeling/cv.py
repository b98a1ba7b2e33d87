"""Cross-validation inputs: checked X and y, stratified (grouped) folds, the fold imputer, t-intervals.

Folds are grouped by patient when groups are given: a task where one subject has several rows
(readmission: every eligible discharge is an index) must never have one patient on both sides
of a fold, or the validation AUROC rewards remembering the patient.

Inside cross-validation every model sees inputs imputed with values computed on the training
fold only, by the rule of the final model's frozen medians
(:func:`clinops.features.freeze_medians`: median for numeric features, mode for binary and
categorical ones).

Examples
--------
>>> import numpy as np
>>> fold_imputer([False, True]).fit_transform(np.array([[1.0, 0], [np.nan, 1], [3.0, 1], [5.0, np.nan]]))
array([[1., 0.],
       [3., 1.],
       [3., 1.],
       [5., 1.]])
>>> t_interval(np.array([0.80, 0.82, 0.84]))  # doctest: +ELLIPSIS
(0.77..., 0.86...)
"""
from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd
from scipy import stats
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold
from sklearn.utils.validation import check_array, check_consistent_length

from clinops.features import FeatureManifest
from clinops.labels import binary_labels

__all__ = ["fold_imputer", "discrete_mask", "stratified_folds", "check_groups", "t_interval", "as_manifest",
           "check_xy", "as_features", "check_manifest_columns"]


def as_manifest(manifest: Any) -> FeatureManifest:
    """A :class:`FeatureManifest` from itself or its dict form."""
    if isinstance(manifest, FeatureManifest):
        return manifest
    if isinstance(manifest, Mapping):
        return FeatureManifest.from_dict(manifest)
    raise TypeError("manifest: must be a FeatureManifest or its dict form, got "
                    f"{type(manifest).__name__}")


def as_features(X: Any, name: str = "X") -> np.ndarray:
    """Encoded features as a float (n, p) array; NaN (missing) allowed, infinity refused."""
    arr = np.asarray(X, dtype=np.float64)
    if arr.ndim != 2:
        raise ValueError(f"{name}: must be two-dimensional (rows x features), "
                         f"got shape {arr.shape}")
    if np.isinf(arr).any():
        raise ValueError(f"{name}: must not contain infinite values (use NaN for missing)")
    return check_array(arr, ensure_all_finite="allow-nan", input_name=name)


def check_xy(X: Any, y: Any) -> tuple[np.ndarray, np.ndarray]:
    """``(X, y)`` checked as :func:`as_features` and :func:`clinops.labels.binary_labels`."""
    Xa, ya = as_features(X), binary_labels(y, "y")
    if len(Xa) != len(ya):
        raise ValueError(f"X and y: must have the same number of rows, got {len(Xa)} and {len(ya)}")
    check_consistent_length(Xa, ya)
    return Xa, ya


def t_interval(values: np.ndarray, level: float = 0.95) -> tuple[float, float]:
    """Student-t interval for the mean of a few fold values (k - 1 degrees of freedom)."""
    k = len(values)
    mean = float(np.mean(values))
    if k < 2:
        return mean, mean
    half = stats.t.ppf(0.5 + level / 2, k - 1) * np.std(values, ddof=1) / math.sqrt(k)
    return mean - float(half), mean + float(half)


def check_groups(groups: Any, n: int) -> np.ndarray | None:
    """Subject ids as an array of length ``n`` without missing values, or None when not given.

    Examples
    --------
    >>> check_groups([7, 7, 9], 3)
    array([7, 7, 9])
    >>> check_groups([7, None], 2)
    Traceback (most recent call last):
    ...
    ValueError: groups: subject id missing in 1 row(s) (rule: every row names its subject)
    """
    if groups is None:
        return None
    arr = np.asarray(groups)
    if arr.ndim != 1 or len(arr) != n:
        raise ValueError(f"groups: must be one subject id per row ({n} rows), got shape {arr.shape}")
    missing = int(pd.isna(pd.Series(arr)).sum())
    if missing:
        raise ValueError(f"groups: subject id missing in {missing} row(s) (rule: every row names its subject)")
    return arr


def stratified_folds(y: np.ndarray, n_splits: int, seed: int, *,
                     groups: Any = None) -> list[tuple[np.ndarray, np.ndarray]]:
    """Shuffled stratified k-fold ``(train_idx, val_idx)`` pairs, grouped by subject when given.

    Parameters
    ----------
    y : array of shape (n,)
        Binary labels.
    n_splits : int
        Number of folds (>= 2).
    seed : int
        Seeds the shuffle.
    groups : array of shape (n,), optional
        Subject ids: with them the folds are :class:`~sklearn.model_selection.StratifiedGroupKFold`
        (every subject's rows in one fold, outcome shares as even as the subjects allow);
        without them :class:`~sklearn.model_selection.StratifiedKFold`.

    Examples
    --------
    >>> y = np.array([0, 1, 0, 1, 0, 1, 0, 1])
    >>> subjects = np.array([1, 1, 2, 2, 3, 3, 4, 4])
    >>> all(not set(subjects[tr]) & set(subjects[va])
    ...     for tr, va in stratified_folds(y, 2, seed=0, groups=subjects))
    True
    """
    if n_splits < 2:
        raise ValueError(f"n_splits: must be at least 2, got {n_splits}")
    g = check_groups(groups, len(y))
    if g is None:
        skf = StratifiedKFold(n_splits=n_splits, shuffle=True, random_state=seed)
        return list(skf.split(np.zeros(len(y)), y))
    if len(np.unique(g)) < n_splits:
        raise ValueError(f"groups: {len(np.unique(g))} subject(s) cannot fill {n_splits} folds "
                         "(rule: at least one subject per fold)")
    sgkf = StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=seed)
    return list(sgkf.split(np.zeros(len(y)), y, g))


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
    return [s.kind != "numeric" for s in as_manifest(manifest).specs]


def check_manifest_columns(X: Any, manifest: Any, label: str = "X") -> list[bool] | None:
    """The discrete mask of ``manifest`` once ``X`` is checked to carry its columns in order."""
    if manifest is None:
        return None
    names = as_manifest(manifest).names
    if not isinstance(X, pd.DataFrame) or list(X.columns) != names:
        got = list(X.columns) if isinstance(X, pd.DataFrame) else type(X).__name__
        raise ValueError(f"{label}: must be a DataFrame with the manifest features in order "
                         f"{names}; got {got}")
    return discrete_mask(manifest)

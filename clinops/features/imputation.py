"""Median imputation frozen on the training set (paper section 4.4).

The imputation values are computed from training rows only and stored with the model; at test
and serving time they are applied as they are. :func:`freeze_training_medians` is the helper
the pipeline calls: it hands only the training rows to :func:`freeze_medians`, so no test row
can reach the statistics.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from clinops.features.manifest import FeatureManifest, FeatureValidationError

__all__ = ["freeze_medians", "freeze_training_medians", "impute", "missingness_table"]


PACKAGED_MANIFESTS = ("mortality", "readmission")


def _manifest_for(X: pd.DataFrame, manifest: FeatureManifest | None) -> FeatureManifest:
    """The given manifest, else the packaged one whose feature names are X's columns."""
    if manifest is not None:
        return manifest
    cols = [str(c) for c in X.columns]
    for name in PACKAGED_MANIFESTS:
        try:
            m = FeatureManifest.load(name)
        except Exception:  # a packaged manifest that is absent cannot match
            continue
        if m.names == cols:
            return m
    raise FeatureValidationError(
        "manifest", f"X_train's columns {cols} match no packaged manifest "
                    f"{list(PACKAGED_MANIFESTS)} in order; pass manifest=")


def _check_columns(X: pd.DataFrame, names: list[str], what: str) -> None:
    missing = [n for n in names if n not in X.columns]
    extra = [c for c in X.columns if c not in names]
    if missing or extra:
        parts = []
        if missing:
            parts.append(f"missing column(s) {missing}")
        if extra:
            parts.append(f"column(s) not in the {what} {extra}")
        raise FeatureValidationError(", ".join(map(str, missing + extra)), "; ".join(parts))


def freeze_medians(X_train: pd.DataFrame, *, manifest: FeatureManifest | None = None
                   ) -> dict[str, float]:
    """Imputation values from training rows.

    Parameters
    ----------
    X_train : pandas.DataFrame of float, shape (n_train, n_features)
        Encoded training features (:meth:`FeatureManifest.encode`), exactly the manifest's
        columns.
    manifest : FeatureManifest, optional
        Which features are numeric, binary or categorical. Default: the packaged manifest
        (``'mortality'``, ``'readmission'``) whose feature names are ``X_train``'s columns.

    Returns
    -------
    dict[str, float]
        Feature -> value, in manifest order: the median of the observed values for numeric
        features; the most frequent value (mode; the smallest on a tie) for binary and
        categorical features, so the imputed value is always a valid 0/1 or category code.

    Raises
    ------
    FeatureValidationError
        Wrong columns, non-numeric columns, or a feature with no observed training value.
    """
    m = _manifest_for(X_train, manifest)
    _check_columns(X_train, m.names, f"manifest {m.name!r}")
    out: dict[str, float] = {}
    for s in m.specs:
        col = X_train[s.name]
        if not pd.api.types.is_numeric_dtype(col):
            raise FeatureValidationError(s.name, "expected encoded (numeric) values; "
                                                 "use FeatureManifest.encode first")
        observed = col.dropna().to_numpy(dtype=float)
        if observed.size == 0:
            raise FeatureValidationError(s.name, "no observed value in the training rows: "
                                                 "cannot freeze an imputation value")
        if s.kind == "numeric":
            out[s.name] = float(np.median(observed))
        else:
            values, counts = np.unique(observed, return_counts=True)
            out[s.name] = float(values[np.argmax(counts)])  # argmax: first (smallest) on ties
    return out


def freeze_training_medians(X: pd.DataFrame, is_train, *,
                            manifest: FeatureManifest | None = None) -> dict[str, float]:
    """Pipeline helper: freeze the imputation values on the training rows only.

    Parameters
    ----------
    X : pandas.DataFrame of float, shape (n, n_features)
        Encoded features of all rows (train and test).
    is_train : array-like of bool, shape (n,)
        True for training rows (a Series is aligned on ``X``'s index).
    manifest : FeatureManifest, optional
        As in :func:`freeze_medians`.

    Returns
    -------
    dict[str, float]
        :func:`freeze_medians` of ``X[is_train]``; test rows are never passed on.
    """
    mask = _bool_mask(X, is_train, "is_train")
    if not mask.any():
        raise FeatureValidationError("is_train", "selects no training row")
    return freeze_medians(X.loc[mask], manifest=manifest)


def impute(X: pd.DataFrame, frozen_medians: dict[str, float]
           ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Fill missing values with frozen training values.

    Parameters
    ----------
    X : pandas.DataFrame of float, shape (n, n_features)
        Encoded features with exactly the keys of ``frozen_medians`` as columns.
    frozen_medians : dict[str, float]
        From :func:`freeze_medians`.

    Returns
    -------
    X_imputed : pandas.DataFrame of float, shape (n, n_features)
        Same index and column order as ``X``, no NaN.
    imputed_mask : pandas.DataFrame of bool, shape (n, n_features)
        True where a value was imputed.
    """
    _check_columns(X, list(frozen_medians), "frozen medians")
    bad = [k for k, v in frozen_medians.items() if v is None or not np.isfinite(v)]
    if bad:
        raise FeatureValidationError(", ".join(bad), "frozen value must be a finite number")
    mask = X.isna()
    X_imputed = X.astype(float).fillna(value={k: float(v) for k, v in frozen_medians.items()})
    return X_imputed, mask


def missingness_table(features: pd.DataFrame, split_mask) -> pd.DataFrame:
    """Missing values per feature on the selected rows (the training set in the pipeline).

    Parameters
    ----------
    features : pandas.DataFrame, shape (n, n_features)
        Raw or encoded features.
    split_mask : array-like of bool, shape (n,)
        Rows to describe (a Series is aligned on ``features``' index).

    Returns
    -------
    pandas.DataFrame
        One row per feature in column order: ``feature, n, n_missing, pct_missing`` (percent).
    """
    mask = _bool_mask(features, split_mask, "split_mask")
    rows = features.loc[mask]
    n = len(rows)
    n_missing = rows.isna().sum()
    return pd.DataFrame({
        "feature": list(features.columns),
        "n": n,
        "n_missing": [int(n_missing[c]) for c in features.columns],
        "pct_missing": [100.0 * n_missing[c] / n if n else np.nan for c in features.columns],
    })


def _bool_mask(X: pd.DataFrame, mask, name: str) -> np.ndarray:
    if isinstance(mask, pd.Series):
        if not mask.index.equals(X.index):
            if not X.index.isin(mask.index).all():
                raise FeatureValidationError(name, "Series index does not cover the rows")
            mask = mask.reindex(X.index)
        mask = mask.to_numpy()
    arr = np.asarray(mask)
    if arr.shape != (len(X),):
        raise FeatureValidationError(name, f"must have shape ({len(X)},), got {arr.shape}")
    if arr.dtype != bool:
        raise FeatureValidationError(name, f"must be boolean, got dtype {arr.dtype}")
    return arr

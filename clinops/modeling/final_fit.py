"""The final model: a calibration slice held out of the training years, then one fit.

:func:`split_for_calibration` holds out a stratified slice of the training years;
:func:`fit_final` fits XGBoost on the rest and the isotonic calibrator and the split-conformal
threshold on the held-out slice, and returns the :class:`~clinops.bundle.ModelBundle`.
"""
from __future__ import annotations

from typing import Any, Mapping

import numpy as np
import pandas as pd
import xgboost as xgb
from sklearn.model_selection import train_test_split

from clinops import features
from clinops.bundle import CalibratedBooster, ModelBundle
from clinops.labels import binary_labels
from clinops.modeling.cv import as_features, as_manifest
from clinops.drift.psi import reference_statistics
from clinops.modeling.xgb_config import (
    DEFAULT_MAX_BIN,
    XGB_PARAM_NAMES,
    check_max_bin,
    scale_pos_weight,
    train_params,
)
from clinops.settings import TaskSettings
from clinops.uncertainty import class_conditional_thresholds, conformal_threshold, fit_conformal, fit_isotonic

__all__ = ["split_for_calibration", "fit_final"]


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
    ya = binary_labels(y_train, "y_train")
    if len(X_train) != len(ya):
        raise ValueError("X_train and y_train: must have the same number of rows")
    X_fit, X_cal, y_fit, y_cal = train_test_split(
        X_train, ya, test_size=fraction, stratify=ya, random_state=seed)
    return X_fit, X_cal, np.asarray(y_fit), np.asarray(y_cal)


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
    settings: TaskSettings | None = None,
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
        XGBoost configuration with keys :data:`~clinops.modeling.XGB_PARAM_NAMES` (e.g. the
        random-search best).
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
        XGBoost ``hist`` bins per feature, as in :func:`~clinops.modeling.random_search_xgb`.
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
    manifest = as_manifest(manifest)
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
    y_fit_a = binary_labels(y_fit, "y_fit")
    y_cal_a = binary_labels(y_cal, "y_cal")

    medians = features.freeze_medians(X_fit, manifest=manifest)
    Xf_imp, _ = features.impute(X_fit, medians)
    Xc_imp, _ = features.impute(X_cal, medians)
    Xf_imp = as_features(Xf_imp[names], "X_fit (imputed)")
    Xc_imp = as_features(Xc_imp[names], "X_cal (imputed)")

    spw = scale_pos_weight(y_fit_a)
    max_bin = check_max_bin(max_bin)
    xgb_params, rounds = train_params(params, seed, spw, max_bin)
    dtrain = xgb.QuantileDMatrix(Xf_imp, label=y_fit_a, feature_names=names, max_bin=max_bin,
                                 nthread=1)
    booster = xgb.train(xgb_params, dtrain, num_boost_round=rounds)

    iso_idx, conf_idx = train_test_split(
        np.arange(len(y_cal_a)), train_size=isotonic_fraction, stratify=y_cal_a, random_state=seed)
    calibrator = fit_isotonic(booster.inplace_predict(Xc_imp[iso_idx]), y_cal_a[iso_idx])
    calibrated = CalibratedBooster(booster, calibrator)
    conformal = fit_conformal(calibrated, Xc_imp[conf_idx], y_cal_a[conf_idx], confidence_level=confidence_level)
    # both modes' quantiles from the same conformal part: the settings choose which one serves
    class_q = class_conditional_thresholds(calibrated.predict_proba(Xc_imp[conf_idx])[:, 1], y_cal_a[conf_idx],
                                           confidence_level=confidence_level)

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
        conformal_threshold=conformal_threshold(conformal, confidence_level=confidence_level),
        conformal_class_thresholds=[float(q) for q in class_q],
        confidence_level=float(confidence_level),
        threshold=float(threshold),
        reference=reference_statistics(X_fit, n_bins=psi_bins),
        lineage=lineage_out,
        settings=settings.to_dict() if settings is not None else None,
    )

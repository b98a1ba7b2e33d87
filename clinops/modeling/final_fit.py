"""The final model: calibrated on a held-out slice (the paper's) or cross-fitted on every training row.

``modeling.calibration: split`` (the paper's): :func:`split_for_calibration` holds out a
stratified slice of the training years; :func:`fit_final` fits XGBoost on the rest and the
calibrator and the split-conformal threshold on disjoint halves of the slice.

``modeling.calibration: cross_fit``: :func:`fit_final` gets the whole training split, takes
out-of-fold raw scores over it (:mod:`clinops.modeling.cross_fit`, grouped by subject when
``groups`` is given), fits one calibrator on all of them, refits the booster on the whole split
(the logic of ``CalibratedClassifierCV(ensemble=False)``) and takes the conformal quantiles from
the cross-fitted calibrated probabilities (:func:`clinops.uncertainty.lac_threshold`), so no
slice is held out of training. The calibration map itself is ``uncertainty.calibrator``
(:mod:`clinops.uncertainty.calibrators`).
"""
from __future__ import annotations

import copy
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd
from sklearn.model_selection import StratifiedGroupKFold, train_test_split

from clinops import features
from clinops.bundle import CalibratedBooster, ModelBundle
from clinops.labels import binary_labels
from clinops.modeling.cross_fit import calibration_folds, fit_booster, out_of_fold_scores
from clinops.modeling.cv import as_features, as_manifest, check_groups
from clinops.drift.psi import reference_statistics
from clinops.modeling.xgb_config import DEFAULT_MAX_BIN, XGB_PARAM_NAMES, check_max_bin
from clinops.settings import CALIBRATION_SCHEMES, CALIBRATORS, TaskSettings
from clinops.uncertainty import (
    class_conditional_thresholds,
    conformal_threshold,
    cross_fitted_probabilities,
    fit_calibrator,
    fit_conformal,
    lac_threshold,
)

__all__ = ["calibration_split_positions", "split_for_calibration", "fit_final", "fit_final_maps"]


def _holdout(y: np.ndarray, fraction: float, seed: int,
             groups: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """Positions ``(kept, held out)``: stratified; by whole subjects when ``groups`` is given."""
    if groups is None:
        return train_test_split(np.arange(len(y)), test_size=fraction, stratify=y, random_state=seed)
    g = check_groups(groups, len(y))
    # one fold of round(1 / fraction) stratified subject-grouped folds: about `fraction` of the rows
    n_splits = max(2, int(round(1.0 / min(fraction, 1.0 - fraction))))
    splitter = StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=seed)
    kept, held = next(splitter.split(np.zeros(len(y)), y, groups=pd.factorize(g)[0]))
    return (held, kept) if fraction > 0.5 else (kept, held)


def calibration_split_positions(X_train: pd.DataFrame, y_train: pd.Series | np.ndarray, *, fraction: float,
                                seed: int, groups: np.ndarray | pd.Series | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Row positions ``(fitting rows, held-out slice)`` of :func:`split_for_calibration`.

    For a caller that must split other per-row arrays (e.g. subject ids) the same way;
    positions, unlike index labels, are right whatever the frame's index. Parameters as for
    :func:`split_for_calibration`.

    Examples
    --------
    >>> y = np.array([0, 1] * 10)
    >>> kept, held = calibration_split_positions(np.zeros((20, 1)), y, fraction=0.2, seed=0)
    >>> len(kept), len(held), sorted(set(kept) | set(held)) == list(range(20))
    (16, 4, True)
    """
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"fraction: must be strictly between 0 and 1, got {fraction}")
    ya = binary_labels(y_train, "y_train")
    if len(X_train) != len(ya):
        raise ValueError("X_train and y_train: must have the same number of rows")
    return _holdout(ya, fraction, seed, None if groups is None else np.asarray(groups, dtype=object))


def split_for_calibration(
    X_train: pd.DataFrame,
    y_train: pd.Series | np.ndarray,
    *,
    fraction: float,
    seed: int,
    groups: np.ndarray | pd.Series | None = None,
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
    groups : array of shape (n,), optional
        Subject ids: the slice then holds whole subjects (``StratifiedGroupKFold``, one fold of
        ``round(1 / fraction)``), so no subject is on both sides; its share is about ``fraction``.

    Returns
    -------
    X_fit, X_cal : DataFrame
    y_fit, y_cal : ndarray of int
    """
    # without groups the paper's split, unchanged: train_test_split of the positions picks the
    # same rows, in the same order, as train_test_split of the frame did
    kept, held = calibration_split_positions(X_train, y_train, fraction=fraction, seed=seed, groups=groups)
    ya = binary_labels(y_train, "y_train")
    return X_train.iloc[kept], X_train.iloc[held], ya[kept], ya[held]


def fit_final(
    X_fit: pd.DataFrame,
    y_fit: np.ndarray | pd.Series,
    X_cal: pd.DataFrame | None = None,
    y_cal: np.ndarray | pd.Series | None = None,
    *,
    calibrator: str = "isotonic",
    settings: TaskSettings | None = None,
    **options: Any,
) -> ModelBundle:
    """Fit the final XGBoost model, its calibrator and conformal quantiles.

    Parameters are those of :func:`fit_final_maps` with one ``calibrator`` (with ``settings``,
    the settings' ``uncertainty.calibrator`` replaces it).

    Returns
    -------
    ModelBundle
    """
    if settings is not None:
        calibrator = settings.calibrator
    return fit_final_maps(X_fit, y_fit, X_cal, y_cal, calibrators=(calibrator,), settings=settings,
                          **options)[calibrator]


def fit_final_maps(
    X_fit: pd.DataFrame,
    y_fit: np.ndarray | pd.Series,
    X_cal: pd.DataFrame | None = None,
    y_cal: np.ndarray | pd.Series | None = None,
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
    calibration: str = "split",
    calibrators: Sequence[str] = ("isotonic",),
    n_folds: int = 5,
    groups: np.ndarray | pd.Series | None = None,
) -> dict[str, ModelBundle]:
    """Fit the final XGBoost model once, then each calibration map and its conformal quantiles.

    What :func:`fit_final` does for one map, for several: the booster (and, for ``cross_fit``,
    the out-of-fold scores) depend on the scheme only, so the maps of one scheme share them.
    Each map's bundle is the one :func:`fit_final` would return for it.

    Steps common to both schemes: frozen medians (:func:`clinops.features.freeze_medians`) and
    XGBoost with ``params`` and ``scale_pos_weight`` = negatives / positives, on the rows the
    served booster is fitted on.

    * ``calibration='split'`` (the paper's): the booster is fitted on ``X_fit``; the held-out
      slice ``X_cal`` is split (stratified, seeded; by subject when ``groups`` is given) into a
      calibrator part (``isotonic_fraction``) and a disjoint conformal part, so the conformity
      scores come from a calibrated model that never saw them (split-conformal validity).
    * ``calibration='cross_fit'``: ``X_fit`` is the whole training split and ``X_cal`` is None.
      ``n_folds`` out-of-fold raw scores (:mod:`clinops.modeling.cross_fit`, grouped by subject
      when ``groups`` is given); one calibrator fitted on all of them; the booster refitted on
      all of ``X_fit``; the conformal quantiles from the cross-fitted calibrated probabilities
      (fold k calibrated by a map fitted on the other folds:
      :func:`clinops.uncertainty.cross_fitted_probabilities`, :func:`clinops.uncertainty.lac_threshold`).

    Parameters
    ----------
    X_fit, y_fit : DataFrame (n_fit, p), array (n_fit,)
        ``split``: the rows the booster is fitted on; ``cross_fit``: the whole training split.
    X_cal, y_cal : DataFrame (n_cal, p), array (n_cal,), optional
        ``split`` only: the held-out training-years rows (:func:`split_for_calibration`),
        disjoint from ``X_fit``.
    params : mapping
        XGBoost configuration with keys :data:`~clinops.modeling.XGB_PARAM_NAMES` (e.g. the
        random-search best).
    manifest : FeatureManifest or dict
        Columns of ``X_fit`` must equal its feature names, in order.
    seed : int
        XGBoost seed and the calibration split / fold seed.
    confidence_level : float
        Conformal target coverage (paper: 0.90).
    threshold : float
        Operating threshold on the calibrated probability (paper: 0.40).
    isotonic_fraction : float
        ``split`` only: share of ``X_cal`` used for the calibrator; the rest conformalizes.
    max_bin : int
        XGBoost ``hist`` bins per feature, as in :func:`~clinops.modeling.random_search_xgb`.
    lineage : mapping, optional
        Extra lineage (dataset / feature SHA-256s ...) stored in the bundle.
    settings : clinops.settings.TaskSettings, optional
        The task's resolved settings, stored in the bundle. When given, its conformal level,
        operating threshold, PSI bin count, ``calibrator``, ``modeling.calibration`` and
        ``modeling.cv_folds`` replace ``confidence_level``, ``threshold``, the default of 10
        bins, ``calibrator``, ``calibration`` and ``n_folds``.
    calibration : {'split', 'cross_fit'}
        Where the calibrator and conformal scores get their rows (``modeling.calibration``).
    calibrators : sequence of {'isotonic', 'isotonic_interpolated'}
        The calibration maps (``uncertainty.calibrator``); with ``settings``, only the
        settings' map.
    n_folds : int
        ``cross_fit`` only: K (the workflow passes ``modeling.cv_folds``).
    groups : array, optional
        Subject ids. ``cross_fit``: one per row of ``X_fit`` (folds grouped by subject);
        ``split``: one per row of ``X_fit`` then ``X_cal`` (no subject may be in both, and the
        slice is halved by subject).

    Returns
    -------
    dict of str to ModelBundle
        One bundle per map in ``calibrators``.
    """
    manifest = as_manifest(manifest)
    names = manifest.names
    psi_bins = 10
    if settings is not None:
        confidence_level, threshold = settings.confidence_level, settings.operating_threshold
        psi_bins = settings.drift.psi_bins
        if list(calibrators) != [settings.calibrator]:
            raise ValueError(f"calibrators: with settings, only the settings' map ({settings.calibrator!r}), "
                             f"got {list(calibrators)}")
        calibration = settings.modeling.get("calibration", "split")
        n_folds = int(settings.modeling.get("cv_folds", n_folds))
    if calibration not in CALIBRATION_SCHEMES:
        raise ValueError(f"modeling.calibration: must be one of {list(CALIBRATION_SCHEMES)}, got {calibration!r}")
    if not calibrators or len(set(calibrators)) != len(calibrators):
        raise ValueError(f"calibrators: one or more maps, each once; got {list(calibrators)}")
    for calibrator in calibrators:
        if calibrator not in CALIBRATORS:
            raise ValueError(f"uncertainty.calibrator: must be one of {list(CALIBRATORS)}, got {calibrator!r}")
    if (X_cal is None) != (calibration == "cross_fit") or (X_cal is None) != (y_cal is None):
        raise ValueError("X_cal, y_cal: required by calibration 'split' (the held-out slice) and must be None "
                         "for 'cross_fit' (X_fit is then the whole training split)")
    frames = (("X_fit", X_fit),) + ((("X_cal", X_cal),) if X_cal is not None else ())
    for label, frame in frames:
        if not isinstance(frame, pd.DataFrame):
            raise TypeError(f"{label}: must be a DataFrame with the manifest's feature columns")
        if list(frame.columns) != names:
            raise ValueError(f"{label}: columns must equal the manifest features in order; "
                             f"got {list(frame.columns)}, expected {names}")
    if not 0.0 < confidence_level < 1.0:
        raise ValueError(f"confidence_level: must be in (0, 1), got {confidence_level}")
    if not 0.0 < threshold < 1.0:
        raise ValueError(f"threshold: must be in (0, 1), got {threshold}")
    if not 0.0 < isotonic_fraction < 1.0:
        raise ValueError(f"isotonic_fraction: must be in (0, 1), got {isotonic_fraction}")
    y_fit_a = binary_labels(y_fit, "y_fit")
    max_bin = check_max_bin(max_bin)
    g = None if groups is None else np.asarray(groups, dtype=object)

    if calibration == "split":
        y_cal_a = binary_labels(y_cal, "y_cal")
        _check_disjoint(X_fit, X_cal, y_fit_a, g)
        booster, medians, spw = fit_booster(X_fit, y_fit_a, params=params, manifest=manifest, seed=seed,
                                            max_bin=max_bin)
        Xc_imp, _ = features.impute(X_cal, medians)
        Xc_imp = as_features(Xc_imp[names], "X_cal (imputed)")
        cal_idx, conf_idx = _holdout(y_cal_a, 1.0 - isotonic_fraction, seed,
                                     None if g is None else g[len(y_fit_a):])
        cal_scores = booster.inplace_predict(Xc_imp[cal_idx])
        sizes = {"n_fit": int(len(y_fit_a)), "n_isotonic": int(len(cal_idx)), "n_conformal": int(len(conf_idx))}
    else:
        # calibration_folds checks groups (cv.check_groups: one subject id per row of X_fit)
        folds = calibration_folds(y_fit_a, n_splits=n_folds, seed=seed, groups=g)
        oof = out_of_fold_scores(X_fit, y_fit_a, folds, params=params, manifest=manifest, seed=seed, max_bin=max_bin)
        booster, medians, spw = fit_booster(X_fit, y_fit_a, params=params, manifest=manifest, seed=seed,
                                            max_bin=max_bin)
        sizes = {"n_fit": int(len(y_fit_a)), "n_isotonic": int(len(y_fit_a)), "n_conformal": int(len(y_fit_a)),
                 "n_folds": int(n_folds), "grouped_by_subject": g is not None}
    reference = reference_statistics(X_fit, n_bins=psi_bins)

    bundles = {}
    for i, calibrator in enumerate(calibrators):
        # each bundle its own booster (a predictor sets parameters on it); the same trees
        model = booster if i == 0 else booster.copy()
        if calibration == "split":
            fitted_map = fit_calibrator(cal_scores, y_cal_a[cal_idx], calibrator)
            calibrated = CalibratedBooster(model, fitted_map)
            conformal = fit_conformal(calibrated, Xc_imp[conf_idx], y_cal_a[conf_idx],
                                      confidence_level=confidence_level)
            q = conformal_threshold(conformal, confidence_level=confidence_level)
            conf_prob, conf_y = calibrated.predict_proba(Xc_imp[conf_idx])[:, 1], y_cal_a[conf_idx]
            how = (f"{calibrator} on a stratified held-out slice of the training years; "
                   "split-conformal (MAPIE LAC) on a disjoint part of that slice")
        else:
            fitted_map = fit_calibrator(oof, y_fit_a, calibrator)
            conf_prob, conf_y = cross_fitted_probabilities(oof, y_fit_a, folds, calibrator), y_fit_a
            q = lac_threshold(conf_prob, conf_y, confidence_level=confidence_level)
            how = (f"{calibrator} on out-of-fold scores of all training rows ({n_folds} folds"
                   f"{', grouped by subject' if g is not None else ''}), booster refitted on all of them; "
                   "cross-conformal LAC quantile from the cross-fitted calibrated probabilities")
        # both modes' quantiles from the same conformity scores: the settings choose which one serves
        class_q = class_conditional_thresholds(conf_prob, conf_y, confidence_level=confidence_level)
        lineage_out = {
            "params": {k: params[k] for k in XGB_PARAM_NAMES},
            "scale_pos_weight": spw,
            "max_bin": max_bin,
            "seed": int(seed),
            **sizes,
            "calibration_scheme": calibration,
            "calibrator": calibrator,
            "calibration": how,
        }
        lineage_out["manifest_sha256"] = manifest.sha256
        lineage_out.update(dict(lineage or {}))
        bundles[calibrator] = ModelBundle(
            booster=model,
            feature_names=names,
            manifest=manifest.to_dict(),
            frozen_medians={k: float(medians[k]) for k in names},
            calibrator=fitted_map,
            conformal_threshold=q,
            conformal_class_thresholds=[float(v) for v in class_q],
            confidence_level=float(confidence_level),
            threshold=float(threshold),
            reference=copy.deepcopy(reference),  # each bundle its own, as its booster
            lineage=lineage_out,
            settings=settings.to_dict() if settings is not None else None,
        )
    return bundles


def _check_disjoint(X_fit: pd.DataFrame, X_cal: pd.DataFrame, y_fit: np.ndarray, groups: np.ndarray | None) -> None:
    """The slice must share no row (by index label) and, when subject ids are given, no subject with X_fit."""
    # Row labels identify rows (e.g. stay ids, or the index kept by split_for_calibration);
    # a fresh 0..n-1 RangeIndex carries no identity and is not checked.
    positional = [isinstance(f.index, pd.RangeIndex) and f.index.start == 0 for f in (X_fit, X_cal)]
    if (not any(positional) and X_fit.index.is_unique and X_cal.index.is_unique
            and X_fit.index.intersection(X_cal.index).size):
        raise ValueError("X_cal: shares row index labels with X_fit; the calibration slice "
                         "must be disjoint from the fitting rows")
    if groups is not None:
        if len(groups) != len(y_fit) + len(X_cal):
            raise ValueError(f"groups: must have one subject id per row of X_fit then X_cal "
                             f"({len(y_fit) + len(X_cal)}), got {len(groups)}")
        shared = set(groups[:len(y_fit)]) & set(groups[len(y_fit):])
        if shared:
            raise ValueError(f"groups: {len(shared)} subject(s) have rows in both X_fit and X_cal; "
                             "split by subject (split_for_calibration(groups=...))")

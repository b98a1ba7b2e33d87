"""The model bundle: the one contract that training writes and serving reads.

:func:`clinops.modeling.fit_final` builds a :class:`ModelBundle`; the server, the drift monitor,
the audit trail and the notebooks read it. It holds the XGBoost booster, the isotonic
calibrator, the split-conformal quantile, the frozen imputation values, the feature manifest,
the PSI reference of the training data (:func:`clinops.drift.reference_statistics`), the
lineage and the task's resolved settings. On disk it is ``model.json`` (XGBoost),
``calibrator.joblib`` (the fitted :class:`~sklearn.isotonic.IsotonicRegression`) and
``bundle.json`` (everything else), in one directory.

:class:`CalibratedBooster` is the booster followed by its calibrator as a scikit-learn
classifier, so MAPIE can conformalize the *calibrated* probability (the number clinicians see).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import xgboost as xgb
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.isotonic import IsotonicRegression
from sklearn.utils.validation import check_array, check_consistent_length

from clinops.labels import binary_labels
from clinops.settings import SettingsError, TaskSettings

__all__ = ["ModelBundle", "CalibratedBooster", "BUNDLE_FORMAT_VERSION"]

BUNDLE_FORMAT_VERSION = 1


class CalibratedBooster(ClassifierMixin, BaseEstimator):
    """A trained booster followed by its isotonic calibrator, as a prefit scikit-learn classifier.

    Both parts are fitted beforehand (:func:`clinops.modeling.fit_final`); as for
    :class:`sklearn.frozen.FrozenEstimator`, :meth:`fit` changes nothing: it checks its input
    and returns ``self``, so the estimator can go where scikit-learn (or MAPIE) expects a fitted
    classifier; :func:`sklearn.base.clone` returns it unchanged. Input: imputed features in the
    booster's feature order, shape (n, p).

    Parameters
    ----------
    booster : xgboost.Booster
        Trained on imputed features.
    calibrator : IsotonicRegression
        Fitted map from the booster's raw probability to the calibrated one.
    """

    def __init__(self, booster: xgb.Booster | None = None,
                 calibrator: IsotonicRegression | None = None):
        self.booster = booster
        self.calibrator = calibrator

    def __sklearn_is_fitted__(self) -> bool:
        return self.booster is not None and self.calibrator is not None

    def __sklearn_clone__(self) -> "CalibratedBooster":
        # As FrozenEstimator: a clone of a prefit model is the model itself (cloning would
        # otherwise hand back an unfitted calibrator).
        return self

    @property
    def classes_(self) -> np.ndarray:
        """The labels, ``[0, 1]``."""
        return np.array([0, 1])

    def fit(self, X, y=None) -> "CalibratedBooster":
        """Prefit: check ``X`` (and ``y`` when given) and return ``self`` unchanged.

        Raises
        ------
        ValueError
            The booster or calibrator is missing, ``X`` has the wrong number of features,
            ``y`` is not 0/1 labels of the same length.
        """
        if not self.__sklearn_is_fitted__():
            raise ValueError("CalibratedBooster: booster and calibrator must both be given; they are "
                             "fitted beforehand (clinops.modeling.fit_final), fit() only checks input")
        X = check_array(X, dtype=np.float64, ensure_all_finite=True, input_name="X")
        if X.shape[1] != self.booster.num_features():
            raise ValueError(f"X: must have the booster's {self.booster.num_features()} features, "
                             f"got {X.shape[1]}")
        if y is not None:
            check_consistent_length(X, binary_labels(y, "y"))
        return self

    def predict_proba(self, X) -> np.ndarray:
        """Calibrated probabilities, shape (n, 2): column k = probability of label k."""
        raw = self.booster.inplace_predict(np.asarray(X, dtype=np.float64))
        p1 = self.calibrator.predict(raw)
        return np.column_stack([1.0 - p1, p1])

    def predict(self, X) -> np.ndarray:
        """Label 1 where the calibrated probability is at least 0.5."""
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
        Raw score -> calibrated probability (clip, linear between its thresholds): the isotonic
        step map or the strictly increasing interpolated one (``uncertainty.calibrator``), fitted
        on the calibrator part of the held-out slice or on out-of-fold scores of every training
        row (``modeling.calibration``; ``lineage['calibration_scheme']`` says which).
    conformal_threshold : float
        LAC quantile q: label k is in the set when ``1 - p_k - q <= 1e-8`` (p = calibrated
        probability), fitted by MAPIE on the conformal part of the held-out slice, or taken with
        MAPIE's quantile rule from the cross-fitted probabilities of every training row (cross_fit).
    confidence_level : float
        Target coverage of the conformal sets (e.g. 0.90).
    threshold : float
        Operating threshold on the calibrated probability (paper: 0.40).
    reference : dict
        :func:`clinops.drift.reference_statistics` of the fitting data (PSI bins, min/max,
        missing rates).
    lineage : dict
        Dataset SHA-256s, feature SQL / manifest SHA-256s, hyperparameters, seed, sizes,
        ``run_id`` once logged to MLflow.
    conformal_class_thresholds : list of two floats or None
        Class-conditional (Mondrian) LAC quantiles ``(q_0, q_1)`` from the same conformal part
        (:func:`clinops.uncertainty.class_conditional_thresholds`); used when the settings'
        ``conformal_mode`` is ``mondrian``. None for bundles written before they were stored.
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
    conformal_class_thresholds: list[float] | None = None

    def task_settings(self) -> TaskSettings:
        """The :class:`clinops.settings.TaskSettings` this model was trained and reported with.

        Raises
        ------
        clinops.settings.SettingsError : the bundle carries no settings.
        """
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
            "conformal_class_thresholds": (None if self.conformal_class_thresholds is None
                                           else [float(q) for q in self.conformal_class_thresholds]),
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
            conformal_class_thresholds=meta.get("conformal_class_thresholds"),
        )


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")

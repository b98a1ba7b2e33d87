"""Single-patient inference: a :class:`~clinops.bundle.ModelBundle` scored as one result per patient.

:class:`RiskPredictor` gives, in one call, the raw score, the calibrated probability, the
conformal set, a low-confidence flag, the imputed features, exact TreeSHAP contributions and an
out-of-distribution check (:class:`RiskResult`).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd
import xgboost as xgb

from clinops.bundle import ModelBundle
from clinops.features import FeatureManifest, impute
from clinops.uncertainty.class_coverage import contradicting_singleton
from clinops.uncertainty.conformal import sets_for_mode

__all__ = ["RiskResult", "RiskPredictor"]


@dataclass(frozen=True)
class RiskResult:
    """One patient's prediction.

    Attributes
    ----------
    raw_score : float
        Uncalibrated model probability (sigmoid of the booster margin).
    probability : float
        Isotonic-calibrated probability of the outcome.
    conformal_set : tuple of int
        Labels in the split-conformal set: ``(0,)``, ``(1,)``, ``(0, 1)`` or ``()``.
    low_confidence : bool
        The set is ambiguous ``(0, 1)`` or empty: the model cannot commit at the target coverage.
    above_threshold : bool
        ``probability >= threshold`` (the operating threshold, paper 0.40).
    imputed : tuple of str
        Features that were missing and filled with the frozen training values.
    contributions : dict[str, float]
        Exact TreeSHAP value of each feature on the margin (log-odds) scale, plus ``'bias'``;
        they sum to ``logit(raw_score)``.
    out_of_distribution : bool
        Some observed (non-imputed) value lies outside the training range.
    ood_features : tuple of str
        Those features.
    model_version : str or None
        MLflow run id of the model.
    contradicting_singleton : bool
        The set is {0} (survives) while ``probability`` is at or above the settings'
        ``contradiction_probability`` (default the operating threshold): a confident set that
        contradicts a high calibrated probability (:func:`clinops.uncertainty.contradicting_singleton`).

    Examples
    --------
    >>> r = RiskResult(raw_score=0.3, probability=0.42, conformal_set=(0, 1), low_confidence=True,
    ...                above_threshold=True, imputed=("lactate",), contributions={"bias": -0.8},
    ...                out_of_distribution=False, ood_features=(), model_version=None)
    >>> r.to_dict()["conformal_set"]
    [0, 1]
    """

    raw_score: float
    probability: float
    conformal_set: tuple[int, ...]
    low_confidence: bool
    above_threshold: bool
    imputed: tuple[str, ...]
    contributions: dict[str, float]
    out_of_distribution: bool
    ood_features: tuple[str, ...]
    model_version: str | None
    contradicting_singleton: bool = False

    def to_dict(self) -> dict:
        """JSON-ready dict (tuples become lists)."""
        d = asdict(self)
        for k in ("conformal_set", "imputed", "ood_features"):
            d[k] = list(d[k])
        return d


class RiskPredictor:
    """Serve a :class:`~clinops.bundle.ModelBundle`: one call per patient or per frame.

    The record is validated and encoded by the bundle's feature manifest
    (:meth:`clinops.features.FeatureManifest.encode_records`; unknown field, wrong type,
    implausible value or unknown category -> :class:`clinops.features.FeatureValidationError`),
    imputed with the frozen medians, scored, calibrated and given a conformal set. The
    single-record path uses numpy and one XGBoost ``DMatrix``, no pandas.

    Parameters
    ----------
    bundle : ModelBundle

    Examples
    --------
    A tiny model on two features, fitted on synthetic rows:

    >>> import numpy as np, pandas as pd
    >>> from clinops.modeling import fit_final
    >>> src = {"method": "chartevents", "table": "icu.chartevents", "itemids": [1]}
    >>> manifest = {"name": "tiny", "features": [
    ...     {"name": "age", "kind": "numeric", "unit": "years", "aggregate": "first",
    ...      "source": src, "plausible_range": [18, 120], "justification": "age"},
    ...     {"name": "lactate", "kind": "numeric", "unit": "mmol/L", "aggregate": "max",
    ...      "source": src, "plausible_range": [0, 30], "justification": "perfusion"}]}
    >>> rng = np.random.default_rng(0)
    >>> X = pd.DataFrame({"age": rng.uniform(18, 90, 400), "lactate": rng.gamma(2.0, 1.0, 400)})
    >>> y = (rng.random(400) < 1 / (1 + np.exp(-(X["lactate"] - 3)))).astype(int).to_numpy()
    >>> params = {"n_estimators": 20, "max_depth": 2, "learning_rate": 0.1, "subsample": 1.0,
    ...           "colsample_bytree": 1.0, "min_child_weight": 1}
    >>> bundle = fit_final(X[:300], y[:300], X[300:], y[300:], params=params, manifest=manifest, seed=0)
    >>> result = RiskPredictor(bundle).predict_one({"age": 70, "lactate": None})
    >>> result.imputed
    ('lactate',)
    >>> 0.0 <= result.probability <= 1.0 and result.conformal_set in {(0,), (1,), (0, 1), ()}
    True
    """

    def __init__(self, bundle: ModelBundle):
        self.bundle = bundle
        self.manifest = FeatureManifest.from_dict(bundle.manifest)
        if self.manifest.names != list(bundle.feature_names):
            raise ValueError("bundle: feature_names must equal the manifest's features in order")
        self.feature_names = list(bundle.feature_names)
        self._medians = bundle.median_vector
        self._lo = np.array([bundle.reference[n]["min"] for n in self.feature_names])
        self._hi = np.array([bundle.reference[n]["max"] for n in self.feature_names])
        # Isotonic with clip == linear interpolation between its thresholds, clamped at the
        # ends; np.interp does the same without sklearn's per-call validation.
        self._iso_x = np.asarray(bundle.calibrator.X_thresholds_, dtype=np.float64)
        self._iso_y = np.asarray(bundle.calibrator.y_thresholds_, dtype=np.float64)
        self._q = float(bundle.conformal_threshold)
        # The mode and the "high" probability come from the settings the bundle carries, so the
        # workflow's tables and the server give the same sets; a bundle without settings is marginal.
        settings = bundle.task_settings() if bundle.settings else None
        self._mode = settings.conformal_mode if settings else "marginal"
        self._high = settings.contradiction_probability if settings else float(bundle.threshold)
        self._class_q = bundle.conformal_class_thresholds
        self._threshold = float(bundle.threshold)
        self._booster = bundle.booster
        # One thread: a single row gains nothing from more and must not wait on busy cores.
        self._booster.set_param({"nthread": 1})

    def _sets(self, prob: np.ndarray) -> np.ndarray:
        return sets_for_mode(prob, mode=self._mode, threshold=self._q, class_thresholds=self._class_q)

    def _calibrate(self, raw: np.ndarray) -> np.ndarray:
        return np.interp(raw, self._iso_x, self._iso_y)

    def predict_one(self, record: Mapping[str, Any]) -> RiskResult:
        """Score one patient.

        Parameters
        ----------
        record : mapping
            Feature name -> raw value in manifest units (categories as strings); missing keys
            or ``None`` are imputed.

        Returns
        -------
        RiskResult
        """
        return self.predict_many([record])[0]

    def predict_many(self, records: Sequence[Mapping[str, Any]]) -> list[RiskResult]:
        """Score several patients in one XGBoost call (what the server does with concurrent requests).

        Each result equals :meth:`predict_one` on the same record exactly: XGBoost scores and
        explains every row on its own, so batching changes the cost (one ``DMatrix`` and one
        call to each predictor for the batch), never the numbers.

        Parameters
        ----------
        records : sequence of mappings, length n
            As for :meth:`predict_one`. Every record is validated first; the first invalid one
            raises and nothing is scored.

        Returns
        -------
        list of RiskResult, length n, in the order of ``records``
        """
        if not records:
            return []
        X = self.manifest.encode_records(records)  # (n, p)
        missing = np.isnan(X)
        X_imp = np.where(missing, self._medians, X)
        # Columns are in booster order (checked in __init__): the per-call name check is skipped.
        # The score comes from predict(), not from the sum of the float32 TreeSHAP values (equal
        # only to ~1e-6), so that serving and batch scoring (predict_frame) agree exactly.
        dm = xgb.DMatrix(X_imp, nthread=1)
        raw = self._booster.predict(dm, validate_features=False).astype(np.float64)  # (n,)
        contrib = self._booster.predict(dm, pred_contribs=True, validate_features=False)  # (n, p + 1)
        prob = self._calibrate(raw)
        in_set = self._sets(prob)  # (n, 2)
        contradicts = contradicting_singleton(prob, in_set, high_probability=self._high)
        with np.errstate(invalid="ignore"):
            ood = ~missing & ((X < self._lo) | (X > self._hi))
        names = self.feature_names
        out = []
        for i in range(len(records)):
            conformal_set = tuple(int(k) for k in np.flatnonzero(in_set[i]))
            contributions = dict(zip(names, contrib[i, :-1].tolist()))
            contributions["bias"] = float(contrib[i, -1])
            out.append(RiskResult(
                raw_score=float(raw[i]),
                probability=float(prob[i]),
                conformal_set=conformal_set,
                low_confidence=len(conformal_set) != 1,
                above_threshold=bool(prob[i] >= self._threshold),
                imputed=tuple(n for n, m in zip(names, missing[i]) if m),
                contributions=contributions,
                out_of_distribution=bool(ood[i].any()),
                ood_features=tuple(n for n, o in zip(names, ood[i]) if o),
                model_version=self.bundle.run_id,
                contradicting_singleton=bool(contradicts[i]),
            ))
        return out

    def predict_frame(self, df: pd.DataFrame, *, encoded: bool = False) -> pd.DataFrame:
        """Score many patients at once (notebooks, batch evaluation).

        Parameters
        ----------
        df : DataFrame of shape (n, >= p)
            Raw features in manifest units (``encoded=False``, validated by
            ``FeatureManifest.encode``) or already encoded floats (``encoded=True``; must have
            the manifest columns).
        encoded : bool
            Whether ``df`` is already encoded.

        Returns
        -------
        DataFrame, same index
            ``raw_score``, ``probability``, ``in_set_0``, ``in_set_1``, ``set_size``,
            ``low_confidence``, ``above_threshold``, ``n_imputed``, ``out_of_distribution``.
        """
        if encoded:
            self.manifest.check_frame(df)
            X = df[self.feature_names].astype(np.float64)
        else:
            X = self.manifest.encode(df)
        X_imp, mask = impute(X, self.bundle.frozen_medians)
        Xv = X.to_numpy(dtype=np.float64)
        raw = self._booster.inplace_predict(X_imp.to_numpy(dtype=np.float64))
        prob = self._calibrate(raw)
        sets = self._sets(prob)
        with np.errstate(invalid="ignore"):
            ood = ~np.isnan(Xv) & ((Xv < self._lo) | (Xv > self._hi))
        size = sets.sum(axis=1)
        return pd.DataFrame({
            "raw_score": raw.astype(np.float64),
            "probability": prob,
            "in_set_0": sets[:, 0],
            "in_set_1": sets[:, 1],
            "set_size": size,
            "low_confidence": size != 1,
            "above_threshold": prob >= self._threshold,
            "n_imputed": mask.to_numpy().sum(axis=1),
            "out_of_distribution": ood.any(axis=1),
        }, index=df.index)

    def contributions_frame(self, df: pd.DataFrame, *, encoded: bool = False) -> pd.DataFrame:
        """Exact TreeSHAP values (margin scale) for many rows: columns = features + ``bias``."""
        X = df[self.feature_names].astype(np.float64) if encoded else self.manifest.encode(df)
        X_imp, _ = impute(X, self.bundle.frozen_medians)
        dm = xgb.DMatrix(X_imp.to_numpy(dtype=np.float64), feature_names=self.feature_names)
        contrib = self._booster.predict(dm, pred_contribs=True)
        return pd.DataFrame(contrib, columns=[*self.feature_names, "bias"], index=df.index)

"""Uncertainty (Layer 2): isotonic calibration, ECE, reliability, split-conformal sets.

- :func:`fit_isotonic` maps raw model scores to calibrated probabilities; it must be fitted on
  rows the model was not trained on (here: a stratified held-out slice of the training years,
  see :func:`clinops.modeling.fit_final`) and never on the test years.
- :func:`expected_calibration_error` / :func:`reliability_table` / :func:`plot_reliability`
  measure calibration with stated binning.
- :func:`fit_conformal` wraps MAPIE 1.6 ``SplitConformalClassifier`` (LAC score, prefit model)
  for 90 % prediction sets; :func:`coverage_table` reports what the sets achieve overall, per
  class and per subgroup. The coverage guarantee holds under exchangeability of calibration
  and test rows, which a temporal split does not give: measure, do not assume.
- :class:`RiskPredictor` serves one patient from a :class:`~clinops.modeling.ModelBundle`:
  raw score, calibrated probability, conformal set, low-confidence flag, imputed features,
  exact TreeSHAP contributions and an out-of-distribution check, in one call.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, Mapping, Sequence

import numpy as np
import pandas as pd
import xgboost as xgb
from mapie._machine_precision import EPSILON as _MAPIE_EPSILON
from mapie.classification import SplitConformalClassifier
from mapie.metrics.classification import classification_coverage_score
from scipy import stats
from sklearn.isotonic import IsotonicRegression

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.figure import Figure

    from clinops.modeling import ModelBundle

__all__ = [
    "fit_isotonic", "expected_calibration_error", "reliability_table", "plot_reliability",
    "fit_conformal", "conformal_threshold", "conformal_sets", "sets_from_probability",
    "coverage_table", "RiskResult", "RiskPredictor",
]


def _labels(y: Any, name: str = "y") -> np.ndarray:
    arr = np.asarray(y)
    if arr.ndim != 1 or arr.size == 0:
        raise ValueError(f"{name}: must be a non-empty one-dimensional array, "
                         f"got shape {arr.shape}")
    if pd.isna(arr).any() or not set(np.unique(arr).tolist()) <= {0, 1}:
        raise ValueError(f"{name}: labels must be 0 or 1 without missing values")
    return arr.astype(np.int64)


def _probs(p: Any, n: int, name: str = "prob") -> np.ndarray:
    arr = np.asarray(p, dtype=np.float64)
    if arr.shape != (n,):
        raise ValueError(f"{name}: must have shape ({n},), got {arr.shape}")
    if np.isnan(arr).any() or (arr < 0).any() or (arr > 1).any():
        raise ValueError(f"{name}: must be probabilities in [0, 1] without NaN")
    return arr


# ---------------------------------------------------------------------------------------------
# calibration
# ---------------------------------------------------------------------------------------------
def fit_isotonic(scores: np.ndarray, y: np.ndarray) -> IsotonicRegression:
    """Fit an increasing isotonic map from raw scores to probabilities.

    Parameters
    ----------
    scores : array of shape (n,)
        Raw model scores (e.g. uncalibrated probabilities) on rows the model was not trained on.
    y : array of shape (n,)
        Binary outcomes of the same rows.

    Returns
    -------
    IsotonicRegression
        ``out_of_bounds='clip'`` (scores outside the fitted range get the end values),
        outputs bounded to [0, 1].
    """
    y = _labels(y)
    s = np.asarray(scores, dtype=np.float64)
    if s.shape != y.shape or np.isnan(s).any():
        raise ValueError(f"scores: must be finite with the shape of y {y.shape}, got {s.shape}")
    return IsotonicRegression(out_of_bounds="clip", y_min=0.0, y_max=1.0,
                              increasing=True).fit(s, y)


def _bin_ids(prob: np.ndarray, n_bins: int, strategy: str) -> tuple[np.ndarray, np.ndarray]:
    # Same edges and assignment as sklearn.calibration.calibration_curve, so the table can be
    # checked against it: bins are right-closed, (e_{i-1}, e_i], the first also holds e_0.
    if n_bins < 1:
        raise ValueError(f"n_bins: must be at least 1, got {n_bins}")
    if strategy == "uniform":
        edges = np.linspace(0.0, 1.0, n_bins + 1)
    elif strategy == "quantile":
        edges = np.percentile(prob, np.linspace(0, 1, n_bins + 1) * 100)
    else:
        raise ValueError(f"strategy: must be 'uniform' or 'quantile', got {strategy!r}")
    return np.searchsorted(edges[1:-1], prob), edges


def reliability_table(y: np.ndarray, prob: np.ndarray, *, n_bins: int = 10,
                      strategy: str = "uniform") -> pd.DataFrame:
    """Observed event rate against mean predicted probability, per probability bin.

    Parameters
    ----------
    y : array of shape (n,)
        Binary outcomes.
    prob : array of shape (n,)
        Predicted probabilities.
    n_bins : int
        Number of bins.
    strategy : {'uniform', 'quantile'}
        ``'uniform'``: equal-width bins on [0, 1]; ``'quantile'``: edges at the quantiles of
        ``prob`` (equal counts up to ties). Bins are right-closed ``(lower, upper]`` with the
        first bin also holding ``lower`` (the convention of
        :func:`sklearn.calibration.calibration_curve`).

    Returns
    -------
    DataFrame
        One row per non-empty bin: ``bin``, ``lower``, ``upper``, ``n``, ``mean_predicted``,
        ``observed_rate``, ``abs_gap`` (= |observed - predicted|), ``weight`` (= n / total).
    """
    y = _labels(y)
    p = _probs(prob, len(y))
    ids, edges = _bin_ids(p, n_bins, strategy)
    counts = np.bincount(ids, minlength=n_bins)
    sum_p = np.bincount(ids, weights=p, minlength=n_bins)
    sum_y = np.bincount(ids, weights=y, minlength=n_bins)
    keep = counts > 0
    b = np.flatnonzero(keep)
    table = pd.DataFrame({
        "bin": b,
        "lower": edges[b],
        "upper": edges[b + 1],
        "n": counts[keep],
        "mean_predicted": sum_p[keep] / counts[keep],
        "observed_rate": sum_y[keep] / counts[keep],
    })
    table["abs_gap"] = (table["observed_rate"] - table["mean_predicted"]).abs()
    table["weight"] = table["n"] / len(y)
    return table


def expected_calibration_error(y: np.ndarray, prob: np.ndarray, *, n_bins: int = 10,
                               strategy: str = "uniform") -> float:
    """ECE = sum over bins of (n_b / n) * |observed rate_b - mean predicted_b|.

    Binning as in :func:`reliability_table` (default: 10 equal-width bins on [0, 1]).

    Returns
    -------
    float
        In [0, 1]; 0 for perfect calibration within bins.
    """
    t = reliability_table(y, prob, n_bins=n_bins, strategy=strategy)
    return float((t["weight"] * t["abs_gap"]).sum())


def plot_reliability(y: np.ndarray, probs: np.ndarray | Mapping[str, np.ndarray], *,
                     n_bins: int = 10, strategy: str = "uniform",
                     title: str | None = None) -> "Figure":
    """Reliability diagram (observed rate vs mean predicted probability per bin) + histogram.

    Parameters
    ----------
    y : array of shape (n,)
        Binary outcomes.
    probs : array of shape (n,) or mapping label -> array
        One or more probability vectors (e.g. ``{'raw': ..., 'isotonic': ...}``); the legend
        gives each one's ECE.
    n_bins, strategy
        As in :func:`reliability_table`.
    title : str, optional

    Returns
    -------
    matplotlib.figure.Figure
        Built without pyplot, so nothing global is touched.
    """
    from matplotlib.figure import Figure

    series = {"model": probs} if not isinstance(probs, Mapping) else dict(probs)
    fig = Figure(figsize=(5.5, 6.0), layout="constrained")
    ax, hist = fig.subplots(2, 1, height_ratios=[3, 1], sharex=True)
    ax.plot([0, 1], [0, 1], ls="--", color="grey", lw=1, label="perfect calibration")
    for label, p in series.items():
        t = reliability_table(y, p, n_bins=n_bins, strategy=strategy)
        ece = float((t["weight"] * t["abs_gap"]).sum())
        ax.plot(t["mean_predicted"], t["observed_rate"], marker="o",
                label=f"{label} (ECE {ece:.3f})")
        hist.hist(np.asarray(p, dtype=float), bins=np.linspace(0, 1, 21), histtype="step",
                  label=label)
    ax.set_ylabel("observed event rate")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.legend(loc="upper left", fontsize="small")
    ax.set_title(title or f"Reliability ({n_bins} {strategy} bins)")
    hist.set_xlabel("predicted probability")
    hist.set_ylabel("count")
    return fig


# ---------------------------------------------------------------------------------------------
# conformal
# ---------------------------------------------------------------------------------------------
def fit_conformal(model: Any, X_cal: np.ndarray, y_cal: np.ndarray, *,
                  confidence_level: float = 0.90) -> SplitConformalClassifier:
    """Split-conformal classifier (MAPIE, LAC score) around an already fitted model.

    Parameters
    ----------
    model : fitted sklearn-style classifier
        Must have ``predict_proba`` and ``classes_ == [0, 1]`` (e.g.
        :class:`clinops.modeling.CalibratedBooster`).
    X_cal : array of shape (n_cal, p)
        Conformalization rows, disjoint from the model's training rows and from the test set.
    y_cal : array of shape (n_cal,)
        Their labels.
    confidence_level : float
        Target marginal coverage, e.g. 0.90.

    Returns
    -------
    mapie.classification.SplitConformalClassifier
        Conformalized; ``predict_set`` gives the sets.
    """
    if not 0.0 < confidence_level < 1.0:
        raise ValueError(f"confidence_level: must be in (0, 1), got {confidence_level}")
    y = _labels(y_cal, "y_cal")
    if len(np.unique(y)) < 2:
        raise ValueError("y_cal: the conformalization set needs both classes")
    n_min = math.ceil(1 / (1 - confidence_level)) - 1
    if len(y) < n_min:
        raise ValueError(f"y_cal: {len(y)} rows cannot give {confidence_level:.0%} coverage "
                         f"(need at least {n_min})")
    scc = SplitConformalClassifier(estimator=model, confidence_level=confidence_level,
                                   conformity_score="lac", prefit=True)
    return scc.conformalize(X_cal, y)


def conformal_threshold(conformal: SplitConformalClassifier) -> float:
    """The fitted LAC quantile q of a conformalized MAPIE classifier.

    A label k is in the set when ``1 - p_k - q <= 1e-8`` (MAPIE's rule), so q alone (with the
    model) reproduces the sets; it is what the model bundle stores.
    """
    # MAPIE 1.6 computes the quantile lazily inside predict_set and has no public accessor;
    # ask its own LAC score object for it (same call predict_set makes). The test suite checks
    # that sets rebuilt from q equal predict_set's.
    alphas = np.asarray(conformal._alphas, dtype=np.float64)
    if alphas.size != 1:
        raise ValueError("conformal: expected a single confidence level")
    score = conformal._mapie_classifier.conformity_score_function_
    q = score.get_conformity_score_quantiles(conformal.conformity_scores, alphas, cv="prefit")
    return float(np.asarray(q).ravel()[0])


def conformal_sets(conformal: SplitConformalClassifier, X: np.ndarray) -> np.ndarray:
    """Prediction sets from MAPIE as a boolean array of shape (n, 2): column k = label k in set."""
    _, sets = conformal.predict_set(X)
    return np.asarray(sets)[:, :, 0].astype(bool)


def sets_from_probability(prob: np.ndarray, threshold: float) -> np.ndarray:
    """LAC sets from the positive-class probability and the stored quantile q.

    Same rule as MAPIE: label k is in the set when ``(1 - p_k) - q <= 1e-8``.

    Parameters
    ----------
    prob : array of shape (n,)
        Probability of label 1 (the model's, as conformalized).
    threshold : float
        Conformal quantile q (:func:`conformal_threshold`).

    Returns
    -------
    ndarray of bool, shape (n, 2)
    """
    p1 = np.asarray(prob, dtype=np.float64).reshape(-1)
    proba = np.column_stack([1.0 - p1, p1])
    return ((1.0 - proba) - threshold) <= _MAPIE_EPSILON


def coverage_table(y: np.ndarray, sets: np.ndarray,
                   groups: Mapping[str, np.ndarray] | None = None) -> pd.DataFrame:
    """Empirical coverage and set composition, overall, per class and per subgroup.

    Parameters
    ----------
    y : array of shape (n,)
        True labels.
    sets : bool array of shape (n, 2)
        Prediction sets (column k = label k in the set).
    groups : mapping name -> array of shape (n,), optional
        Subgroup labels, e.g. ``{'sex': ..., 'age_group': ...}``.

    Returns
    -------
    DataFrame
        Rows ``('overall', 'all')``, ``('class', '0')``, ``('class', '1')``, then one per
        ``(group, level)``. Columns: ``group``, ``level``, ``n``, ``coverage`` (share of rows
        whose true label is in the set, via MAPIE's ``classification_coverage_score``),
        ``coverage_ci_low`` / ``coverage_ci_high`` (95 % Wilson interval), ``mean_set_size``,
        ``share_singleton``, ``share_ambiguous`` (set = {0, 1}), ``share_empty``.
    """
    y = _labels(y)
    s = np.asarray(sets)
    if s.shape != (len(y), 2) or s.dtype != bool:
        raise ValueError(f"sets: must be a boolean array of shape ({len(y)}, 2), got "
                         f"{s.dtype} {s.shape}")
    rows = [("overall", "all", np.ones(len(y), dtype=bool)),
            ("class", "0", y == 0), ("class", "1", y == 1)]
    for name, values in (groups or {}).items():
        v = pd.Series(np.asarray(values, dtype=object))
        if len(v) != len(y):
            raise ValueError(f"groups[{name!r}]: must have {len(y)} values, got {len(v)}")
        if v.isna().any():
            raise ValueError(f"groups[{name!r}]: must not contain missing values")
        for level in sorted(v.unique(), key=str):
            rows.append((name, str(level), (v == level).to_numpy()))
    out = []
    size = s.sum(axis=1)
    for group, level, mask in rows:
        n = int(mask.sum())
        if n == 0:
            continue
        cov = float(classification_coverage_score(y[mask], s[mask])[0])
        ci = stats.binomtest(int(round(cov * n)), n).proportion_ci(0.95, method="wilson")
        out.append({
            "group": group, "level": level, "n": n, "coverage": cov,
            "coverage_ci_low": float(ci.low), "coverage_ci_high": float(ci.high),
            "mean_set_size": float(size[mask].mean()),
            "share_singleton": float((size[mask] == 1).mean()),
            "share_ambiguous": float((size[mask] == 2).mean()),
            "share_empty": float((size[mask] == 0).mean()),
        })
    return pd.DataFrame(out)


# ---------------------------------------------------------------------------------------------
# single-patient inference
# ---------------------------------------------------------------------------------------------
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

    def to_dict(self) -> dict:
        """JSON-ready dict (tuples become lists)."""
        d = asdict(self)
        for k in ("conformal_set", "imputed", "ood_features"):
            d[k] = list(d[k])
        return d


class RiskPredictor:
    """Serve a :class:`~clinops.modeling.ModelBundle`: one call per patient or per frame.

    The record is validated through the bundle's feature manifest (unknown field, wrong type,
    implausible value or unknown category -> :class:`clinops.features.FeatureValidationError`),
    encoded, imputed with the frozen medians, scored, calibrated and given a conformal set.
    The single-record path uses numpy and one XGBoost ``DMatrix``, no pandas.

    Parameters
    ----------
    bundle : ModelBundle
    """

    def __init__(self, bundle: "ModelBundle"):
        from clinops.features import FeatureManifest

        self.bundle = bundle
        self.manifest = FeatureManifest.from_dict(bundle.manifest)
        if self.manifest.names != list(bundle.feature_names):
            raise ValueError("bundle: feature_names must equal the manifest's features in order")
        self.feature_names = list(bundle.feature_names)
        self._kinds = [s.kind for s in self.manifest.specs]
        # Integer codes in manifest order, as FeatureManifest.encode assigns them.
        self._codes = {s.name: {c: float(i) for i, c in enumerate(s.categories)}
                       for s in self.manifest.specs if s.kind == "categorical"}
        self._medians = bundle.median_vector
        self._lo = np.array([bundle.reference[n]["min"] for n in self.feature_names])
        self._hi = np.array([bundle.reference[n]["max"] for n in self.feature_names])
        # Isotonic with clip == linear interpolation between its thresholds, clamped at the
        # ends; np.interp does the same without sklearn's per-call validation.
        self._iso_x = np.asarray(bundle.calibrator.X_thresholds_, dtype=np.float64)
        self._iso_y = np.asarray(bundle.calibrator.y_thresholds_, dtype=np.float64)
        self._q = float(bundle.conformal_threshold)
        self._threshold = float(bundle.threshold)
        self._booster = bundle.booster
        # One thread: a single row gains nothing from more and must not wait on busy cores.
        self._booster.set_param({"nthread": 1})

    # -------------------------------------------------------------------- helpers
    def _calibrate(self, raw: np.ndarray) -> np.ndarray:
        return np.interp(raw, self._iso_x, self._iso_y)

    def _encode_record(self, clean: Mapping[str, Any]) -> np.ndarray:
        x = np.empty(len(self.feature_names), dtype=np.float64)
        for i, (name, kind) in enumerate(zip(self.feature_names, self._kinds)):
            v = clean[name]
            if v is None:
                x[i] = np.nan
            elif kind == "categorical":
                x[i] = self._codes[name][v]
            else:
                x[i] = float(v)
        return x

    # -------------------------------------------------------------------- API
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
        X = np.stack([self._encode_record(self.manifest.validate_record(r)) for r in records])  # (n, p)
        missing = np.isnan(X)
        X_imp = np.where(missing, self._medians, X)
        # Columns are in booster order (checked in __init__): the per-call name check is skipped.
        # The score comes from predict(), not from the sum of the float32 TreeSHAP values (equal
        # only to ~1e-6), so that serving and batch scoring (predict_frame) agree exactly.
        dm = xgb.DMatrix(X_imp, nthread=1)
        raw = self._booster.predict(dm, validate_features=False).astype(np.float64)  # (n,)
        contrib = self._booster.predict(dm, pred_contribs=True, validate_features=False)  # (n, p + 1)
        prob = self._calibrate(raw)
        in_set = sets_from_probability(prob, self._q)  # (n, 2)
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
        from clinops.features import impute

        if encoded:
            self.manifest.check_frame(df)
            X = df[self.feature_names].astype(np.float64)
        else:
            X = self.manifest.encode(df)
        X_imp, mask = impute(X, self.bundle.frozen_medians)
        Xv = X.to_numpy(dtype=np.float64)
        raw = self._booster.inplace_predict(X_imp.to_numpy(dtype=np.float64))
        prob = self._calibrate(raw)
        sets = sets_from_probability(prob, self._q)
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
        from clinops.features import impute

        X = df[self.feature_names].astype(np.float64) if encoded else self.manifest.encode(df)
        X_imp, _ = impute(X, self.bundle.frozen_medians)
        dm = xgb.DMatrix(X_imp.to_numpy(dtype=np.float64), feature_names=self.feature_names)
        contrib = self._booster.predict(dm, pred_contribs=True)
        return pd.DataFrame(contrib, columns=[*self.feature_names, "bias"], index=df.index)

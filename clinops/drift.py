"""Layer 2 drift: PSI, ADWIN / Page-Hinkley monitors (river), shift simulation, Evidently report.

Pieces
------
- :func:`psi` and :class:`PsiReference`: the Population Stability Index of a current sample
  against a reference whose bins are fixed once, on the reference (training) data. The
  reference is JSON-serialisable, so the model bundle can store it and the server reuse it.
- :func:`simulate_prevalence_shift` / :func:`simulate_additive_shift`: the paper's controlled
  shift (one column changed, every other feature unchanged) on a random subset.
- :func:`prevalence_shift_scenario`: AUROC before and after such a shift, for any model.
- :class:`StreamMonitor`: a live monitor fed one admission at a time (score + features). Every
  ``eval_minutes`` of clock time it feeds the admissions that arrived since the last evaluation
  to ADWIN and Page-Hinkley (river) on the predicted score and recomputes the PSI of every
  feature over the last ``psi_window`` admissions; it returns :class:`MonitorEvent` alarms.
- :func:`simulate_stream`: a Poisson stream in simulated clock time through a monitor, with a
  known change point; :func:`stream_summary`: detection delays and false alarms.
- :func:`evidently_report`: Evidently's data-drift report (HTML) with PSI chosen explicitly.
- :func:`plot_stream`, :func:`plot_psi_over_time`: the figures.
- :class:`DriftPolicy`: detector settings and PSI levels from ``params/policies/drift.yaml``.

PSI
---
For bins ``i`` (fixed on the reference) with reference proportions ``r_i`` and current
proportions ``c_i``::

    PSI = sum_i (c_i - r_i) * ln(c_i / r_i)

A proportion that is exactly 0 is replaced by ``eps`` (default 1e-4, Evidently's value) so the
logarithm stays finite; a bin that is empty in both samples then contributes 0. Numeric
features: interior edges are the reference quantiles at ``1/bins, ..., (bins-1)/bins``
(duplicates from ties dropped), bins are ``(-inf, e1], (e1, e2], ..., (e_k, inf)`` so current
values outside the reference range land in the outer bins. Categorical / binary features: one
bin per reference category plus one for categories never seen in the reference. Both kinds
have one extra bin for missing values, so a change in missingness is drift too.
Conventional reading (Siddiqi 2006; also Evidently's default): < 0.1 stable, 0.1-0.2 watch,
> 0.2 significant shift.
"""
from __future__ import annotations

import json
import logging
import math
import threading
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from clinops.policy import PolicyError, read_policy

__all__ = [
    "PSI_EPS",
    "DriftPolicy",
    "PolicyError",
    "PsiReference",
    "MonitorEvent",
    "StreamMonitor",
    "ShiftScenario",
    "psi",
    "psi_status",
    "simulate_prevalence_shift",
    "simulate_additive_shift",
    "prevalence_shift_scenario",
    "simulate_stream",
    "stream_summary",
    "evidently_report",
    "plot_stream",
    "plot_psi_over_time",
]

log = logging.getLogger(__name__)

#: Proportion used in place of an empty bin (Evidently's ``feel_zeroes`` value).
PSI_EPS = 1e-4
KINDS = ("numeric", "categorical")
#: Scales on which Page-Hinkley sees the score: the probability itself or its logit.
TRANSFORMS = ("identity", "logit")
_LOGIT_CLIP = 1e-6


def _transform(scores: Any, how: str) -> np.ndarray:
    s = np.asarray(scores, dtype=float)
    if how == "identity":
        return s
    p = np.clip(s, _LOGIT_CLIP, 1 - _LOGIT_CLIP)
    return np.log(p / (1 - p))


# --------------------------------------------------------------------------------------------
# PSI


def _psi_from_props(ref: np.ndarray, cur: np.ndarray, eps: float) -> float:
    r = np.where(ref > 0, ref, eps)
    c = np.where(cur > 0, cur, eps)
    return float(np.sum((c - r) * np.log(c / r)))


def _json_scalar(v: Any) -> Any:
    if isinstance(v, (np.generic,)):
        v = v.item()
    if isinstance(v, float) and not math.isfinite(v):
        raise ValueError(f"cannot store non-finite value {v!r} in a PSI reference")
    return v


@dataclass(frozen=True)
class _FeatureBins:
    """Fixed bins of one feature: edges (numeric) or categories (categorical) + proportions."""

    kind: str
    edges: tuple[float, ...] = ()
    categories: tuple[Any, ...] = ()
    ref_props: tuple[float, ...] = ()      # value bins..., then [unseen (categorical)], missing

    @property
    def n_bins(self) -> int:
        return len(self.ref_props)

    def codes(self, values: Any) -> np.ndarray:
        """Bin index per value, shape (n,); the last bin is 'missing'."""
        s = pd.Series(values)
        missing = s.isna().to_numpy()
        out = np.full(len(s), self.n_bins - 1, dtype=np.int64)
        if self.kind == "numeric":
            x = pd.to_numeric(s, errors="coerce").to_numpy(dtype=float, na_value=np.nan)
            bad = np.isnan(x) & ~missing
            if bad.any():
                raise ValueError(f"non-numeric values in a numeric feature: {s[bad].unique()[:3].tolist()}")
            out[~missing] = np.searchsorted(np.asarray(self.edges, dtype=float), x[~missing], side="left")
        else:
            # equal values match across int/float/bool (1 == 1.0 == True); a category stored as
            # text also matches the same value given as a number ('3' and 3)
            lookup = {c: i for i, c in enumerate(self.categories)}
            by_text = {str(c): i for i, c in enumerate(self.categories)}
            unseen = len(self.categories)
            present = s[~missing]
            code = present.map(lambda v: lookup.get(v.item() if isinstance(v, np.generic) else v,
                                                    by_text.get(str(v), unseen)))
            out[~missing] = code.to_numpy(dtype=np.int64)
        return out

    @classmethod
    def fit(cls, values: Any, kind: str, bins: int) -> "_FeatureBins":
        s = pd.Series(values)
        present = s.dropna()
        if kind == "numeric":
            x = pd.to_numeric(present, errors="coerce")
            if x.isna().any():
                raise ValueError(f"kind 'numeric' but non-numeric values found: {present[x.isna()].unique()[:3].tolist()}")
            x = x.to_numpy(dtype=float)
            distinct = np.unique(x)
            # few distinct values (flags, scores, codes): one bin per value, as
            # clinops.modeling.reference_statistics does; interpolated quantiles would put cut
            # points between values and leave bins no value can fall in
            edges = distinct[:-1] if len(distinct) <= bins else np.unique(np.quantile(x, np.arange(1, bins) / bins))
            fb = cls(kind, edges=tuple(float(e) for e in edges), ref_props=(0.0,) * (len(edges) + 2))
        elif kind == "categorical":
            cats = sorted({_json_scalar(v) for v in present.tolist()}, key=lambda v: (str(type(v)), v))
            fb = cls(kind, categories=tuple(cats), ref_props=(0.0,) * (len(cats) + 2))
        else:
            raise ValueError(f"kind: must be one of {KINDS}, got {kind!r}")
        counts = np.bincount(fb.codes(s), minlength=fb.n_bins)
        props = counts / max(len(s), 1)
        return cls(kind, fb.edges, fb.categories, tuple(float(v) for v in props))


def psi(reference: Any, current: Any, *, bins: int = 10, edges: Sequence[float] | None = None,
        kind: str = "numeric", eps: float = PSI_EPS) -> float:
    """Population Stability Index of ``current`` against ``reference`` (bins from the reference).

    Parameters
    ----------
    reference, current : array-like of shape (n_ref,), (n_cur,)
        Values of one feature; NaN/None count in a separate 'missing' bin.
    bins : int
        Number of reference-quantile bins for a numeric feature (ignored when ``edges`` given).
    edges : sequence of float, optional
        Interior bin edges (increasing) to use instead of reference quantiles; bins are
        ``(-inf, e1], (e1, e2], ..., (e_k, inf)``.
    kind : {'numeric', 'categorical'}
        Categorical (incl. binary) features get one bin per reference category plus 'unseen'.
    eps : float
        Stand-in for an empty bin's proportion.

    Returns
    -------
    float
        ``sum_i (c_i - r_i) ln(c_i / r_i)`` (dimensionless, >= 0).
    """
    if kind not in KINDS:
        raise ValueError(f"kind: must be one of {KINDS}, got {kind!r}")
    if not (isinstance(bins, (int, np.integer)) and bins >= 2):
        raise ValueError(f"bins: must be an integer >= 2, got {bins!r}")
    if not (0 < eps < 0.01):
        raise ValueError(f"eps: must be in (0, 0.01), got {eps}")
    if len(pd.Series(reference).dropna()) == 0:
        raise ValueError("reference: needs at least one non-missing value")
    if len(pd.Series(current)) == 0:
        raise ValueError("current: needs at least one value")
    if edges is not None:
        if kind != "numeric":
            raise ValueError("edges: only for kind 'numeric'")
        e = np.asarray(edges, dtype=float)
        if e.ndim != 1 or np.any(np.diff(e) <= 0):
            raise ValueError(f"edges: must be strictly increasing, got {list(edges)}")
        fb = _FeatureBins("numeric", edges=tuple(e.tolist()), ref_props=(0.0,) * (len(e) + 2))
        ref_s = pd.Series(reference)
        props = np.bincount(fb.codes(ref_s), minlength=fb.n_bins) / len(ref_s)
        fb = _FeatureBins("numeric", fb.edges, (), tuple(props.tolist()))
    else:
        fb = _FeatureBins.fit(reference, kind, bins)
    cur_codes = fb.codes(current)
    cur = np.bincount(cur_codes, minlength=fb.n_bins) / len(cur_codes)
    return _psi_from_props(np.asarray(fb.ref_props), cur, eps)


def psi_status(value: float, *, watch: float = 0.1, alert: float = 0.2) -> str:
    """'stable' (< watch), 'watch' (watch <= PSI < alert) or 'drift' (>= alert); NaN -> 'unknown'."""
    if value is None or not np.isfinite(value):
        return "unknown"
    return "drift" if value >= alert else "watch" if value >= watch else "stable"


class PsiReference:
    """Fixed PSI bins and reference proportions for every feature of a training set.

    Build with :meth:`fit`; store with :meth:`to_dict` / :meth:`save` (JSON); restore with
    :meth:`from_dict` / :meth:`load`. :meth:`psi` gives the PSI of each feature of a current
    sample.
    """

    FORMAT = "clinops.drift.PsiReference"
    VERSION = 1

    def __init__(self, features: Mapping[str, _FeatureBins], *, eps: float = PSI_EPS, n_reference: int = 0):
        self._features = dict(features)
        self.eps = float(eps)
        self.n_reference = int(n_reference)

    @property
    def features(self) -> list[str]:
        return list(self._features)

    def kind(self, feature: str) -> str:
        return self._features[feature].kind

    @classmethod
    def fit(cls, X_train: pd.DataFrame, kinds: Mapping[str, str] | None = None, *, bins: int = 10,
            eps: float = PSI_EPS) -> "PsiReference":
        """Fix bins on the training data.

        Parameters
        ----------
        X_train : DataFrame of shape (n, p)
        kinds : mapping feature -> 'numeric' | 'categorical', optional
            Which features to track and how. When omitted, every column is tracked; non-numeric
            and bool columns and numeric columns whose values are all 0/1 are categorical, the
            rest numeric. Pass it explicitly for coded categories (e.g. an integer diagnosis
            chapter), which would otherwise be binned as numbers.
        bins : int
            Quantile bins per numeric feature.
        eps : float
            Stand-in proportion for empty bins.
        """
        if not isinstance(X_train, pd.DataFrame) or X_train.empty:
            raise ValueError("X_train: must be a non-empty DataFrame")
        if kinds is None:
            kinds = {c: _infer_kind(X_train[c]) for c in X_train.columns}
        missing = [c for c in kinds if c not in X_train.columns]
        if missing:
            raise KeyError(f"kinds: features not in X_train: {missing}")
        for c, k in kinds.items():
            if k not in KINDS:
                raise ValueError(f"kinds[{c!r}]: must be one of {KINDS}, got {k!r}")
        if not (isinstance(bins, (int, np.integer)) and bins >= 2):
            raise ValueError(f"bins: must be an integer >= 2, got {bins!r}")
        feats = {}
        for c, k in kinds.items():
            if X_train[c].isna().all():
                raise ValueError(f"X_train[{c!r}]: all values missing; cannot fix PSI bins")
            feats[str(c)] = _FeatureBins.fit(X_train[c], k, int(bins))
        return cls(feats, eps=eps, n_reference=len(X_train))

    @classmethod
    def from_bundle_reference(cls, reference: Mapping[str, Mapping[str, Any]], *,
                              eps: float = PSI_EPS) -> "PsiReference":
        """From the model bundle's ``reference`` (:func:`clinops.modeling.reference_statistics`).

        That format keeps, per feature, ``bin_edges`` (same bin convention as here),
        ``proportions`` over the *observed* values and ``missing_rate``; the missing share
        becomes this class's missing bin. Every feature is binned as numeric (coded categories
        get one bin per code there).
        """
        feats = {}
        for name, st in reference.items():
            try:
                edges = [float(e) for e in st["bin_edges"]]
                props = np.asarray(st["proportions"], dtype=float)
                miss = float(st.get("missing_rate", 0.0))
            except (KeyError, TypeError) as e:
                raise ValueError(f"reference[{name!r}]: needs bin_edges, proportions, missing_rate ({e})") from None
            if len(props) != len(edges) + 1:
                raise ValueError(f"reference[{name!r}]: {len(edges)} edges need {len(edges) + 1} proportions, "
                                 f"got {len(props)}")
            if not (0.0 <= miss <= 1.0):
                raise ValueError(f"reference[{name!r}].missing_rate: must be in [0, 1], got {miss}")
            feats[str(name)] = _FeatureBins("numeric", edges=tuple(edges),
                                            ref_props=tuple((props * (1 - miss)).tolist()) + (miss,))
        return cls(feats, eps=eps)

    def codes(self, X: pd.DataFrame) -> np.ndarray:
        """Bin index of every value, shape (n, n_features) in :attr:`features` order."""
        absent = [f for f in self._features if f not in X.columns]
        if absent:
            raise KeyError(f"X: missing feature column(s) {absent} tracked by the PSI reference")
        return np.column_stack([self._features[f].codes(X[f]) for f in self._features]) if len(X) else \
            np.empty((0, len(self._features)), dtype=np.int64)

    def psi_from_codes(self, codes: np.ndarray) -> np.ndarray:
        """PSI per feature from a (n, n_features) array of bin codes; shape (n_features,)."""
        out = np.empty(len(self._features))
        for j, fb in enumerate(self._features.values()):
            cur = np.bincount(codes[:, j], minlength=fb.n_bins) / codes.shape[0]
            out[j] = _psi_from_props(np.asarray(fb.ref_props), cur, self.eps)
        return out

    def psi(self, X_current: pd.DataFrame) -> pd.Series:
        """PSI of every tracked feature of ``X_current`` (Series indexed by feature, name 'psi')."""
        if len(X_current) == 0:
            raise ValueError("X_current: needs at least one row")
        return pd.Series(self.psi_from_codes(self.codes(X_current)), index=self.features, name="psi")

    def to_dict(self) -> dict[str, Any]:
        feats = {}
        for name, fb in self._features.items():
            d: dict[str, Any] = {"kind": fb.kind, "ref_props": list(fb.ref_props)}
            if fb.kind == "numeric":
                d["edges"] = list(fb.edges)
            else:
                d["categories"] = [_json_scalar(c) for c in fb.categories]
            feats[name] = d
        return {"format": self.FORMAT, "version": self.VERSION, "eps": self.eps,
                "n_reference": self.n_reference, "features": feats}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "PsiReference":
        if d.get("format") != cls.FORMAT:
            raise ValueError(f"format: expected {cls.FORMAT!r}, got {d.get('format')!r}")
        feats = {}
        for name, fd in d["features"].items():
            kind = fd["kind"]
            if kind == "numeric":
                fb = _FeatureBins(kind, edges=tuple(fd["edges"]), ref_props=tuple(fd["ref_props"]))
                expected = len(fb.edges) + 2
            else:
                fb = _FeatureBins(kind, categories=tuple(fd["categories"]), ref_props=tuple(fd["ref_props"]))
                expected = len(fb.categories) + 2
            if len(fb.ref_props) != expected:
                raise ValueError(f"features.{name}.ref_props: expected {expected} proportions, got {len(fb.ref_props)}")
            feats[name] = fb
        return cls(feats, eps=d.get("eps", PSI_EPS), n_reference=d.get("n_reference", 0))

    def save(self, path: str | Path) -> Path:
        p = Path(path)
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(json.dumps(self.to_dict(), indent=1))
        return p

    @classmethod
    def load(cls, path: str | Path) -> "PsiReference":
        return cls.from_dict(json.loads(Path(path).read_text()))


def _infer_kind(s: pd.Series) -> str:
    if s.dtype == bool or not pd.api.types.is_numeric_dtype(s):
        return "categorical"
    vals = pd.unique(s.dropna())
    return "categorical" if len(vals) and set(np.asarray(vals, dtype=float).tolist()) <= {0.0, 1.0} else "numeric"


# --------------------------------------------------------------------------------------------
# shift simulation


def _subset(X: pd.DataFrame, n: int | None, rng: np.random.Generator) -> pd.DataFrame:
    if n is None:
        return X.copy()
    if not isinstance(n, (int, np.integer)) or not (1 <= n <= len(X)):
        raise ValueError(f"n: must be an integer in [1, {len(X)}] (rows of X), got {n!r}")
    pos = np.sort(rng.choice(len(X), size=int(n), replace=False))
    return X.iloc[pos].copy()


def simulate_prevalence_shift(X: pd.DataFrame, column: str, target_prevalence: float, *,
                              n: int | None = None, seed: int) -> pd.DataFrame:
    """A random subset with one binary column moved to a target prevalence, nothing else changed.

    Parameters
    ----------
    X : DataFrame of shape (N, p)
    column : name of a 0/1 column (missing values allowed and left missing)
    target_prevalence : float in [0, 1]
        Wanted share of 1 among the non-missing values of ``column`` in the subset.
    n : int, optional
        Rows drawn at random without replacement (default: all rows).
    seed : int

    Returns
    -------
    DataFrame of shape (n, p)
        Same index labels as the chosen rows of ``X`` (so outcomes can be looked up). The
        smallest change that reaches the target: when raising the prevalence, randomly chosen
        0s become 1 (existing 1s stay); when lowering, randomly chosen 1s become 0. The count
        of 1s is ``round(target_prevalence * non-missing)``.
    """
    if column not in X.columns:
        raise KeyError(f"column: {column!r} not in X")
    if not (0.0 <= float(target_prevalence) <= 1.0):
        raise ValueError(f"target_prevalence: must lie in [0, 1], got {target_prevalence}")
    vals = pd.unique(X[column].dropna())
    if not set(np.asarray(vals, dtype=float).tolist()) <= {0.0, 1.0}:
        raise ValueError(f"X[{column!r}]: must be binary 0/1 for a prevalence shift; use "
                         f"simulate_additive_shift for a numeric column")
    rng = np.random.default_rng(seed)
    out = _subset(X, n, rng)
    col = out[column]
    present = col.notna().to_numpy()
    ones = present & (col.to_numpy(dtype=float, na_value=np.nan) == 1)
    zeros = present & ~ones
    want = int(round(float(target_prevalence) * present.sum()))
    have = int(ones.sum())
    new = col.to_numpy(dtype=float, na_value=np.nan).copy()
    if want > have:
        flip = rng.choice(np.flatnonzero(zeros), size=want - have, replace=False)
        new[flip] = 1.0
    elif want < have:
        flip = rng.choice(np.flatnonzero(ones), size=have - want, replace=False)
        new[flip] = 0.0
    out[column] = pd.Series(new, index=out.index).astype(X[column].dtype) if not np.isnan(new).any() \
        else pd.Series(new, index=out.index)
    return out


def simulate_additive_shift(X: pd.DataFrame, column: str, shift: float, *, n: int | None = None,
                            seed: int, lower: float | None = None, upper: float | None = None) -> pd.DataFrame:
    """A random subset with ``shift`` added to one numeric column (missing values stay missing).

    Parameters
    ----------
    X : DataFrame of shape (N, p)
    column : numeric column
    shift : amount added, in the column's units (e.g. +1 prior admission)
    n : rows drawn at random without replacement (default: all)
    seed : int
    lower, upper : optional clipping bounds (e.g. 0 for counts)

    Returns
    -------
    DataFrame of shape (n, p), index labels of the chosen rows.
    """
    if column not in X.columns:
        raise KeyError(f"column: {column!r} not in X")
    if not pd.api.types.is_numeric_dtype(X[column]):
        raise ValueError(f"X[{column!r}]: must be numeric for an additive shift")
    if not np.isfinite(shift):
        raise ValueError(f"shift: must be finite, got {shift}")
    out = _subset(X, n, np.random.default_rng(seed))
    out[column] = (out[column].astype(float) + float(shift)).clip(lower=lower, upper=upper)
    return out


@dataclass
class ShiftScenario:
    """AUROC before/after a controlled shift (see :func:`prevalence_shift_scenario`).

    ``relative_drop`` = (auroc_before - auroc_after) / auroc_before on the same rows (the
    shift's own effect); ``relative_drop_vs_full`` uses the AUROC on the whole set instead (the
    paper's 0.847 -> 0.793 comparison).
    """

    column: str
    prevalence_before: float
    prevalence_after: float
    n: int
    auroc_full: float
    auroc_before: float
    auroc_after: float
    relative_drop: float
    relative_drop_vs_full: float
    X_shifted: pd.DataFrame = field(repr=False)
    y: pd.Series = field(repr=False)
    scores_before: np.ndarray = field(repr=False)
    scores_after: np.ndarray = field(repr=False)

    def summary(self) -> dict[str, float]:
        return {k: v for k, v in asdict(self).items()
                if k not in {"X_shifted", "y", "scores_before", "scores_after"}}


def shift_scenario(predict_proba: Callable[[pd.DataFrame], Any], X: pd.DataFrame, y: Any, *,
                   column: str, n: int, seed: int, target_prevalence: float | None = None,
                   shift: float | None = None) -> ShiftScenario:
    """A controlled one-column shift for any model and task: compare AUROC before and after.

    A binary column is resampled to ``target_prevalence`` (:func:`simulate_prevalence_shift`,
    the paper's scenario); a numeric column is moved by ``shift`` units
    (:func:`simulate_additive_shift`). Exactly one of the two must be given.

    Parameters
    ----------
    predict_proba : callable DataFrame (m, p) -> array (m,) of P(outcome = 1)
    X : DataFrame (N, p) of test features; y : array-like (N,) of 0/1 outcomes (aligned with X)
    column, n, seed : which column, how many randomly chosen rows, the seed
    """
    from sklearn.metrics import roc_auc_score

    if (target_prevalence is None) == (shift is None):
        raise ValueError("shift_scenario: give exactly one of target_prevalence (binary column) or shift (numeric)")
    if column not in X.columns:
        raise KeyError(f"column: {column!r} is not a feature of this task (features: {list(X.columns)})")
    y = pd.Series(np.asarray(y), index=X.index, name="y")
    if target_prevalence is not None:
        shifted = simulate_prevalence_shift(X, column, target_prevalence, n=n, seed=seed)
    else:
        shifted = simulate_additive_shift(X, column, float(shift), n=n, seed=seed)
    before = X.loc[shifted.index]
    yy = y.loc[shifted.index]
    s_full = np.asarray(predict_proba(X), dtype=float)
    s_before = np.asarray(predict_proba(before), dtype=float)
    s_after = np.asarray(predict_proba(shifted), dtype=float)
    a_full = float(roc_auc_score(y, s_full))
    a_before, a_after = float(roc_auc_score(yy, s_before)), float(roc_auc_score(yy, s_after))
    return ShiftScenario(column=column, prevalence_before=float(before[column].mean()),
                         prevalence_after=float(shifted[column].mean()), n=len(shifted),
                         auroc_full=a_full, auroc_before=a_before, auroc_after=a_after,
                         relative_drop=(a_before - a_after) / a_before,
                         relative_drop_vs_full=(a_full - a_after) / a_full,
                         X_shifted=shifted, y=yy, scores_before=s_before, scores_after=s_after)


def prevalence_shift_scenario(predict_proba: Callable[[pd.DataFrame], Any], X: pd.DataFrame, y: Any, *,
                              column: str, target_prevalence: float, n: int, seed: int) -> ShiftScenario:
    """The paper's drift scenario: resample one binary column to ``target_prevalence``.

    See :func:`shift_scenario`; ``prevalence_before``/``prevalence_after`` are the column's
    mean before and after on the chosen rows.
    """
    return shift_scenario(predict_proba, X, y, column=column, n=n, seed=seed,
                          target_prevalence=target_prevalence)


# --------------------------------------------------------------------------------------------
# policy


@dataclass(frozen=True)
class DriftPolicy:
    """Detector settings (``params/policies/drift.yaml``); see that file for the reasons.

    Page-Hinkley settings are in units of the reference score standard deviation, so one
    policy serves tasks with very different score scales.
    """

    psi_bins: int = 10
    psi_watch: float = 0.1
    psi_alert: float = 0.2
    psi_eps: float = PSI_EPS
    psi_window: int = 500
    psi_hysteresis: float = 0.02
    adwin_delta: float = 0.002
    adwin_clock: int = 32
    adwin_grace_period: int = 10
    adwin_min_window_length: int = 5
    ph_min_instances: int = 100
    ph_delta_sd: float = 0.125
    ph_threshold_sd: float = 25.0
    ph_alpha: float = 1.0
    ph_mode: str = "both"
    ph_transform: str = "logit"

    def __post_init__(self) -> None:
        checks = [
            ("psi_bins", isinstance(self.psi_bins, int) and self.psi_bins >= 2, "an integer >= 2"),
            ("psi_watch", 0 < self.psi_watch < self.psi_alert, "positive and below psi_alert"),
            ("psi_eps", 0 < self.psi_eps < 0.01, "in (0, 0.01)"),
            ("psi_window", isinstance(self.psi_window, int) and self.psi_window >= 10, "an integer >= 10"),
            ("psi_hysteresis", 0 <= self.psi_hysteresis < self.psi_watch, "in [0, psi_watch)"),
            ("adwin_delta", 0 < self.adwin_delta < 1, "in (0, 1)"),
            ("adwin_clock", isinstance(self.adwin_clock, int) and self.adwin_clock >= 1, "a positive integer"),
            ("ph_min_instances", isinstance(self.ph_min_instances, int) and self.ph_min_instances >= 1, "a positive integer"),
            ("ph_delta_sd", self.ph_delta_sd >= 0, ">= 0"),
            ("ph_threshold_sd", self.ph_threshold_sd > 0, "> 0"),
            ("ph_alpha", 0 < self.ph_alpha <= 1, "in (0, 1]"),
            ("ph_mode", self.ph_mode in ("up", "down", "both"), "one of up, down, both"),
            ("ph_transform", self.ph_transform in TRANSFORMS, f"one of {TRANSFORMS}"),
        ]
        for name, ok, rule in checks:
            if not ok:
                raise PolicyError(f"DriftPolicy.{name}: must be {rule}, got {getattr(self, name)!r}")

    @classmethod
    def load(cls, path: str | Path, *, task: str | None = None) -> "DriftPolicy":
        """Read ``drift.yaml`` (sections ``psi``, ``adwin``, ``page_hinkley``, optional ``tasks``)."""
        p = Path(path)
        raw = read_policy(p, task)
        prefixes = {"psi": "psi_", "adwin": "adwin_", "page_hinkley": "ph_"}
        unknown = set(raw) - set(prefixes)
        if unknown:
            raise PolicyError(f"{p}: unknown section(s) {sorted(unknown)}; allowed: {sorted(prefixes)}")
        kwargs: dict[str, Any] = {}
        names = {f for f in cls.__dataclass_fields__}
        for sec, pre in prefixes.items():
            for key, val in (raw.get(sec) or {}).items():
                name = pre + key
                if name not in names:
                    raise PolicyError(f"{p}: {sec}.{key}: unknown setting")
                kwargs[name] = val
        try:
            return cls(**kwargs)
        except PolicyError as e:
            raise PolicyError(f"{p}: {e}") from None


# --------------------------------------------------------------------------------------------
# streaming monitor


@dataclass(frozen=True)
class MonitorEvent:
    """One alarm of the :class:`StreamMonitor`.

    ``detector`` is 'adwin', 'page_hinkley' or 'psi'; ``kind`` is 'drift' (ADWIN / PH detection,
    PSI >= alert) or 'watch' (watch <= PSI < alert); ``feature`` names the feature for PSI;
    ``value`` is ADWIN's mean estimate after the detection (ADWIN), the mean score of the
    evaluation's batch (Page-Hinkley) or the PSI; ``t_hours`` is the evaluation time; ``n_seen`` the admissions processed so far.
    """

    t_hours: float
    detector: str
    kind: str
    value: float
    n_seen: int
    feature: str | None = None

    @property
    def message(self) -> str:
        what = f"PSI of {self.feature} = {self.value:.3f}" if self.detector == "psi" else \
            f"{self.detector} change in the score stream (value {self.value:.4f})"
        return f"t = {self.t_hours:.2f} h: {self.kind}: {what}"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class StreamMonitor:
    """Live drift monitor: scores to ADWIN and Page-Hinkley, features to PSI, on a clock.

    Feed admissions one at a time with :meth:`add`; every ``eval_minutes`` of clock time the
    monitor evaluates (see below) and returns alarms. Thread-safe (one lock).

    At each evaluation time ``T_k = k * eval_minutes`` (hours from the monitor's start):

    1. the admissions that arrived in ``(T_{k-1}, T_k]`` are fed, in arrival order, to river's
       ``ADWIN`` and ``PageHinkley`` on the predicted score; a detection on any of them is an
       alarm dated ``T_k`` (the monitor only reports at evaluation times);
    2. the PSI of every feature over the last ``psi_window`` admissions is recomputed against
       the reference (only once the window is full: a PSI from a few dozen admissions is
       mostly noise); a feature entering 'watch' or 'drift' is an alarm. A feature leaves a
       state only when its PSI falls ``psi_hysteresis`` below that state's level, so one noisy
       crossing is not counted many times.

    Parameters
    ----------
    reference : PsiReference fixed on the training data
    score_sd : float
        Standard deviation of the predicted score *on the Page-Hinkley scale* (``ph_transform``)
        on reference data; the Page-Hinkley settings are multiples of it.
        :meth:`from_policy` computes it from reference scores.
    eval_minutes : float
        Clock time between evaluations.
    psi_window, psi_watch, psi_alert, psi_hysteresis : PSI settings (admissions, PSI units)
    adwin_delta, adwin_clock, adwin_grace_period, adwin_min_window_length : river ADWIN settings
    ph_min_instances, ph_delta_sd, ph_threshold_sd, ph_alpha, ph_mode : Page-Hinkley settings;
        river's ``delta = ph_delta_sd * score_sd`` and ``threshold = ph_threshold_sd * score_sd``.
    ph_transform : 'logit' or 'identity'
        Scale on which Page-Hinkley sees the score. ADWIN always sees the probability itself:
        its bound assumes values in [0, 1].
    on_event : callable(MonitorEvent), optional
        Called for every alarm (e.g. to notify governance / write the audit log).
    """

    def __init__(self, reference: PsiReference, *, score_sd: float, eval_minutes: float = 15.0,
                 psi_window: int = 500, psi_watch: float = 0.1, psi_alert: float = 0.2,
                 psi_hysteresis: float = 0.02, adwin_delta: float = 0.002, adwin_clock: int = 32,
                 adwin_grace_period: int = 10, adwin_min_window_length: int = 5,
                 ph_min_instances: int = 100, ph_delta_sd: float = 0.125, ph_threshold_sd: float = 25.0,
                 ph_alpha: float = 1.0, ph_mode: str = "both", ph_transform: str = "logit",
                 on_event: Callable[[MonitorEvent], None] | None = None):
        from river import drift as rdrift

        if not (np.isfinite(score_sd) and score_sd > 0):
            raise ValueError(f"score_sd: must be a positive number, got {score_sd}")
        if ph_transform not in TRANSFORMS:
            raise ValueError(f"ph_transform: must be one of {TRANSFORMS}, got {ph_transform!r}")
        self.ph_transform = ph_transform
        if not (eval_minutes > 0):
            raise ValueError(f"eval_minutes: must be > 0, got {eval_minutes}")
        if not (isinstance(psi_window, (int, np.integer)) and psi_window >= 10):
            raise ValueError(f"psi_window: must be an integer >= 10, got {psi_window!r}")
        if not (0 < psi_watch < psi_alert):
            raise ValueError(f"psi_watch, psi_alert: need 0 < psi_watch < psi_alert, got {psi_watch}, {psi_alert}")
        self.reference = reference
        self.eval_hours = float(eval_minutes) / 60.0
        self.psi_window = int(psi_window)
        self.psi_watch, self.psi_alert, self.psi_hysteresis = float(psi_watch), float(psi_alert), float(psi_hysteresis)
        self.on_event = on_event
        self._adwin = rdrift.ADWIN(delta=adwin_delta, clock=adwin_clock, grace_period=adwin_grace_period,
                                   min_window_length=adwin_min_window_length)
        self._ph = rdrift.PageHinkley(min_instances=ph_min_instances, delta=ph_delta_sd * score_sd,
                                      threshold=ph_threshold_sd * score_sd, alpha=ph_alpha, mode=ph_mode)
        self.settings = {"score_sd": float(score_sd), "eval_minutes": float(eval_minutes),
                         "psi_window": self.psi_window, "psi_watch": self.psi_watch, "psi_alert": self.psi_alert,
                         "psi_hysteresis": self.psi_hysteresis, "adwin_delta": adwin_delta,
                         "adwin_clock": adwin_clock, "ph_min_instances": ph_min_instances,
                         "ph_delta": ph_delta_sd * score_sd, "ph_threshold": ph_threshold_sd * score_sd,
                         "ph_alpha": ph_alpha, "ph_mode": ph_mode, "ph_transform": ph_transform}
        self._lock = threading.Lock()
        self._pending: list[tuple[float, float, np.ndarray]] = []
        self._codes: deque[np.ndarray] = deque(maxlen=self.psi_window)
        self._scores: deque[float] = deque(maxlen=self.psi_window)
        self._state = {f: "stable" for f in reference.features}
        self._next_eval = self.eval_hours
        self._last_t = -math.inf
        self.n_seen = 0
        self._rows: list[dict[str, Any]] = []
        self.events: list[MonitorEvent] = []

    @classmethod
    def from_policy(cls, policy: DriftPolicy, reference: PsiReference, *, reference_scores: Any,
                    eval_minutes: float = 15.0, on_event: Callable[[MonitorEvent], None] | None = None
                    ) -> "StreamMonitor":
        """Build from a :class:`DriftPolicy`.

        ``reference_scores`` (n,): predicted probabilities on reference data (e.g. the training
        or calibration set); their standard deviation on the Page-Hinkley scale sets
        ``score_sd``.
        """
        sd = float(np.std(_transform(reference_scores, policy.ph_transform), ddof=1))
        return cls(reference, score_sd=sd, eval_minutes=eval_minutes, psi_window=policy.psi_window,
                   psi_watch=policy.psi_watch, psi_alert=policy.psi_alert, psi_hysteresis=policy.psi_hysteresis,
                   adwin_delta=policy.adwin_delta, adwin_clock=policy.adwin_clock,
                   adwin_grace_period=policy.adwin_grace_period,
                   adwin_min_window_length=policy.adwin_min_window_length,
                   ph_min_instances=policy.ph_min_instances, ph_delta_sd=policy.ph_delta_sd,
                   ph_threshold_sd=policy.ph_threshold_sd, ph_alpha=policy.ph_alpha, ph_mode=policy.ph_mode,
                   ph_transform=policy.ph_transform, on_event=on_event)

    # -- feeding ------------------------------------------------------------------------------

    def add(self, t_hours: float, score: float, features: Mapping[str, Any] | pd.Series) -> list[MonitorEvent]:
        """One admission at clock time ``t_hours`` (non-decreasing) with its score and features.

        Runs every evaluation due before ``t_hours`` first, then queues the admission for the
        next evaluation. Returns the alarms raised by those evaluations.
        """
        row = pd.DataFrame([dict(features)])
        return self.add_many([t_hours], [score], row)

    def add_many(self, t_hours: Sequence[float], scores: Sequence[float], X: pd.DataFrame) -> list[MonitorEvent]:
        """Several admissions at once (times non-decreasing); same semantics as :meth:`add`."""
        t = np.asarray(t_hours, dtype=float)
        s = np.asarray(scores, dtype=float)
        if not (len(t) == len(s) == len(X)):
            raise ValueError(f"t_hours, scores, X: lengths differ ({len(t)}, {len(s)}, {len(X)})")
        if len(t) and (not np.isfinite(s).all() or (np.diff(t) < 0).any() or not np.isfinite(t).all()):
            raise ValueError("t_hours must be finite and non-decreasing and scores finite")
        codes = self.reference.codes(X) if len(X) else np.empty((0, len(self.reference.features)), dtype=np.int64)
        events: list[MonitorEvent] = []
        with self._lock:
            if len(t) and t[0] < self._last_t:
                raise ValueError(f"t_hours: {t[0]} is earlier than the last admission ({self._last_t})")
            for i in range(len(t)):
                events += self._run_due(t[i], inclusive=False)
                self._pending.append((t[i], s[i], codes[i]))
                self._last_t = t[i]
        return events

    def advance(self, t_hours: float) -> list[MonitorEvent]:
        """Run every evaluation due at or before ``t_hours`` (clock moves with no admission)."""
        with self._lock:
            if t_hours < self._last_t:
                raise ValueError(f"t_hours: {t_hours} is earlier than the last admission ({self._last_t})")
            return self._run_due(float(t_hours), inclusive=True)

    # -- evaluation ---------------------------------------------------------------------------

    def _run_due(self, t: float, *, inclusive: bool) -> list[MonitorEvent]:
        events: list[MonitorEvent] = []
        eps = 1e-12
        while (self._next_eval < t - eps) or (inclusive and self._next_eval <= t + eps):
            events += self._evaluate(self._next_eval)
            self._next_eval += self.eval_hours
        return events

    def _emit(self, ev: MonitorEvent, out: list[MonitorEvent]) -> None:
        out.append(ev)
        self.events.append(ev)
        if self.on_event is not None:
            self.on_event(ev)

    def _evaluate(self, T: float) -> list[MonitorEvent]:
        out: list[MonitorEvent] = []
        batch, self._pending = self._pending, []
        adwin_hit = ph_hit = False
        for _, score, code in batch:
            self.n_seen += 1
            self._adwin.update(score)
            self._ph.update(float(_transform(score, self.ph_transform)))
            adwin_hit |= bool(self._adwin.drift_detected)
            ph_hit |= bool(self._ph.drift_detected)
            self._codes.append(code)
            self._scores.append(score)
        if adwin_hit:
            self._emit(MonitorEvent(T, "adwin", "drift", float(self._adwin.estimation), self.n_seen), out)
        if ph_hit:
            self._emit(MonitorEvent(T, "page_hinkley", "drift", float(np.mean([b[1] for b in batch])), self.n_seen), out)
        row: dict[str, Any] = {"t_hours": T, "n_seen": self.n_seen, "n_batch": len(batch),
                               "score_mean_batch": float(np.mean([b[1] for b in batch])) if batch else np.nan,
                               "score_mean_window": float(np.mean(self._scores)) if self._scores else np.nan,
                               "adwin_mean": float(self._adwin.estimation) if self.n_seen else np.nan,
                               "adwin_width": float(self._adwin.width),
                               "adwin_alarm": adwin_hit, "ph_alarm": ph_hit}
        full = len(self._codes) >= self.psi_window
        values = self.reference.psi_from_codes(np.vstack(self._codes)) if full else \
            np.full(len(self.reference.features), np.nan)
        for feat, v in zip(self.reference.features, values):
            row[f"psi[{feat}]"] = float(v)
            if not full:
                continue
            new = self._next_state(self._state[feat], float(v))
            rank = {"stable": 0, "watch": 1, "drift": 2}
            if rank[new] > rank[self._state[feat]]:
                self._emit(MonitorEvent(T, "psi", new, float(v), self.n_seen, feat), out)
            self._state[feat] = new
        row["psi_drift_features"] = ",".join(f for f, st in self._state.items() if st == "drift")
        self._rows.append(row)
        return out

    def _next_state(self, state: str, v: float) -> str:
        h = self.psi_hysteresis
        if v >= self.psi_alert:
            return "drift"
        if state == "drift" and v >= self.psi_alert - h:
            return "drift"
        if v >= self.psi_watch:
            return "watch"
        if state in ("watch", "drift") and v >= self.psi_watch - h:
            return "watch"
        return "stable"

    # -- results ------------------------------------------------------------------------------

    @property
    def feature_states(self) -> dict[str, str]:
        """Current PSI state of every feature: 'stable', 'watch' or 'drift'."""
        with self._lock:
            return dict(self._state)

    def drifted_features(self, level: str = "drift") -> list[str]:
        """Features whose PSI state is ``level`` ('drift': PSI >= alert; 'watch')."""
        return [f for f, s in self.feature_states.items() if s == level]

    def timeline(self) -> pd.DataFrame:
        """One row per evaluation: time, counts, score means, ADWIN state, PSI per feature."""
        with self._lock:
            return pd.DataFrame(self._rows)

    def alarms(self) -> pd.DataFrame:
        """All alarms so far, one row each (columns of :class:`MonitorEvent`)."""
        with self._lock:
            cols = ["t_hours", "detector", "kind", "value", "n_seen", "feature"]
            return pd.DataFrame([e.to_dict() for e in self.events], columns=cols)


# --------------------------------------------------------------------------------------------
# simulated stream


def simulate_stream(scores_before: Any, scores_after: Any, X_before: pd.DataFrame, X_after: pd.DataFrame | None, *,
                    monitor: StreamMonitor, rate_per_hour: float, change_at_hours: float | None,
                    duration_hours: float, seed: int,
                    progress: Callable[[float], None] | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Run a monitor on a Poisson stream of admissions in simulated clock time.

    Admissions arrive as a Poisson process of ``rate_per_hour`` (exponential gaps). Before
    ``change_at_hours`` each arrival is drawn from the *before* pool, from then on from the
    *after* pool; within a pool rows are drawn without replacement (a fresh random order once a
    pool is used up). With no ``scores_after`` the stream never changes (false-alarm runs).

    Parameters
    ----------
    scores_before : array (n_b,) -- predicted probabilities of the unshifted admissions
    scores_after : array (n_a,) or None -- of the shifted admissions (None: no change)
    X_before : DataFrame (n_b, p); X_after : DataFrame (n_a, p) or None -- their features
    monitor : a fresh :class:`StreamMonitor` (no admissions yet)
    rate_per_hour : admissions per hour
    change_at_hours : clock time of the change (None with no after pool)
    duration_hours : length of the simulated stream (e.g. 720 for 30 days)
    seed : int
    progress : callable(fraction done), optional

    Returns
    -------
    timeline : DataFrame, one row per evaluation (see :meth:`StreamMonitor.timeline`) plus
        ``phase`` ('before'/'after').
    alarms : DataFrame, one row per alarm plus ``after_change`` (bool), ``hours_after_change``
        and ``admissions_after_change`` (negative before the change; NaN with no change).
    """
    if monitor.n_seen or monitor._pending:
        raise ValueError("monitor: must be fresh (no admissions yet); build a new StreamMonitor per run")
    if not (rate_per_hour > 0):
        raise ValueError(f"rate_per_hour: must be > 0, got {rate_per_hour}")
    if not (duration_hours > 0):
        raise ValueError(f"duration_hours: must be > 0, got {duration_hours}")
    sb = np.asarray(scores_before, dtype=float)
    if len(sb) != len(X_before) or len(sb) == 0:
        raise ValueError(f"scores_before, X_before: need the same non-zero length ({len(sb)} vs {len(X_before)})")
    has_after = scores_after is not None
    if has_after:
        sa = np.asarray(scores_after, dtype=float)
        if X_after is None or len(sa) != len(X_after) or len(sa) == 0:
            raise ValueError("scores_after, X_after: need the same non-zero length")
        if change_at_hours is None or not (0 <= change_at_hours < duration_hours):
            raise ValueError(f"change_at_hours: required in [0, duration_hours) with an after pool, got {change_at_hours}")
    elif change_at_hours is not None:
        raise ValueError("change_at_hours: given but no scores_after / X_after")

    rng = np.random.default_rng(seed)
    # arrival times: cumulative exponential gaps, generated with margin then cut at the duration
    n_guess = int(rate_per_hour * duration_hours + 10 * math.sqrt(rate_per_hour * duration_hours) + 20)
    times = np.cumsum(rng.exponential(1.0 / rate_per_hour, size=n_guess))
    while times[-1] < duration_hours:
        times = np.concatenate([times, times[-1] + np.cumsum(rng.exponential(1.0 / rate_per_hour, size=n_guess))])
    times = times[times < duration_hours]
    after = times >= change_at_hours if has_after else np.zeros(len(times), dtype=bool)

    def draws(k: int, pool: int) -> np.ndarray:
        reps = -(-k // pool) if k else 0
        return np.concatenate([rng.permutation(pool) for _ in range(reps)])[:k] if reps else np.empty(0, dtype=int)

    idx_b = draws(int((~after).sum()), len(sb))
    idx_a = draws(int(after.sum()), len(sa)) if has_after else np.empty(0, dtype=int)
    scores = np.empty(len(times))
    scores[~after] = sb[idx_b]
    frames = [X_before.iloc[idx_b].reset_index(drop=True)]
    if has_after:
        scores[after] = sa[idx_a]
        frames.append(X_after.iloc[idx_a].reset_index(drop=True))
    X = pd.concat(frames, ignore_index=True)   # before rows then after rows: same order as times
    step = 500
    for start in range(0, len(times), step):
        monitor.add_many(times[start:start + step], scores[start:start + step], X.iloc[start:start + step])
        if progress is not None:
            progress(min(1.0, (start + step) / max(len(times), 1)))
    monitor.advance(duration_hours)

    timeline = monitor.timeline()
    alarms = monitor.alarms()
    if has_after:
        n_before = int((~after).sum())
        timeline["phase"] = np.where(timeline["t_hours"] > change_at_hours, "after", "before")
        alarms["after_change"] = alarms["t_hours"] > change_at_hours
        alarms["hours_after_change"] = alarms["t_hours"] - change_at_hours
        alarms["admissions_after_change"] = alarms["n_seen"] - n_before
    else:
        timeline["phase"] = "before"
        alarms["after_change"] = False
        alarms["hours_after_change"] = np.nan
        alarms["admissions_after_change"] = np.nan
    log.info("stream: %d admissions over %.1f h, %d alarms", len(times), duration_hours, len(alarms))
    return timeline, alarms


def stream_summary(alarms: pd.DataFrame, *, change_at_hours: float | None, duration_hours: float) -> pd.DataFrame:
    """Detection delay and false alarms per detector from :func:`simulate_stream`'s alarms.

    Returns
    -------
    DataFrame indexed by detector ('adwin', 'page_hinkley', 'psi_drift', 'psi_watch', 'any'):
    ``false_alarms_before_change`` (all alarms when there is no change), ``detected``,
    ``delay_hours`` and ``delay_admissions`` of the first alarm after the change,
    ``features`` (PSI alarms: which features), ``false_alarms_per_30_days``.
    """
    a = alarms.copy()
    if "after_change" not in a:
        a["after_change"] = False
    a["label"] = np.where(a["detector"] == "psi", "psi_" + a["kind"].astype(str), a["detector"])
    rows = []
    before_hours = change_at_hours if change_at_hours is not None else duration_hours
    for label in ["adwin", "page_hinkley", "psi_drift", "psi_watch", "any"]:
        sub = a if label == "any" else a[a["label"] == label]
        if label == "any":
            sub = sub[sub["label"] != "psi_watch"]
        before = sub[~sub["after_change"].astype(bool)]
        after = sub[sub["after_change"].astype(bool)]
        first = after.iloc[0] if len(after) else None
        rows.append({
            "detector": label,
            "false_alarms_before_change": len(before),
            "false_alarms_per_30_days": len(before) / before_hours * 720 if before_hours > 0 else np.nan,
            "detected": bool(first is not None),
            "delay_hours": float(first["hours_after_change"]) if first is not None else np.nan,
            "delay_admissions": float(first["admissions_after_change"]) if first is not None else np.nan,
            "features": ",".join(sorted(set(after["feature"].dropna()))) if label.startswith("psi") else "",
        })
    return pd.DataFrame(rows).set_index("detector")


# --------------------------------------------------------------------------------------------
# Evidently


def evidently_report(reference: pd.DataFrame, current: pd.DataFrame, path: str | Path, *,
                     method: str = "psi", threshold: float = 0.2,
                     numerical_columns: Sequence[str] | None = None,
                     categorical_columns: Sequence[str] | None = None) -> pd.DataFrame:
    """Evidently data-drift report (HTML) of ``current`` against ``reference``.

    The test method is chosen explicitly (default PSI, so Evidently's verdict uses the same
    statistic as ours; without ``method`` Evidently switches to Wasserstein / Jensen-Shannon
    above 1,000 rows). Evidently bins numeric columns with more than 20 distinct values into
    Sturges equal-width bins over both samples (ours: reference deciles), so numeric PSI values
    differ somewhat; categorical ones are the same statistic.

    Parameters
    ----------
    reference, current : DataFrames with the same columns
    path : HTML file to write (parent directories are created); a JSON snapshot is written
        next to it with the suffix ``.json``
    method : Evidently stat-test name
    threshold : drift threshold for ``method`` (PSI >= threshold means drift)
    numerical_columns, categorical_columns : column kinds; inferred by Evidently when omitted

    Returns
    -------
    DataFrame with one row per column: ``column``, ``value``, ``drifted``, ``method``,
    ``threshold``.
    """
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset

    if list(reference.columns) != list(current.columns):
        raise ValueError("reference, current: must have the same columns in the same order")
    kwargs: dict[str, Any] = {}
    if numerical_columns is not None:
        kwargs["numerical_columns"] = list(numerical_columns)
    if categorical_columns is not None:
        kwargs["categorical_columns"] = list(categorical_columns)
    definition = DataDefinition(**kwargs)
    snapshot = Report([DataDriftPreset(method=method, threshold=threshold)], include_tests=True).run(
        current_data=Dataset.from_pandas(current, data_definition=definition),
        reference_data=Dataset.from_pandas(reference, data_definition=definition))
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    snapshot.save_html(str(out))
    snapshot.save_json(str(out.with_suffix(".json")))
    rows = []
    for m in snapshot.dict()["metrics"]:
        cfg = m.get("config", {})
        if cfg.get("type", "").endswith("ValueDrift"):
            v = float(m["value"])
            rows.append({"column": cfg["column"], "value": v, "drifted": bool(v >= threshold),
                         "method": cfg.get("method", method), "threshold": float(threshold)})
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------------------------
# figures


def plot_stream(timeline: pd.DataFrame, alarms: pd.DataFrame, *, change_at_hours: float | None = None,
                title: str | None = None):
    """Score stream with the change point and the alarms.

    Parameters
    ----------
    timeline, alarms : from :func:`simulate_stream` (or a monitor's ``timeline()``/``alarms()``)
    change_at_hours : draws a vertical line at the change point

    Returns
    -------
    matplotlib.figure.Figure
        Top: mean score per evaluation (dots), over the PSI window (line) and ADWIN's estimate
        (line), alarms as markers. Bottom: largest feature PSI with the watch/alert levels.
    """
    from matplotlib.figure import Figure

    fig = Figure(figsize=(10, 5.5), layout="constrained")
    ax, ax2 = fig.subplots(2, 1, sharex=True, height_ratios=[2, 1])
    t = timeline["t_hours"].to_numpy()
    ax.plot(t, timeline["score_mean_batch"], ".", ms=2, color="0.7", label="mean score per 15-min evaluation")
    ax.plot(t, timeline["score_mean_window"], color="tab:blue", lw=1.2, label="mean score, PSI window")
    ax.plot(t, timeline["adwin_mean"], color="tab:green", lw=1.2, label="ADWIN mean estimate")
    styles = {"adwin": ("v", "tab:green"), "page_hinkley": ("^", "tab:purple")}
    ytop = np.nanmax(timeline[["score_mean_window", "adwin_mean"]].to_numpy()) if len(timeline) else 1.0
    for det, (marker, color) in styles.items():
        sub = alarms[alarms["detector"] == det]
        if len(sub):
            ax.plot(sub["t_hours"], np.full(len(sub), ytop * 1.05), marker, color=color, ls="none",
                    label=f"{det} alarm ({len(sub)})")
    psi_cols = [c for c in timeline.columns if c.startswith("psi[")]
    if psi_cols:
        mx = timeline[psi_cols].max(axis=1)
        ax2.plot(t, mx, color="tab:red", lw=1.2, label="largest feature PSI")
        sub = alarms[(alarms["detector"] == "psi") & (alarms["kind"] == "drift")]
        if len(sub):
            ax2.plot(sub["t_hours"], sub["value"], "o", color="tab:red", ms=4, label=f"PSI drift alarm ({len(sub)})")
    for a in (ax, ax2):
        if change_at_hours is not None:
            a.axvline(change_at_hours, color="k", ls="--", lw=1, label="change point" if a is ax else None)
        a.grid(alpha=0.3)
    ax2.axhline(0.1, color="orange", ls=":", lw=1)
    ax2.axhline(0.2, color="red", ls=":", lw=1)
    ax.set_ylabel("predicted score")
    ax2.set_ylabel("PSI")
    ax2.set_xlabel("simulated time (hours)")
    ax.legend(fontsize=7, loc="upper left")
    ax2.legend(fontsize=7, loc="upper left")
    if title:
        fig.suptitle(title)
    return fig


def plot_psi_over_time(timeline: pd.DataFrame, *, features: Sequence[str] | None = None, top: int = 6,
                       watch: float = 0.1, alert: float = 0.2, change_at_hours: float | None = None,
                       title: str | None = None):
    """PSI per feature over time.

    Parameters
    ----------
    timeline : from :func:`simulate_stream` / :meth:`StreamMonitor.timeline`
    features : which features to draw (default: the ``top`` with the largest PSI reached)
    watch, alert : PSI levels drawn as horizontal lines
    change_at_hours : vertical line at the change point

    Returns
    -------
    matplotlib.figure.Figure
    """
    from matplotlib.figure import Figure

    cols = {c[4:-1]: c for c in timeline.columns if c.startswith("psi[")}
    if features is None:
        peak = {f: np.nanmax(timeline[c].to_numpy()) if timeline[c].notna().any() else -1 for f, c in cols.items()}
        features = sorted(peak, key=lambda f: -peak[f])[:top]
    unknown = [f for f in features if f not in cols]
    if unknown:
        raise KeyError(f"features: no PSI column for {unknown}")
    fig = Figure(figsize=(10, 4), layout="constrained")
    ax = fig.subplots()
    for f in features:
        ax.plot(timeline["t_hours"], timeline[cols[f]], lw=1.2, label=f)
    ax.axhline(watch, color="orange", ls=":", lw=1, label=f"watch ({watch:g})")
    ax.axhline(alert, color="red", ls=":", lw=1, label=f"alert ({alert:g})")
    if change_at_hours is not None:
        ax.axvline(change_at_hours, color="k", ls="--", lw=1, label="change point")
    ax.set_xlabel("simulated time (hours)")
    ax.set_ylabel("PSI (window vs. training)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncol=2)
    if title:
        fig.suptitle(title)
    return fig

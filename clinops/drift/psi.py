"""The Population Stability Index and its bins: the one PSI binning of the package.

For bins ``i`` (fixed on the reference) with reference proportions ``r_i`` and current
proportions ``c_i``::

    PSI = sum_i (c_i - r_i) * ln(c_i / r_i)

A proportion that is exactly 0 is replaced by ``eps`` (default 1e-4, Evidently's value) so the
logarithm stays finite; a bin that is empty in both samples then contributes 0. Numeric
features: interior edges are the reference quantiles at ``1/bins, ..., (bins-1)/bins``
(duplicates from ties dropped; a feature with at most ``bins`` distinct values gets one bin per
value), bins are ``(-inf, e1], (e1, e2], ..., (e_k, inf)`` so current values outside the
reference range land in the outer bins. Categorical / binary features: one bin per reference
category plus one for categories never seen in the reference. Both kinds have one extra bin
for missing values, so a change in missingness is drift too. Conventional reading (Siddiqi
2006; also Evidently's default): < 0.1 stable, 0.1-0.2 watch, > 0.2 significant shift.

One storage format: :func:`reference_statistics` writes, per feature, ``bin_edges`` (or
``categories``), ``proportions`` over the observed values and ``missing_rate``; the model bundle
stores exactly that, and :class:`PsiReference` reads it (:meth:`PsiReference.from_dict`) and
writes it (:meth:`PsiReference.to_dict`).
"""
from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

__all__ = ["PSI_EPS", "KINDS", "PsiReference", "psi", "psi_status", "quantile_edges", "reference_statistics"]

#: Proportion used in place of an empty bin (Evidently's ``feel_zeroes`` value).
PSI_EPS = 1e-4
KINDS = ("numeric", "categorical")


def quantile_edges(observed: np.ndarray, n_bins: int) -> np.ndarray:
    """Interior bin edges of one numeric feature from its observed (non-missing) values.

    The unique reference quantiles at ``1/n_bins, ..., (n_bins-1)/n_bins``; a feature with at
    most ``n_bins`` distinct values gets every distinct value but the largest (one bin per
    value). ``np.searchsorted(edges, v, side='left')`` gives a value's bin.

    Examples
    --------
    >>> quantile_edges(np.arange(1.0, 11.0), 2)
    array([5.5])
    >>> quantile_edges(np.array([0.0, 1.0, 1.0, 0.0]), 10)   # a flag: one bin per value
    array([0.])
    """
    distinct = np.unique(observed)
    # Few distinct values (flags, codes, scores): one bin per value; interpolated quantiles
    # would put cut points between codes and leave bins that no value can fall in.
    if len(distinct) <= n_bins:
        return distinct[:-1]
    return np.unique(np.quantile(observed, np.arange(1, n_bins) / n_bins))


def reference_statistics(X: pd.DataFrame, *, n_bins: int = 10) -> dict[str, dict]:
    """Training-data reference for drift (PSI) and out-of-distribution checks (the bundle's).

    Per feature, on the observed (non-missing) training values:

    - ``min``, ``max``: the training range (an input outside it is out of distribution);
    - ``bin_edges``: :func:`quantile_edges`; bins are ``(-inf, e1], ..., (e_last, +inf)``;
    - ``proportions``: share of observed training values in each bin (sums to 1);
    - ``missing_rate``: share of rows with the feature missing.

    Parameters
    ----------
    X : DataFrame of shape (n, p)
        Encoded, not imputed, training features (numbers; categories as codes).
    n_bins : int
        Target number of quantile bins (fewer for features with few distinct values).

    Returns
    -------
    dict
        feature name -> statistics (plain JSON-able Python numbers).

    Examples
    --------
    >>> ref = reference_statistics(pd.DataFrame({"x": [1.0, 2.0, 3.0, 4.0, None]}), n_bins=2)
    >>> ref["x"]
    {'min': 1.0, 'max': 4.0, 'bin_edges': [2.5], 'proportions': [0.5, 0.5], 'missing_rate': 0.2}
    """
    if not isinstance(X, pd.DataFrame):
        raise TypeError("X: must be a DataFrame with one column per feature")
    if n_bins < 2:
        raise ValueError(f"n_bins: must be at least 2, got {n_bins}")
    ref = {}
    for name in X.columns:
        col = X[name].to_numpy(dtype=np.float64, na_value=np.nan)
        observed = col[~np.isnan(col)]
        if observed.size == 0:
            raise ValueError(f"X[{name!r}]: no observed values; cannot build a reference")
        edges = quantile_edges(observed, n_bins)
        counts = np.bincount(np.searchsorted(edges, observed, side="left"), minlength=len(edges) + 1)
        ref[str(name)] = {
            "min": float(observed.min()),
            "max": float(observed.max()),
            "bin_edges": edges.tolist(),
            "proportions": (counts / counts.sum()).tolist(),
            "missing_rate": float(np.isnan(col).mean()),
        }
    return ref


def _categorical_statistics(values: pd.Series) -> dict[str, Any]:
    """A categorical feature's entry of the reference: ``categories`` instead of ``bin_edges``."""
    present = values.dropna()
    cats = sorted({_json_scalar(v) for v in present.tolist()}, key=lambda v: (str(type(v)), v))
    bins = _FeatureBins("categorical", categories=tuple(cats), ref_props=(0.0,) * (len(cats) + 2))
    counts = np.bincount(bins.codes(present), minlength=len(cats) + 1)[: len(cats)]
    return {"categories": cats, "proportions": (counts / counts.sum()).tolist(),
            "missing_rate": float(values.isna().mean())}


def _json_scalar(v: Any) -> Any:
    if isinstance(v, np.generic):
        v = v.item()
    if isinstance(v, float) and not math.isfinite(v):
        raise ValueError(f"cannot store non-finite value {v!r} in a PSI reference")
    return v


def _psi_from_props(ref: np.ndarray, cur: np.ndarray, eps: float) -> float:
    r = np.where(ref > 0, ref, eps)
    c = np.where(cur > 0, cur, eps)
    return float(np.sum((c - r) * np.log(c / r)))


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
    def from_statistics(cls, name: str, st: Mapping[str, Any]) -> "_FeatureBins":
        """From one feature's entry of :func:`reference_statistics` (or a categorical entry)."""
        try:
            props = np.asarray(st["proportions"], dtype=float)
            miss = float(st.get("missing_rate", 0.0))
            categorical = "categories" in st
            cuts = list(st["categories"]) if categorical else [float(e) for e in st["bin_edges"]]
        except (KeyError, TypeError) as e:
            raise ValueError(f"reference[{name!r}]: needs bin_edges (or categories), proportions, "
                             f"missing_rate ({e})") from None
        expected = len(cuts) if categorical else len(cuts) + 1
        if len(props) != expected:
            what = f"{len(cuts)} categories" if categorical else f"{len(cuts)} edges"
            raise ValueError(f"reference[{name!r}]: {what} need {expected} proportions, got {len(props)}")
        if not (0.0 <= miss <= 1.0):
            raise ValueError(f"reference[{name!r}].missing_rate: must be in [0, 1], got {miss}")
        observed = tuple((props * (1 - miss)).tolist())
        if categorical:
            return cls("categorical", categories=tuple(cuts), ref_props=observed + (0.0, miss))
        return cls("numeric", edges=tuple(cuts), ref_props=observed + (miss,))

    @classmethod
    def fit(cls, values: Any, kind: str, bins: int) -> "_FeatureBins":
        s = pd.Series(values)
        if kind == "numeric":
            x = pd.to_numeric(s, errors="coerce")
            if (x.isna() & s.notna()).any():
                raise ValueError(f"kind 'numeric' but non-numeric values found: "
                                 f"{s[x.isna() & s.notna()].unique()[:3].tolist()}")
            st = reference_statistics(pd.DataFrame({"v": x}), n_bins=bins)["v"]
        elif kind == "categorical":
            st = _categorical_statistics(s)
        else:
            raise ValueError(f"kind: must be one of {KINDS}, got {kind!r}")
        return cls.from_statistics("v", st)

    def statistics(self) -> dict[str, Any]:
        """This feature's entry in the stored format (inverse of :meth:`from_statistics`)."""
        miss = self.ref_props[-1]
        observed = np.asarray(self.ref_props[: len(self.categories) if self.kind == "categorical" else -1])
        props = (observed / (1 - miss)).tolist() if miss < 1 else observed.tolist()
        cut = ({"categories": [_json_scalar(c) for c in self.categories]} if self.kind == "categorical"
               else {"bin_edges": list(self.edges)})
        return {**cut, "proportions": props, "missing_rate": miss}


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

    Examples
    --------
    >>> round(psi([0] * 60 + [1] * 40, [0] * 30 + [1] * 70, kind="categorical"), 6)
    0.375829
    >>> psi(range(1, 11), range(1, 11), bins=5)
    0.0
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
    """'stable' (< watch), 'watch' (watch <= PSI < alert) or 'drift' (>= alert); NaN -> 'unknown'.

    Examples
    --------
    >>> [psi_status(v) for v in (0.05, 0.15, 0.25, float("nan"))]
    ['stable', 'watch', 'drift', 'unknown']
    """
    if value is None or not np.isfinite(value):
        return "unknown"
    return "drift" if value >= alert else "watch" if value >= watch else "stable"


def _infer_kind(s: pd.Series) -> str:
    if s.dtype == bool or not pd.api.types.is_numeric_dtype(s):
        return "categorical"
    vals = pd.unique(s.dropna())
    return "categorical" if len(vals) and set(np.asarray(vals, dtype=float).tolist()) <= {0.0, 1.0} else "numeric"


class PsiReference:
    """Fixed PSI bins and reference proportions for every feature of a training set.

    Build with :meth:`fit` (or read the model bundle's reference with :meth:`from_dict`);
    store with :meth:`to_dict` / :meth:`save` (the format of :func:`reference_statistics`);
    :meth:`psi` gives the PSI of each feature of a current sample.

    Examples
    --------
    >>> train = pd.DataFrame({"lactate": [1.0, 2.0, 3.0, 4.0], "vent": [0, 0, 1, 1]})
    >>> ref = PsiReference.fit(train, bins=2)
    >>> ref.kind("lactate"), ref.kind("vent")
    ('numeric', 'categorical')
    >>> ref.psi(pd.DataFrame({"lactate": [1.0, 2.0, 3.0, 4.0], "vent": [1, 1, 1, 1]})).round(3).to_dict()
    {'lactate': 0.0, 'vent': 4.604}
    >>> PsiReference.from_dict(ref.to_dict()).psi(train).to_dict()
    {'lactate': 0.0, 'vent': 0.0}
    """

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
    def from_dict(cls, reference: Mapping[str, Mapping[str, Any]], *, eps: float = PSI_EPS) -> "PsiReference":
        """From the stored format (:func:`reference_statistics`, the model bundle's ``reference``).

        Per feature: ``bin_edges`` (numeric) or ``categories`` (categorical), ``proportions``
        over the *observed* values and ``missing_rate``; the missing share becomes the missing
        bin. Extra keys (``min``, ``max``) are ignored.
        """
        return cls({str(name): _FeatureBins.from_statistics(str(name), st) for name, st in reference.items()},
                   eps=eps)

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

    def to_dict(self) -> dict[str, dict[str, Any]]:
        """feature -> statistics, the format :meth:`from_dict` reads (``eps`` is the policy's)."""
        return {name: fb.statistics() for name, fb in self._features.items()}

    def save(self, path: str | Path) -> Path:
        p = Path(path)
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(json.dumps(self.to_dict(), indent=1))
        return p

    @classmethod
    def load(cls, path: str | Path, *, eps: float = PSI_EPS) -> "PsiReference":
        return cls.from_dict(json.loads(Path(path).read_text()), eps=eps)

"""Feature manifests (Layer 1, data minimisation).

A manifest is the single list of features a model may use: name, kind, unit, aggregate, source
(MIMIC-IV tables and item ids), plausible range, categories and a one-line clinical
justification. Extraction, encoding, imputation and the server all go through it, so a feature
that is not listed cannot be extracted, encoded or served.
"""
from __future__ import annotations

import hashlib
import json
import math
import numbers
import re
from dataclasses import dataclass, field
from importlib.resources import files
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd
import yaml

__all__ = ["FeatureSpec", "FeatureManifest", "FeatureValidationError", "ManifestError", "KINDS"]

KINDS = ("numeric", "binary", "categorical")
_NAME = re.compile(r"^[a-z][a-z0-9_]*$")


class FeatureValidationError(ValueError):
    """A value (or column) breaks the manifest's rule for one field.

    Attributes
    ----------
    field : str
        The feature (or column) name.
    rule : str
        What was expected and what was found.
    """

    def __init__(self, field: str, rule: str):
        self.field = field
        self.rule = rule
        super().__init__(f"{field}: {rule}")


class ManifestError(ValueError):
    """A manifest file or dict is malformed (the message names the feature and the key)."""


@dataclass(frozen=True, eq=True)
class FeatureSpec:
    """One feature of a manifest.

    Attributes
    ----------
    name : str
        Column name (lower snake case).
    kind : {'numeric', 'binary', 'categorical'}
    unit : str
        Raw unit as extracted (e.g. ``'mmHg'``, ``'degC'``).
    aggregate : str
        How the window is summarised (``'min'``, ``'max'``, ``'any'``, ...).
    source : dict
        Extraction method, MIMIC-IV table and item ids (see the manifest file).
    plausible_range : tuple of (float, float) or None
        Numeric features only; an open end is ``-inf`` / ``inf``.
    categories : tuple of str or None
        Categorical features only; the order defines the integer codes.
    justification : str
        One-line clinical reason for keeping the feature.
    range_closed : tuple of (bool, bool)
        Whether ``lo`` and ``hi`` themselves are allowed.
    """

    name: str
    kind: str
    unit: str
    aggregate: str
    source: dict = field(hash=False, compare=True)
    plausible_range: tuple[float, float] | None
    categories: tuple[str, ...] | None
    justification: str
    range_closed: tuple[bool, bool] = (True, True)

    def range_text(self) -> str:
        """The plausible range in interval notation with the unit, e.g. ``'(0, 300) bpm'``."""
        if self.plausible_range is None:
            return "no range"
        lo, hi = self.plausible_range
        left = "[" if self.range_closed[0] and math.isfinite(lo) else "("
        right = "]" if self.range_closed[1] and math.isfinite(hi) else ")"
        return f"{left}{_num(lo)}, {_num(hi)}{right} {self.unit}"

    def accepts(self, x: float) -> bool:
        """Whether one finite number lies inside the plausible range (scalar :meth:`in_range`)."""
        if self.plausible_range is None:
            return True
        lo, hi = self.plausible_range
        ok_lo = x >= lo if self.range_closed[0] else x > lo
        ok_hi = x <= hi if self.range_closed[1] else x < hi
        return ok_lo and ok_hi

    def number_problem(self, x: float) -> str | None:
        """Why one number is not an acceptable value of this feature, or None when it is.

        The one wording of the rule, used by :meth:`FeatureManifest.validate_record` and by the
        serving schema: a value must be finite and inside the plausible range.
        """
        if not math.isfinite(x) or not self.accepts(x):
            return f"value {x:g} is outside the plausible range {self.range_text()}"
        return None

    def in_range(self, values: np.ndarray) -> np.ndarray:
        """Boolean mask of values inside the plausible range (NaN counts as inside).

        Parameters
        ----------
        values : numpy.ndarray of float, shape (n,)
        """
        v = np.asarray(values, dtype=float)
        if self.plausible_range is None:
            return np.ones(v.shape, dtype=bool)
        lo, hi = self.plausible_range
        with np.errstate(invalid="ignore"):
            ok_lo = v >= lo if self.range_closed[0] else v > lo
            ok_hi = v <= hi if self.range_closed[1] else v < hi
        return np.isnan(v) | (ok_lo & ok_hi)

    def to_dict(self) -> dict:
        """Plain, YAML/JSON-ready form (open range ends as ``None``)."""
        d: dict[str, Any] = {
            "name": self.name, "kind": self.kind, "unit": self.unit,
            "aggregate": self.aggregate, "source": self.source,
            "plausible_range": None if self.plausible_range is None else [
                None if math.isinf(x) else x for x in self.plausible_range],
            "justification": self.justification,
        }
        if self.plausible_range is not None:
            d["range_closed"] = list(self.range_closed)
        if self.categories is not None:
            d["categories"] = list(self.categories)
        return d


def _num(x: float) -> str:
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"
    return f"{x:g}"


def _is_number(x) -> bool:
    return isinstance(x, numbers.Real) and not isinstance(x, (bool, np.bool_))


def _spec_from_dict(d: Mapping, i: int) -> FeatureSpec:
    if not isinstance(d, Mapping):
        raise ManifestError(f"features[{i}]: must be a mapping, got {type(d).__name__}")
    name = d.get("name")
    where = f"feature {name!r}" if name else f"features[{i}]"
    if not isinstance(name, str) or not _NAME.match(name):
        raise ManifestError(f"{where}: 'name' must be lower snake case, got {name!r}")
    allowed = {"name", "kind", "unit", "aggregate", "source", "plausible_range", "range_closed",
               "categories", "justification"}
    extra = sorted(set(d) - allowed)
    if extra:
        raise ManifestError(f"{where}: unknown key(s) {extra}")
    kind = d.get("kind")
    if kind not in KINDS:
        raise ManifestError(f"{where}: 'kind' must be one of {list(KINDS)}, got {kind!r}")
    for key in ("unit", "aggregate", "justification"):
        if not isinstance(d.get(key), str) or not d[key].strip():
            raise ManifestError(f"{where}: '{key}' must be a non-empty string")
    source = d.get("source")
    if not isinstance(source, Mapping):
        raise ManifestError(f"{where}: 'source' must be a mapping (method, table, item ids)")
    rng = d.get("plausible_range")
    plausible = None
    closed = (True, True)
    if rng is not None:
        if kind != "numeric":
            raise ManifestError(f"{where}: 'plausible_range' is only for numeric features")
        if not isinstance(rng, (list, tuple)) or len(rng) != 2 or not all(
                x is None or _is_number(x) for x in rng):
            raise ManifestError(f"{where}: 'plausible_range' must be [lo, hi] numbers or null, "
                                f"got {rng!r}")
        lo = -math.inf if rng[0] is None else float(rng[0])
        hi = math.inf if rng[1] is None else float(rng[1])
        if not lo < hi:
            raise ManifestError(f"{where}: 'plausible_range' needs lo < hi, got {rng!r}")
        plausible = (lo, hi)
        rc = d.get("range_closed", [True, True])
        if (not isinstance(rc, (list, tuple)) or len(rc) != 2
                or not all(isinstance(x, bool) for x in rc)):
            raise ManifestError(f"{where}: 'range_closed' must be [bool, bool], got {rc!r}")
        closed = (bool(rc[0]), bool(rc[1]))
    elif "range_closed" in d:
        raise ManifestError(f"{where}: 'range_closed' without 'plausible_range'")
    cats = d.get("categories")
    if kind == "categorical":
        if (not isinstance(cats, (list, tuple)) or not cats
                or not all(isinstance(c, str) and c for c in cats)):
            raise ManifestError(f"{where}: categorical features need 'categories', "
                                "a non-empty list of strings")
        if len(set(cats)) != len(cats):
            raise ManifestError(f"{where}: 'categories' has duplicates")
        cats = tuple(cats)
    elif cats is not None:
        raise ManifestError(f"{where}: 'categories' is only for categorical features")
    return FeatureSpec(name=name, kind=kind, unit=d["unit"], aggregate=d["aggregate"],
                       source=json.loads(json.dumps(source)), plausible_range=plausible,
                       categories=cats, justification=" ".join(d["justification"].split()),
                       range_closed=closed)


class FeatureManifest:
    """An ordered, validated list of :class:`FeatureSpec`.

    Build with :meth:`load` (``'mortality'`` or a YAML path) or :meth:`from_dict`. The one
    encoder of model inputs: :meth:`encode` for a frame, :meth:`encode_records` for request
    records (the server and :class:`clinops.uncertainty.RiskPredictor`); both give numbers as
    floats, binaries as 0/1, categories as their position in ``categories`` and NaN for missing.

    Examples
    --------
    >>> src = {"method": "chartevents", "table": "icu.chartevents", "itemids": [220045]}
    >>> m = FeatureManifest.from_dict({"name": "tiny", "features": [
    ...     {"name": "heart_rate", "kind": "numeric", "unit": "bpm", "aggregate": "max",
    ...      "source": src, "plausible_range": [0, 300], "range_closed": [False, True],
    ...      "justification": "tachycardia"},
    ...     {"name": "unit", "kind": "categorical", "unit": "-", "aggregate": "first",
    ...      "source": src, "categories": ["micu", "sicu"], "justification": "case mix"}]})
    >>> m.names
    ['heart_rate', 'unit']
    >>> m.encode_records([{"heart_rate": 88, "unit": "sicu"}, {"unit": "micu"}])
    array([[88.,  1.],
           [nan,  0.]])
    >>> m.validate_record({"heart_rate": 400})
    Traceback (most recent call last):
    ...
    clinops.features.manifest.FeatureValidationError: heart_rate: value 400 is outside the plausible range (0, 300] bpm
    """

    def __init__(self, name: str, specs: list[FeatureSpec], *, version: int | None = None,
                 description: str | None = None):
        self.name = name
        self.version = version
        self.description = description
        self._specs = tuple(specs)
        self._by_name = {s.name: s for s in specs}
        # The one statement of the categorical encoding: a category's code is its position.
        self._codes = {s.name: {c: float(i) for i, c in enumerate(s.categories)}
                       for s in specs if s.kind == "categorical"}

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_dict(cls, d: Mapping) -> "FeatureManifest":
        """Validate and build a manifest from its plain form.

        Parameters
        ----------
        d : mapping
            ``{'name': str, 'features': [feature dicts], 'version'?: int, 'description'?: str}``.

        Raises
        ------
        ManifestError
            A malformed entry; the message names the feature and the key.
        """
        if not isinstance(d, Mapping):
            raise ManifestError(f"manifest must be a mapping, got {type(d).__name__}")
        extra = sorted(set(d) - {"name", "version", "description", "features"})
        if extra:
            raise ManifestError(f"manifest: unknown key(s) {extra}")
        name = d.get("name")
        if not isinstance(name, str) or not name:
            raise ManifestError("manifest: 'name' must be a non-empty string")
        feats = d.get("features")
        if not isinstance(feats, list) or not feats:
            raise ManifestError("manifest: 'features' must be a non-empty list")
        specs = [_spec_from_dict(f, i) for i, f in enumerate(feats)]
        seen: set[str] = set()
        dups = [s.name for s in specs if s.name in seen or seen.add(s.name)]
        if dups:
            raise ManifestError(f"manifest: duplicate feature name(s) {dups}")
        version = d.get("version")
        if version is not None and (not isinstance(version, int) or isinstance(version, bool)):
            raise ManifestError(f"manifest: 'version' must be an integer, got {version!r}")
        desc = d.get("description")
        return cls(name, specs, version=version,
                   description=" ".join(desc.split()) if isinstance(desc, str) else None)

    @classmethod
    def load(cls, name_or_path: str | Path) -> "FeatureManifest":
        """Load a packaged manifest by name (``'mortality'``) or a YAML file by path."""
        p = Path(name_or_path)
        if p.suffix in (".yaml", ".yml") or p.exists():
            text = p.read_text(encoding="utf-8")
        else:
            res = files("clinops").joinpath("manifests", f"{name_or_path}.yaml")
            if not res.is_file():
                raise ManifestError(f"no packaged manifest {str(name_or_path)!r} and no such "
                                    "file")
            text = res.read_text(encoding="utf-8")
        return cls.from_dict(yaml.safe_load(text))

    # ------------------------------------------------------------------ views
    @property
    def names(self) -> list[str]:
        """Feature names in manifest order."""
        return [s.name for s in self._specs]

    @property
    def specs(self) -> tuple[FeatureSpec, ...]:
        """The feature specs in manifest order."""
        return self._specs

    def __getitem__(self, name: str) -> FeatureSpec:
        return self._by_name[name]

    def __len__(self) -> int:
        return len(self._specs)

    def __repr__(self) -> str:
        return f"FeatureManifest({self.name!r}, {len(self)} features, sha256={self.sha256[:12]})"

    def to_dict(self) -> dict:
        """Canonical plain form (what :attr:`sha256` hashes)."""
        d: dict[str, Any] = {"name": self.name, "features": [s.to_dict() for s in self._specs]}
        if self.version is not None:
            d["version"] = self.version
        if self.description is not None:
            d["description"] = self.description
        return d

    @property
    def sha256(self) -> str:
        """SHA-256 of the canonical JSON content (key order and YAML layout do not matter)."""
        blob = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"),
                          ensure_ascii=False, allow_nan=False)
        return hashlib.sha256(blob.encode("utf-8")).hexdigest()

    def records(self, frame: pd.DataFrame) -> list[dict[str, Any]]:
        """Rows of raw features as JSON-ready prediction records (the inverse view of :meth:`encode`).

        Parameters
        ----------
        frame : DataFrame with the manifest's columns, raw units (e.g. a task table)

        Returns
        -------
        list of dict, one per row
            Binary features as 0/1 ints, categories as strings, numbers as floats; missing
            values are left out (a server imputes them).
        """
        self.check_frame(frame)
        out = []
        for row in frame[self.names].itertuples(index=False):
            record: dict[str, Any] = {}
            for spec, value in zip(self._specs, row):
                if value is None or (isinstance(value, float) and math.isnan(value)):
                    continue
                record[spec.name] = (int(value) if spec.kind == "binary" else
                                     str(value) if spec.kind == "categorical" else float(value))
            out.append(record)
        return out

    # ------------------------------------------------------------------ validation
    def validate_record(self, record: Mapping[str, Any]) -> dict[str, Any]:
        """Check one patient's raw feature values against the manifest.

        Parameters
        ----------
        record : mapping
            Feature name -> raw value (units as in the manifest). Missing keys and ``None`` /
            NaN are allowed (imputed later).

        Returns
        -------
        dict
            Every manifest feature in order: numeric -> float, binary -> 0/1, categorical ->
            its category string, missing -> ``None``.

        Raises
        ------
        FeatureValidationError
            An unknown field, a wrong type, a value outside the plausible range (the message
            gives the range) or an unknown category.
        """
        if not isinstance(record, Mapping):
            raise FeatureValidationError("record", f"must be a mapping of feature -> value, "
                                                   f"got {type(record).__name__}")
        for key in record:
            if key not in self._by_name:
                raise FeatureValidationError(
                    str(key), f"unknown feature: not in the manifest {self.name!r} "
                              "(data minimisation: only listed features are accepted)")
        out: dict[str, Any] = {}
        for s in self._specs:
            v = record.get(s.name)
            if v is None or (isinstance(v, (float, np.floating)) and math.isnan(v)):
                out[s.name] = None
                continue
            if s.kind == "numeric":
                if type(v) is not float and type(v) is not int and not _is_number(v):
                    raise FeatureValidationError(
                        s.name, f"expected a number in {s.unit}, got {type(v).__name__} {v!r}")
                try:
                    x = float(v)
                except OverflowError:  # an integer beyond any float: infinite, out of every range
                    x = math.inf if v > 0 else -math.inf
                problem = s.number_problem(x)
                if problem is not None:
                    raise FeatureValidationError(s.name, problem)
                out[s.name] = x
            elif s.kind == "binary":
                if isinstance(v, (bool, np.bool_)):
                    out[s.name] = int(v)
                elif _is_number(v) and float(v) in (0.0, 1.0):
                    out[s.name] = int(v)
                else:
                    raise FeatureValidationError(s.name, f"expected 0 or 1, got {v!r}")
            else:
                if not isinstance(v, str):
                    raise FeatureValidationError(
                        s.name, f"expected a category string, got {type(v).__name__} {v!r}")
                if v not in s.categories:
                    raise FeatureValidationError(
                        s.name, f"unknown category {v!r}; allowed: {', '.join(s.categories)}")
                out[s.name] = v
        return out

    def check_frame(self, df: pd.DataFrame) -> None:
        """Check that a frame has every manifest column.

        Raises
        ------
        FeatureValidationError
            One error naming all missing columns (``field`` = the comma-separated names).
        """
        missing = [n for n in self.names if n not in df.columns]
        if missing:
            raise FeatureValidationError(
                ", ".join(missing),
                f"missing column(s) required by the manifest {self.name!r}: {missing}")

    def encode(self, df: pd.DataFrame) -> pd.DataFrame:
        """Raw feature frame -> float frame in manifest column order (model input).

        Numeric and binary columns become float; categorical columns become their integer code
        in manifest order. NaN stays NaN (to be imputed). Columns not in the manifest are
        dropped. Values are checked like :meth:`validate_record`.

        Parameters
        ----------
        df : pandas.DataFrame, shape (n, >= n_features)

        Returns
        -------
        pandas.DataFrame of float64, shape (n, n_features), same index.

        Raises
        ------
        FeatureValidationError
            Missing columns, non-numeric values, values outside the range, non-0/1 binaries,
            unknown categories (message names the column, the rule and an example).
        """
        self.check_frame(df)
        out = {}
        for s in self._specs:
            col = df[s.name]
            if s.kind == "categorical":
                labels = col.astype(object).where(col.notna(), None)
                bad = [v for v in labels.dropna().unique() if v not in s.categories]
                if bad:
                    raise FeatureValidationError(
                        s.name, f"unknown category {bad[0]!r} ({len(bad)} unknown value(s)); "
                                f"allowed: {', '.join(s.categories)}")
                codes = self._codes[s.name]
                out[s.name] = labels.map(lambda v: np.nan if v is None else codes[v]
                                         ).astype(float)
                continue
            if pd.api.types.is_bool_dtype(col):
                values = col.astype(float)
            else:
                try:
                    values = pd.to_numeric(col, errors="raise").astype(float)
                except (ValueError, TypeError):
                    bad = next(v for v in col.dropna()
                               if pd.isna(pd.to_numeric(pd.Series([v]), errors="coerce"))[0])
                    raise FeatureValidationError(
                        s.name, f"expected numbers, found {bad!r}") from None
            if s.kind == "binary":
                bad_mask = values.notna() & ~values.isin([0.0, 1.0])
                if bad_mask.any():
                    raise FeatureValidationError(
                        s.name, f"expected 0 or 1, found {values[bad_mask].iloc[0]!r} "
                                f"in {int(bad_mask.sum())} row(s)")
            else:
                v = values.to_numpy()
                bad_mask = ~s.in_range(v) | np.isinf(v)
                if bad_mask.any():
                    raise FeatureValidationError(
                        s.name, f"value {v[bad_mask][0]:g} is outside the plausible range "
                                f"{s.range_text()} ({int(bad_mask.sum())} row(s))")
            out[s.name] = values
        return pd.DataFrame(out, index=df.index, columns=self.names)

    def encode_records(self, records: Sequence[Mapping[str, Any]]) -> np.ndarray:
        """Raw request records -> model input array, each record checked by :meth:`validate_record`.

        Parameters
        ----------
        records : sequence of mappings, length n
            Feature name -> raw value in manifest units (categories as strings); missing keys,
            ``None`` and NaN are missing.

        Returns
        -------
        numpy.ndarray of float64, shape (n, n_features)
            Columns in manifest order, encoded as :meth:`encode` does; NaN = missing.

        Raises
        ------
        FeatureValidationError
            The first invalid record's problem (see :meth:`validate_record`).
        """
        X = np.empty((len(records), len(self._specs)), dtype=np.float64)
        for r, record in enumerate(records):
            clean = self.validate_record(record)
            for i, s in enumerate(self._specs):
                v = clean[s.name]
                if v is None:
                    X[r, i] = np.nan
                elif s.kind == "categorical":
                    X[r, i] = self._codes[s.name][v]
                else:
                    X[r, i] = float(v)
        return X

    def decode(self, X: pd.DataFrame) -> pd.DataFrame:
        """Inverse of :meth:`encode` for categorical columns (codes -> labels)."""
        self.check_frame(X)
        out = X[self.names].copy()
        for s in self._specs:
            if s.kind == "categorical":
                cats = pd.CategoricalDtype(list(s.categories), ordered=False)
                codes = X[s.name].to_numpy(dtype=float)
                out[s.name] = pd.Categorical.from_codes(
                    np.where(np.isnan(codes), -1, codes).astype(int), dtype=cats)
        return out

"""Feature manifests (Layer 1, data minimisation).

A manifest is the single list of features a model may use: name, kind, unit, aggregate, source
(MIMIC-IV tables and item ids), plausible range, categories and a one-line clinical
justification. Extraction, encoding, imputation and the server all go through it, so a feature
that is not listed cannot be extracted, encoded or served. One feature is a
:class:`~clinops.features.spec.FeatureSpec` (:mod:`clinops.features.spec`).
"""
from __future__ import annotations

import hashlib
import json
import math
from importlib.resources import files
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd
import yaml

from clinops.features.spec import (
    KINDS,
    FeatureSpec,
    FeatureValidationError,
    ManifestError,
    is_number,
    spec_from_dict,
)

__all__ = ["FeatureSpec", "FeatureManifest", "FeatureValidationError", "ManifestError", "KINDS"]


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
    clinops.features.spec.FeatureValidationError: heart_rate: value 400 is outside the plausible range (0, 300] bpm
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
        specs = [spec_from_dict(f, i) for i, f in enumerate(feats)]
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
                if type(v) is not float and type(v) is not int and not is_number(v):
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
                elif is_number(v) and float(v) in (0.0, 1.0):
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

"""Readmission features: each feature's source query, parameters and aggregation (the recipe).

The paper's 14 features, of which MIMIC-IV can supply 13 (the readmission manifest
``clinops/manifests/readmission.yaml``); "follow-up scheduled" has no MIMIC-IV source and is
declared unavailable (:data:`UNAVAILABLE_FEATURES`), with no proxy. Each manifest feature names
its source query (``clinops/sql/readmission_src_*.sql``) and parameters. Every source query
returns the rows the feature is computed from together with the time each row became known
(``event_time``), so the leakage check that runs inside the extraction tests exactly the rows
the features are built from.
"""
from __future__ import annotations

import hashlib
import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from clinops.features import FeatureManifest
from clinops.tasks.readmission.sql import SQL_DIR, bind, read_sql

log = logging.getLogger(__name__)

MANIFEST_PATH = SQL_DIR.parent / "manifests" / "readmission.yaml"

#: How a feature's source rows become one value per admission (manifest ``source.method``).
_METHODS = frozenset({"last", "count", "value", "charlson", "principal_icd_chapter"})

# Keys of a manifest ``source`` mapping that describe the source rather than bind a parameter.
_DESCRIPTIVE_SOURCE_KEYS = frozenset({"method", "query", "table", "column", "note"})

#: Features of the paper that MIMIC-IV cannot supply: declared (manifest description), never
#: extracted, imputed or used, and not replaced by a proxy.
UNAVAILABLE_FEATURES: dict[str, str] = {
    "follow_up_scheduled": (
        "whether a follow-up appointment was scheduled: MIMIC-IV v2.2 holds no outpatient "
        "appointment or scheduling data, so it is not extracted, imputed or used, and no proxy "
        "stands in for it"
    ),
}


@dataclass(frozen=True)
class FeatureSource:
    """The recipe of one readmission feature: the rows it is built from and how they combine.

    Attributes
    ----------
    feature : str
        Feature name (as in the manifest).
    sql : str
        A query over the relation ``readmission_index(subject_id, hadm_id, admittime,
        dischtime, age)`` and the MIMIC-IV views, returning at least ``hadm_id`` and
        ``event_time`` (TIMESTAMP: when the row became known), one row per source record.
    params : Mapping[str, Any]
        Values bound to the ``$name`` parameters of ``sql``.
    method : str
        ``last`` (value of the latest row by ``(event_time, ord)``), ``count`` (number of rows,
        0 when none), ``value`` (the single row's value), ``charlson`` (clinops/sql/charlson.sql
        over the rows' ``icd_code``/``icd_version`` and the index age) or
        ``principal_icd_chapter`` (the shared ``clinops_icd_chapter`` macro on the row with the
        lowest ``ord``).
    column : str
        The value column read by ``last`` and ``value``.
    """

    feature: str
    sql: str
    params: Mapping[str, Any] = field(default_factory=dict)
    method: str = "last"
    column: str = "value"


# --------------------------------------------------------------------------------------------
# manifest -> feature sources
# --------------------------------------------------------------------------------------------
def load_readmission_manifest(manifest: Any = None) -> Any:
    """The readmission feature manifest as a ``clinops.features.FeatureManifest``.

    Parameters
    ----------
    manifest : FeatureManifest, mapping, str, path or None
        None or ``'readmission'``: the packaged ``clinops/manifests/readmission.yaml``; a path
        or packaged name is loaded, a mapping validated, a FeatureManifest returned as is.
    """

    if manifest is None:
        return FeatureManifest.load(MANIFEST_PATH)
    if isinstance(manifest, (str, Path)):
        return FeatureManifest.load(manifest)
    if isinstance(manifest, Mapping):
        return FeatureManifest.from_dict(manifest)
    if hasattr(manifest, "specs"):
        return manifest
    raise TypeError(f"manifest: expected a FeatureManifest, a mapping, a path or None, got {type(manifest).__name__}")


def _range_params(spec: Any) -> dict[str, Any]:
    """The manifest's plausible range as the outlier-filter parameters of the source SQL."""
    rng = getattr(spec, "plausible_range", None)
    lo, hi = (-math.inf, math.inf) if rng is None else (float(rng[0]), float(rng[1]))
    closed = getattr(spec, "range_closed", (True, True)) if rng is not None else (True, True)
    return {"range_lo": lo, "range_hi": hi, "range_lo_closed": bool(closed[0]), "range_hi_closed": bool(closed[1])}


def feature_sources(manifest: Any = None) -> dict[str, FeatureSource]:
    """The source recipe of every feature of a readmission manifest.

    Parameters
    ----------
    manifest : FeatureManifest, mapping, path or None
        None or ``'readmission'``: the packaged ``clinops/manifests/readmission.yaml``.

    Returns
    -------
    dict[str, FeatureSource]
        Feature name -> recipe, in manifest order. Bound parameters are the ``source`` keys
        other than method/query/table/column/note, plus the plausible range
        (``range_lo``, ``range_hi``, ``range_lo_closed``, ``range_hi_closed``) where the query
        filters outliers.

    Raises
    ------
    ValueError
        A feature's ``source`` breaks its rule; the message names the feature and the key.
    """
    out: dict[str, FeatureSource] = {}
    for spec in load_readmission_manifest(manifest).specs:
        source = spec.source
        where = f"feature {spec.name!r}: source"
        if not isinstance(source.get("query"), str):
            raise ValueError(f"{where}.query must name a clinops/sql/readmission_src_*.sql file, got {source.get('query')!r}")
        method = source.get("method")
        if method not in _METHODS:
            raise ValueError(f"{where}.method must be one of {sorted(_METHODS)}, got {method!r}")
        sql = read_sql(source["query"])
        params = {k: v for k, v in source.items() if k not in _DESCRIPTIVE_SOURCE_KEYS}
        params.update(_range_params(spec))
        try:
            params = bind(sql, params)
        except ValueError as exc:
            raise ValueError(f"{where}: {exc}") from None
        out[spec.name] = FeatureSource(feature=spec.name, sql=sql, params=params, method=method,
                                       column=source.get("column", "value"))
    return out


def feature_source_table(manifest: Any = None) -> pd.DataFrame:
    """Where every one of the paper's 14 readmission features comes from, for the report.

    Parameters
    ----------
    manifest : FeatureManifest, mapping, path or None
        None means the packaged readmission manifest.

    Returns
    -------
    pandas.DataFrame
        One row per feature (manifest features, then :data:`UNAVAILABLE_FEATURES`): ``feature``,
        ``available`` (bool), ``kind``, ``unit``, ``aggregate``, ``table``, ``query`` and
        ``note`` (for an unavailable feature: why, and what the model does instead).
    """
    manifest = load_readmission_manifest(manifest)
    rows = [{
        "feature": spec.name, "available": True, "kind": spec.kind, "unit": spec.unit,
        "aggregate": spec.aggregate, "table": spec.source.get("table"), "query": spec.source.get("query"),
        "note": spec.source.get("note", ""),
    } for spec in manifest.specs]
    rows += [{"feature": name, "available": False, "kind": None, "unit": None, "aggregate": None,
              "table": None, "query": None, "note": reason} for name, reason in UNAVAILABLE_FEATURES.items()]
    return pd.DataFrame(rows)


def feature_sql_sha256() -> str:
    """SHA-256 over the readmission SQL (cohort, sources, Charlson), for lineage.

    Each file of ``clinops/sql/readmission_*.sql`` (sorted by name), then ``charlson.sql``,
    contributes its name and bytes; the digest changes when any of them changes.
    """
    h = hashlib.sha256()
    for path in sorted(SQL_DIR.glob("readmission_*.sql")) + [SQL_DIR / "charlson.sql"]:
        h.update(path.name.encode() + b"\0" + path.read_bytes())
    return h.hexdigest()

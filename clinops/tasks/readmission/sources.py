"""Readmission features: each feature's source rows, the leakage check, the extraction.

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
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from clinops.data.mimic import install_macros
from clinops.features import FeatureManifest
from clinops.tasks.readmission.sql import SQL_DIR, bind, connection, read_sql

log = logging.getLogger(__name__)

MANIFEST_PATH = SQL_DIR.parent / "manifests" / "readmission.yaml"

#: Columns the feature extraction needs from the cohort.
_INDEX_COLUMNS: tuple[str, ...] = ("subject_id", "hadm_id", "admittime", "dischtime", "age")

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


class LeakageError(RuntimeError):
    """A feature's source rows include data timed after the index discharge.

    Attributes
    ----------
    feature : str
        The feature whose source leaks.
    n_rows : int
        Number of source rows with ``event_time`` after ``dischtime`` (or with no event time,
        which cannot be shown to precede discharge).
    n_admissions : int
        Number of index admissions those rows belong to.
    """

    def __init__(self, feature: str, n_rows: int, n_admissions: int):
        self.feature, self.n_rows, self.n_admissions = feature, int(n_rows), int(n_admissions)
        super().__init__(
            f"feature {feature!r} uses data timed after the index discharge: {self.n_rows} "
            f"source row(s) in {self.n_admissions} index admission(s) have event_time > dischtime "
            "(or no event_time); rule: every source row of a readmission feature must be known "
            "at discharge"
        )


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


# --------------------------------------------------------------------------------------------
# leakage check and extraction
# --------------------------------------------------------------------------------------------
def _register_index(db: Any, cohort: pd.DataFrame) -> None:
    """Materialise the cohort's index columns as the temp table ``readmission_index``."""
    if not isinstance(cohort, pd.DataFrame):
        raise TypeError(f"cohort: must be a pandas DataFrame, got {type(cohort).__name__}")
    missing = [c for c in _INDEX_COLUMNS if c not in cohort.columns]
    if missing:
        raise ValueError(f"cohort: missing column(s) {missing} (rule: the cohort needs {list(_INDEX_COLUMNS)})")
    if cohort["hadm_id"].duplicated().any():
        dup = cohort.loc[cohort["hadm_id"].duplicated(), "hadm_id"].iloc[0]
        raise ValueError(f"cohort.hadm_id: must be unique (one row per index admission), {dup} repeats")
    for col in ("admittime", "dischtime"):
        if cohort[col].isna().any():
            raise ValueError(f"cohort.{col}: must not be missing (rule: every index admission has both times)")
    index = cohort.loc[:, list(_INDEX_COLUMNS)].copy()
    index["admittime"] = pd.to_datetime(index["admittime"])
    index["dischtime"] = pd.to_datetime(index["dischtime"])
    db.register("readmission_index_df", index)
    try:
        db.execute("CREATE OR REPLACE TEMP TABLE readmission_index AS SELECT * FROM readmission_index_df")
    finally:
        db.unregister("readmission_index_df")


def _as_sources(sources: Mapping[str, FeatureSource | str] | Iterable[FeatureSource] | None) -> list[FeatureSource]:
    if sources is None:
        return list(feature_sources().values())
    if isinstance(sources, Mapping):
        items = [s if isinstance(s, FeatureSource) else FeatureSource(feature=str(k), sql=s) for k, s in sources.items()]
    else:
        items = list(sources)
    for s in items:
        if not isinstance(s, FeatureSource) or not isinstance(s.sql, str):
            raise TypeError(f"sources: expected FeatureSource objects or feature -> SQL strings, got {s!r}")
    return items


def _materialise_source(db: Any, source: FeatureSource) -> None:
    db.execute(f"CREATE OR REPLACE TEMP TABLE readmission_source AS {source.sql}",
               bind(source.sql, dict(source.params)))
    columns = {row[0] for row in db.execute("DESCRIBE readmission_source").fetchall()}
    missing = sorted({"hadm_id", "event_time"} - columns)
    if missing:
        raise ValueError(f"feature {source.feature!r}: source query must return {missing} "
                         "(rule: every source row exposes hadm_id and its event_time)")


def _assert_no_leak(db: Any, feature: str) -> None:
    n_rows, n_adm = db.execute(
        """
        SELECT count(*), count(DISTINCT s.hadm_id)
        FROM readmission_source AS s
        JOIN readmission_index AS i ON i.hadm_id = s.hadm_id
        WHERE s.event_time IS NULL OR CAST(s.event_time AS TIMESTAMP) > i.dischtime
        """
    ).fetchone()
    if n_rows:
        raise LeakageError(feature, n_rows, n_adm)


def leakage_check(
    con: Any,
    cohort: pd.DataFrame,
    sources: Mapping[str, FeatureSource | str] | Iterable[FeatureSource] | None = None,
) -> None:
    """Fail if any feature source uses data timed after the index discharge.

    Each source query returns the rows its feature is built from with their ``event_time``;
    the check joins them to the index admissions and asserts ``event_time <= dischtime`` for
    every row (so ``max(event_time) <= dischtime`` per admission). A row without an
    event time fails too: it cannot be shown to precede discharge.

    Parameters
    ----------
    con : duckdb.DuckDBPyConnection or MimicDatabase
        Connection with the MIMIC-IV views.
    cohort : pandas.DataFrame
        Index admissions; needs ``subject_id, hadm_id, admittime, dischtime, age``.
    sources : mapping or iterable, optional
        ``{feature: FeatureSource}`` or ``{feature: SQL}`` (queries over ``readmission_index``
        returning ``hadm_id, event_time``), or FeatureSource objects. Default: the packaged
        manifest's sources, i.e. what :func:`extract_readmission_features` uses.

    Raises
    ------
    LeakageError
        Naming the first leaking feature (manifest order) and its offending row count.
    """
    db = connection(con)
    _register_index(db, cohort)
    try:
        for source in _as_sources(sources):
            _materialise_source(db, source)
            _assert_no_leak(db, source.feature)
    finally:
        db.execute("DROP TABLE IF EXISTS readmission_source")
        db.execute("DROP TABLE IF EXISTS readmission_index")


def _aggregate(db: Any, source: FeatureSource) -> pd.Series:
    """One value per hadm_id from the materialised ``readmission_source``."""
    col = source.column
    needed = {"last": {col, "ord"}, "value": {col}, "count": set(), "charlson": {"icd_code", "icd_version"},
              "principal_icd_chapter": {"icd_code", "icd_version", "ord"}}.get(source.method, set())
    columns = {row[0] for row in db.execute("DESCRIBE readmission_source").fetchall()}
    missing = sorted(needed - columns)
    if missing:
        raise ValueError(f"feature {source.feature!r}: source query lacks column(s) {missing} "
                         f"(rule: method {source.method!r} reads them)")
    if source.method == "last":
        # latest row wins; ord breaks ties within one event time (e.g. omr's day resolution)
        frame = db.execute(
            f'SELECT hadm_id, arg_max("{col}", (event_time, ord)) AS v FROM readmission_source GROUP BY hadm_id'
        ).df()
    elif source.method == "value":
        frame = db.execute(f'SELECT hadm_id, count(*) AS n, any_value("{col}") AS v FROM readmission_source GROUP BY hadm_id').df()
        if (frame["n"] > 1).any():
            raise ValueError(f"feature {source.feature!r}: method 'value' needs one source row per admission, "
                             f"hadm_id {int(frame.loc[frame['n'] > 1, 'hadm_id'].iloc[0])} has {int(frame['n'].max())}")
    elif source.method == "count":
        frame = db.execute("SELECT hadm_id, count(*) AS v FROM readmission_source GROUP BY hadm_id").df()
        counts = frame.set_index("hadm_id")["v"]
        index = db.execute("SELECT hadm_id FROM readmission_index").df()["hadm_id"]
        return counts.reindex(index, fill_value=0).astype("float64")
    elif source.method == "charlson":
        charlson_sql = read_sql("charlson")
        frame = db.execute(
            "WITH charlson_diagnoses AS (SELECT hadm_id, icd_code, icd_version FROM readmission_source), "
            "charlson_age AS (SELECT hadm_id, age FROM readmission_index) "
            f"SELECT hadm_id, charlson_comorbidity_index AS v FROM ({charlson_sql})"
        ).df()
    elif source.method == "principal_icd_chapter":
        # one ICD-9/ICD-10 -> ICD-10 chapter mapping for both tasks: the shared SQL macro

        install_macros(db)
        # lowest seq_num; should two rows share it, ICD-10 first, then the smallest code
        # (the tie rule of the mortality task's features_diagnosis.sql)
        frame = db.execute(
            "SELECT hadm_id, clinops_icd_chapter(icd_code, icd_version) AS v FROM readmission_source "
            "QUALIFY row_number() OVER (PARTITION BY hadm_id ORDER BY ord, icd_version DESC, icd_code) = 1"
        ).df()
    else:  # pragma: no cover - feature_sources validates the method
        raise ValueError(f"feature {source.feature!r}: unknown method {source.method!r}")
    return frame.set_index("hadm_id")["v"]


def extract_readmission_features(
    con: Any,
    cohort: pd.DataFrame,
    *,
    manifest: Any = None,
    progress: Callable[[str, int, int], None] | None = None,
) -> pd.DataFrame:
    """The readmission manifest's available features, one row per index admission.

    Every feature is computed from its source rows after the leakage check has passed on
    exactly those rows, so a feature cannot use data timed after the index discharge.

    Parameters
    ----------
    con : duckdb.DuckDBPyConnection or MimicDatabase
        Connection with the MIMIC-IV views (``mimiciv_hosp.{admissions, labevents, omr,
        diagnoses_icd}``).
    cohort : pandas.DataFrame
        Index admissions from :func:`build_readmission_cohort` (n_index rows); needs
        ``subject_id, hadm_id, admittime, dischtime, age``.
    manifest : FeatureManifest, mapping, path or None
        The readmission feature manifest; None means the packaged one.
    progress : callable, optional
        Called as ``progress(feature, i, n)`` after each feature.

    Returns
    -------
    pandas.DataFrame
        Shape (n_index, n_available_features), indexed by ``hadm_id`` in cohort order, columns
        in manifest order, raw units (see the manifest), NaN where a feature has no source row;
        categorical features hold their category strings.

    Raises
    ------
    LeakageError
        A feature's source has a row timed after the index discharge.
    """
    db = connection(con)
    manifest = load_readmission_manifest(manifest)
    sources = feature_sources(manifest)
    kinds = {spec.name: spec.kind for spec in manifest.specs}
    _register_index(db, cohort)
    hadm_ids = pd.Index(cohort["hadm_id"].to_numpy(), name="hadm_id")
    columns: dict[str, pd.Series] = {}
    try:
        for i, (name, source) in enumerate(sources.items(), start=1):
            _materialise_source(db, source)
            _assert_no_leak(db, name)
            values = _aggregate(db, source).reindex(hadm_ids)
            columns[name] = values
            log.debug("readmission feature %s: %d of %d admissions have a value", name, int(values.notna().sum()), len(values))
            if progress is not None:
                progress(name, i, len(sources))
    finally:
        db.execute("DROP TABLE IF EXISTS readmission_source")
        db.execute("DROP TABLE IF EXISTS readmission_index")
    features = pd.DataFrame(columns, index=hadm_ids)
    for name in sources:
        if kinds[name] == "categorical":
            features[name] = features[name].astype(object).where(features[name].notna(), np.nan)
        else:
            features[name] = pd.to_numeric(features[name], errors="raise").astype("float64")
    return features




def feature_sql_sha256() -> str:
    """SHA-256 over the readmission SQL (cohort, sources, Charlson), for lineage.

    Each file of ``clinops/sql/readmission_*.sql`` (sorted by name), then ``charlson.sql``,
    contributes its name and bytes; the digest changes when any of them changes.
    """
    h = hashlib.sha256()
    for path in sorted(SQL_DIR.glob("readmission_*.sql")) + [SQL_DIR / "charlson.sql"]:
        h.update(path.name.encode() + b"\0" + path.read_bytes())
    return h.hexdigest()

"""Feature extraction: the manifest's features in the window [intime, intime + 24 h], in SQL.

Everything runs inside DuckDB over the MIMIC-IV views (no pandas over whole tables):

0. ``features_window.sql``: the cohort's stays and windows (a small temp table);
1. ``features_chart_stage.sql``: one pass over chartevents keeping only the manifest's item
   ids for the cohort's stays in the window (plus the GCS look-back) -> small temp table;
2. one SQL file per extraction method reads that table (or labevents, inputevents,
   procedureevents, diagnoses_icd, patients) and returns long rows ``(stay_id, feature,
   value)``.

Item ids, ranges and aggregates are bound from the manifest (``clinops_fx_items``), so the
manifest is the single list of what is extracted. Only the final per-stay table (one row per
stay, 17 columns) reaches pandas.
"""
from __future__ import annotations

import hashlib
import logging
import math
import numbers
import threading
import time
from typing import Callable

import duckdb

import numpy as np
import pandas as pd

from clinops.data.mimic import MimicDatabase, install_macros, sql_text
from clinops.features.manifest import FeatureManifest, FeatureSpec, ManifestError

__all__ = ["REQUIRED_COLUMNS", "METHODS", "extract_features", "feature_sql_sha256",
           "required_columns", "FEATURE_SQL_FILES", "icd_chapter"]

log = logging.getLogger(__name__)

#: Tables and columns each extraction method reads.
METHODS: dict[str, dict[str, list[str]]] = {
    "age": {"mimiciv_hosp.patients": ["subject_id", "anchor_age", "anchor_year"]},
    "sex": {"mimiciv_hosp.patients": ["subject_id", "gender"]},
    "icd_chapter": {"mimiciv_hosp.diagnoses_icd": ["hadm_id", "seq_num", "icd_code",
                                                   "icd_version"]},
    "chart_aggregate": {"mimiciv_icu.chartevents": ["stay_id", "charttime", "storetime",
                                                    "itemid", "value", "valuenum"]},
    "gcs": {"mimiciv_icu.chartevents": ["stay_id", "charttime", "storetime", "itemid", "value",
                                        "valuenum"]},
    "ventilation": {
        "mimiciv_icu.chartevents": ["stay_id", "charttime", "storetime", "itemid", "value",
                                    "valuenum"],
        "mimiciv_icu.procedureevents": ["stay_id", "starttime", "endtime", "itemid"],
    },
    "lab_aggregate": {"mimiciv_hosp.labevents": ["subject_id", "charttime", "itemid",
                                                 "valuenum"]},
    "vasoactive_overlap": {"mimiciv_icu.inputevents": ["stay_id", "starttime", "endtime",
                                                       "itemid"]},
}

#: SQL files whose text defines the training table (hashed by :func:`feature_sql_sha256`).
FEATURE_SQL_FILES: tuple[str, ...] = (
    "macros.sql", "icu_cohort.sql", "features_window.sql", "features_chart_stage.sql",
    "features_chart_aggregate.sql", "features_lab_aggregate.sql", "features_gcs.sql",
    "features_ventilation.sql", "features_vasoactive.sql", "features_demographics.sql",
    "features_diagnosis.sql",
)

_COHORT_COLUMNS = ["stay_id", "subject_id", "hadm_id", "intime"]
_TEMP_TABLES = ("clinops_fx_cohort", "clinops_fx_window", "clinops_fx_chart",
                "clinops_fx_chart_itemids", "clinops_fx_items")


def required_columns(manifest: FeatureManifest) -> dict[str, list[str]]:
    """Tables and columns extracting ``manifest`` reads (union over its methods)."""
    out: dict[str, list[str]] = {}
    for s in manifest.specs:
        for table, cols in METHODS[_method(s)].items():
            have = out.setdefault(table, [])
            have += [c for c in cols if c not in have]
    return out


def _method(s: FeatureSpec) -> str:
    method = s.source.get("method")
    if method not in METHODS:
        raise ManifestError(f"feature {s.name!r}: source.method must be one of "
                            f"{sorted(METHODS)}, got {method!r}")
    return method


#: What the packaged mortality manifest needs (checked before any work starts).
REQUIRED_COLUMNS: dict[str, list[str]] = {}
for _cols in METHODS.values():
    for _t, _c in _cols.items():
        REQUIRED_COLUMNS.setdefault(_t, [])
        REQUIRED_COLUMNS[_t] += [c for c in _c if c not in REQUIRED_COLUMNS[_t]]


def _int_list(s: FeatureSpec, key: str, value) -> list[int]:
    vals = value if isinstance(value, list) else [value]
    if not vals or not all(isinstance(v, int) and not isinstance(v, bool) for v in vals):
        raise ManifestError(f"feature {s.name!r}: source.{key} must be integer item id(s), "
                            f"got {value!r}")
    return [int(v) for v in vals]


def _item_rows(manifest: FeatureManifest) -> pd.DataFrame:
    """clinops_fx_items: one row per (feature, itemid) of chart/lab aggregate features."""
    rows = []
    for s in manifest.specs:
        method = _method(s)
        if method not in ("chart_aggregate", "lab_aggregate"):
            continue
        agg = s.aggregate
        if agg not in ("min", "max"):
            raise ManifestError(f"feature {s.name!r}: aggregate must be 'min' or 'max' for "
                                f"{method}, got {agg!r}")
        lo, hi = s.plausible_range if s.plausible_range else (-math.inf, math.inf)
        fahrenheit = set(_int_list(s, "fahrenheit_itemids", s.source["fahrenheit_itemids"])
                         ) if "fahrenheit_itemids" in s.source else set()
        round_digits = s.source.get("round_digits")
        for itemid in _int_list(s, "itemids", s.source.get("itemids")):
            if itemid in fahrenheit:
                f_lo, f_hi = s.source.get("fahrenheit_range", [None, None])
                if f_lo is None or f_hi is None:
                    raise ManifestError(f"feature {s.name!r}: source.fahrenheit_range "
                                        "[lo, hi] is required with fahrenheit_itemids")
                # mimic-code vitalsign.sql: strict bounds on the Fahrenheit value.
                row_range = (float(f_lo), float(f_hi), False, False)
            else:
                row_range = (lo, hi, *s.range_closed)
            rows.append({"method": method, "feature": s.name,
                         "feature_id": manifest.names.index(s.name), "itemid": itemid, "agg": agg,
                         "lo": row_range[0], "hi": row_range[1], "lo_closed": row_range[2],
                         "hi_closed": row_range[3], "fahrenheit": itemid in fahrenheit,
                         "round_digits": round_digits})
    cols = ["method", "feature", "feature_id", "itemid", "agg", "lo", "hi", "lo_closed",
            "hi_closed", "fahrenheit", "round_digits"]
    df = pd.DataFrame(rows, columns=cols)
    dup = df.duplicated(["method", "itemid"])
    if dup.any():
        raise ManifestError(f"item id(s) {df.loc[dup, 'itemid'].tolist()} are used by two "
                            "features; each item may feed one feature")
    return df.astype({"itemid": "int32", "feature_id": "int16", "lo": "float64",
                      "hi": "float64", "round_digits": "Int32"})


def _chart_itemids(manifest: FeatureManifest, items: pd.DataFrame
                   ) -> tuple[list[int], list[int]]:
    """(every chartevents item id to stage, the ones whose text ``value`` is read)."""
    ids = set(items.loc[items["method"] == "chart_aggregate", "itemid"].tolist())
    text: set[int] = set()
    for s in manifest.specs:
        m = _method(s)
        if m in ("gcs", "ventilation"):
            src = s.source.get("itemids")
            if not isinstance(src, dict):
                raise ManifestError(f"feature {s.name!r}: source.itemids must map roles to "
                                    "item ids for method " + m)
            for role, v in src.items():
                ids.update(_int_list(s, f"itemids.{role}", v))
            # GCS reads the text only of the verbal item ('No Response-ETT'); ventilation
            # classifies the text of all its items
            text.update([_role(s, "verbal")] if m == "gcs" else
                        [i for r, v in src.items() for i in _int_list(s, f"itemids.{r}", v)])
    return sorted(ids), sorted(text)


def _statements(sql: str) -> list[str]:
    """Split a SQL file into statements (DuckDB binds parameters per statement).

    The files end each statement with ';' at the end of a line and hold no ';' elsewhere.
    """
    return [st.strip() for st in sql.split(";\n") if st.strip().strip(";").strip()
            and not all(line.strip().startswith("--") or not line.strip()
                        for line in st.strip().splitlines())]


def _role(s: FeatureSpec, role: str) -> int:
    try:
        return _int_list(s, f"itemids.{role}", s.source["itemids"][role])[0]
    except (KeyError, TypeError):
        raise ManifestError(f"feature {s.name!r}: source.itemids.{role} is required") from None


def extract_features(db: MimicDatabase, cohort: pd.DataFrame, *, manifest: FeatureManifest,
                     window_hours: float = 24, max_missing_fraction: float = 0.5,
                     progress: Callable[[str], None] | None = None,
                     ) -> tuple[pd.DataFrame, dict]:
    """Extract the manifest's features for every stay of a cohort and drop sparse stays.

    Parameters
    ----------
    db : MimicDatabase
        Opened with :func:`clinops.data.mimic.open_mimic`.
    cohort : pandas.DataFrame, shape (n_stays, >= 4)
        Needs ``stay_id`` (unique), ``subject_id``, ``hadm_id``, ``intime``; e.g. from
        :func:`clinops.tasks.mortality.cohort.build_icu_cohort`.
    manifest : FeatureManifest
        What to extract (e.g. ``FeatureManifest.load('mortality')``).
    window_hours : float
        Window length after ``intime``, hours.
    max_missing_fraction : float
        Stays with more than this fraction of the manifest's features missing are excluded
        (0.5 with 17 features: at most 8 missing).
    progress : callable(str), optional
        Called with a short message before each stage.

    Returns
    -------
    features : pandas.DataFrame, shape (n_kept, n_features)
        Indexed by ``stay_id`` (cohort order), the manifest's columns in raw units: float for
        numeric and binary (NaN = missing), ``pandas.Categorical`` (manifest categories) for
        categorical.
    flow_step : dict
        ``{'step': 8, 'criterion', 'n_remaining', 'n_excluded'}`` for
        :func:`clinops.tasks.mortality.cohort.append_flow_step`.
    """
    if not isinstance(manifest, FeatureManifest):
        raise TypeError(f"manifest: expected a FeatureManifest, got {type(manifest).__name__}")
    if not (isinstance(window_hours, numbers.Real) and math.isfinite(window_hours)
            and window_hours > 0):
        raise ValueError(f"window_hours: must be a positive number, got {window_hours!r}")
    if not (isinstance(max_missing_fraction, numbers.Real)
            and 0 <= max_missing_fraction <= 1):
        raise ValueError(f"max_missing_fraction: must be in [0, 1], got {max_missing_fraction!r}")
    missing = [c for c in _COHORT_COLUMNS if c not in cohort.columns]
    if missing:
        raise ValueError(f"cohort: missing column(s) {missing}")
    if cohort["stay_id"].duplicated().any():
        raise ValueError("cohort.stay_id: must be unique, found duplicates "
                         f"{cohort.loc[cohort['stay_id'].duplicated(), 'stay_id'].head(3).tolist()}")
    if cohort["intime"].isna().any():
        raise ValueError("cohort.intime: must not be missing")
    db.require(required_columns(manifest))
    items = _item_rows(manifest)
    chart_ids, text_ids = _chart_itemids(manifest, items)
    gcs_specs = [s for s in manifest.specs if _method(s) == "gcs"]
    lookback = max([float(s.source.get("carry_forward_hours", 6)) for s in gcs_specs] + [0.0])

    def step(msg: str) -> None:
        log.info(msg)
        if progress is not None:
            progress(msg)

    con = db.con
    install_macros(con)
    # Row order of the staging tables is irrelevant (every query aggregates or orders
    # explicitly); not preserving it lets DuckDB stream and parallelise with less memory.
    # The setting is DuckDB's own; PostgreSQL and Spark never promise an order anyway.
    on_duckdb = getattr(con, "engine", "duckdb") == "duckdb"
    if on_duckdb:
        keep_order = con.execute("SELECT current_setting('preserve_insertion_order')").fetchone()[0]
        con.execute("SET preserve_insertion_order = false")
    t0 = time.perf_counter()
    con.register("clinops_fx_cohort_df", cohort[_COHORT_COLUMNS])
    con.register("clinops_fx_items_df", items)
    con.register("clinops_fx_chart_itemids_df", pd.DataFrame({
        "itemid": np.array(chart_ids, dtype="int32"),
        "text": np.isin(chart_ids, text_ids)}))
    long_parts: list[pd.DataFrame] = []
    cat_parts: list[pd.DataFrame] = []
    try:
        con.execute("CREATE OR REPLACE TEMP TABLE clinops_fx_cohort AS "
                    "SELECT * FROM clinops_fx_cohort_df")
        con.execute("CREATE OR REPLACE TEMP TABLE clinops_fx_items AS "
                    "SELECT * FROM clinops_fx_items_df")
        con.execute("CREATE OR REPLACE TEMP TABLE clinops_fx_chart_itemids AS "
                    "SELECT * FROM clinops_fx_chart_itemids_df")
        con.execute(sql_text("features_window.sql"), {"window_hours": float(window_hours)})
        step(f"chartevents pass: {len(chart_ids)} item ids, {len(cohort)} stays")
        for statement in _statements(sql_text("features_chart_stage.sql")):
            con.execute(statement, {"lookback_hours": lookback})

        def run(sql_file: str, params: dict | None = None) -> pd.DataFrame:
            return con.execute(sql_text(sql_file), params or {}).df()

        methods = {_method(s) for s in manifest.specs}
        if "chart_aggregate" in methods:
            step("vital signs")
            long_parts.append(run("features_chart_aggregate.sql"))
        if "lab_aggregate" in methods:
            step("laboratory values")
            long_parts.append(run("features_lab_aggregate.sql"))
        if methods & {"age", "sex"}:
            step("demographics")
            age = next((s.name for s in manifest.specs if _method(s) == "age"), None)
            sex = next((s.name for s in manifest.specs if _method(s) == "sex"), None)
            long_parts.append(run("features_demographics.sql",
                                  {"age_feature": age, "sex_feature": sex}))
        for s in manifest.specs:
            m = _method(s)
            if m == "gcs":
                step(f"{s.name}: GCS")
                long_parts.append(run("features_gcs.sql", {
                    "feature": s.name, "eye_itemid": _role(s, "eye"),
                    "verbal_itemid": _role(s, "verbal"), "motor_itemid": _role(s, "motor"),
                    "carry_forward_hours": float(s.source.get("carry_forward_hours", 6))}))
            elif m == "ventilation":
                step(f"{s.name}: ventilation")
                long_parts.append(run("features_ventilation.sql", {
                    "feature": s.name, "mode_itemid": _role(s, "ventilator_mode"),
                    "mode_hamilton_itemid": _role(s, "ventilator_mode_hamilton"),
                    "o2_device_itemid": _role(s, "o2_device"),
                    "procedure_itemids": (
                        _int_list(s, "procedure_itemids", s.source["procedure_itemids"])
                        if s.source.get("procedure_itemids") else [])}))
            elif m == "vasoactive_overlap":
                step(f"{s.name}: vasoactive infusions")
                long_parts.append(run("features_vasoactive.sql", {
                    "feature": s.name,
                    "itemids": _int_list(s, "itemids", s.source.get("itemids"))}))
            elif m == "icd_chapter":
                step(f"{s.name}: primary diagnosis chapter")
                cat_parts.append(run("features_diagnosis.sql", {
                    "feature": s.name, "seq_num": int(s.source.get("seq_num", 1))}))
    finally:
        for view in ("clinops_fx_cohort_df", "clinops_fx_items_df",
                     "clinops_fx_chart_itemids_df"):
            con.unregister(view)
        for table in _TEMP_TABLES:
            con.execute(f"DROP TABLE IF EXISTS {table}")
        if on_duckdb:
            con.execute(f"SET preserve_insertion_order = {'true' if keep_order else 'false'}")

    stay_ids = pd.Index(cohort["stay_id"].to_numpy(), name="stay_id")
    features = pd.DataFrame(index=stay_ids)
    long = pd.concat(long_parts, ignore_index=True) if long_parts else pd.DataFrame(
        columns=["stay_id", "feature", "value"])
    wide = long.pivot(index="stay_id", columns="feature", values="value") if len(long) else None
    for s in manifest.specs:
        if s.kind == "categorical":
            part = next((p for p in cat_parts if (p["feature"] == s.name).any()), None)
            labels = (part.set_index("stay_id")["category"].reindex(stay_ids)
                      if part is not None else pd.Series(index=stay_ids, dtype=object))
            unknown = set(labels.dropna()) - set(s.categories)
            if unknown:
                raise ManifestError(f"feature {s.name!r}: extraction produced categories "
                                    f"{sorted(unknown)} that the manifest does not list")
            features[s.name] = pd.Categorical(labels.to_numpy(dtype=object),
                                              categories=list(s.categories))
        else:
            col = (wide[s.name] if wide is not None and s.name in wide.columns
                   else pd.Series(dtype=float))
            features[s.name] = col.reindex(stay_ids).astype(float).to_numpy()

    n_features = len(manifest)
    max_missing = math.floor(max_missing_fraction * n_features + 1e-9)
    n_missing = features.isna().sum(axis=1)
    keep = n_missing <= max_missing
    kept = features.loc[keep]
    flow_step = {
        "step": 8,
        "criterion": (f"at most {max_missing_fraction:.0%} of the {n_features} features missing "
                      f"in the first {window_hours:g} h (at most {max_missing} missing)"),
        "n_remaining": int(keep.sum()),
        "n_excluded": int((~keep).sum()),
    }
    log.info("features for %d stays (%d excluded as too sparse) in %.1f s", len(kept),
             flow_step["n_excluded"], time.perf_counter() - t0)
    return kept, flow_step


def feature_sql_sha256(manifest: FeatureManifest | None = None) -> str:
    """SHA-256 over the cohort/feature SQL files and the manifest, for lineage.

    Parameters
    ----------
    manifest : FeatureManifest, optional
        Defaults to the packaged ``'mortality'`` manifest.

    Returns
    -------
    str
        Hex digest over each file of :data:`FEATURE_SQL_FILES` (name and text) and
        ``manifest.sha256``; it changes when any of them changes.
    """
    m = manifest if manifest is not None else FeatureManifest.load("mortality")
    h = hashlib.sha256()
    for name in FEATURE_SQL_FILES:
        h.update(name.encode() + b"\0" + sql_text(name).encode("utf-8") + b"\0")
    h.update(b"manifest\0" + m.sha256.encode())
    return h.hexdigest()


_ICD_CON: duckdb.DuckDBPyConnection | None = None
_ICD_LOCK = threading.Lock()


def icd_chapter(icd_code: str | None, icd_version: int | None) -> str | None:
    """ICD-10 chapter of one diagnosis code, by the SQL macro the extraction uses.

    Parameters
    ----------
    icd_code : str or None
        Code without the dot, as stored in MIMIC-IV (``'I5023'``, ``'4280'``, ``'V3000'``).
    icd_version : {9, 10} or None

    Returns
    -------
    str or None
        A category of the mortality manifest's ``dx_chapter`` (``'circulatory'``, ...), or
        None for a code that cannot be mapped.
    """
    global _ICD_CON
    with _ICD_LOCK:  # one small private connection; DuckDB connections are not thread-safe
        if _ICD_CON is None:
            _ICD_CON = duckdb.connect()
            install_macros(_ICD_CON)
        return _ICD_CON.execute("SELECT clinops_icd_chapter(CAST(? AS VARCHAR), "
                                "CAST(? AS SMALLINT))", [icd_code, icd_version]).fetchone()[0]

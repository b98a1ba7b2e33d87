"""Feature extraction: the manifest's features in the window [intime, intime + 24 h], in SQL.

Laboratory values start ``lab_prewindow_hours`` (default 6) before ``intime``, as mimic-code's
``first_day_lab``; vital signs, GCS and the flags keep ``[intime, intime + 24 h]`` (both ends
included).

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
from clinops.features.items import (METHODS, REQUIRED_COLUMNS, chart_itemids, int_list, item_rows,
                                    method_of, required_columns, role_itemid)
from clinops.features.manifest import FeatureManifest, ManifestError

__all__ = ["REQUIRED_COLUMNS", "METHODS", "LAB_TIMES", "check_lab_options", "extract_features",
           "feature_sql_sha256",
           "required_columns", "FEATURE_SQL_FILES", "icd_chapter"]

log = logging.getLogger(__name__)

#: SQL files whose text defines the training table (hashed by :func:`feature_sql_sha256`).
FEATURE_SQL_FILES: tuple[str, ...] = (
    "macros.sql", "icu_cohort.sql", "features_window.sql", "features_chart_stage.sql",
    "features_chart_aggregate.sql", "features_lab_aggregate.sql", "features_gcs.sql",
    "features_ventilation.sql", "features_vasoactive.sql", "features_demographics.sql",
    "features_diagnosis.sql", "features_admission_proxies.sql",
)

_COHORT_COLUMNS = ["stay_id", "subject_id", "hadm_id", "intime"]
_TEMP_TABLES = ("clinops_fx_cohort", "clinops_fx_window", "clinops_fx_chart",
                "clinops_fx_chart_itemids", "clinops_fx_items")


def _statements(sql: str) -> list[str]:
    """Split a SQL file into statements (DuckDB binds parameters per statement).

    The files end each statement with ';' at the end of a line and hold no ';' elsewhere.
    """
    return [st.strip() for st in sql.split(";\n") if st.strip().strip(";").strip()
            and not all(line.strip().startswith("--") or not line.strip()
                        for line in st.strip().splitlines())]


#: When a laboratory value counts as known (``features.lab_time``).
LAB_TIMES = ("charttime", "storetime")


def check_lab_options(lab_prewindow_hours: float, lab_time: str) -> None:
    """Raise ValueError naming the parameter when a laboratory window option is invalid.

    Examples
    --------
    >>> check_lab_options(6, "charttime")
    >>> check_lab_options(-1, "charttime")
    Traceback (most recent call last):
    ...
    ValueError: features.lab_prewindow_hours: must be a number >= 0 (hours before intime), got -1
    """
    if not (isinstance(lab_prewindow_hours, numbers.Real) and not isinstance(lab_prewindow_hours, bool)
            and math.isfinite(lab_prewindow_hours) and lab_prewindow_hours >= 0):
        raise ValueError("features.lab_prewindow_hours: must be a number >= 0 (hours before intime), "
                         f"got {lab_prewindow_hours!r}")
    if lab_time not in LAB_TIMES:
        raise ValueError(f"features.lab_time: must be one of {list(LAB_TIMES)}, got {lab_time!r}")


def extract_features(db: MimicDatabase, cohort: pd.DataFrame, *, manifest: FeatureManifest,
                     window_hours: float = 24, max_missing_fraction: float = 0.5,
                     lab_prewindow_hours: float = 6.0, lab_time: str = "charttime",
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
    lab_prewindow_hours : float
        Laboratory values count from this many hours before ``intime`` (mimic-code's
        ``first_day_lab``: 6, so a lactate drawn in the emergency department counts); vital
        signs, GCS and the flags keep ``[intime, intime + window]``. 0 = the paper's window.
    lab_time : {'charttime', 'storetime'}
        ``charttime`` (mimic-code): a lab counts when drawn in the window; ``storetime``: it
        must also be resulted (``storetime``) by the end of the window, as a model served at
        24 h would see it (a NULL storetime never counts).
    progress : callable(str), optional
        Called with a short message before each stage.

    Returns
    -------
    features : pandas.DataFrame, shape (n_kept, n_features)
        Indexed by ``stay_id`` (cohort order), the manifest's columns in raw units: float for
        numeric and binary (NaN = missing), ``pandas.Categorical`` (manifest categories) for
        categorical.
    flow_step : dict
        ``{'criterion', 'n_remaining', 'n_excluded'}`` over the given cohort, without a step
        number: :func:`clinops.tasks.flow.append_flow_step` numbers it in the
        caller's flow.
    """
    if not isinstance(manifest, FeatureManifest):
        raise TypeError(f"manifest: expected a FeatureManifest, got {type(manifest).__name__}")
    if not (isinstance(window_hours, numbers.Real) and math.isfinite(window_hours)
            and window_hours > 0):
        raise ValueError(f"window_hours: must be a positive number, got {window_hours!r}")
    if not (isinstance(max_missing_fraction, numbers.Real)
            and 0 <= max_missing_fraction <= 1):
        raise ValueError(f"max_missing_fraction: must be in [0, 1], got {max_missing_fraction!r}")
    check_lab_options(lab_prewindow_hours, lab_time)
    missing = [c for c in _COHORT_COLUMNS if c not in cohort.columns]
    if missing:
        raise ValueError(f"cohort: missing column(s) {missing}")
    if cohort["stay_id"].duplicated().any():
        raise ValueError("cohort.stay_id: must be unique, found duplicates "
                         f"{cohort.loc[cohort['stay_id'].duplicated(), 'stay_id'].head(3).tolist()}")
    if cohort["intime"].isna().any():
        raise ValueError("cohort.intime: must not be missing")
    db.require(required_columns(manifest))
    items = item_rows(manifest)
    chart_ids, text_ids = chart_itemids(manifest, items)
    gcs_specs = [s for s in manifest.specs if method_of(s) == "gcs"]
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
        con.execute(sql_text("features_window.sql"), {
            "window_hours": float(window_hours), "lab_prewindow_hours": float(lab_prewindow_hours)})
        step(f"chartevents pass: {len(chart_ids)} item ids, {len(cohort)} stays")
        for statement in _statements(sql_text("features_chart_stage.sql")):
            con.execute(statement, {"lookback_hours": lookback})

        def run(sql_file: str, params: dict | None = None) -> pd.DataFrame:
            return con.execute(sql_text(sql_file), params or {}).df()

        methods = {method_of(s) for s in manifest.specs}
        if "chart_aggregate" in methods:
            step("vital signs")
            long_parts.append(run("features_chart_aggregate.sql"))
        if "lab_aggregate" in methods:
            step("laboratory values")
            long_parts.append(run("features_lab_aggregate.sql", {"lab_time": lab_time}))
        if methods & {"age", "sex"}:
            step("demographics")
            age = next((s.name for s in manifest.specs if method_of(s) == "age"), None)
            sex = next((s.name for s in manifest.specs if method_of(s) == "sex"), None)
            long_parts.append(run("features_demographics.sql",
                                  {"age_feature": age, "sex_feature": sex}))
        for s in manifest.specs:
            m = method_of(s)
            if m == "gcs":
                step(f"{s.name}: GCS")
                long_parts.append(run("features_gcs.sql", {
                    "feature": s.name, "eye_itemid": role_itemid(s, "eye"),
                    "verbal_itemid": role_itemid(s, "verbal"), "motor_itemid": role_itemid(s, "motor"),
                    "carry_forward_hours": float(s.source.get("carry_forward_hours", 6))}))
            elif m == "ventilation":
                step(f"{s.name}: ventilation")
                long_parts.append(run("features_ventilation.sql", {
                    "feature": s.name, "mode_itemid": role_itemid(s, "ventilator_mode"),
                    "mode_hamilton_itemid": role_itemid(s, "ventilator_mode_hamilton"),
                    "o2_device_itemid": role_itemid(s, "o2_device"),
                    "procedure_itemids": (
                        int_list(s, "procedure_itemids", s.source["procedure_itemids"])
                        if s.source.get("procedure_itemids") else [])}))
            elif m == "vasoactive_overlap":
                step(f"{s.name}: vasoactive infusions")
                long_parts.append(run("features_vasoactive.sql", {
                    "feature": s.name,
                    "itemids": int_list(s, "itemids", s.source.get("itemids"))}))
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

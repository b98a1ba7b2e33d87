"""Charlson Comorbidity Index on arbitrary ICD codes (mimic-code components, weights, hierarchy)."""
from __future__ import annotations

from typing import Any

import pandas as pd

from clinops.tasks.readmission.sql import connection, read_sql

def charlson(con: Any, diagnoses: pd.DataFrame, ages: pd.DataFrame) -> pd.DataFrame:
    """Charlson Comorbidity Index (mimic-code components, weights and hierarchy) for given codes.

    Parameters
    ----------
    con : duckdb.DuckDBPyConnection
        Any DuckDB connection (no MIMIC-IV views needed).
    diagnoses : pandas.DataFrame
        Columns ``hadm_id, icd_code, icd_version`` (codes without dots; version 9 or 10).
    ages : pandas.DataFrame
        Columns ``hadm_id, age`` (years), one row per admission to score.

    Returns
    -------
    pandas.DataFrame
        One row per ``ages`` row, sorted by ``hadm_id``: ``age_score`` (0-4), the 17 component
        flags (0/1) and ``charlson_comorbidity_index`` (points).
    """
    for frame, name, cols in ((diagnoses, "diagnoses", ("hadm_id", "icd_code", "icd_version")),
                              (ages, "ages", ("hadm_id", "age"))):
        missing = [c for c in cols if c not in frame.columns]
        if missing:
            raise ValueError(f"{name}: missing column(s) {missing} (rule: needs {list(cols)})")
    bad = sorted(set(diagnoses["icd_version"].dropna().astype(int)) - {9, 10})
    if bad:
        raise ValueError(f"diagnoses.icd_version: must be 9 or 10, got {bad}")
    db = connection(con)
    db.register("charlson_diagnoses_df", diagnoses.loc[:, ["hadm_id", "icd_code", "icd_version"]])
    db.register("charlson_age_df", ages.loc[:, ["hadm_id", "age"]])
    try:
        return db.execute(
            "WITH charlson_diagnoses AS (SELECT * FROM charlson_diagnoses_df), "
            "charlson_age AS (SELECT * FROM charlson_age_df) "
            f"SELECT * FROM ({read_sql('charlson')}) ORDER BY hadm_id"
        ).df()
    finally:
        db.unregister("charlson_diagnoses_df")
        db.unregister("charlson_age_df")

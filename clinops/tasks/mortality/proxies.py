"""At-admission proxies of the diagnosis for the mortality task table (issue 15, item 2).

``dx_chapter`` is the billing principal diagnosis, coded after discharge: it does not exist when
the model would be served. The sensitivity model refits without it and with what *is* known at
ICU admission instead: the first care unit (``icustays.first_careunit``) and the admission type
(``admissions.admission_type``). They are not features of the manifest (never served); the task
table carries them as two integer columns, ``proxy_first_careunit`` and
``proxy_admission_type``, coded by :data:`CAREUNIT_CODES` and :data:`ADMISSION_TYPE_CODES`
(MIMIC-IV v2.2's values in alphabetical order, 1 based; 0 = missing or a value not listed).

Examples
--------
>>> code_values(["Coronary Care Unit (CCU)", None, "Burn unit"], CAREUNIT_CODES).tolist()
[2, 0, 0]
>>> ADMISSION_TYPE_CODES["EW EMER."]
6
"""
from __future__ import annotations

from types import MappingProxyType
from typing import Iterable, Mapping

import numpy as np
import pandas as pd

from clinops.data.mimic import MimicDatabase, sql_text

__all__ = ["CAREUNIT_CODES", "ADMISSION_TYPE_CODES", "PROXY_COLUMNS", "REQUIRED_COLUMNS",
           "code_values", "admission_proxies"]

#: icustays.first_careunit in MIMIC-IV v2.2 -> code (0 = missing or not listed).
CAREUNIT_CODES: Mapping[str, int] = MappingProxyType({name: i for i, name in enumerate((
    "Cardiac Vascular Intensive Care Unit (CVICU)", "Coronary Care Unit (CCU)",
    "Medical Intensive Care Unit (MICU)", "Medical/Surgical Intensive Care Unit (MICU/SICU)",
    "Neuro Intermediate", "Neuro Stepdown", "Neuro Surgical Intensive Care Unit (Neuro SICU)",
    "Surgical Intensive Care Unit (SICU)", "Trauma SICU (TSICU)"), start=1)})

#: admissions.admission_type in MIMIC-IV v2.2 -> code (0 = missing or not listed).
ADMISSION_TYPE_CODES: Mapping[str, int] = MappingProxyType({name: i for i, name in enumerate((
    "AMBULATORY OBSERVATION", "DIRECT EMER.", "DIRECT OBSERVATION", "ELECTIVE", "EU OBSERVATION",
    "EW EMER.", "OBSERVATION ADMIT", "SURGICAL SAME DAY ADMISSION", "URGENT"), start=1)})

#: Task-table column -> (source column, its code mapping).
PROXY_COLUMNS: Mapping[str, tuple[str, Mapping[str, int]]] = MappingProxyType({
    "proxy_first_careunit": ("first_careunit", CAREUNIT_CODES),
    "proxy_admission_type": ("admission_type", ADMISSION_TYPE_CODES),
})

#: What :func:`admission_proxies` reads.
REQUIRED_COLUMNS = {"mimiciv_icu.icustays": ["stay_id", "first_careunit"],
                    "mimiciv_hosp.admissions": ["hadm_id", "admission_type"]}


def code_values(values: Iterable, codes: Mapping[str, int]) -> np.ndarray:
    """Integer codes of text values (0 for a missing value or one the mapping does not list)."""
    return np.array([codes.get(v, 0) if isinstance(v, str) else 0 for v in values], dtype="int64")


def admission_proxies(db: MimicDatabase, stays: pd.DataFrame) -> pd.DataFrame:
    """The integer-coded at-admission proxies of each stay.

    Parameters
    ----------
    db : MimicDatabase
        Opened with :func:`clinops.data.mimic.open_mimic` (any engine).
    stays : pandas.DataFrame
        ``stay_id`` and ``hadm_id`` (e.g. the task table's kept cohort rows).

    Returns
    -------
    pandas.DataFrame
        Indexed by ``stay_id`` in the order of ``stays``: ``proxy_first_careunit`` and
        ``proxy_admission_type`` (int64, see :data:`PROXY_COLUMNS`).
    """
    missing = [c for c in ("stay_id", "hadm_id") if c not in stays.columns]
    if missing:
        raise ValueError(f"stays: missing column(s) {missing}")
    db.require(REQUIRED_COLUMNS)
    con = db.con
    con.register("clinops_fx_proxy_cohort_df", stays[["stay_id", "hadm_id"]].astype("int64"))
    try:
        con.execute("CREATE OR REPLACE TEMP TABLE clinops_fx_proxy_cohort AS "
                    "SELECT * FROM clinops_fx_proxy_cohort_df")
        raw = con.execute(sql_text("features_admission_proxies.sql")).df()
    finally:
        con.unregister("clinops_fx_proxy_cohort_df")
        con.execute("DROP TABLE IF EXISTS clinops_fx_proxy_cohort")
    raw = raw.drop_duplicates("stay_id").set_index("stay_id").reindex(stays["stay_id"].to_numpy())
    return pd.DataFrame({column: code_values(raw[source], codes)
                         for column, (source, codes) in PROXY_COLUMNS.items()},
                        index=pd.Index(stays["stay_id"].to_numpy(), name="stay_id"))

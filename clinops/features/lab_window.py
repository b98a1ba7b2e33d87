"""What the laboratory pre-window changes: lab missingness with and without it (issue 15, item 5).

mimic-code's ``first_day_lab`` counts labs from 6 h before ICU ``intime``: a lactate drawn in the
emergency department before ICU arrival is often the stay's first. :func:`lab_missingness_by_prewindow`
runs the same laboratory SQL as :func:`clinops.features.extract_features` twice on one cohort,
with no pre-window and with the configured one, and reports each lab feature's missing share.

Examples
--------
>>> presence = pd.DataFrame({"creatinine": [True, False], "lactate": [False, False]})
>>> missing_shares(presence, ["creatinine", "lactate"]).tolist()
[0.5, 1.0]
"""
from __future__ import annotations

import pandas as pd

from clinops.data.mimic import MimicDatabase, sql_text
from clinops.features.extract import check_lab_options
from clinops.features.items import item_rows, method_of
from clinops.features.manifest import FeatureManifest

__all__ = ["lab_missingness_by_prewindow", "missing_shares"]

_COHORT_COLUMNS = ["stay_id", "subject_id", "hadm_id", "intime"]


def missing_shares(presence: pd.DataFrame, features: list[str]) -> pd.Series:
    """Share of rows without a value of each feature (``presence``: True = measured)."""
    return pd.Series({f: float((~presence[f].astype(bool)).mean()) if len(presence) else float("nan")
                      for f in features})


def _lab_presence(con, stay_ids: pd.Index, features: list[str], *, window_hours: float,
                  prewindow_hours: float, lab_time: str) -> pd.DataFrame:
    # the staged cohort and items are already on the connection
    con.execute(sql_text("features_window.sql"), {"window_hours": float(window_hours),
                                                  "lab_prewindow_hours": float(prewindow_hours)})
    long = con.execute(sql_text("features_lab_aggregate.sql"), {"lab_time": lab_time}).df()
    present = pd.DataFrame(False, index=stay_ids, columns=features)
    for f in features:
        ids = long.loc[(long["feature"] == f) & long["value"].notna(), "stay_id"]
        present.loc[present.index.isin(ids), f] = True
    return present


def lab_missingness_by_prewindow(db: MimicDatabase, cohort: pd.DataFrame, *, manifest: FeatureManifest,
                                 window_hours: float = 24, prewindow_hours: float = 6.0,
                                 lab_time: str = "charttime") -> pd.DataFrame:
    """Missing share of each laboratory feature without and with the pre-window.

    Parameters
    ----------
    db : MimicDatabase
        Opened with :func:`clinops.data.mimic.open_mimic` (any engine).
    cohort : pandas.DataFrame
        ``stay_id``, ``subject_id``, ``hadm_id``, ``intime`` of the stays to count (e.g. the
        training rows of the task table).
    manifest : FeatureManifest
        Its ``lab_aggregate`` features are compared.
    window_hours, prewindow_hours, lab_time
        As :func:`clinops.features.extract_features` (``prewindow_hours`` is its
        ``lab_prewindow_hours``).

    Returns
    -------
    pandas.DataFrame
        One row per lab feature: ``feature``, ``n_stays``, ``missing_no_prewindow`` (window
        ``[intime, intime + window]``), ``missing_with_prewindow`` (from ``intime -
        prewindow_hours``), ``prewindow_hours`` and ``change`` (with - without, <= 0).
    """
    check_lab_options(prewindow_hours, lab_time)
    missing = [c for c in _COHORT_COLUMNS if c not in cohort.columns]
    if missing:
        raise ValueError(f"cohort: missing column(s) {missing}")
    features = [s.name for s in manifest.specs if method_of(s) == "lab_aggregate"]
    items = item_rows(manifest)
    db.require({"mimiciv_hosp.labevents": ["subject_id", "charttime", "storetime", "itemid",
                                           "valuenum"]})
    con = db.con
    stay_ids = pd.Index(cohort["stay_id"].to_numpy(), name="stay_id")
    con.register("clinops_fx_cohort_df", cohort[_COHORT_COLUMNS])
    con.register("clinops_fx_items_df", items)
    try:
        con.execute("CREATE OR REPLACE TEMP TABLE clinops_fx_cohort AS SELECT * FROM clinops_fx_cohort_df")
        con.execute("CREATE OR REPLACE TEMP TABLE clinops_fx_items AS SELECT * FROM clinops_fx_items_df")
        shares = {hours: missing_shares(_lab_presence(con, stay_ids, features, window_hours=window_hours,
                                                      prewindow_hours=hours, lab_time=lab_time), features)
                  for hours in (0.0, float(prewindow_hours))}
    finally:
        for view in ("clinops_fx_cohort_df", "clinops_fx_items_df"):
            con.unregister(view)
        for table in ("clinops_fx_cohort", "clinops_fx_items", "clinops_fx_window"):
            con.execute(f"DROP TABLE IF EXISTS {table}")
    without, with_pre = shares[0.0], shares[float(prewindow_hours)]
    return pd.DataFrame({"feature": features, "n_stays": len(stay_ids),
                         "missing_no_prewindow": without.to_numpy(),
                         "missing_with_prewindow": with_pre.to_numpy(),
                         "prewindow_hours": float(prewindow_hours),
                         "change": (with_pre - without).to_numpy()})

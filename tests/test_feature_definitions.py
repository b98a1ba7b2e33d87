"""Issue 15 feature definitions on hand-made MIMIC-shaped rows, each with its known answer.

The lab pre-window (item 5), the ventilated tracheostomy (item 6), the vasopressor choice, the
storetime option and farthest-from-normal temperature / heart rate (item 8), window edges,
duplicate and corrected chart rows, text in numeric items, and the at-admission proxies of
``dx_chapter`` (item 2). Every value is worked out by hand from the rows written here; all
rows go through the packaged feature SQL in DuckDB.
"""
from __future__ import annotations

import math

import pandas as pd
import pytest

from clinops.data.mimic import open_mimic
from clinops.features import FeatureManifest, check_lab_options, extract_features, lab_missingness_by_prewindow
from clinops.tasks.mortality.proxies import ADMISSION_TYPE_CODES, CAREUNIT_CODES, admission_proxies

from tests.fixtures import mimic_tables

MANIFEST = FeatureManifest.load("mortality")
T0 = pd.Timestamp("2150-01-01 10:00:00")  # every stay's intime, exactly on the hour


def ts(hours: float) -> str:
    return str(T0 + pd.Timedelta(hours=hours))


def ids(stay: int) -> dict:  # stay 3xx -> subject xx, hadm 2xx
    return {"subject_id": stay - 300, "hadm_id": stay - 100, "stay_id": stay}


def ce(stay, hours, itemid, valuenum=None, value=None, warning=None):
    return {**ids(stay), "charttime": ts(hours), "itemid": itemid, "valuenum": valuenum,
            "value": value if value is not None else valuenum, "warning": warning}


_LAB_ID = [0]


def lab(subject, hours, itemid, valuenum, stored_after_hours=0.5, value=None):
    _LAB_ID[0] += 1
    return {"labevent_id": _LAB_ID[0], "subject_id": subject, "specimen_id": _LAB_ID[0],
            "itemid": itemid, "charttime": ts(hours),
            "storetime": None if stored_after_hours is None else ts(hours + stored_after_hours),
            "valuenum": valuenum, "value": value if value is not None else valuenum}


def inp(stay, start_h, end_h, itemid):
    return {**ids(stay), "starttime": ts(start_h), "endtime": ts(end_h), "itemid": itemid, "orderid": 1}


def patient(subject):
    return {"subject_id": subject, "gender": "F", "anchor_age": 60, "anchor_year": 2150,
            "anchor_year_group": "2008 - 2010"}


def database(tmp_path, stays, **tables):
    tables = {f"mimiciv_{k.split('_', 1)[0]}.{k.split('_', 1)[1]}": v for k, v in tables.items()}
    tables.setdefault("mimiciv_hosp.patients", [patient(s - 300) for s in stays])
    root = mimic_tables.write_mimic(tmp_path / "mimic", tables)
    return open_mimic(root, hash_cache=tmp_path / "cache.json")


def cohort_of(stays):
    return pd.DataFrame([{**ids(s), "intime": T0} for s in stays])


def run(tmp_path, stays, *, options=None, **tables):
    with database(tmp_path, stays, **tables) as db:
        f, _ = extract_features(db, cohort_of(stays), manifest=MANIFEST, max_missing_fraction=1.0,
                                **(options or {}))
    return f


# ------------------------------------------------------------------ item 5: lab pre-window

def test_lab_prewindow_counts_ed_labs_from_six_hours_before_intime(tmp_path):
    labs = [
        lab(1, -2, 50813, 4.2),      # ED lactate 2 h before intime: the stay's only lactate
        lab(2, -6, 50813, 3.0),      # exactly intime - 6 h: the pre-window's closed start
        lab(3, -6.02, 50813, 5.0),   # 6 h 1 min before: outside
        lab(4, -1, 50912, 1.9), lab(4, 3, 50912, 1.1),   # creatinine: worst = max over both
    ]
    stays = [301, 302, 303, 304]
    f = run(tmp_path, stays, hosp_labevents=labs)
    assert f.loc[301, "lactate"] == 4.2
    assert f.loc[302, "lactate"] == 3.0
    assert math.isnan(f.loc[303, "lactate"])
    assert f.loc[304, "creatinine"] == 1.9
    # lab_prewindow_hours 0 is the paper's [intime, intime + 24 h]: the ED values are lost
    g = run(tmp_path / "zero", stays, options={"lab_prewindow_hours": 0}, hosp_labevents=labs)
    assert math.isnan(g.loc[301, "lactate"]) and math.isnan(g.loc[302, "lactate"])
    assert g.loc[304, "creatinine"] == 1.1


def test_vitals_keep_intime_to_24h_without_prewindow_and_both_edges_count(tmp_path):
    chart = [
        ce(301, -0.5, 220045, 150),          # before intime: vitals have no pre-window
        ce(301, 0, 220045, 112),             # exactly at intime (on the hour): counts
        ce(301, 12, 220045, 90),
        ce(302, 24, 220045, 125),            # exactly at intime + 24 h: counts
        ce(302, 24 + 1 / 60, 220045, 160),   # one minute later: outside
        ce(302, 5, 220045, 80),
    ]
    f = run(tmp_path, [301, 302], icu_chartevents=chart)
    assert f.loc[301, "heart_rate"] == 112
    assert f.loc[302, "heart_rate"] == 125


def test_lab_missingness_with_and_without_prewindow(tmp_path):
    labs = [lab(1, -3, 50813, 2.0), lab(2, 4, 50813, 2.5), lab(3, -3, 50912, 1.0)]
    stays = [301, 302, 303, 304]
    with database(tmp_path, stays, hosp_labevents=labs) as db:
        table = lab_missingness_by_prewindow(db, cohort_of(stays), manifest=MANIFEST, prewindow_hours=6)
    row = table.set_index("feature")
    # lactate: only stay 302 in [intime, +24 h] (3 of 4 missing); with the ED value of 301, 2 of 4
    assert row.loc["lactate", "missing_no_prewindow"] == 0.75
    assert row.loc["lactate", "missing_with_prewindow"] == 0.5
    assert row.loc["lactate", "change"] == -0.25
    assert row.loc["creatinine", "missing_no_prewindow"] == 1.0
    assert row.loc["creatinine", "missing_with_prewindow"] == 0.75
    assert row.loc["albumin", "missing_with_prewindow"] == 1.0
    assert set(row.index) == {"creatinine", "lactate", "albumin", "bilirubin", "platelets", "inr"}
    assert (table["n_stays"] == 4).all()


# ------------------------------------------------------------------ item 8: storetime option

def test_storetime_option_counts_a_lab_only_when_resulted_in_the_window(tmp_path):
    labs = [
        lab(1, 23, 50813, 6.0, stored_after_hours=2),     # drawn at 23 h, resulted at 25 h
        lab(1, 4, 50813, 2.0, stored_after_hours=1),
        lab(2, 22, 50912, 3.0, stored_after_hours=2),     # resulted exactly at 24 h: counts
        lab(3, 10, 50862, 2.1, stored_after_hours=None),  # no storetime at all
    ]
    stays = [301, 302, 303]
    charted = run(tmp_path, stays, hosp_labevents=labs)
    assert charted.loc[301, "lactate"] == 6.0 and charted.loc[303, "albumin"] == 2.1
    stored = run(tmp_path / "s", stays, options={"lab_time": "storetime"}, hosp_labevents=labs)
    assert stored.loc[301, "lactate"] == 2.0
    assert stored.loc[302, "creatinine"] == 3.0
    assert math.isnan(stored.loc[303, "albumin"])


def test_lab_options_are_checked_with_the_parameter_name():
    with pytest.raises(ValueError, match="features.lab_time"):
        check_lab_options(6, "resulttime")
    with pytest.raises(ValueError, match="features.lab_prewindow_hours"):
        check_lab_options(float("nan"), "charttime")


# ------------------------------------------------------------------ item 6: tracheostomy

def test_ventilated_tracheostomy_is_invasive_ventilation_and_trach_mask_is_not(tmp_path):
    chart = [
        # 301: intubated, then tracheostomy on the ventilator (Tracheostomy status each time)
        ce(301, 1, 226732, None, "Endotracheal tube"), ce(301, 1, 223849, None, "CMV/ASSIST"),
        ce(301, 9, 226732, None, "Tracheostomy tube"), ce(301, 9, 223849, None, "CPAP/PSV"),
        # 302: ventilated through a tracheostomy throughout (no endotracheal tube) -> 1
        ce(302, 2, 226732, None, "Tracheostomy tube"), ce(302, 2, 223849, None, "PRVC/AC"),
        ce(302, 6, 226732, None, "Tracheostomy tube"), ce(302, 6, 223849, None, "PRVC/AC"),
        # 303: a tracheostomy on a trach mask, breathing without a ventilator -> 0
        ce(303, 2, 226732, None, "Trach mask "), ce(303, 8, 226732, None, "Trach mask "),
        # 304: Hamilton ventilator through the tracheostomy -> 1
        ce(304, 3, 226732, None, "Tracheostomy tube"), ce(304, 3, 229314, None, "ASV"),
        # 305: a tracheostomy with a non-invasive Hamilton mode is not invasive -> 0
        ce(305, 3, 226732, None, "Tracheostomy tube"), ce(305, 3, 229314, None, "NIV"),
        # 306: weaned: ventilator mode at 2 h (before the trach mask) -> 1
        ce(306, 2, 223849, None, "SIMV"), ce(306, 12, 226732, None, "Trach mask "),
    ]
    f = run(tmp_path, list(range(301, 307)), icu_chartevents=chart)
    assert f["mech_vent"].to_dict() == {301: 1, 302: 1, 303: 0, 304: 1, 305: 0, 306: 1}


# ------------------------------------------------------------------ item 8: vasopressor choice

def test_vasopressor_flag_leaves_out_the_inotropes(tmp_path):
    inputs = [
        inp(301, 1, 5, 221653),                         # dobutamine only -> 0
        inp(302, 1, 5, 221986),                         # milrinone only -> 0
        inp(303, 1, 5, 221653), inp(303, 2, 6, 221906),  # dobutamine + norepinephrine -> 1
        inp(304, 23, 30, 221749),                       # phenylephrine overlapping the end -> 1
        inp(305, 24, 30, 222315),                       # vasopressin starting exactly at 24 h -> 1
    ]
    f = run(tmp_path, list(range(301, 306)), icu_inputevents=inputs)
    assert f["vasopressor"].to_dict() == {301: 0, 302: 0, 303: 1, 304: 1, 305: 1}


# ------------------------------------------------------------------ item 8: worst temperature / HR

@pytest.mark.parametrize("temps, expected", [
    ([35.0, 38.6], 35.0),    # 1.0 below 36.0 beats 0.2 above 38.4: hypothermia
    ([36.5, 38.9], 38.9),    # fever
    ([35.9, 38.5], 38.5),    # 0.1 either side: a tie gives the maximum
    ([36.5, 37.5], 37.5),    # all inside the band: the maximum (the old definition)
    ([34.0, 35.5], 34.0),    # all below: the lowest
])
def test_temperature_is_the_value_farthest_from_normal(tmp_path, temps, expected):
    chart = [ce(301, 2 + k, 223762, t) for k, t in enumerate(temps)]
    f = run(tmp_path, [301], icu_chartevents=chart)
    assert f.loc[301, "temperature"] == pytest.approx(expected)


def test_heart_rate_bradycardia_and_fahrenheit_hypothermia(tmp_path):
    chart = [
        ce(301, 1, 220045, 40), ce(301, 2, 220045, 120),   # 30 below 70 beats 11 above 109
        ce(302, 1, 220045, 65), ce(302, 2, 220045, 130),   # 5 below, 21 above -> 130
        # 93.2 F = 34.0 C (below the band by 2.0) beats 38.5 C (0.1 above)
        ce(303, 1, 223761, 93.2), ce(303, 2, 223762, 38.5),
    ]
    f = run(tmp_path, [301, 302, 303], icu_chartevents=chart)
    assert f.loc[301, "heart_rate"] == 40
    assert f.loc[302, "heart_rate"] == 130
    assert f.loc[303, "temperature"] == pytest.approx(34.0)


# ------------------------------------------------------------------ generator traps in chartevents

def test_duplicate_and_corrected_rows_average_and_text_values_never_count(tmp_path):
    chart = [
        # a corrected entry beside the first one at the same charttime (warning = 1 on the
        # first): averaged per charttime like two items, mimic-code vitalsign.sql; warning unused
        ce(301, 3, 220045, 140, warning=1), ce(301, 3, 220045, 100, warning=0),
        ce(301, 5, 220045, 95),
        # text in a numeric item: value text, valuenum NULL -> not a measurement
        ce(302, 2, 220045, None, "UNABLE TO ASSESS"), ce(302, 2, 220277, None, "Refused"),
    ]
    labs = [lab(2, 2, 50813, None, value="HEMOLYZED")]
    f = run(tmp_path, [301, 302], icu_chartevents=chart, hosp_labevents=labs)
    assert f.loc[301, "heart_rate"] == 120
    assert math.isnan(f.loc[302, "heart_rate"]) and math.isnan(f.loc[302, "spo2"])
    assert math.isnan(f.loc[302, "lactate"])


# ------------------------------------------------------------------ item 2: at-admission proxies

def test_admission_proxies_are_integer_coded_from_icustays_and_admissions(tmp_path):
    stays = [301, 302, 303]
    icustays = [{**ids(301), "first_careunit": "Coronary Care Unit (CCU)", "intime": ts(0)},
                {**ids(302), "first_careunit": "Trauma SICU (TSICU)", "intime": ts(0)},
                {**ids(303), "first_careunit": "Burn Unit", "intime": ts(0)}]
    admissions = [{"subject_id": 1, "hadm_id": 201, "admittime": ts(-3), "admission_type": "EW EMER."},
                  {"subject_id": 2, "hadm_id": 202, "admittime": ts(-3), "admission_type": "ELECTIVE"}]
    with database(tmp_path, stays, icu_icustays=icustays, hosp_admissions=admissions) as db:
        got = admission_proxies(db, cohort_of(stays)[["stay_id", "hadm_id"]])
    assert got["proxy_first_careunit"].tolist() == [2, 9, 0]   # an unlisted unit is 0
    assert got["proxy_admission_type"].tolist() == [6, 4, 0]   # no admission row is 0
    assert str(got["proxy_first_careunit"].dtype) == "int64"
    assert CAREUNIT_CODES["Coronary Care Unit (CCU)"] == 2 and ADMISSION_TYPE_CODES["ELECTIVE"] == 4

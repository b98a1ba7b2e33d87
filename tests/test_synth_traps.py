"""The trap counters of clinops.data.synth.traps on hand-made MIMIC-IV v2.2 rows with known counts."""
from __future__ import annotations

import duckdb
import pandas as pd
import pytest

from clinops.data.synth.traps import TRAPS, trap_table

T = pd.to_datetime


def _patients():
    # subject 1: anchor 2150 in 2014-2016; subject 2: anchor 2160 in 2008-2010; subject 3: 2017-2019
    return pd.DataFrame({"subject_id": [1, 2, 3], "gender": ["M", "F", "M"], "anchor_age": [60, 70, 50],
                         "anchor_year": [2150, 2160, 2170],
                         "anchor_year_group": ["2014 - 2016", "2008 - 2010", "2017 - 2019"],
                         "dod": T(["2150-02-10", None, "2170-01-04"]).date})


def _admissions():
    return pd.DataFrame({
        "subject_id": [1, 1, 1, 2, 3],
        "hadm_id": [10, 11, 12, 20, 30],
        "admittime": T(["2150-01-01 06:00", "2150-01-20 09:00", "2153-03-01 10:00", "2161-05-01 00:00",
                        "2170-01-01 00:00"]),
        "dischtime": T(["2150-01-10 12:00", "2150-01-25 12:00", "2153-03-09 10:00", "2161-05-20 00:00",
                        "2170-01-04 00:00"]),
        "deathtime": T([None, None, None, None, "2170-01-04 00:00"]),
        "admission_type": ["EW EMER.", "URGENT", "ELECTIVE", "EW EMER.", "EW EMER."],
        "hospital_expire_flag": [0, 0, 0, 0, 1]})


def _icustays():
    return pd.DataFrame({
        "subject_id": [1, 1, 2, 3], "hadm_id": [10, 12, 20, 30], "stay_id": [100, 120, 200, 300],
        "intime": T(["2150-01-01 08:00:00", "2153-03-01 12:30:00", "2161-05-01 02:00:15", "2170-01-01 01:00:00"]),
        "outtime": T(["2150-01-05 08:00", "2153-03-04 12:00", "2161-05-03 00:00", "2170-01-04 00:00"])})


def _chartevents():
    rows = [
        # stay 100: rows at both window edges, a duplicate, a corrected row, text in a numeric item
        (100, "2150-01-01 08:00", 220045, "80", 80.0, 0),
        (100, "2150-01-02 08:00", 220045, "82", 82.0, 0),
        (100, "2150-01-01 09:00", 220045, "85", 85.0, 0),
        (100, "2150-01-01 09:00", 220045, "85", 85.0, 1),
        (100, "2150-01-01 10:00", 220045, "see note", None, 0),
        (100, "2150-01-01 10:00", 220048, "SR (Sinus Rhythm)", None, 0),  # a Text item: not counted
        # stay 120: ventilated trach at 13:00; trach alone at 20:00
        (120, "2153-03-01 13:00", 226732, "Trach mask ", None, 0),
        (120, "2153-03-01 13:00", 223849, "CMV/ASSIST", None, 0),
        (120, "2153-03-01 20:00", 226732, "Tracheostomy tube", None, 0),
        # stay 200: trach without ventilation
        (200, "2161-05-01 03:00", 226732, "Tracheostomy tube", None, 0),
        (200, "2161-05-01 03:00", 223849, "Standby", None, 0),
    ]
    df = pd.DataFrame(rows, columns=["stay_id", "charttime", "itemid", "value", "valuenum", "warning"])
    df["charttime"] = T(df["charttime"])
    return df


def _d_items():
    return pd.DataFrame({"itemid": [220045, 220048, 226732, 223849],
                         "param_type": ["Numeric", "Text", "Text", "Text"]})


def _labevents():
    rows = [
        # subject 1, stay 100 (intime 2150-01-01 08:00): an ED lab 2 h before, one 7 h before (outside)
        (1, "2150-01-01 06:00", "2150-01-01 06:40", 50813, "2.1", 2.1),
        (1, "2150-01-01 01:00", "2150-01-01 01:30", 50813, "1.9", 1.9),
        # drawn in the window, resulted after it
        (1, "2150-01-02 07:00", "2150-01-02 09:00", 50862, "3.0", 3.0),
        # drawn at the right edge, resulted at once (edge row, not late)
        (1, "2150-01-02 08:00", "2150-01-02 08:00", 50885, "GREATER THAN 20", None),
    ]
    df = pd.DataFrame(rows, columns=["subject_id", "charttime", "storetime", "itemid", "value", "valuenum"])
    df[["charttime", "storetime"]] = df[["charttime", "storetime"]].apply(T)
    # bilirubin has numeric results elsewhere, so its text row is a trap
    extra = pd.DataFrame({"subject_id": [2], "charttime": T(["2161-06-01 00:00"]), "storetime": T(["2161-06-01 01:00"]),
                          "itemid": [50885], "value": ["1.0"], "valuenum": [1.0]})
    return pd.concat([df, extra], ignore_index=True)


def _procedures():
    return pd.DataFrame({"hadm_id": [11, 12], "icd_code": ["0SRC0JZ", "0SRC0JZ"], "icd_version": [10, 10]})


@pytest.fixture
def con():
    c = duckdb.connect()
    for name, df in {"hosp_patients": _patients(), "hosp_admissions": _admissions(), "icu_icustays": _icustays(),
                     "icu_chartevents": _chartevents(), "icu_d_items": _d_items(), "hosp_labevents": _labevents(),
                     "hosp_procedures_icd": _procedures()}.items():
        c.register(name, df)
    return c


def count(con, trap):
    return TRAPS[trap].count(con)


def test_real_year_differs(con):
    got = count(con, "real_year_differs")
    # stay 120 (2153 vs anchor 2150: 2017-2019 at the earliest) and stay 200 (2161 vs 2160)
    assert got["ICU stays with year(intime) > anchor_year"] == 2
    assert got["ICU stays of a 2008-2016 anchor group certainly in 2017 or later"] == 1


def test_intime_on_the_hour(con):
    # 08:00:00 and 01:00:00 are on the hour; 12:30:00 and 02:00:15 are not
    assert count(con, "intime_on_the_hour") == {"ICU stays with intime on the hour (hh:00:00)": 2}


def test_rows_at_window_edges(con):
    assert count(con, "rows_at_window_edges") == {"chart rows at intime or intime + 24 h": 2,
                                                  "lab rows at intime or intime + 24 h": 1}


def test_tracheostomy_and_ventilated_trach(con):
    assert count(con, "tracheostomy") == {
        "ICU stays with a tracheostomy device row": 2,
        "ICU stays with trach and an invasive ventilator mode at the same charttime": 1}


def test_ed_labs_before_intime(con):
    assert count(con, "ed_labs_before_intime") == {"ICU stays with a lab in [intime - 6 h, intime)": 1}


def test_duplicate_and_corrected_chart_rows(con):
    # (100, 220045, 09:00) twice: one extra row; (100, 10:00) holds two different items: not a duplicate
    assert count(con, "duplicate_and_corrected_chart_rows") == {
        "chart rows repeating (stay_id, itemid, charttime)": 1, "chart rows with warning = 1": 1}


def test_text_in_numeric_items(con):
    assert count(con, "text_in_numeric_items") == {
        "chart rows of Numeric items with text and NULL valuenum": 1,
        "lab rows of numeric lab items with text and NULL valuenum": 1}


def test_labs_resulted_after_window(con):
    assert count(con, "labs_resulted_after_window") == {"lab rows drawn in the 24 h window, resulted after it": 1}


def test_deaths_by_horizon(con):
    got = count(con, "deaths_by_horizon")
    # hadm 30: ICU intime 2170-01-01 01:00, death 2170-01-04 00:00 = 71 h
    assert got["in-hospital deaths (48, 72] h after ICU intime"] == 1
    assert sum(v for k, v in got.items() if k.startswith("in-hospital")) == 1
    # subject 1 died 2150-02-10: 16 days after hadm 11's discharge (2150-01-25), 31 after hadm 10's
    assert got["deaths within 30 d of a live discharge"] == 1


def test_planned_readmissions_by_procedure(con):
    # hadm 11 (URGENT, 10 days after hadm 10) has a knee replacement; hadm 12 has one but is no readmission
    assert count(con, "planned_readmissions_by_procedure") == {
        "30-day readmissions with a planned procedure code": 1, "of which not ELECTIVE / SURGICAL SAME DAY ADMISSION": 1}


def test_subjects_across_the_split(con):
    # subject 1: 2150 (2014-2016) and 2153 (2017-2019 at the earliest); subject 2 and 3 one admission each
    assert count(con, "subjects_across_the_split") == {
        "subjects with more than one admission": 1,
        "subjects with admissions certainly in 2008-2016 and in 2017-2019": 1}


def test_chart_rows_per_stay(con):
    assert count(con, "chart_rows_per_stay") == {"chartevents rows per ICU stay": pytest.approx(11 / 4, abs=0.05)}


def test_trap_table_has_one_row_per_count_and_every_trap(con):
    table = trap_table(con)
    assert set(table["trap"]) == set(TRAPS)
    assert len(table) == sum(len(t.count(con)) for t in TRAPS.values())
    assert table.loc[table["trap"] == "intime_on_the_hour", "count"].item() == 2

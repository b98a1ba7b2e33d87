"""The readmission definition on hand-made MIMIC-IV rows: CMS planned readmissions (PR1, PR2,
PR3 with and without an acute principal diagnosis), the first readmission only, observation
stays, competing deaths under each option, censored follow-up, and the definitions table.

Every expected value is worked out by hand from the rows below.
"""
from __future__ import annotations

import duckdb
import pandas as pd
import pytest

from clinops.data import cms_planned
from clinops.tasks.readmission import cohort as readm_cohort
from clinops.tasks.readmission.definitions import definitions_table
from tests.test_readmission import DDL, _adm, _dx, _insert, _svc


def _px(subject_id, hadm_id, icd_code, icd_version, chartdate="2150-01-01"):
    return dict(subject_id=subject_id, hadm_id=hadm_id, seq_num=1, chartdate=chartdate, icd_code=icd_code,
                icd_version=icd_version)


def _patient(subject_id, group="2011 - 2013", dod=None):
    return dict(subject_id=subject_id, gender="F", anchor_age=60, anchor_year=2150, anchor_year_group=group, dod=dod)


def _index(con, subject_id, hadm_id, admit, disch):
    """An index admission: EW EMER., home, discharged by MED."""
    _insert(con, "mimiciv_hosp.admissions", [_adm(subject_id, hadm_id, admit, disch)])
    _insert(con, "mimiciv_hosp.services", [_svc(subject_id, hadm_id, admit, "MED")])


def _return(con, subject_id, hadm_id, admit, disch, atype, *, dx=None, px=None):
    """A later admission under SURG (never an index itself), with its principal dx / a procedure."""
    _insert(con, "mimiciv_hosp.admissions", [_adm(subject_id, hadm_id, admit, disch, atype)])
    _insert(con, "mimiciv_hosp.services", [_svc(subject_id, hadm_id, admit, "SURG")])
    if dx:
        _insert(con, "mimiciv_hosp.diagnoses_icd", [_dx(subject_id, hadm_id, 1, *dx)])
    if px:
        _insert(con, "mimiciv_hosp.procedures_icd", [_px(subject_id, hadm_id, *px)])


@pytest.fixture()
def mimic():
    con = duckdb.connect()
    con.execute("CREATE SCHEMA mimiciv_hosp")
    con.execute("CREATE SCHEMA mimiciv_icu")
    for table, cols in DDL.items():
        con.execute(f"CREATE TABLE {table} ({cols})")
    _insert(con, "mimiciv_hosp.patients", [
        _patient(1), _patient(2), _patient(3), _patient(4), _patient(5), _patient(6),
        _patient(7, dod="2150-01-15"),                  # 10 days after discharge, no readmission
        _patient(8, dod="2150-01-20"),                  # 15 days after discharge, after a readmission
        _patient(9, group="2017 - 2019"),               # real year may be 2019: censoring
        _patient(10, group="2017 - 2019"),
        _patient(11, group="2014 - 2016"),              # k = 3 years later: real 2017-2019
        _patient(12),                                   # real 2011-2013: never censored
    ])
    disch = "2150-01-05 12:00"
    # 1: EW EMER. return at day 10 with a kidney transplant (ICD-9 55.69, PR1) for sepsis:
    #    always planned by CMS (PR1 wins over the acute dx); unplanned by admission type
    _index(con, 1, 11, "2150-01-01 08:00", disch)
    _return(con, 1, 12, "2150-01-15 08:00", "2150-01-20 08:00", "EW EMER.", dx=("A419", 10), px=("5569", 9))
    # 2: ELECTIVE cholecystectomy (PR3) for acute cholecystitis (PR4): unplanned by CMS
    _index(con, 2, 21, "2150-01-01 08:00", disch)
    _return(con, 2, 22, "2150-01-15 08:00", "2150-01-17 08:00", "ELECTIVE", dx=("K8000", 10), px=("0FT44ZZ", 10))
    # 3: ELECTIVE cholecystectomy (PR3) for gallstones without cholecystitis: planned by both
    _index(con, 3, 31, "2150-01-01 08:00", disch)
    _return(con, 3, 32, "2150-01-15 08:00", "2150-01-17 08:00", "ELECTIVE", dx=("K8020", 10), px=("0FT44ZZ", 10))
    # 4: first return (day 5) is a chemotherapy admission (Z51.11, PR2), then an EW EMER. return at
    #    day 20: only the first counts -> outcome 0 by both rules
    _index(con, 4, 41, "2150-01-01 08:00", disch)
    _return(con, 4, 42, "2150-01-10 12:00", "2150-01-11 12:00", "ELECTIVE", dx=("Z5111", 10))
    _return(con, 4, 43, "2150-01-25 12:00", "2150-01-28 12:00", "EW EMER.", dx=("J189", 10))
    # 5: AMBULATORY OBSERVATION at day 3 (not a readmission), EU OBSERVATION at day 12 (counts)
    _index(con, 5, 51, "2150-01-01 08:00", disch)
    _return(con, 5, 52, "2150-01-08 12:00", "2150-01-08 20:00", "AMBULATORY OBSERVATION")
    _return(con, 5, 53, "2150-01-17 12:00", "2150-01-18 12:00", "EU OBSERVATION", dx=("R55", 10))
    # 6: only an AMBULATORY OBSERVATION stay at day 4
    _index(con, 6, 61, "2150-01-01 08:00", disch)
    _return(con, 6, 62, "2150-01-09 12:00", "2150-01-09 20:00", "AMBULATORY OBSERVATION")
    # 7: dies 10 days after discharge without a readmission
    _index(con, 7, 71, "2150-01-01 08:00", disch)
    # 8: unplanned readmission at day 5, dies at day 15
    _index(con, 8, 81, "2150-01-01 08:00", disch)
    _return(con, 8, 82, "2150-01-10 12:00", "2150-01-14 12:00", "EW EMER.", dx=("I5023", 10))
    # 9: 2017-2019, discharged 2150-12-15: the horizon crosses the year end of a real 2017-2019
    _index(con, 9, 91, "2150-12-10 08:00", "2150-12-15 12:00")
    # 10: 2017-2019, discharged in June: at risk, not censored
    _index(con, 10, 101, "2150-06-01 08:00", "2150-06-05 12:00")
    # 11: 2014-2016 three shifted years after anchor_year (real 2017-2019), 20 December
    _index(con, 11, 111, "2153-12-15 08:00", "2153-12-20 12:00")
    # 12: 2011-2013, 20 December: real year at most 2013, follow-up complete
    _index(con, 12, 121, "2150-12-15 08:00", "2150-12-20 12:00")
    yield con
    con.close()


def _cohort(con, **kw) -> pd.DataFrame:
    return readm_cohort.build_readmission_cohort(con, **kw)[0].set_index("hadm_id")


def test_cms_rule_known_answers(mimic):
    c = _cohort(mimic)
    assert c.index.tolist() == [11, 21, 31, 41, 51, 61, 71, 81, 91, 101, 111, 121]
    assert c["readmission_cms_category"].dropna().to_dict() == {11: "PR1", 31: "PR3", 41: "PR2"}
    assert c["readmission_pr3_acute_dx"].fillna(0).astype(int).to_dict() == {
        11: 0, 21: 1, 31: 0, 41: 0, 51: 0, 61: 0, 71: 0, 81: 0, 91: 0, 101: 0, 111: 0, 121: 0}
    assert c["label_cms"].to_dict() == {11: 0, 21: 1, 31: 0, 41: 0, 51: 1, 61: 0, 71: 0, 81: 1,
                                        91: 0, 101: 0, 111: 0, 121: 0}
    assert c["label_admission_type"].to_dict() == {11: 1, 21: 0, 31: 0, 41: 0, 51: 1, 61: 0, 71: 0, 81: 1,
                                                   91: 0, 101: 0, 111: 0, 121: 0}
    assert c["label"].equals(c["label_cms"])                       # default planned_rule: cms
    assert c["readmission_planned"].to_dict() == {11: 1, 21: 0, 31: 1, 41: 1, 51: 0, 61: 0, 71: 0, 81: 0,
                                                  91: 0, 101: 0, 111: 0, 121: 0}
    by_type = _cohort(mimic, planned_rule="admission_type")
    assert by_type["label"].equals(c["label_admission_type"])
    assert by_type["readmission_planned"].to_dict()[21] == 1 and by_type["readmission_planned"].to_dict()[11] == 0


def test_only_the_first_readmission_counts(mimic):
    c = _cohort(mimic)
    assert c.loc[41, "readmission_hadm_id"] == 42 and c.loc[41, "label"] == 0
    assert c.loc[41, "days_to_readmission"] == pytest.approx(5.0)


def test_observation_stays(mimic):
    c = _cohort(mimic)
    # AMBULATORY OBSERVATION is not a readmission: the first one of patient 5 is the EU OBSERVATION
    assert c.loc[51, "readmission_hadm_id"] == 53 and c.loc[51, "readmission_admission_type"] == "EU OBSERVATION"
    assert pd.isna(c.loc[61, "readmission_hadm_id"]) and c.loc[61, "label"] == 0
    assert c["n_uncounted_returns"][lambda s: s > 0].to_dict() == {51: 1, 61: 1}
    # counting every observation type makes the ambulatory stay the first (unplanned) readmission
    every = _cohort(mimic, uncounted_admission_types=())
    assert every.loc[51, "readmission_hadm_id"] == 52 and every.loc[61, "label"] == 1


def test_uncounted_returns_are_counted_over_the_outcome_window(mimic):
    # 13: AMBULATORY OBSERVATION stays at day 3 and at exactly day 30 (the window is closed on the
    #     right), and one a minute later (outside): two returns, no readmission
    _insert(mimic, "mimiciv_hosp.patients", [_patient(13)])
    _index(mimic, 13, 131, "2150-01-01 08:00", "2150-01-05 12:00")
    for hadm_id, admit, disch in ((132, "2150-01-08 12:00", "2150-01-08 20:00"),
                                  (133, "2150-02-04 12:00", "2150-02-04 20:00"),
                                  (134, "2150-02-04 12:01", "2150-02-04 20:00")):
        _return(mimic, 13, hadm_id, admit, disch, "AMBULATORY OBSERVATION")
    c = _cohort(mimic)
    assert c.loc[131, "n_uncounted_returns"] == 2 and pd.isna(c.loc[131, "readmission_hadm_id"])
    assert c.loc[131, "label"] == 0
    # the same window bounds both counts: one more day takes in the third return
    assert _cohort(mimic, horizon_days=31).loc[131, "n_uncounted_returns"] == 3
    # counted as readmissions, the first is the outcome and none is an uncounted return
    every = _cohort(mimic, uncounted_admission_types=())
    assert every.loc[131, "n_uncounted_returns"] == 0 and every.loc[131, "readmission_hadm_id"] == 132
    assert every.loc[131, "label"] == 1


def test_competing_deaths_under_each_option(mimic):
    c = _cohort(mimic)
    assert c["died_within_horizon"][lambda s: s == 1].index.tolist() == [71, 81]
    assert c["died_without_readmission"][lambda s: s == 1].index.tolist() == [71]
    assert c.loc[71, "excluded_reason"] == "death_without_readmission" and c.loc[71, "label"] == 0
    assert c.loc[81, "excluded_reason"] is None and c.loc[81, "label"] == 1
    zero = _cohort(mimic, competing_deaths="label_zero")
    assert zero["excluded_reason"].isna().all() and zero.loc[71, "label"] == 0
    composite = _cohort(mimic, competing_deaths="composite")
    assert composite["excluded_reason"].isna().all()
    assert composite.loc[71, "label"] == 1 and composite.loc[81, "label"] == 1
    assert int(composite["label"].sum()) == int(c["label"].sum()) + 1


def test_censored_followup(mimic):
    c = _cohort(mimic)
    assert c["followup_at_risk"][lambda s: s == 1].index.tolist() == [91, 101, 111]
    assert c["followup_censored"][lambda s: s == 1].index.tolist() == [91, 111]
    assert c.loc[[91, 111], "excluded_reason"].isna().all()             # default: report
    ex = _cohort(mimic, censoring="exclude")
    assert ex["excluded_reason"].dropna().to_dict() == {71: "death_without_readmission",
                                                        91: "censored_followup", 111: "censored_followup"}
    # v3.x has admissions until 2022: nothing is at risk
    assert _cohort(mimic, last_data_year=2022)["followup_at_risk"].sum() == 0


def test_definitions_table_counts(mimic):
    t = definitions_table(_cohort(mimic, censoring="exclude")).set_index("measure")["n"].to_dict()
    assert t["index admissions"] == 12
    assert t["first readmission within the horizon"] == 6            # 11, 21, 31, 41, 51, 81
    assert t["outcome (unplanned first readmission): CMS rule"] == 3
    assert t["outcome (unplanned first readmission): admission-type rule"] == 3
    assert t["outcome differs between the two rules"] == 2            # 11 and 21
    assert (t["first readmission planned: CMS PR1"], t["first readmission planned: CMS PR2"],
            t["first readmission planned: CMS PR3"]) == (1, 1, 1)
    assert t["first readmission with a PR3 procedure and an acute principal diagnosis"] == 1
    assert t["first readmission of type EU OBSERVATION"] == 1
    assert t["first readmission of type AMBULATORY OBSERVATION"] == 0
    assert t["index admissions with a return of an uncounted type"] == 2     # 51 and 61
    assert t["died within the horizon without a readmission"] == 1
    assert t["follow-up censored (flag)"] == 2
    assert t["excluded: censored_followup"] == 2 and t["excluded: death_without_readmission"] == 1
    assert t["outcome of the configured definition (rows kept)"] == 3


def test_code_list_is_validated(tmp_path):
    bad = tmp_path / "codes.csv"
    bad.write_text("category,ccs,description,icd_version,code_prefix,source\nPR3,44,CABG,9,36.1,CMS\n")
    with pytest.raises(ValueError, match="code_prefix"):
        cms_planned.read_code_list(bad)
    bad.write_text("category,ccs,description,icd_version,code_prefix,source\nPR5,44,CABG,9,361,CMS\n")
    with pytest.raises(ValueError, match="category"):
        cms_planned.read_code_list(bad)


def test_a_user_code_list_changes_the_answer(mimic, tmp_path):
    # without the PR4 row for K80.0, the cholecystectomy of patient 2 becomes planned
    rows = [r for r in cms_planned.read_code_list() if r["code_prefix"] != "K800"]
    path = tmp_path / "codes.csv"
    pd.DataFrame(rows, columns=list(cms_planned.COLUMNS)).to_csv(path, index=False)
    c = _cohort(mimic, code_list=path)
    assert c.loc[21, "readmission_cms_category"] == "PR3" and c.loc[21, "label"] == 0

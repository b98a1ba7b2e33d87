"""Readmission cohort, label, features, Charlson and leakage check on hand-made MIMIC-IV tables.

Every expected value below is worked out by hand from the rows in ``mimic`` (see the comments
there), so a change in a rule shows up as a failing number.
"""
from __future__ import annotations

import math

import duckdb
import pandas as pd
import pytest
import yaml

from clinops.tasks.readmission import charlson as charlson_index
from clinops.tasks.readmission import cohort as readm_cohort
from clinops.tasks.readmission import extract as readm_extract
from clinops.tasks.readmission import leakage as readm_leakage
from clinops.tasks.readmission import sources as readm_sources

# --------------------------------------------------------------------------------------------
# hand-made MIMIC-IV v2.2 tables (column order of the v2.2 DDL)
# --------------------------------------------------------------------------------------------
DDL = {
    "mimiciv_hosp.patients": "subject_id INTEGER NOT NULL, gender CHAR(1) NOT NULL, anchor_age SMALLINT, "
    "anchor_year SMALLINT NOT NULL, anchor_year_group VARCHAR(20) NOT NULL, dod DATE",
    "mimiciv_hosp.admissions": "subject_id INTEGER NOT NULL, hadm_id INTEGER NOT NULL, admittime TIMESTAMP NOT NULL, "
    "dischtime TIMESTAMP, deathtime TIMESTAMP, admission_type VARCHAR(40) NOT NULL, admit_provider_id VARCHAR(10), "
    "admission_location VARCHAR(60), discharge_location VARCHAR(60), insurance VARCHAR(255), language VARCHAR(10), "
    "marital_status VARCHAR(30), race VARCHAR(80), edregtime TIMESTAMP, edouttime TIMESTAMP, hospital_expire_flag SMALLINT",
    "mimiciv_hosp.services": "subject_id INTEGER NOT NULL, hadm_id INTEGER NOT NULL, transfertime TIMESTAMP NOT NULL, "
    "prev_service VARCHAR(10), curr_service VARCHAR(10)",
    "mimiciv_hosp.diagnoses_icd": "subject_id INTEGER NOT NULL, hadm_id INTEGER NOT NULL, seq_num INTEGER NOT NULL, "
    "icd_code CHAR(7), icd_version SMALLINT",
    "mimiciv_hosp.procedures_icd": "subject_id INTEGER NOT NULL, hadm_id INTEGER NOT NULL, seq_num INTEGER NOT NULL, "
    "chartdate DATE NOT NULL, icd_code VARCHAR(7), icd_version SMALLINT",
    "mimiciv_hosp.labevents": "labevent_id INTEGER NOT NULL, subject_id INTEGER NOT NULL, hadm_id INTEGER, "
    "specimen_id INTEGER NOT NULL, itemid INTEGER NOT NULL, order_provider_id VARCHAR(10), charttime TIMESTAMP, "
    "storetime TIMESTAMP, value VARCHAR(200), valuenum DOUBLE, valueuom VARCHAR(20), ref_range_lower DOUBLE, "
    "ref_range_upper DOUBLE, flag VARCHAR(10), priority VARCHAR(7), comments TEXT",
    "mimiciv_hosp.omr": "subject_id INTEGER NOT NULL, chartdate DATE NOT NULL, seq_num INTEGER NOT NULL, "
    "result_name VARCHAR(100) NOT NULL, result_value TEXT NOT NULL",
    "mimiciv_icu.icustays": "subject_id INTEGER NOT NULL, hadm_id INTEGER NOT NULL, stay_id INTEGER NOT NULL, "
    "first_careunit VARCHAR(255), last_careunit VARCHAR(255), intime TIMESTAMP, outtime TIMESTAMP, los DOUBLE",
}


def _insert(con: duckdb.DuckDBPyConnection, table: str, rows: list[dict]) -> None:
    columns = [c.strip().split(" ")[0] for c in DDL[table].split(", ")]
    for row in rows:
        unknown = set(row) - set(columns)
        assert not unknown, f"{table}: unknown columns {unknown}"
        con.execute(f"INSERT INTO {table} VALUES ({', '.join('?' for _ in columns)})", [row.get(c) for c in columns])


def _adm(subject_id, hadm_id, admittime, dischtime, admission_type="EW EMER.", discharge_location="HOME",
         hospital_expire_flag=0, deathtime=None):
    return dict(subject_id=subject_id, hadm_id=hadm_id, admittime=admittime, dischtime=dischtime,
                admission_type=admission_type, discharge_location=discharge_location,
                hospital_expire_flag=hospital_expire_flag, deathtime=deathtime)


def _svc(subject_id, hadm_id, transfertime, curr_service):
    return dict(subject_id=subject_id, hadm_id=hadm_id, transfertime=transfertime, curr_service=curr_service)


def _lab(labevent_id, subject_id, itemid, charttime, valuenum, hadm_id=None):
    return dict(labevent_id=labevent_id, subject_id=subject_id, hadm_id=hadm_id, specimen_id=labevent_id,
                itemid=itemid, charttime=charttime, valuenum=valuenum, value=str(valuenum))


def _omr(subject_id, chartdate, seq_num, result_name, result_value):
    return dict(subject_id=subject_id, chartdate=chartdate, seq_num=seq_num, result_name=result_name,
                result_value=result_value)


def _dx(subject_id, hadm_id, seq_num, icd_code, icd_version):
    return dict(subject_id=subject_id, hadm_id=hadm_id, seq_num=seq_num, icd_code=icd_code, icd_version=icd_version)


def build_tables(con: duckdb.DuckDBPyConnection) -> None:
    con.execute("CREATE SCHEMA mimiciv_hosp")
    con.execute("CREATE SCHEMA mimiciv_icu")
    for table, cols in DDL.items():
        con.execute(f"CREATE TABLE {table} ({cols})")
    p = lambda s, g, age, grp, dod=None: dict(subject_id=s, gender=g, anchor_age=age, anchor_year=2150,  # noqa: E731
                                              anchor_year_group=grp, dod=dod)
    _insert(con, "mimiciv_hosp.patients", [
        p(1, "F", 60, "2008 - 2010"),
        p(2, "M", 70, "2011 - 2013", "2150-03-01"),   # dies 48 days after A201's discharge: not within 30 d
        p(3, "F", 45, "2014 - 2016"),
        p(4, "M", 82, "2017 - 2019", "2150-03-21"),   # dies 20 days after A401's discharge
        p(5, "F", 50, "2008 - 2010"),
        p(6, "M", 55, "2008 - 2010"),
        p(7, "F", 40, "2008 - 2010"),
        p(8, "M", 65, "2011 - 2013"),
        p(9, "F", 10, "2008 - 2010"),                 # a child
        p(10, "M", 75, "2008 - 2010", "2150-01-04"),
        p(11, "F", 50, "2020 - 2022"),                # outside the v2.2 study period
        p(12, "M", 66, "2014 - 2016"),
        p(13, "F", 17, "2017 - 2019"),                # 17 in 2150, admitted in 2151: age 18
        p(14, "M", 50, "2008 - 2010"),
    ])
    _insert(con, "mimiciv_hosp.admissions", [
        # 1: index; unplanned readmission 29 days after discharge -> label 1
        _adm(1, 101, "2150-01-01 08:00", "2150-01-05 12:00"),
        _adm(1, 102, "2150-02-03 12:00", "2150-02-06 12:00", "URGENT"),
        # 2: index; unplanned readmission 31 days after discharge -> label 0
        _adm(2, 201, "2150-01-10 08:00", "2150-01-12 08:00", discharge_location="HOME HEALTH CARE"),
        _adm(2, 202, "2150-02-12 08:00", "2150-02-14 08:00"),
        # 3: index; ELECTIVE readmission at day 10 with a knee replacement (CMS PR3) for knee
        #    osteoarthritis (not acute) -> planned by both rules: label 0
        _adm(3, 301, "2150-01-01 08:00", "2150-01-04 08:00", discharge_location="SKILLED NURSING FACILITY"),
        _adm(3, 302, "2150-01-14 08:00", "2150-01-16 08:00", "ELECTIVE"),
        # 4: index (test years); dies 20 days after discharge, no readmission -> label 0, died 1
        _adm(4, 401, "2150-02-25 08:00", "2150-03-01 10:00"),
        # 5: excluded dispositions
        _adm(5, 501, "2150-01-01 08:00", "2150-01-03 08:00", discharge_location="HOSPICE"),
        _adm(5, 502, "2150-05-01 08:00", "2150-05-03 08:00", discharge_location="AGAINST ADVICE"),
        _adm(5, 503, "2150-09-01 08:00", "2150-09-03 08:00", discharge_location="ACUTE HOSPITAL"),
        # 6: ICU stay -> excluded
        _adm(6, 601, "2150-01-01 08:00", "2150-01-06 08:00"),
        # 7: surgical service -> excluded
        _adm(7, 701, "2150-01-01 08:00", "2150-01-03 08:00"),
        # 8: MED -> SURG (discharged by SURG, excluded); SURG -> MED (discharged by MED, index)
        _adm(8, 801, "2150-01-01 08:00", "2150-01-06 08:00"),
        _adm(8, 802, "2150-06-01 08:00", "2150-06-05 08:00"),
        # 9: child
        _adm(9, 901, "2150-01-01 08:00", "2150-01-03 08:00"),
        # 10: in-hospital death
        _adm(10, 1001, "2150-01-01 08:00", "2150-01-04 08:00", discharge_location="DIED",
             hospital_expire_flag=1, deathtime="2150-01-04 08:00"),
        # 11: outside the study period
        _adm(11, 1101, "2150-01-01 08:00", "2150-01-03 08:00"),
        # 12: prior admissions 366 d (not counted), 365 d and 30 d before the index admission
        _adm(12, 1201, "2148-12-31 08:00", "2149-01-02 08:00", "ELECTIVE"),
        _adm(12, 1202, "2149-01-01 08:00", "2149-01-04 08:00"),
        _adm(12, 1203, "2149-12-02 08:00", "2149-12-04 08:00", "URGENT"),
        _adm(12, 1204, "2150-01-01 08:00", "2150-01-03 08:00", discharge_location="REHAB"),
        # 13: adult by one year; a negative-LOS account at day 5 (never a readmission) and an
        #     unplanned readmission at exactly 30 days (counts: the window is closed on the right)
        _adm(13, 1301, "2151-03-01 08:00", "2151-03-04 08:00"),
        _adm(13, 1302, "2151-03-09 08:00", "2151-03-09 07:00"),
        _adm(13, 1303, "2151-04-03 08:00", "2151-04-05 08:00"),
        # 14: incomplete records
        _adm(14, 1401, "2150-01-01 08:00", None),
        _adm(14, 1402, "2150-06-01 08:00", "2150-05-31 08:00"),
    ])
    _insert(con, "mimiciv_hosp.services", [
        _svc(1, 101, "2150-01-01 08:00", "MED"), _svc(1, 102, "2150-02-03 12:00", "SURG"),
        _svc(2, 201, "2150-01-10 08:00", "MED"), _svc(2, 202, "2150-02-12 08:00", "ORTHO"),
        _svc(3, 301, "2150-01-01 08:00", "MED"), _svc(3, 302, "2150-01-14 08:00", "SURG"),
        _svc(4, 401, "2150-02-25 08:00", "MED"),
        _svc(5, 501, "2150-01-01 08:00", "MED"), _svc(5, 502, "2150-05-01 08:00", "MED"),
        _svc(5, 503, "2150-09-01 08:00", "MED"),
        _svc(6, 601, "2150-01-01 08:00", "MED"),
        _svc(7, 701, "2150-01-01 08:00", "SURG"),
        _svc(8, 801, "2150-01-01 08:00", "MED"), _svc(8, 801, "2150-01-03 08:00", "SURG"),
        _svc(8, 802, "2150-06-01 08:00", "SURG"), _svc(8, 802, "2150-06-02 08:00", "MED"),
        _svc(8, 802, "2150-06-05 09:00", "CMED"),  # after dischtime: not the discharging service
        _svc(9, 901, "2150-01-01 08:00", "MED"),
        _svc(10, 1001, "2150-01-01 08:00", "MED"),
        _svc(11, 1101, "2150-01-01 08:00", "MED"),
        _svc(12, 1201, "2148-12-31 08:00", "SURG"), _svc(12, 1202, "2149-01-01 08:00", "CMED"),
        _svc(12, 1203, "2149-12-02 08:00", "CMED"), _svc(12, 1204, "2150-01-01 08:00", "MED"),
        _svc(13, 1301, "2151-03-01 08:00", "MED"), _svc(13, 1302, "2151-03-09 08:00", "MED"),
        _svc(13, 1303, "2151-04-03 08:00", "SURG"),
        _svc(14, 1401, "2150-01-01 08:00", "MED"), _svc(14, 1402, "2150-06-01 08:00", "MED"),
    ])
    _insert(con, "mimiciv_icu.icustays", [
        dict(subject_id=6, hadm_id=601, stay_id=30000601, first_careunit="Medical Intensive Care Unit (MICU)",
             last_careunit="Medical Intensive Care Unit (MICU)", intime="2150-01-02 08:00",
             outtime="2150-01-03 08:00", los=1.0),
    ])
    _insert(con, "mimiciv_hosp.labevents", [
        # A101 (2150-01-01 08:00 .. 2150-01-05 12:00)
        _lab(1, 1, 50912, "2149-12-31 08:00", 5.0),          # before admission: ignored
        _lab(2, 1, 50912, "2150-01-02 06:00", 1.0, 101),
        _lab(3, 1, 50912, "2150-01-04 06:00", 2.0, 101),
        _lab(4, 1, 50912, "2150-01-05 12:00", 3.0, 101),     # at dischtime: last value
        _lab(5, 1, 50912, "2150-01-05 13:00", 9.9),          # one hour after discharge: ignored
        _lab(6, 1, 50983, "2150-01-02 06:00", 135.0, 101),
        _lab(7, 1, 50983, "2150-01-04 06:00", 250.0, 101),   # above 200: implausible, dropped
        _lab(8, 1, 51222, "2150-01-04 06:00", 11.2, 101),
        _lab(9, 1, 51222, "2150-01-04 06:00", 11.5, 101),    # same time, later labevent_id wins
        # A401: a lab without hadm_id inside the admission still counts (subject + time join)
        _lab(10, 4, 50912, "2150-02-28 06:00", 1.4),
    ])
    _insert(con, "mimiciv_hosp.omr", [
        _omr(1, "2150-01-02", 1, "Blood Pressure", "120/80"),
        _omr(1, "2150-01-05", 1, "Blood Pressure", "130/85"),
        _omr(1, "2150-01-05", 2, "Blood Pressure", "140/90"),  # discharge date, later seq_num: used
        _omr(1, "2150-01-06", 1, "Blood Pressure", "150/95"),  # the day after discharge: ignored
        _omr(1, "2149-12-01", 1, "Weight (Lbs)", "220"),       # 99.79 kg
        _omr(1, "2148-12-01", 1, "BMI (kg/m2)", "31.5"),       # > 365 days before: too old
        _omr(2, "2150-01-11", 1, "BMI (kg/m2)", "5"),          # implausible: dropped
        _omr(2, "2150-01-11", 1, "Blood Pressure", "118/"),    # diastolic missing
        _omr(3, "2150-01-03", 1, "Blood Pressure", "400/80"),  # systolic at the open bound: dropped
    ])
    _insert(con, "mimiciv_hosp.diagnoses_icd", [
        _dx(1, 101, 1, "I5023", 10), _dx(1, 101, 2, "E1122", 10), _dx(1, 101, 3, "E119", 10),
        _dx(1, 102, 1, "C787", 10),
        _dx(2, 201, 1, "4280", 9),
        _dx(4, 401, 1, "J449", 10),
        _dx(12, 1204, 1, "N179", 10),
        _dx(3, 302, 1, "M170", 10),
    ])
    _insert(con, "mimiciv_hosp.procedures_icd", [
        dict(subject_id=3, hadm_id=302, seq_num=1, chartdate="2150-01-14", icd_code="0SRC0JZ", icd_version=10),
    ])


@pytest.fixture()
def mimic() -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    build_tables(con)
    yield con
    con.close()


@pytest.fixture()
def cohort_and_flow(mimic):
    return readm_cohort.build_readmission_cohort(mimic)


# --------------------------------------------------------------------------------------------
# cohort, flow and label
# --------------------------------------------------------------------------------------------
def test_flow_counts_follow_each_criterion(cohort_and_flow):
    _, flow = cohort_and_flow
    assert list(flow.columns) == ["step", "criterion", "n_remaining", "n_excluded"]
    # the split step is numbered by the shared append_flow_step, after the 8 criteria of the SQL
    assert flow["step"].tolist() == list(range(1, 10))
    # the last step, the real-year split: A1301 (2017 - 2019, anchor_year + 1) is test, none ambiguous
    assert flow["n_remaining"].tolist() == [26, 25, 24, 21, 20, 17, 16, 7, 7]
    assert flow["n_excluded"].tolist() == [0, 1, 1, 3, 1, 3, 1, 9, 0]
    assert "HOSPICE, AGAINST ADVICE, ACUTE HOSPITAL, DIED" in flow.loc[5, "criterion"]
    assert "MED" in flow.loc[7, "criterion"]


def test_index_admissions_and_exclusions(cohort_and_flow):
    cohort, _ = cohort_and_flow
    assert cohort["hadm_id"].tolist() == [101, 201, 301, 401, 802, 1204, 1301]
    assert list(cohort.columns) == list(readm_cohort.COHORT_COLUMNS)
    assert set(readm_cohort.DEFINITION_COLUMNS) <= set(cohort.columns)
    excluded = {501, 502, 503,  # hospice, against advice, acute hospital
                601,            # ICU stay
                701, 102,       # surgical services
                801,            # MED then SURG: discharged by SURG
                901, 1001, 1101, 1302, 1401, 1402}
    assert excluded.isdisjoint(cohort["hadm_id"])
    row = cohort.set_index("hadm_id").loc[802]
    assert row["discharge_service"] == "MED"  # SURG then MED; a CMED row after dischtime ignored


def test_label_known_answers(cohort_and_flow):
    c = cohort_and_flow[0].set_index("hadm_id")
    assert c["label"].to_dict() == {101: 1, 201: 0, 301: 0, 401: 0, 802: 0, 1204: 0, 1301: 1}
    # day 29 counts, day 31 does not, day 30 exactly counts; a negative-LOS account never counts
    assert c.loc[101, "days_to_readmission"] == pytest.approx(29.0)
    assert c.loc[101, "readmission_hadm_id"] == 102
    assert math.isnan(c.loc[201, "days_to_readmission"])
    assert c.loc[1301, "readmission_hadm_id"] == 1303
    assert c.loc[1301, "days_to_readmission"] == pytest.approx(30.0)
    # the ELECTIVE knee replacement is a planned first readmission (PR3, non-acute dx): outcome 0
    assert c.loc[301, "readmission_planned"] == 1 and c.loc[301, "readmission_cms_category"] == "PR3"
    assert c["readmission_planned"].sum() == 1
    assert c["label_cms"].equals(c["label"]) and c["label_admission_type"].equals(c["label"])
    # death 20 days after discharge without readmission: label 0, competing-risk flag 1 and
    # excluded by default; death 48 days after discharge: flag 0
    assert c.loc[401, "died_within_horizon"] == 1 and c.loc[401, "label"] == 0
    assert c.loc[401, "died_without_readmission"] == 1
    assert c["excluded_reason"].to_dict() == {101: None, 201: None, 301: None, 401: "death_without_readmission",
                                              802: None, 1204: None, 1301: None}
    assert c.loc[201, "died_within_horizon"] == 0
    assert c["died_within_horizon"].sum() == 1


def test_age_split_and_times(cohort_and_flow):
    c = cohort_and_flow[0].set_index("hadm_id")
    assert c.loc[1301, "age"] == 18  # anchor_age 17 + (2151 - 2150)
    assert c.loc[101, "age"] == 60
    assert c["split"].to_dict() == {101: "train", 201: "train", 301: "train", 401: "test",
                                    802: "train", 1204: "train", 1301: "test"}
    assert c.loc[1301, ["real_year_min", "real_year_max"]].tolist() == [2018, 2020]
    # every split is decided; A401's death without readmission takes it out of the analysis
    assert c["in_analysis"].to_dict() == {101: True, 201: True, 301: True, 401: False,
                                          802: True, 1204: True, 1301: True}
    assert c.loc[101, "los_days"] == pytest.approx(4 + 4 / 24)


def test_parameters_change_the_answer(mimic):
    # a 31-day horizon makes A202 a readmission of A201
    c31 = readm_cohort.build_readmission_cohort(mimic, horizon_days=31)[0].set_index("hadm_id")
    assert c31.loc[201, "label"] == 1
    # with no planned types, the ELECTIVE return of patient 3 counts under the admission-type rule
    cnp = readm_cohort.build_readmission_cohort(mimic, planned_admission_types=(),
                                                planned_rule="admission_type")[0].set_index("hadm_id")
    assert cnp.loc[301, "label"] == 1
    # dropping the HOSPICE exclusion admits A501
    keep = [x for x in readm_cohort.DEFAULT_EXCLUDED_DISCHARGE_LOCATIONS if x != "HOSPICE"]
    ch = readm_cohort.build_readmission_cohort(mimic, excluded_discharge_locations=keep)[0]
    assert 501 in set(ch["hadm_id"])
    # min_age 19 drops the 18-year-old
    assert 1301 not in set(readm_cohort.build_readmission_cohort(mimic, min_age=19)[0]["hadm_id"])


def test_outcome_summary(cohort_and_flow):
    s = readm_cohort.outcome_summary(cohort_and_flow[0]).set_index("split")
    assert s.loc["all", "n_index"] == 7 and s.loc["all", "n_readmitted"] == 2
    assert s.loc["train", "n_index"] == 5 and s.loc["test", "n_readmitted"] == 1
    # the death without readmission (A401) is excluded from the rate's denominator
    assert s.loc["all", "readmission_rate"] == pytest.approx(2 / 6)
    assert s.loc["all", "n_excluded"] == 1 and s.loc["test", "n_excluded"] == 1
    assert s.loc["all", "n_died_without_readmission"] == 1
    assert s.loc["all", "n_planned_first_readmission"] == 1


@pytest.mark.parametrize("kwargs, field", [
    ({"horizon_days": 0}, "horizon_days"),
    ({"horizon_days": 30.5}, "horizon_days"),
    ({"min_age": -1}, "min_age"),
    ({"service": ""}, "service"),
    ({"train_groups": ("2017 - 2019",), "test_groups": ("2017 - 2019",)}, "disjoint"),
    ({"test_groups": ()}, "test_groups"),
    ({"planned_admission_types": "ELECTIVE"}, "planned_admission_types"),
    ({"planned_rule": "procedures"}, "planned_rule"),
    ({"competing_deaths": "drop"}, "competing_deaths"),
    ({"censoring": "ignore"}, "censoring"),
    ({"last_data_year": "2019"}, "last_data_year"),
])
def test_bad_arguments_name_the_field(mimic, kwargs, field):
    with pytest.raises((ValueError, TypeError), match=field):
        readm_cohort.build_readmission_cohort(mimic, **kwargs)


# --------------------------------------------------------------------------------------------
# Charlson
# --------------------------------------------------------------------------------------------
def test_charlson_components_hierarchy_and_weights():
    con = duckdb.connect()
    dx = pd.DataFrame([
        # h2: MI 1 + CHF 1 + liver max(mild 1, severe 3) = 5, age 55 -> 1: total 6
        (2, "I214", 10), (2, "I5022", 10), (2, "K703", 10), (2, "K704", 10),
        # h3: diabetes max(1, 2*1) = 2, cancer max(2, 6) = 6, age 65 -> 2: total 10
        (3, "E119", 10), (3, "E112", 10), (3, "C509", 10), (3, "C787", 10),
        # h4 (ICD-9): CHF 1, diabetes w/ cc 2, malignancy superseded by metastasis 6, AIDS 6,
        #    age 85 -> 4: total 19
        (4, "4280", 9), (4, "25040", 9), (4, "1970", 9), (4, "042", 9), (4, "1749", 9),
        # h5: E101 (type-1 diabetes with ketoacidosis) counts; an ICD-9 code tagged version 10
        #     does not match the ICD-9 lists. age 30 -> 0: total 1
        (5, "E101", 10), (5, "4280", 10),
        # h6 (ICD-9): liver max(571x 1, 5723 3) = 3, paraplegia 2, renal 2, age 60 -> 2: total 9
        (6, "5712", 9), (6, "5723", 9), (6, "3441", 9), (6, "5856", 9),
    ], columns=["hadm_id", "icd_code", "icd_version"])
    ages = pd.DataFrame({"hadm_id": [1, 2, 3, 4, 5, 6], "age": [45, 55, 65, 85, 30, 60]})
    out = charlson_index.charlson(con, dx, ages).set_index("hadm_id")
    assert out["charlson_comorbidity_index"].to_dict() == {1: 0, 2: 6, 3: 10, 4: 19, 5: 1, 6: 9}
    assert out.loc[2, "severe_liver_disease"] == 1 and out.loc[2, "mild_liver_disease"] == 1
    assert out.loc[4, "malignant_cancer"] == 1 and out.loc[4, "metastatic_solid_tumor"] == 1
    assert out.loc[5, "diabetes_without_cc"] == 1 and out.loc[5, "congestive_heart_failure"] == 0
    assert out.loc[1].drop(["age_score", "charlson_comorbidity_index"]).sum() == 0


def test_charlson_age_score_bands():
    con = duckdb.connect()
    ages = [49, 50, 59, 60, 69, 70, 79, 80, 91]
    out = charlson_index.charlson(con, pd.DataFrame(columns=["hadm_id", "icd_code", "icd_version"]),
                      pd.DataFrame({"hadm_id": range(len(ages)), "age": ages}))
    assert out["age_score"].tolist() == [0, 1, 1, 2, 2, 3, 3, 4, 4]
    assert out["charlson_comorbidity_index"].tolist() == [0, 1, 1, 2, 2, 3, 3, 4, 4]


def test_charlson_rejects_unknown_icd_version():
    with pytest.raises(ValueError, match="icd_version"):
        charlson_index.charlson(duckdb.connect(), pd.DataFrame({"hadm_id": [1], "icd_code": ["I21"], "icd_version": [11]}),
                    pd.DataFrame({"hadm_id": [1], "age": [50]}))


# --------------------------------------------------------------------------------------------
# manifest and features
# --------------------------------------------------------------------------------------------
def test_manifest_loads_with_the_shared_loader_and_declares_14():
    from clinops.features import FeatureManifest

    manifest = FeatureManifest.load("readmission")
    assert manifest.names == [
        "omr_sbp", "omr_dbp", "omr_weight", "omr_bmi", "last_creatinine", "last_hemoglobin",
        "last_sodium", "last_wbc", "dx_chapter", "los_days", "prior_admissions_12m",
        "charlson_index", "discharge_disposition",
    ]
    # 13 available + the one MIMIC-IV cannot supply = the paper's 14, stated in the manifest
    assert list(readm_sources.UNAVAILABLE_FEATURES) == ["follow_up_scheduled"]
    assert len(manifest.names) + len(readm_sources.UNAVAILABLE_FEATURES) == 14
    assert "follow_up_scheduled" in manifest.description and "13 available" in manifest.description
    sources = readm_sources.feature_sources(manifest)
    assert list(sources) == manifest.names
    assert sources["last_creatinine"].params["itemid"] == 50912
    assert sources["omr_weight"].params["scale"] == pytest.approx(0.45359237)
    # the outlier filter is the manifest's plausible range: (0, 150] for creatinine
    assert (sources["last_creatinine"].params["range_lo"], sources["last_creatinine"].params["range_hi"]) == (0.0, 150.0)
    assert sources["last_creatinine"].params["range_lo_closed"] is False


def test_feature_source_table_lists_all_14():
    table = readm_sources.feature_source_table()
    assert len(table) == 14 and table["available"].sum() == 13
    row = table.set_index("feature").loc["follow_up_scheduled"]
    assert not row["available"] and "no outpatient appointment" in row["note"]
    assert table.set_index("feature").loc["omr_sbp", "table"] == "mimiciv_hosp.omr"


def test_bad_source_names_the_feature():
    raw = yaml.safe_load(readm_sources.MANIFEST_PATH.read_text())
    raw["features"][0]["source"]["method"] = "mean"
    with pytest.raises(ValueError, match="omr_sbp.*method"):
        readm_sources.feature_sources(raw)
    raw = yaml.safe_load(readm_sources.MANIFEST_PATH.read_text())
    del raw["features"][4]["source"]["itemid"]
    with pytest.raises(ValueError, match="last_creatinine.*itemid"):
        readm_sources.feature_sources(raw)


def test_feature_known_answers(mimic, cohort_and_flow):
    from clinops.features import FeatureManifest

    cohort, _ = cohort_and_flow
    feats = readm_extract.extract_readmission_features(mimic, cohort)
    assert feats.index.tolist() == cohort["hadm_id"].tolist()
    assert "follow_up_scheduled" not in feats.columns
    r = feats.loc[101]
    assert r["last_creatinine"] == 3.0      # at dischtime; the post-discharge 9.9 is not used
    assert r["last_sodium"] == 135.0        # 250 dropped as implausible
    assert r["last_hemoglobin"] == 11.5     # tie at one charttime: later labevent_id
    assert math.isnan(r["last_wbc"])
    assert (r["omr_sbp"], r["omr_dbp"]) == (140.0, 90.0)
    assert r["omr_weight"] == pytest.approx(220 * 0.45359237)
    assert math.isnan(r["omr_bmi"])         # only reading is more than 365 days old
    assert r["los_days"] == pytest.approx(4 + 4 / 24)
    assert r["discharge_disposition"] == "HOME"
    assert r["charlson_index"] == 5         # age 60 (2) + CHF (1) + diabetes max(1, 2)
    assert r["prior_admissions_12m"] == 0
    r2 = feats.loc[201]
    assert r2["omr_sbp"] == 118.0 and math.isnan(r2["omr_dbp"]) and math.isnan(r2["omr_bmi"])
    assert r2["charlson_index"] == 4        # age 70 (3) + ICD-9 CHF (1)
    assert r2["discharge_disposition"] == "HOME HEALTH CARE"
    assert math.isnan(feats.loc[301, "omr_sbp"]) and feats.loc[301, "omr_dbp"] == 80.0  # 400 is out of (0, 400)
    assert feats.loc[401, "last_creatinine"] == 1.4
    assert feats.loc[401, "charlson_index"] == 5   # age 82 (4) + COPD (1)
    assert feats.loc[1204, "prior_admissions_12m"] == 2  # 365 d before counts, 366 d does not
    assert feats.loc[802, "prior_admissions_12m"] == 1
    assert feats.loc[301, "charlson_index"] == 0     # no codes, age 45
    assert feats["prior_admissions_12m"].notna().all()
    assert feats["omr_sbp"].dtype == "float64"
    # principal diagnosis chapter through the mortality task's mapping (ICD-9 mapped)
    chapters = feats["dx_chapter"]
    assert chapters.loc[[101, 201, 401, 1204]].tolist() == ["circulatory", "circulatory", "respiratory", "genitourinary"]
    assert chapters.loc[[301, 802, 1301]].isna().all()  # no coded diagnosis: missing, imputed later
    # the same FeatureManifest.encode the mortality model uses accepts the frame unchanged
    encoded = FeatureManifest.load("readmission").encode(feats)
    assert encoded.shape == (7, 13)
    assert encoded.loc[101, "discharge_disposition"] == 0.0  # HOME is the first category


# --------------------------------------------------------------------------------------------
# leakage check
# --------------------------------------------------------------------------------------------
LEAKY_LAB = """
SELECT i.hadm_id, le.charttime AS event_time, le.labevent_id AS ord, le.valuenum AS value
FROM readmission_index AS i
JOIN mimiciv_hosp.labevents AS le
    ON le.subject_id = i.subject_id AND le.charttime >= i.admittime  -- no upper bound
WHERE le.itemid = 50912
"""

LEAKY_DIAGNOSES = """
SELECT i.hadm_id, a.dischtime AS event_time, d.seq_num AS ord, d.icd_code, d.icd_version
FROM readmission_index AS i
JOIN mimiciv_hosp.diagnoses_icd AS d ON d.subject_id = i.subject_id  -- any admission's codes
JOIN mimiciv_hosp.admissions AS a ON a.hadm_id = d.hadm_id
"""


def test_leakage_check_passes_on_the_manifest_sources(mimic, cohort_and_flow):
    # the tables hold a lab and an omr reading after discharge; the sources do not use them
    assert readm_leakage.leakage_check(mimic, cohort_and_flow[0]) is None


def test_leakage_check_fails_on_a_post_discharge_lab(mimic, cohort_and_flow):
    with pytest.raises(readm_leakage.LeakageError) as err:
        readm_leakage.leakage_check(mimic, cohort_and_flow[0], {"last_creatinine": LEAKY_LAB})
    assert err.value.feature == "last_creatinine"
    assert err.value.n_rows == 1 and err.value.n_admissions == 1  # the 9.9 one hour after A101
    assert "last_creatinine" in str(err.value) and "1 source row" in str(err.value)


def test_leakage_check_fails_on_codes_of_a_later_admission(mimic, cohort_and_flow):
    source = readm_sources.FeatureSource("charlson_index", LEAKY_DIAGNOSES, method="charlson")
    with pytest.raises(readm_leakage.LeakageError, match="charlson_index") as err:
        readm_leakage.leakage_check(mimic, cohort_and_flow[0], [source])
    # A102's metastasis code and A302's knee osteoarthritis, known only at their discharges
    assert err.value.n_rows == 2


def test_extraction_fails_when_a_manifest_source_leaks(mimic, cohort_and_flow, tmp_path):
    leaky = tmp_path / "leaky_lab.sql"
    leaky.write_text(LEAKY_LAB)
    raw = yaml.safe_load(readm_sources.MANIFEST_PATH.read_text())
    raw["features"][4]["source"]["query"] = str(leaky)   # last_creatinine
    with pytest.raises(readm_leakage.LeakageError, match="last_creatinine"):
        readm_extract.extract_readmission_features(mimic, cohort_and_flow[0], manifest=raw)


def test_leakage_check_flags_rows_without_event_time(mimic, cohort_and_flow):
    sql = "SELECT hadm_id, CAST(NULL AS TIMESTAMP) AS event_time FROM readmission_index WHERE hadm_id = 101"
    with pytest.raises(readm_leakage.LeakageError, match="untimed"):
        readm_leakage.leakage_check(mimic, cohort_and_flow[0], {"untimed": sql})


def test_source_without_event_time_is_rejected(mimic, cohort_and_flow):
    with pytest.raises(ValueError, match="event_time"):
        readm_leakage.leakage_check(mimic, cohort_and_flow[0], {"bad": "SELECT hadm_id FROM readmission_index"})


def test_extraction_rejects_a_bad_cohort(mimic, cohort_and_flow):
    cohort = cohort_and_flow[0]
    with pytest.raises(ValueError, match="dischtime"):
        readm_extract.extract_readmission_features(mimic, cohort.drop(columns="dischtime"))
    with pytest.raises(ValueError, match="hadm_id"):
        readm_extract.extract_readmission_features(mimic, pd.concat([cohort, cohort.head(1)]))

"""The MIMIC-IV v2.2 column types every CSV file is read with (mimic-code's postgres DDL).

Reading with the declared types instead of DuckDB's type sniffing means a column that happens
to be all NULL in a small file is still a TIMESTAMP or a DOUBLE, and the real files read the
same way as the synthetic ones.

Examples
--------
>>> MIMIC_IV_SCHEMA["mimiciv_icu.icustays"]["intime"]
'TIMESTAMP'
"""
from __future__ import annotations

# v2.2 DDL (mimic-code buildmimic/postgres/create.sql, commit db74e5d4), in file order.
# Postgres -> DuckDB: CHAR(n)/VARCHAR(n)/TEXT -> VARCHAR, TIMESTAMP(n) -> TIMESTAMP,
# FLOAT and DOUBLE PRECISION -> DOUBLE (postgres FLOAT is double precision).
MIMIC_IV_SCHEMA: dict[str, dict[str, str]] = {
    "mimiciv_hosp.patients": {
        "subject_id": "INTEGER", "gender": "VARCHAR", "anchor_age": "SMALLINT",
        "anchor_year": "SMALLINT", "anchor_year_group": "VARCHAR", "dod": "DATE",
    },
    "mimiciv_hosp.admissions": {
        "subject_id": "INTEGER", "hadm_id": "INTEGER", "admittime": "TIMESTAMP",
        "dischtime": "TIMESTAMP", "deathtime": "TIMESTAMP", "admission_type": "VARCHAR",
        "admit_provider_id": "VARCHAR", "admission_location": "VARCHAR",
        "discharge_location": "VARCHAR", "insurance": "VARCHAR", "language": "VARCHAR",
        "marital_status": "VARCHAR", "race": "VARCHAR", "edregtime": "TIMESTAMP",
        "edouttime": "TIMESTAMP", "hospital_expire_flag": "SMALLINT",
    },
    "mimiciv_hosp.diagnoses_icd": {
        "subject_id": "INTEGER", "hadm_id": "INTEGER", "seq_num": "INTEGER",
        "icd_code": "VARCHAR", "icd_version": "SMALLINT",
    },
    "mimiciv_hosp.d_icd_diagnoses": {
        "icd_code": "VARCHAR", "icd_version": "SMALLINT", "long_title": "VARCHAR",
    },
    "mimiciv_hosp.d_icd_procedures": {
        "icd_code": "VARCHAR", "icd_version": "SMALLINT", "long_title": "VARCHAR",
    },
    "mimiciv_hosp.procedures_icd": {
        "subject_id": "INTEGER", "hadm_id": "INTEGER", "seq_num": "INTEGER",
        "chartdate": "DATE", "icd_code": "VARCHAR", "icd_version": "SMALLINT",
    },
    "mimiciv_hosp.labevents": {
        "labevent_id": "INTEGER", "subject_id": "INTEGER", "hadm_id": "INTEGER",
        "specimen_id": "INTEGER", "itemid": "INTEGER", "order_provider_id": "VARCHAR",
        "charttime": "TIMESTAMP", "storetime": "TIMESTAMP", "value": "VARCHAR",
        "valuenum": "DOUBLE", "valueuom": "VARCHAR", "ref_range_lower": "DOUBLE",
        "ref_range_upper": "DOUBLE", "flag": "VARCHAR", "priority": "VARCHAR",
        "comments": "VARCHAR",
    },
    "mimiciv_hosp.d_labitems": {
        "itemid": "INTEGER", "label": "VARCHAR", "fluid": "VARCHAR", "category": "VARCHAR",
    },
    "mimiciv_hosp.services": {
        "subject_id": "INTEGER", "hadm_id": "INTEGER", "transfertime": "TIMESTAMP",
        "prev_service": "VARCHAR", "curr_service": "VARCHAR",
    },
    "mimiciv_hosp.transfers": {
        "subject_id": "INTEGER", "hadm_id": "INTEGER", "transfer_id": "INTEGER",
        "eventtype": "VARCHAR", "careunit": "VARCHAR", "intime": "TIMESTAMP",
        "outtime": "TIMESTAMP",
    },
    "mimiciv_hosp.omr": {
        "subject_id": "INTEGER", "chartdate": "DATE", "seq_num": "INTEGER",
        "result_name": "VARCHAR", "result_value": "VARCHAR",
    },
    "mimiciv_hosp.provider": {"provider_id": "VARCHAR"},
    "mimiciv_icu.icustays": {
        "subject_id": "INTEGER", "hadm_id": "INTEGER", "stay_id": "INTEGER",
        "first_careunit": "VARCHAR", "last_careunit": "VARCHAR", "intime": "TIMESTAMP",
        "outtime": "TIMESTAMP", "los": "DOUBLE",
    },
    "mimiciv_icu.chartevents": {
        "subject_id": "INTEGER", "hadm_id": "INTEGER", "stay_id": "INTEGER",
        "caregiver_id": "INTEGER", "charttime": "TIMESTAMP", "storetime": "TIMESTAMP",
        "itemid": "INTEGER", "value": "VARCHAR", "valuenum": "DOUBLE", "valueuom": "VARCHAR",
        "warning": "SMALLINT",
    },
    "mimiciv_icu.d_items": {
        "itemid": "INTEGER", "label": "VARCHAR", "abbreviation": "VARCHAR",
        "linksto": "VARCHAR", "category": "VARCHAR", "unitname": "VARCHAR",
        "param_type": "VARCHAR", "lownormalvalue": "DOUBLE", "highnormalvalue": "DOUBLE",
    },
    "mimiciv_icu.inputevents": {
        "subject_id": "INTEGER", "hadm_id": "INTEGER", "stay_id": "INTEGER",
        "caregiver_id": "INTEGER", "starttime": "TIMESTAMP", "endtime": "TIMESTAMP",
        "storetime": "TIMESTAMP", "itemid": "INTEGER", "amount": "DOUBLE",
        "amountuom": "VARCHAR", "rate": "DOUBLE", "rateuom": "VARCHAR", "orderid": "INTEGER",
        "linkorderid": "INTEGER", "ordercategoryname": "VARCHAR",
        "secondaryordercategoryname": "VARCHAR", "ordercomponenttypedescription": "VARCHAR",
        "ordercategorydescription": "VARCHAR", "patientweight": "DOUBLE",
        "totalamount": "DOUBLE", "totalamountuom": "VARCHAR", "isopenbag": "SMALLINT",
        "continueinnextdept": "SMALLINT", "statusdescription": "VARCHAR",
        "originalamount": "DOUBLE", "originalrate": "DOUBLE",
    },
    "mimiciv_icu.procedureevents": {
        "subject_id": "INTEGER", "hadm_id": "INTEGER", "stay_id": "INTEGER",
        "caregiver_id": "INTEGER", "starttime": "TIMESTAMP", "endtime": "TIMESTAMP",
        "storetime": "TIMESTAMP", "itemid": "INTEGER", "value": "DOUBLE",
        "valueuom": "VARCHAR", "location": "VARCHAR", "locationcategory": "VARCHAR",
        "orderid": "INTEGER", "linkorderid": "INTEGER", "ordercategoryname": "VARCHAR",
        "ordercategorydescription": "VARCHAR", "patientweight": "DOUBLE",
        "isopenbag": "SMALLINT", "continueinnextdept": "SMALLINT",
        "statusdescription": "VARCHAR", "originalamount": "DOUBLE", "originalrate": "DOUBLE",
    },
    "mimiciv_icu.outputevents": {
        "subject_id": "INTEGER", "hadm_id": "INTEGER", "stay_id": "INTEGER",
        "caregiver_id": "INTEGER", "charttime": "TIMESTAMP", "storetime": "TIMESTAMP",
        "itemid": "INTEGER", "value": "DOUBLE", "valueuom": "VARCHAR",
    },
    "mimiciv_icu.caregiver": {"caregiver_id": "INTEGER"},
}

"""30-day readmission, the paper's secondary task: the same modules on another cohort.

The paper's secondary validation (section "Secondary validation: 30-day readmission
prediction") reuses the mortality pipeline's modules unchanged; only the data layer differs:
the cohort and label (:mod:`.cohort`), each feature's source recipe (:mod:`.sources`), the
leakage check (:mod:`.leakage`), the extraction (:mod:`.extract`), the Charlson index
(:mod:`.charlson`); all SQL in ``clinops/sql/`` (:mod:`.sql` binds its parameters).
"""
from __future__ import annotations

from clinops.tasks.readmission.sources import feature_sql_sha256
from clinops.tasks.readmission.sql import SQL_DIR
from clinops.tasks.task import PaperIds, Task

#: Tables and columns the readmission task reads (checked before any work starts).
REQUIRED_COLUMNS: dict[str, list[str]] = {
    "mimiciv_hosp.patients": ["subject_id", "gender", "anchor_age", "anchor_year", "anchor_year_group", "dod"],
    "mimiciv_hosp.admissions": ["subject_id", "hadm_id", "admittime", "dischtime", "deathtime", "admission_type",
                                "discharge_location", "hospital_expire_flag"],
    "mimiciv_hosp.services": ["hadm_id", "transfertime", "curr_service"],
    "mimiciv_icu.icustays": ["hadm_id"],
    "mimiciv_hosp.labevents": ["labevent_id", "subject_id", "itemid", "charttime", "valuenum"],
    "mimiciv_hosp.omr": ["subject_id", "chartdate", "seq_num", "result_name", "result_value"],
    "mimiciv_hosp.diagnoses_icd": ["hadm_id", "seq_num", "icd_code", "icd_version"],
    "mimiciv_hosp.procedures_icd": ["hadm_id", "icd_code", "icd_version"],
}

READMISSION = Task(
    name="readmission", slot="readmission", sources=("synthetic", "mimic-iv", "postgres"), title="30-day readmission",
    manifest="readmission", required_columns=REQUIRED_COLUMNS,
    sql_by_stage={"readmission": (*sorted(p.name for p in SQL_DIR.glob("readmission_*.sql")), "macros.sql",
                                  "charlson.sql")},
    feature_sql_sha256=lambda manifest: feature_sql_sha256(), seed_offset=1009, reports_subdir="readmission",
    policy_task="readmission",
    paper=PaperIds(model={"auroc": "readm_auroc", "auroc_ci_low": "readm_auroc_ci_low",
                          "auroc_ci_high": "readm_auroc_ci_high", "sensitivity": "readm_sensitivity",
                          "specificity": "readm_specificity", "ppv": "readm_ppv", "ece": "readm_ece"},
                   gap_prefix="readm_"))

__all__ = ["READMISSION", "REQUIRED_COLUMNS"]

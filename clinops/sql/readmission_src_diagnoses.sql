-- Readmission feature source: the index admission's own ICD diagnosis codes.
--
-- Codes are assigned for the admission and finalised at discharge, so each row's event_time is
-- the dischtime of the admission that owns the code. A source that borrowed codes from a later
-- admission of the same patient would carry that admission's (later) dischtime and fail the
-- leakage check.
--
-- Input relation: readmission_index(subject_id, hadm_id, admittime, dischtime, age)
-- Parameters: $principal_only BOOLEAN (TRUE: seq_num = 1 only, the principal diagnosis)
-- Output: hadm_id, event_time TIMESTAMP, ord (seq_num), icd_code, icd_version
SELECT
    i.hadm_id,
    a.dischtime AS event_time,
    d.seq_num AS ord,
    d.icd_code,
    d.icd_version
FROM readmission_index AS i
JOIN mimiciv_hosp.diagnoses_icd AS d ON d.hadm_id = i.hadm_id
JOIN mimiciv_hosp.admissions AS a ON a.hadm_id = d.hadm_id
WHERE d.icd_code IS NOT NULL
    AND (NOT $principal_only OR d.seq_num = 1)

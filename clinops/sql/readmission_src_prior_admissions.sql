-- Readmission feature source: the patient's other admissions that started in the
-- $lookback_days before the index admission's admittime (any admission type; observation
-- admissions are admissions rows too). Valid because the date shift is constant per patient.
--
-- Input relation: readmission_index(subject_id, hadm_id, admittime, dischtime, age)
-- Parameters: $lookback_days INTEGER
-- Output: hadm_id, event_time TIMESTAMP (the prior admission's admittime), ord, value (1.0)
SELECT
    i.hadm_id,
    p.admittime AS event_time,
    p.hadm_id AS ord,
    1.0 AS value
FROM readmission_index AS i
JOIN mimiciv_hosp.admissions AS p
    ON p.subject_id = i.subject_id
    AND p.hadm_id <> i.hadm_id
    AND p.admittime >= i.admittime - to_days(CAST($lookback_days AS INTEGER))
    AND p.admittime < i.admittime

-- Readmission feature source: the index admission row itself (length of stay, discharge
-- disposition). Both are known at discharge: event_time = dischtime.
--
-- Input relation: readmission_index(subject_id, hadm_id, admittime, dischtime, age)
-- Parameters: none
-- Output: hadm_id, event_time TIMESTAMP, ord, los_days DOUBLE (fractional days),
--         discharge_location VARCHAR
SELECT
    i.hadm_id,
    a.dischtime AS event_time,
    a.hadm_id AS ord,
    epoch(a.dischtime - a.admittime) / 86400.0 AS los_days,
    a.discharge_location
FROM readmission_index AS i
JOIN mimiciv_hosp.admissions AS a ON a.hadm_id = i.hadm_id

-- Feature extraction, stage 0: the observation window of every stay of the cohort.
-- Needs clinops_fx_cohort(stay_id, subject_id, hadm_id, intime) (the caller's cohort).
-- Parameter: $window_hours DOUBLE. Window = [intime, intime + window] (closed).
CREATE OR REPLACE TEMP TABLE clinops_fx_window AS
SELECT
    CAST(stay_id AS INTEGER) AS stay_id,
    CAST(subject_id AS INTEGER) AS subject_id,
    CAST(hadm_id AS INTEGER) AS hadm_id,
    CAST(intime AS TIMESTAMP) AS intime,
    CAST(intime AS TIMESTAMP) + to_seconds(CAST($window_hours AS DOUBLE) * 3600) AS window_end
FROM clinops_fx_cohort

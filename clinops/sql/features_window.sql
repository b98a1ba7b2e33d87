-- Feature extraction, stage 0: the observation window of every stay of the cohort.
-- Needs clinops_fx_cohort(stay_id, subject_id, hadm_id, intime) (the caller's cohort).
-- Parameters: $window_hours DOUBLE, $lab_prewindow_hours DOUBLE. Window = [intime, intime +
-- window] (closed) for vital signs, GCS and the flags; laboratory values from lab_start =
-- intime - $lab_prewindow_hours (mimic-code first_day_lab: 6 h, so labs drawn in the emergency
-- department before ICU arrival count) to the same window_end.
CREATE OR REPLACE TEMP TABLE clinops_fx_window AS
SELECT
    CAST(stay_id AS INTEGER) AS stay_id,
    CAST(subject_id AS INTEGER) AS subject_id,
    CAST(hadm_id AS INTEGER) AS hadm_id,
    CAST(intime AS TIMESTAMP) AS intime,
    CAST(intime AS TIMESTAMP) + to_seconds(CAST($window_hours AS DOUBLE) * 3600) AS window_end,
    CAST(intime AS TIMESTAMP) - to_seconds(CAST($lab_prewindow_hours AS DOUBLE) * 3600)
        AS lab_start
FROM clinops_fx_cohort

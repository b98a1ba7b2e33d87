-- Readmission feature source: one Online Medical Record (omr) measurement near discharge.
--
-- MIMIC-IV charts no ward vital signs (chartevents covers ICU stays only), so the latest omr
-- measurement dated on or before the discharge date, within $lookback_days, stands in for the
-- discharge value. omr has day resolution (chartdate): event_time is that date at 00:00, and
-- the leakage check therefore asserts chartdate <= the discharge date.
-- Values like '128/74' (Blood Pressure) are split on '/': $part 1 is the systolic (or the whole
-- value of a scalar result such as 'BMI (kg/m2)'), $part 2 the diastolic. $scale converts
-- units (0.45359237 for 'Weight (Lbs)' -> kg). Converted values outside the manifest's
-- plausible_range [$range_lo, $range_hi] are dropped, each end open unless *_closed
-- (mimic-code vitalsign.sql bounds for blood pressure).
--
-- Input relation: readmission_index(subject_id, hadm_id, admittime, dischtime, age)
-- Parameters: $result_name VARCHAR, $part INTEGER, $scale DOUBLE, $lookback_days INTEGER,
--             $range_lo DOUBLE, $range_hi DOUBLE, $range_lo_closed BOOLEAN, $range_hi_closed BOOLEAN
-- Output: hadm_id, event_time TIMESTAMP, ord (tie-break within a day: later seq_num wins), value
SELECT hadm_id, event_time, ord, value
FROM (
    SELECT
        i.hadm_id,
        CAST(o.chartdate AS TIMESTAMP) AS event_time,
        o.seq_num AS ord,
        try_cast(trim(split_part(o.result_value, '/', $part)) AS DOUBLE) * $scale AS value
    FROM readmission_index AS i
    JOIN mimiciv_hosp.omr AS o
        ON o.subject_id = i.subject_id
        AND o.chartdate <= CAST(i.dischtime AS DATE)
        AND o.chartdate >= CAST(i.dischtime AS DATE) - CAST($lookback_days AS INTEGER)
    WHERE o.result_name = $result_name
)
WHERE (value > $range_lo OR ($range_lo_closed AND value = $range_lo))
    AND (value < $range_hi OR ($range_hi_closed AND value = $range_hi))

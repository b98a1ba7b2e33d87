-- Readmission feature source: one laboratory item during the index admission.
--
-- Rows feeding the feature, each with the time it became known (event_time), so the leakage
-- check can assert event_time <= dischtime. Labs are joined on subject_id and the admission's
-- [admittime, dischtime] interval (mimic-code joins labs by subject and time, because
-- labevents.hadm_id is NULL for labs drawn outside a registered admission).
-- Outlier filter: the manifest's plausible_range (mimic-code chemistry.sql bounds where it has
-- them): values outside [$range_lo, $range_hi] are dropped, each end open unless *_closed.
--
-- Input relation: readmission_index(subject_id, hadm_id, admittime, dischtime, age)
-- Parameters: $itemid INTEGER, $range_lo DOUBLE, $range_hi DOUBLE, $range_lo_closed BOOLEAN,
--             $range_hi_closed BOOLEAN
-- Output: hadm_id, event_time TIMESTAMP, ord (tie-break: later labevent_id wins), value DOUBLE
SELECT
    i.hadm_id,
    le.charttime AS event_time,
    le.labevent_id AS ord,
    le.valuenum AS value
FROM readmission_index AS i
JOIN mimiciv_hosp.labevents AS le
    ON le.subject_id = i.subject_id
    AND le.charttime >= i.admittime
    AND le.charttime <= i.dischtime
WHERE le.itemid = $itemid
    AND le.valuenum IS NOT NULL
    AND (le.valuenum > $range_lo OR ($range_lo_closed AND le.valuenum = $range_lo))
    AND (le.valuenum < $range_hi OR ($range_hi_closed AND le.valuenum = $range_hi))

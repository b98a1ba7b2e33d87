-- Laboratory values (method lab_aggregate), mimic-code chemistry / bg / enzyme /
-- complete_blood_count / coagulation + first_day_lab: labevents are joined to the stay by
-- subject_id and the time window (labevents.hadm_id is NULL for some rows), values outside
-- the feature's range are dropped, and the worst value in the window is kept (min, max, or
-- the one farthest outside the feature's normal band; ties and values all inside give max).
-- Window: charttime in [lab_start, window_end], lab_start = intime - the lab pre-window
-- (mimic-code first_day_lab: 6 h). $lab_time = 'storetime' also requires the result to be
-- stored by window_end (what a model served at the end of the window sees; a NULL storetime
-- never counts); 'charttime' (mimic-code) does not look at storetime.
-- Rows with a NULL valuenum (text results such as 'HEMOLYZED') never count.
-- Needs clinops_fx_window and clinops_fx_items. Parameter: $lab_time VARCHAR.
-- Output: stay_id, feature, value.
WITH kept AS (
    SELECT w.stay_id, m.feature, m.agg, m.normal_lo, m.normal_hi, l.valuenum AS v
    FROM mimiciv_hosp.labevents AS l
    JOIN clinops_fx_items AS m ON m.itemid = l.itemid AND m.method = 'lab_aggregate'
    JOIN clinops_fx_window AS w
        ON w.subject_id = l.subject_id AND l.charttime BETWEEN w.lab_start AND w.window_end
    WHERE (l.valuenum > m.lo OR (m.lo_closed AND l.valuenum = m.lo))
      AND (l.valuenum < m.hi OR (m.hi_closed AND l.valuenum = m.hi))
      AND ($lab_time = 'charttime' OR l.storetime <= w.window_end)
),
worst AS (
    SELECT
        stay_id, feature, any_value(agg) AS agg, any_value(normal_lo) AS normal_lo,
        any_value(normal_hi) AS normal_hi, min(v) AS v_min, max(v) AS v_max
    FROM kept
    GROUP BY stay_id, feature
)
SELECT
    stay_id, feature,
    CASE agg
        WHEN 'min' THEN v_min
        WHEN 'max' THEN v_max
        WHEN 'farthest_from_normal' THEN
            CASE WHEN normal_lo - v_min > greatest(v_max - normal_hi, 0) THEN v_min ELSE v_max END
    END AS value
FROM worst

-- Laboratory values (method lab_aggregate), mimic-code chemistry / bg / enzyme /
-- complete_blood_count / coagulation + first_day_lab: labevents are joined to the stay by
-- subject_id and the time window (labevents.hadm_id is NULL for some rows), values outside
-- the feature's range are dropped, and the worst (min or max) value in the window is kept.
-- Needs clinops_fx_window and clinops_fx_items. Output: stay_id, feature, value.
SELECT
    w.stay_id, m.feature,
    CASE any_value(m.agg) WHEN 'min' THEN min(l.valuenum) WHEN 'max' THEN max(l.valuenum) END
        AS value
FROM mimiciv_hosp.labevents AS l
JOIN clinops_fx_items AS m ON m.itemid = l.itemid AND m.method = 'lab_aggregate'
JOIN clinops_fx_window AS w
    ON w.subject_id = l.subject_id AND l.charttime BETWEEN w.intime AND w.window_end
WHERE (l.valuenum > m.lo OR (m.lo_closed AND l.valuenum = m.lo))
  AND (l.valuenum < m.hi OR (m.hi_closed AND l.valuenum = m.hi))
GROUP BY w.stay_id, m.feature

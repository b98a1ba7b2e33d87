-- Vasopressor flag (method vasoactive_overlap): 1 when an inputevents row of one of $itemids
-- overlaps the window [intime, intime + window] (both ends included); 0 when the stay has
-- inputevents rows overlapping the window but none of those items; no row (NULL, missing) when
-- the stay has no inputevents row in the window. The manifest names the items: the paper's
-- "vasopressor" (norepinephrine, epinephrine, dopamine, phenylephrine, vasopressin), not the
-- inotropes dobutamine and milrinone that mimic-code's vasoactive_agent also lists.
-- inputevents rows with a NULL stay_id cannot be attributed to a stay and are not used.
-- Needs clinops_fx_window. Parameters: $feature VARCHAR, $itemids INTEGER[].
-- Output: stay_id, feature, value.
SELECT
    w.stay_id, $feature AS feature,
    CASE WHEN bool_or(list_contains($itemids, i.itemid)) THEN 1.0 ELSE 0.0 END AS value
FROM mimiciv_icu.inputevents AS i
JOIN clinops_fx_window AS w ON w.stay_id = i.stay_id
WHERE i.starttime <= w.window_end AND i.endtime >= w.intime
GROUP BY w.stay_id

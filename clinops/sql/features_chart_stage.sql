-- Feature extraction, stage 1: the only pass over chartevents. Keeps the rows of the items the
-- manifest names (clinops_fx_chart_itemids), for the cohort's stays, from $lookback_hours
-- before intime (GCS carry-forward, mimic-code gcs.sql) to the end of the window, and marks
-- the rows inside the window. The text value is kept only for the items read as text
-- ($text_itemids: GCS verbal, ventilator modes, O2 devices), which keeps the table small.
-- Every chartevents-based feature then reads this table instead of chartevents.
-- Needs clinops_fx_window, clinops_fx_chart_itemids(itemid).
-- Parameters: $lookback_hours DOUBLE, $text_itemids INTEGER[].
CREATE OR REPLACE TEMP TABLE clinops_fx_chart AS
SELECT
    c.stay_id, c.charttime, c.storetime, c.itemid,
    CASE WHEN list_contains(CAST($text_itemids AS INTEGER[]), c.itemid) THEN c.value END AS value,
    c.valuenum,
    c.charttime >= w.intime AS in_window
FROM mimiciv_icu.chartevents AS c
JOIN clinops_fx_chart_itemids AS i ON i.itemid = c.itemid
JOIN clinops_fx_window AS w ON w.stay_id = c.stay_id
WHERE c.charttime >= w.intime - to_seconds(CAST($lookback_hours AS DOUBLE) * 3600)
  AND c.charttime <= w.window_end

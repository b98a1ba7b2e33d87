-- Feature extraction, stage 1: the only reads of chartevents. Keeps the rows of the items the
-- manifest names, for the cohort's stays, from $lookback_hours before intime (GCS
-- carry-forward, mimic-code gcs.sql) to the end of the window, and marks the rows inside the
-- window. Two passes: the numeric items (clinops_fx_chart_itemids.text = false) without the
-- text columns, then the few items read as text (GCS verbal, ventilator modes, O2 devices)
-- with value and storetime. Reading the text column only for those items is what keeps this
-- fast; on a parquet copy clustered by itemid (clinops convert --sort-events) the second
-- pass reads only their row groups. Every chartevents-based feature then reads
-- clinops_fx_chart.
-- Needs clinops_fx_window, clinops_fx_chart_itemids(itemid, text).
-- Parameter: $lookback_hours DOUBLE.
CREATE OR REPLACE TEMP TABLE clinops_fx_chart AS
SELECT
    c.stay_id, c.charttime, CAST(NULL AS TIMESTAMP) AS storetime, c.itemid,
    CAST(NULL AS VARCHAR) AS value, c.valuenum, c.charttime >= w.intime AS in_window
FROM mimiciv_icu.chartevents AS c
JOIN (SELECT itemid FROM clinops_fx_chart_itemids WHERE NOT text) AS i ON i.itemid = c.itemid
JOIN clinops_fx_window AS w ON w.stay_id = c.stay_id
WHERE c.charttime >= w.intime - to_seconds(CAST($lookback_hours AS DOUBLE) * 3600)
  AND c.charttime <= w.window_end;

INSERT INTO clinops_fx_chart
SELECT
    c.stay_id, c.charttime, c.storetime, c.itemid, c.value, c.valuenum,
    c.charttime >= w.intime AS in_window
FROM mimiciv_icu.chartevents AS c
JOIN (SELECT itemid FROM clinops_fx_chart_itemids WHERE text) AS i ON i.itemid = c.itemid
JOIN clinops_fx_window AS w ON w.stay_id = c.stay_id
WHERE c.charttime >= w.intime - to_seconds(CAST($lookback_hours AS DOUBLE) * 3600)
  AND c.charttime <= w.window_end;

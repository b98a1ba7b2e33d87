-- Vital signs (method chart_aggregate), mimic-code vitalsign.sql + first_day_vitalsign.sql:
-- values outside the feature's range are dropped (NULL), Fahrenheit items are checked against
-- their own range and converted (F - 32) / 1.8, values are rounded where the manifest says so,
-- the kept values of a feature's items are averaged per charttime (e.g. invasive and
-- non-invasive MAP charted together), and the worst (min or max) value in the window is kept.
-- Needs clinops_fx_chart and clinops_fx_items(method, feature, feature_id, itemid, agg, lo,
-- hi, lo_closed, hi_closed, fahrenheit, round_digits). Output: stay_id, feature, value.
WITH items AS (
    SELECT * FROM clinops_fx_items WHERE method = 'chart_aggregate'
),
kept AS (
    SELECT
        c.stay_id, c.charttime, m.feature_id,
        CASE WHEN m.fahrenheit THEN (c.valuenum - 32) / 1.8 ELSE c.valuenum END AS v,
        m.round_digits
    FROM clinops_fx_chart AS c
    JOIN items AS m ON m.itemid = c.itemid
    WHERE c.in_window
      AND (c.valuenum > m.lo OR (m.lo_closed AND c.valuenum = m.lo))
      AND (c.valuenum < m.hi OR (m.hi_closed AND c.valuenum = m.hi))
),
per_time AS (
    SELECT
        stay_id, feature_id,
        avg(CASE WHEN round_digits IS NULL THEN v ELSE round(v, round_digits) END) AS v
    FROM kept
    GROUP BY stay_id, charttime, feature_id
),
worst AS (
    SELECT stay_id, feature_id, min(v) AS v_min, max(v) AS v_max
    FROM per_time
    GROUP BY stay_id, feature_id
)
SELECT
    w.stay_id, f.feature,
    CASE f.agg WHEN 'min' THEN w.v_min WHEN 'max' THEN w.v_max END AS value
FROM worst AS w
JOIN (SELECT DISTINCT feature_id, feature, agg FROM items) AS f ON f.feature_id = w.feature_id

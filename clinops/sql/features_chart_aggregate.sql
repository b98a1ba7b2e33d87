-- Vital signs (method chart_aggregate), mimic-code vitalsign.sql + first_day_vitalsign.sql:
-- values outside the feature's range are dropped (NULL), Fahrenheit items are checked against
-- their own range and converted (F - 32) / 1.8, values are rounded where the manifest says so,
-- the kept values of a feature's items are averaged per charttime (e.g. invasive and
-- non-invasive MAP charted together), and the worst (min or max) value in the window is kept.
-- Needs clinops_fx_chart and clinops_fx_items(method, feature, itemid, agg, lo, hi, lo_closed,
-- hi_closed, fahrenheit, round_digits). Output: stay_id, feature, value.
WITH kept AS (
    SELECT
        c.stay_id, c.charttime, m.feature, m.agg,
        CASE WHEN m.fahrenheit THEN (c.valuenum - 32) / 1.8 ELSE c.valuenum END AS v,
        m.round_digits
    FROM clinops_fx_chart AS c
    JOIN clinops_fx_items AS m ON m.itemid = c.itemid AND m.method = 'chart_aggregate'
    WHERE c.in_window
      AND (c.valuenum > m.lo OR (m.lo_closed AND c.valuenum = m.lo))
      AND (c.valuenum < m.hi OR (m.hi_closed AND c.valuenum = m.hi))
),
per_time AS (
    SELECT
        stay_id, charttime, feature, any_value(agg) AS agg,
        avg(CASE WHEN round_digits IS NULL THEN v ELSE round(v, round_digits) END) AS v
    FROM kept
    GROUP BY stay_id, charttime, feature
)
SELECT
    stay_id, feature,
    CASE any_value(agg) WHEN 'min' THEN min(v) WHEN 'max' THEN max(v) END AS value
FROM per_time
GROUP BY stay_id, feature

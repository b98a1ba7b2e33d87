-- Vital signs (method chart_aggregate), mimic-code vitalsign.sql + first_day_vitalsign.sql:
-- values outside the feature's range are dropped (NULL), Fahrenheit items are checked against
-- their own range and converted (F - 32) / 1.8, values are rounded where the manifest says so,
-- the kept values of a feature's items are averaged per charttime (e.g. invasive and
-- non-invasive MAP charted together), and the worst value in the window is kept: min, max, or
-- (agg 'farthest_from_normal') the value farthest outside [normal_lo, normal_hi] (temperature
-- and heart rate: hypothermia and bradycardia are as bad as fever and tachycardia, APACHE II);
-- that value is the minimum or the maximum, the maximum on a tie or when all are inside.
-- Window [intime, intime + window], both ends included (in_window and stage 1's bound).
-- Duplicate rows of one item at one charttime (a corrected value next to the first entry) are
-- averaged like two items, as mimic-code vitalsign.sql does; the warning column is not used
-- (mimic-code does not use it either). Text in a numeric item (valuenum NULL) never counts.
-- Needs clinops_fx_chart and clinops_fx_items(method, feature, feature_id, itemid, agg, lo,
-- hi, lo_closed, hi_closed, fahrenheit, round_digits, normal_lo, normal_hi).
-- Output: stay_id, feature, value.
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
    CASE f.agg
        WHEN 'min' THEN w.v_min
        WHEN 'max' THEN w.v_max
        WHEN 'farthest_from_normal' THEN
            CASE WHEN f.normal_lo - w.v_min > greatest(w.v_max - f.normal_hi, 0) THEN w.v_min
                 ELSE w.v_max END
    END AS value
FROM worst AS w
JOIN (SELECT DISTINCT feature_id, feature, agg, normal_lo, normal_hi FROM items) AS f
    ON f.feature_id = w.feature_id

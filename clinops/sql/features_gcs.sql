-- Glasgow Coma Scale (method gcs), mimic-code measurement/gcs.sql, then the minimum in the
-- window (first_day_gcs):
--  1. components pivoted per (stay, charttime); verbal 'No Response-ETT' (intubated) -> 0;
--  2. each row sees the previous row of the stay if that row is < $carry_forward_hours earlier;
--  3. verbal 0 now, or missing now with previous verbal 0 -> total 15 (presumed normal);
--  4. previous verbal 0 but not now -> current components only, normal defaults for missing;
--  5. otherwise missing components come from the previous row, else defaults (6 / 5 / 4).
-- Rows before intime (from stage 1's lookback) only serve as "previous" rows.
-- Needs clinops_fx_chart. Parameters: $feature VARCHAR, $eye_itemid,
-- $verbal_itemid, $motor_itemid INTEGER, $carry_forward_hours DOUBLE.
-- Output: stay_id, feature, value.
WITH base AS (
    SELECT
        stay_id, charttime, bool_or(in_window) AS in_window,
        max(CASE WHEN itemid = $motor_itemid THEN valuenum END) AS motor,
        max(CASE
                WHEN itemid = $verbal_itemid AND value = 'No Response-ETT' THEN 0
                WHEN itemid = $verbal_itemid THEN valuenum
            END) AS verbal,
        max(CASE WHEN itemid = $eye_itemid THEN valuenum END) AS eyes
    FROM clinops_fx_chart
    WHERE itemid IN ($eye_itemid, $verbal_itemid, $motor_itemid)
    GROUP BY stay_id, charttime
),
with_prev AS (
    SELECT
        *,
        lag(charttime) OVER w AS prev_time,
        lag(motor) OVER w AS prev_motor_raw,
        lag(verbal) OVER w AS prev_verbal_raw,
        lag(eyes) OVER w AS prev_eyes_raw
    FROM base
    WINDOW w AS (PARTITION BY stay_id ORDER BY charttime)
),
prev AS (
    SELECT
        stay_id, charttime, in_window, motor, verbal, eyes,
        prev_time > charttime - to_seconds(CAST($carry_forward_hours AS DOUBLE) * 3600)
            AS has_prev,
        prev_motor_raw, prev_verbal_raw, prev_eyes_raw
    FROM with_prev
),
scored AS (
    SELECT
        stay_id, in_window,
        CASE
            WHEN verbal = 0 THEN 15
            WHEN verbal IS NULL AND has_prev AND prev_verbal_raw = 0 THEN 15
            WHEN has_prev AND prev_verbal_raw = 0
                THEN coalesce(motor, 6) + coalesce(verbal, 5) + coalesce(eyes, 4)
            ELSE coalesce(motor, CASE WHEN has_prev THEN prev_motor_raw END, 6)
               + coalesce(verbal, CASE WHEN has_prev THEN prev_verbal_raw END, 5)
               + coalesce(eyes, CASE WHEN has_prev THEN prev_eyes_raw END, 4)
        END AS gcs
    FROM prev
)
SELECT stay_id, $feature AS feature, CAST(min(gcs) AS DOUBLE) AS value
FROM scored
WHERE in_window
GROUP BY stay_id

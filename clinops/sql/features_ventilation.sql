-- Mechanical ventilation flag (method ventilation). Status per charttime as in mimic-code
-- treatment/ventilation.sql (priority Tracheostomy > InvasiveVent > NonInvasiveVent > HFNC >
-- SupplementalOxygen > None; device strings are exact, several end with a space), built from
-- ventilator mode (223849), Hamilton mode (229314) and O2 delivery device (226732) rows.
-- O2 devices per charttime are ranked as mimic-code oxygen_delivery.sql (latest storetime,
-- then value descending); device 1 decides Tracheostomy / InvasiveVent / HFNC / O2 / None,
-- and NIV looks at all four device slots (current mimic-code HEAD).
-- Flag: 1 when any charttime in the window is InvasiveVent, or is Tracheostomy with an invasive
-- ventilator mode charted at that charttime (a ventilated tracheostomy: mimic-code's
-- Tracheostomy status means "with or without positive pressure ventilation" and outranks
-- InvasiveVent, so its own mode rows tell the two apart; a trach mask or a capped tube without a
-- ventilator mode is not mechanical ventilation), or a procedureevents item in
-- $procedure_itemids overlaps the window; 0 when ventilation rows exist in the window but none
-- is invasive; no row (NULL, missing) when neither source has anything in the window.
-- Window [intime, intime + window], both ends included.
-- Needs clinops_fx_chart, clinops_fx_window. Parameters: $feature VARCHAR, $mode_itemid,
-- $mode_hamilton_itemid, $o2_device_itemid INTEGER, $procedure_itemids INTEGER[].
-- Output: stay_id, feature, value.
WITH device_rows AS (
    SELECT
        stay_id, charttime, value,
        row_number() OVER (PARTITION BY stay_id, charttime
                           ORDER BY storetime DESC NULLS LAST, value DESC NULLS LAST) AS rn
    FROM clinops_fx_chart
    WHERE itemid = $o2_device_itemid AND value IS NOT NULL AND in_window
),
devices AS (
    SELECT
        stay_id, charttime,
        max(CASE WHEN rn = 1 THEN value END) AS device_1,
        bool_or(rn <= 4 AND value IN ('Bipap mask ', 'CPAP mask ')) AS niv_device
    FROM device_rows
    GROUP BY stay_id, charttime
),
modes AS (
    SELECT
        stay_id, charttime,
        max(CASE WHEN itemid = $mode_itemid THEN value END) AS ventilator_mode,
        max(CASE WHEN itemid = $mode_hamilton_itemid THEN value END) AS ventilator_mode_hamilton
    FROM clinops_fx_chart
    WHERE itemid IN ($mode_itemid, $mode_hamilton_itemid) AND value IS NOT NULL AND in_window
    GROUP BY stay_id, charttime
),
tm AS (
    SELECT stay_id, charttime FROM devices
    UNION
    SELECT stay_id, charttime FROM modes
),
evidence AS (
    SELECT
        tm.stay_id, tm.charttime,
        coalesce(m.ventilator_mode IN (
                    '(S) CMV', 'APRV', 'APRV/Biphasic+ApnPress', 'APRV/Biphasic+ApnVol',
                    'APV (cmv)', 'Ambient', 'Apnea Ventilation', 'CMV', 'CMV/ASSIST',
                    'CMV/ASSIST/AutoFlow', 'CMV/AutoFlow', 'CPAP/PPS', 'CPAP/PSV',
                    'CPAP/PSV+Apn TCPL', 'CPAP/PSV+ApnPres', 'CPAP/PSV+ApnVol', 'MMV',
                    'MMV/AutoFlow', 'MMV/PSV', 'MMV/PSV/AutoFlow', 'P-CMV', 'PCV+', 'PCV+/PSV',
                    'PCV+Assist', 'PRES/AC', 'PRVC/AC', 'PRVC/SIMV', 'PSV/SBT', 'SIMV',
                    'SIMV/AutoFlow', 'SIMV/PRES', 'SIMV/PSV', 'SIMV/PSV/AutoFlow', 'SIMV/VOL',
                    'SYNCHRON MASTER', 'SYNCHRON SLAVE', 'VOL/AC'), false)
          OR coalesce(m.ventilator_mode_hamilton IN (
                    'APRV', 'APV (cmv)', 'Ambient', '(S) CMV', 'P-CMV', 'SIMV', 'APV (simv)',
                    'P-SIMV', 'VS', 'ASV'), false) AS invasive_mode,
        d.device_1, d.niv_device, m.ventilator_mode_hamilton
    FROM tm
    LEFT JOIN devices AS d ON d.stay_id = tm.stay_id AND d.charttime = tm.charttime
    LEFT JOIN modes AS m ON m.stay_id = tm.stay_id AND m.charttime = tm.charttime
),
status AS (
    SELECT
        stay_id, charttime, invasive_mode,
        CASE
            WHEN device_1 IN ('Tracheostomy tube', 'Trach mask ') THEN 'Tracheostomy'
            WHEN device_1 = 'Endotracheal tube' OR invasive_mode THEN 'InvasiveVent'
            WHEN coalesce(niv_device, false)
              OR ventilator_mode_hamilton IN ('DuoPaP', 'NIV', 'NIV-ST')
                THEN 'NonInvasiveVent'
            WHEN device_1 = 'High flow nasal cannula' THEN 'HFNC'
            WHEN device_1 IN ('Non-rebreather', 'Face tent', 'Aerosol-cool', 'Venti mask ',
                                'Medium conc mask ', 'Ultrasonic neb', 'Vapomist', 'Oxymizer',
                                'High flow neb', 'Nasal cannula')
                THEN 'SupplementalOxygen'
            WHEN device_1 = 'None' THEN 'None'
        END AS ventilation_status
    FROM evidence
),
charted AS (
    SELECT
        stay_id,
        bool_or(ventilation_status = 'InvasiveVent'
                OR (ventilation_status = 'Tracheostomy' AND invasive_mode)) AS invasive
    FROM status
    GROUP BY stay_id
),
procedures AS (
    SELECT DISTINCT w.stay_id, true AS invasive
    FROM mimiciv_icu.procedureevents AS p
    JOIN clinops_fx_window AS w ON w.stay_id = p.stay_id
    WHERE list_contains(CAST($procedure_itemids AS INTEGER[]), p.itemid)
      AND p.starttime <= w.window_end AND p.endtime >= w.intime
)
SELECT
    coalesce(c.stay_id, p.stay_id) AS stay_id,
    $feature AS feature,
    CASE WHEN coalesce(p.invasive, false) OR coalesce(c.invasive, false) THEN 1.0 ELSE 0.0 END
        AS value
FROM charted AS c
FULL OUTER JOIN procedures AS p ON p.stay_id = c.stay_id

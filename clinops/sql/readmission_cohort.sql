-- 30-day readmission: every hospital admission with one flag per inclusion criterion and the
-- readmission outcome (clinops/docs/architecture.md, "Readmission cohort").
--
-- One row per mimiciv_hosp.admissions row. The caller applies the flags in flow-table order;
-- an index admission is a row with every flag true (every eligible discharge is an index
-- admission, CMS convention, so a readmission can itself be an index admission).
--
-- Bound parameters:
--   $study_groups      LIST(VARCHAR)  anchor_year_group values of the study period (train + test)
--   $min_age           DOUBLE         minimum age at admission, years
--   $service           VARCHAR        required discharging service (services.curr_service)
--   $excluded_locations LIST(VARCHAR) discharge_location values that cannot be index discharges
--   $planned_types     LIST(VARCHAR)  admission_type values that make a readmission planned
--                                    (the admission-type rule, label_admission_type)
--   $uncounted_types   LIST(VARCHAR)  admission_type values that are never a readmission
--                                    (default AMBULATORY OBSERVATION: clinops/docs/readmission.md)
--   $pr1_procedures    LIST(VARCHAR)  CMS always-planned procedures, '<icd_version>:<prefix>'
--   $pr2_diagnoses     LIST(VARCHAR)  CMS always-planned principal diagnoses
--   $pr3_procedures    LIST(VARCHAR)  CMS potentially planned procedures
--   $pr4_diagnoses     LIST(VARCHAR)  CMS acute principal diagnoses (PR3 then is unplanned)
--   $horizon_days      INTEGER        outcome window after discharge, days
--   $last_data_year    INTEGER        last real year with admissions in the data (v2.2: 2019)
--
-- Outcome (CMS): only the FIRST readmission after an index counts; it is the outcome when it is
-- unplanned (label_cms by the CMS Planned Readmission Algorithm v4.0 with the code lists of
-- clinops/data/cms_planned.csv; label_admission_type by $planned_types). A planned
-- first readmission makes the outcome 0 even if an unplanned one follows within the horizon.
WITH adm AS (
    SELECT
        a.subject_id,
        a.hadm_id,
        a.admittime,
        a.dischtime,
        a.deathtime,
        a.admission_type,
        a.discharge_location,
        a.hospital_expire_flag,
        p.gender,
        p.anchor_year_group,
        p.anchor_year,
        p.dod,
        -- mimic-code age: calendar-year difference from the anchor year
        p.anchor_age + (extract(YEAR FROM a.admittime) - p.anchor_year) AS age,
        -- follow-up may run past the end of the data: the discharge's real-year interval
        -- [group start + k, group end + k] (k = shifted year - anchor_year) reaches
        -- $last_data_year; NULL when unknown (no patient row, no dischtime): read as false
        CAST(right(p.anchor_year_group, 4) AS INTEGER)
            + (extract(YEAR FROM a.dischtime) - p.anchor_year) >= $last_data_year AS reaches_data_end
    FROM mimiciv_hosp.admissions AS a
    LEFT JOIN mimiciv_hosp.patients AS p ON p.subject_id = a.subject_id
),
discharging_service AS (
    -- the service responsible at discharge: the latest service change at or before dischtime;
    -- ties on transfertime are broken by curr_service so the result is deterministic
    SELECT hadm_id, curr_service
    FROM (
        SELECT
            s.hadm_id,
            s.curr_service,
            row_number() OVER (
                PARTITION BY s.hadm_id ORDER BY s.transfertime DESC, s.curr_service DESC
            ) AS rn
        FROM mimiciv_hosp.services AS s
        JOIN adm ON adm.hadm_id = s.hadm_id
        WHERE s.transfertime <= adm.dischtime
    )
    WHERE rn = 1
),
icu AS (
    SELECT DISTINCT hadm_id FROM mimiciv_icu.icustays
),
code_lengths AS (
    -- prefix lengths compared with the code lists (cms_planned.py: MIN_PREFIX..MAX_PREFIX)
    SELECT n FROM (VALUES (3), (4), (5), (6), (7)) AS t(n)
),
procedure_class AS (
    -- per admission: any always-planned (PR1) / potentially planned (PR3) procedure
    SELECT
        p.hadm_id,
        max(CASE WHEN list_contains($pr1_procedures, concat(CAST(p.icd_version AS VARCHAR), ':',
            left(trim(p.icd_code), l.n))) THEN 1 ELSE 0 END) AS pr1,
        max(CASE WHEN list_contains($pr3_procedures, concat(CAST(p.icd_version AS VARCHAR), ':',
            left(trim(p.icd_code), l.n))) THEN 1 ELSE 0 END) AS pr3
    FROM mimiciv_hosp.procedures_icd AS p
    JOIN code_lengths AS l ON length(trim(p.icd_code)) >= l.n
    GROUP BY p.hadm_id
),
principal_class AS (
    -- per admission: the principal diagnosis (seq_num = 1) always planned (PR2) / acute (PR4)
    SELECT
        d.hadm_id,
        max(CASE WHEN list_contains($pr2_diagnoses, concat(CAST(d.icd_version AS VARCHAR), ':',
            left(trim(d.icd_code), l.n))) THEN 1 ELSE 0 END) AS pr2,
        max(CASE WHEN list_contains($pr4_diagnoses, concat(CAST(d.icd_version AS VARCHAR), ':',
            left(trim(d.icd_code), l.n))) THEN 1 ELSE 0 END) AS pr4
    FROM mimiciv_hosp.diagnoses_icd AS d
    JOIN code_lengths AS l ON length(trim(d.icd_code)) >= l.n
    WHERE d.seq_num = 1
    GROUP BY d.hadm_id
),
later_admission AS (
    -- admissions of the same patient starting in (dischtime, dischtime + horizon]: the one join
    -- over the outcome window, which readmission and uncounted_return both read
    SELECT
        i.hadm_id AS index_hadm_id,
        r.hadm_id,
        r.admittime,
        r.dischtime,
        r.admission_type,
        -- NULL for a NULL admission_type: such a row is neither a readmission nor a return
        list_contains($uncounted_types, r.admission_type) AS uncounted
    FROM adm AS i
    JOIN mimiciv_hosp.admissions AS r
        ON r.subject_id = i.subject_id
        AND r.hadm_id <> i.hadm_id
        AND r.admittime > i.dischtime
        AND r.admittime <= i.dischtime + to_days(CAST($horizon_days AS INTEGER))
),
readmission AS (
    -- later admissions that count: rows with dischtime <= admittime (organ-donor and other
    -- invalid accounts) are not admissions a patient returned for, so they never count; nor do
    -- $uncounted_types
    SELECT
        w.index_hadm_id,
        w.hadm_id,
        w.admittime,
        w.admission_type,
        list_contains($planned_types, w.admission_type) AS planned_by_type,
        -- CMS: PR1 procedure, else PR2 principal diagnosis, else PR3 procedure without an
        -- acute (PR4) principal diagnosis; NULL = unplanned
        CASE
            WHEN coalesce(pc.pr1, 0) = 1 THEN 'PR1'
            WHEN coalesce(dc.pr2, 0) = 1 THEN 'PR2'
            WHEN coalesce(pc.pr3, 0) = 1 AND coalesce(dc.pr4, 0) = 0 THEN 'PR3'
        END AS cms_planned_category,
        CAST(coalesce(pc.pr3, 0) = 1 AND coalesce(dc.pr4, 0) = 1 AS INTEGER) AS pr3_with_acute_dx
    FROM later_admission AS w
    LEFT JOIN procedure_class AS pc ON pc.hadm_id = w.hadm_id
    LEFT JOIN principal_class AS dc ON dc.hadm_id = w.hadm_id
    WHERE (w.dischtime IS NULL OR w.dischtime > w.admittime)
        AND NOT w.uncounted
),
uncounted_return AS (
    -- returns of an uncounted type within the horizon (reported, never the outcome); every
    -- such row of the window counts, an invalid account (dischtime <= admittime) included
    SELECT index_hadm_id, count(*) AS n_uncounted_returns
    FROM later_admission
    WHERE uncounted
    GROUP BY index_hadm_id
),
first_readmission AS (
    -- CMS counts only the first readmission after an index
    SELECT index_hadm_id, hadm_id, admittime, admission_type, planned_by_type, cms_planned_category,
           pr3_with_acute_dx
    FROM (
        SELECT
            *,
            row_number() OVER (PARTITION BY index_hadm_id ORDER BY admittime, hadm_id) AS rn
        FROM readmission
    )
    WHERE rn = 1
)
SELECT
    adm.subject_id,
    adm.hadm_id,
    adm.admittime,
    adm.dischtime,
    adm.anchor_year_group,
    -- the split is assigned in clinops/tasks/temporal_split.py from the group and k = the
    -- admission's (shifted) year - anchor_year
    adm.anchor_year,
    CAST(extract(YEAR FROM adm.admittime) AS INTEGER) AS event_year,
    adm.age,
    adm.gender,
    adm.admission_type,
    adm.discharge_location,
    ds.curr_service AS discharge_service,
    epoch(adm.dischtime - adm.admittime) / 86400.0 AS los_days,
    adm.dod,
    -- outcomes of the first readmission within the horizon, by each rule
    CAST(fr.hadm_id IS NOT NULL AND fr.cms_planned_category IS NULL AS INTEGER) AS label_cms,
    CAST(fr.hadm_id IS NOT NULL AND NOT fr.planned_by_type AS INTEGER) AS label_admission_type,
    fr.hadm_id AS readmission_hadm_id,
    fr.admission_type AS readmission_admission_type,
    epoch(fr.admittime - adm.dischtime) / 86400.0 AS days_to_readmission,
    CAST(fr.planned_by_type AS INTEGER) AS readmission_planned_by_type,
    fr.cms_planned_category AS readmission_cms_category,
    fr.pr3_with_acute_dx AS readmission_pr3_acute_dx,
    coalesce(ur.n_uncounted_returns, 0) AS n_uncounted_returns,
    -- competing risk: death (patients.dod, day resolution; hospital records plus the state
    -- registry) on a day in [discharge day, discharge day + horizon]
    CAST(coalesce(
        adm.dod >= CAST(adm.dischtime AS DATE)
        AND adm.dod <= CAST(adm.dischtime AS DATE) + CAST($horizon_days AS INTEGER),
        FALSE) AS INTEGER) AS died_within_horizon,
    -- follow-up: at risk when the discharge's real-year interval reaches $last_data_year (adm),
    -- censored when, in addition, the horizon crosses the end of the discharge's shifted year
    CAST(coalesce(adm.reaches_data_end, FALSE) AS INTEGER) AS followup_at_risk,
    CAST(coalesce(
        adm.reaches_data_end
        AND extract(YEAR FROM adm.dischtime + to_days(CAST($horizon_days AS INTEGER)))
            > extract(YEAR FROM adm.dischtime),
        FALSE) AS INTEGER) AS followup_censored,
    -- inclusion flags, in flow-table order
    coalesce(list_contains($study_groups, adm.anchor_year_group), FALSE) AS in_study_period,
    coalesce(adm.age >= $min_age, FALSE) AS is_adult,
    coalesce(
        adm.dischtime IS NOT NULL
        AND adm.dischtime > adm.admittime
        AND adm.hospital_expire_flag IS NOT NULL,
        FALSE) AS has_complete_record,
    coalesce(adm.hospital_expire_flag = 0 AND adm.deathtime IS NULL, FALSE) AS discharged_alive,
    -- an unrecorded discharge_location is not evidence of an excluded disposition: kept
    (adm.discharge_location IS NULL
        OR NOT list_contains($excluded_locations, adm.discharge_location)) AS eligible_disposition,
    (icu.hadm_id IS NULL) AS no_icu_stay,
    coalesce(ds.curr_service = $service, FALSE) AS discharged_by_service
FROM adm
LEFT JOIN discharging_service AS ds ON ds.hadm_id = adm.hadm_id
LEFT JOIN icu ON icu.hadm_id = adm.hadm_id
LEFT JOIN first_readmission AS fr ON fr.index_hadm_id = adm.hadm_id
LEFT JOIN uncounted_return AS ur ON ur.index_hadm_id = adm.hadm_id

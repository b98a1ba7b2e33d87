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
--   $horizon_days      INTEGER        outcome window after discharge, days
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
        p.anchor_age + (extract(YEAR FROM a.admittime) - p.anchor_year) AS age
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
readmission AS (
    -- admissions of the same patient starting in (dischtime, dischtime + horizon];
    -- rows with dischtime <= admittime (organ-donor and other invalid accounts) are not
    -- admissions a patient returned for, so they never count
    SELECT
        i.hadm_id AS index_hadm_id,
        r.hadm_id,
        r.admittime,
        r.admission_type,
        list_contains($planned_types, r.admission_type) AS planned
    FROM adm AS i
    JOIN mimiciv_hosp.admissions AS r
        ON r.subject_id = i.subject_id
        AND r.hadm_id <> i.hadm_id
        AND r.admittime > i.dischtime
        AND r.admittime <= i.dischtime + to_days(CAST($horizon_days AS INTEGER))
    WHERE r.dischtime IS NULL OR r.dischtime > r.admittime
),
first_unplanned AS (
    SELECT index_hadm_id, hadm_id, admittime, admission_type
    FROM (
        SELECT
            *,
            row_number() OVER (PARTITION BY index_hadm_id ORDER BY admittime, hadm_id) AS rn
        FROM readmission
        WHERE NOT planned
    )
    WHERE rn = 1
),
any_planned AS (
    SELECT DISTINCT index_hadm_id FROM readmission WHERE planned
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
    -- outcome: an unplanned admission within the horizon
    CAST(fu.hadm_id IS NOT NULL AS INTEGER) AS label,
    fu.hadm_id AS readmission_hadm_id,
    fu.admission_type AS readmission_admission_type,
    epoch(fu.admittime - adm.dischtime) / 86400.0 AS days_to_readmission,
    CAST(ap.index_hadm_id IS NOT NULL AS INTEGER) AS planned_readmission_within_horizon,
    -- competing risk: death (patients.dod, day resolution; hospital records plus the state
    -- registry) on a day in [discharge day, discharge day + horizon]
    CAST(coalesce(
        adm.dod >= CAST(adm.dischtime AS DATE)
        AND adm.dod <= CAST(adm.dischtime AS DATE) + CAST($horizon_days AS INTEGER),
        FALSE) AS INTEGER) AS died_within_horizon,
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
LEFT JOIN first_unplanned AS fu ON fu.index_hadm_id = adm.hadm_id
LEFT JOIN any_planned AS ap ON ap.index_hadm_id = adm.hadm_id

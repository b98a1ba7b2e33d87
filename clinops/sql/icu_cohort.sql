-- ICU cohort for the mortality task: clinops/docs/architecture.md "ICU cohort", steps 1-7.
-- Returns one row per ICU stay in icustays with last_step = the last step the stay passed
-- (7 = in the analysis cohort); each step ranks/filters only the stays that passed the one
-- before it, so the flow table is last_step >= k counted for k = 1..7.
-- Needs macros.sql. Parameters (bound, never formatted in):
--   $min_age DOUBLE, $min_icu_los_hours DOUBLE, $study_groups VARCHAR[], $window_hours DOUBLE,
--   $horizon_hours DOUBLE (NULL = any in-hospital death).
WITH s1 AS (  -- 1. all ICU stays
    SELECT
        i.subject_id, i.hadm_id, i.stay_id, i.intime, i.outtime,
        p.anchor_year_group, p.anchor_year, p.gender,
        clinops_age(p.anchor_age, p.anchor_year, i.intime) AS age,
        (epoch(i.outtime) - epoch(i.intime)) / 3600.0 AS icu_los_hours,
        a.dischtime, a.hospital_expire_flag,
        clinops_death_time(a.deathtime, a.dischtime, a.hospital_expire_flag) AS death_time
    FROM mimiciv_icu.icustays AS i
    LEFT JOIN mimiciv_hosp.patients AS p ON p.subject_id = i.subject_id
    LEFT JOIN mimiciv_hosp.admissions AS a ON a.hadm_id = i.hadm_id
),
s2 AS (  -- 2. adults at ICU admission (an unknown age does not pass)
    SELECT * FROM s1 WHERE age >= $min_age
),
s3 AS (  -- 3. index ICU stay of each hospitalisation: earliest intime per hadm_id
    SELECT * FROM s2
    QUALIFY row_number() OVER (PARTITION BY hadm_id ORDER BY intime NULLS LAST, stay_id) = 1
),
s4 AS (  -- 4. first ICU admission of the patient: earliest intime per subject_id
    SELECT * FROM s3
    QUALIFY row_number() OVER (PARTITION BY subject_id ORDER BY intime NULLS LAST, stay_id) = 1
),
s5 AS (  -- 5. study period, through the patient's anchor_year_group
    SELECT * FROM s4 WHERE list_contains($study_groups, anchor_year_group)
),
s6 AS (  -- 6. ICU length of stay, outtime - intime
    SELECT * FROM s5 WHERE icu_los_hours >= $min_icu_los_hours
),
s7 AS (  -- 7. outcome label available
    SELECT * FROM s6 WHERE dischtime IS NOT NULL AND hospital_expire_flag IS NOT NULL
)
SELECT
    s1.subject_id, s1.hadm_id, s1.stay_id, s1.intime, s1.outtime, s1.anchor_year_group,
    -- the split is assigned in clinops/tasks/temporal_split.py from the group and k = the
    -- stay's (shifted) year - anchor_year: the stay happened in [group start + k, group end + k]
    s1.anchor_year,
    CAST(extract(YEAR FROM s1.intime) AS INTEGER) AS event_year,
    s1.age, s1.gender,
    clinops_mortality_label(s1.intime, s1.death_time, s1.hospital_expire_flag,
                            $window_hours, $horizon_hours) AS label,
    s1.death_time, s1.hospital_expire_flag,
    1 + CAST(s1.stay_id IN (SELECT stay_id FROM s2) AS INTEGER)
      + CAST(s1.stay_id IN (SELECT stay_id FROM s3) AS INTEGER)
      + CAST(s1.stay_id IN (SELECT stay_id FROM s4) AS INTEGER)
      + CAST(s1.stay_id IN (SELECT stay_id FROM s5) AS INTEGER)
      + CAST(s1.stay_id IN (SELECT stay_id FROM s6) AS INTEGER)
      + CAST(s1.stay_id IN (SELECT stay_id FROM s7) AS INTEGER) AS last_step
FROM s1
ORDER BY s1.stay_id

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
    SELECT *, coalesce(age >= $min_age, false) AS pass2 FROM s1
),
-- Every stay stays in the rows; pass<k> says whether it passed steps 2..k. Ranking inside the
-- partition of the stays that passed the step before (PARTITION BY ..., pass<k-1>) is the same
-- as ranking only those stays, and one pass over the rows replaces a subquery per step (Spark
-- and PostgreSQL recomputed the whole chain for each of them).
s3 AS (  -- 3. index ICU stay of each hospitalisation: earliest intime per hadm_id
    SELECT *, pass2 AND row_number() OVER (
        PARTITION BY hadm_id, pass2 ORDER BY intime NULLS LAST, stay_id) = 1 AS pass3
    FROM s2
),
s4 AS (  -- 4. first ICU admission of the patient: earliest intime per subject_id
    SELECT *, pass3 AND row_number() OVER (
        PARTITION BY subject_id, pass3 ORDER BY intime NULLS LAST, stay_id) = 1 AS pass4
    FROM s3
),
s5 AS (  -- 5. study period, through the patient's anchor_year_group
    SELECT *, pass4 AND coalesce(list_contains($study_groups, anchor_year_group), false) AS pass5 FROM s4
),
s6 AS (  -- 6. ICU length of stay, outtime - intime
    SELECT *, pass5 AND coalesce(icu_los_hours >= $min_icu_los_hours, false) AS pass6 FROM s5
),
s7 AS (  -- 7. outcome label available
    SELECT *, pass6 AND dischtime IS NOT NULL AND hospital_expire_flag IS NOT NULL AS pass7 FROM s6
)
SELECT
    s7.subject_id, s7.hadm_id, s7.stay_id, s7.intime, s7.outtime, s7.anchor_year_group,
    -- the split is assigned in clinops/tasks/temporal_split.py from the group and k = the
    -- stay's (shifted) year - anchor_year: the stay happened in [group start + k, group end + k]
    s7.anchor_year,
    CAST(extract(YEAR FROM s7.intime) AS INTEGER) AS event_year,
    s7.age, s7.gender,
    clinops_mortality_label(s7.intime, s7.death_time, s7.hospital_expire_flag,
                            $window_hours, $horizon_hours) AS label,
    s7.death_time, s7.hospital_expire_flag,
    1 + CAST(pass2 AS INTEGER) + CAST(pass3 AS INTEGER) + CAST(pass4 AS INTEGER)
      + CAST(pass5 AS INTEGER) + CAST(pass6 AS INTEGER) + CAST(pass7 AS INTEGER) AS last_step
FROM s7
ORDER BY s7.stay_id

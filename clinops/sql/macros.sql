-- Shared definitions used by the cohort and the feature SQL (clinops/docs/architecture.md).
-- Each idea is written once, here, as a DuckDB temporary macro.

-- Age at ICU admission, mimic-code demographics/age.sql: a calendar-year difference.
-- For anchor_age 91 (everyone over 89) the result is not a real age.
CREATE OR REPLACE TEMP MACRO clinops_age(anchor_age, anchor_year, intime) AS
    anchor_age + year(intime) - anchor_year;

-- Death time: admissions.deathtime, or dischtime for an in-hospital death with no deathtime.
CREATE OR REPLACE TEMP MACRO clinops_death_time(deathtime, dischtime, hospital_expire_flag) AS
    COALESCE(deathtime, CASE WHEN hospital_expire_flag = 1 THEN dischtime END);

-- Mortality label: death in (intime + window, intime + window + horizon]; a NULL horizon means
-- any in-hospital death (hospital_expire_flag = 1). Returns 0/1, never NULL when the flag is known.
CREATE OR REPLACE TEMP MACRO clinops_mortality_label(intime, death_time, hospital_expire_flag,
                                                     window_hours, horizon_hours) AS
    CASE
        WHEN horizon_hours IS NULL THEN CAST(hospital_expire_flag = 1 AS INTEGER)
        ELSE CAST(COALESCE(
                 death_time > intime + to_seconds(CAST(window_hours AS DOUBLE) * 3600)
                 AND death_time <= intime + to_seconds(
                     (CAST(window_hours AS DOUBLE) + CAST(horizon_hours AS DOUBLE)) * 3600),
                 false) AS INTEGER)
    END;

-- ICD-10-CM chapter of a diagnosis code stored without the dot (MIMIC-IV convention).
-- ICD-9-CM codes are mapped chapter to chapter: the ICD-9 chapters line up with ICD-10
-- chapters once "nervous system and sense organs" (320-389) is split into nervous (320-359),
-- eye (360-379) and ear (380-389), immunity disorders (279) go with blood (ICD-10 D80-D89),
-- V codes go to "factors" (Z) and E codes to "external causes" (V-Y). This is a chapter
-- crosswalk, not code-level GEMs; unparseable codes give NULL (missing).
CREATE OR REPLACE TEMP MACRO clinops_icd_chapter(icd_code, icd_version) AS (
    WITH c AS (SELECT upper(trim(icd_code)) AS code, icd_version AS v)
    SELECT CASE
        WHEN v = 10 THEN CASE
            WHEN left(code, 1) IN ('A', 'B') THEN 'infectious'
            WHEN left(code, 1) = 'C' THEN 'neoplasms'
            WHEN left(code, 1) = 'D' AND TRY_CAST(substr(code, 2, 2) AS INTEGER) <= 49 THEN 'neoplasms'
            WHEN left(code, 1) = 'D' AND TRY_CAST(substr(code, 2, 2) AS INTEGER) >= 50 THEN 'blood'
            WHEN left(code, 1) = 'E' THEN 'endocrine'
            WHEN left(code, 1) = 'F' THEN 'mental'
            WHEN left(code, 1) = 'G' THEN 'nervous'
            WHEN left(code, 1) = 'H' AND TRY_CAST(substr(code, 2, 2) AS INTEGER) <= 59 THEN 'eye'
            WHEN left(code, 1) = 'H' AND TRY_CAST(substr(code, 2, 2) AS INTEGER) >= 60 THEN 'ear'
            WHEN left(code, 1) = 'I' THEN 'circulatory'
            WHEN left(code, 1) = 'J' THEN 'respiratory'
            WHEN left(code, 1) = 'K' THEN 'digestive'
            WHEN left(code, 1) = 'L' THEN 'skin'
            WHEN left(code, 1) = 'M' THEN 'musculoskeletal'
            WHEN left(code, 1) = 'N' THEN 'genitourinary'
            WHEN left(code, 1) = 'O' THEN 'pregnancy'
            WHEN left(code, 1) = 'P' THEN 'perinatal'
            WHEN left(code, 1) = 'Q' THEN 'congenital'
            WHEN left(code, 1) = 'R' THEN 'symptoms'
            WHEN left(code, 1) IN ('S', 'T') THEN 'injury'
            WHEN left(code, 1) IN ('V', 'W', 'X', 'Y') THEN 'external'
            WHEN left(code, 1) = 'Z' THEN 'factors'
            WHEN left(code, 1) = 'U' THEN 'special'
        END
        WHEN v = 9 THEN CASE
            WHEN left(code, 1) = 'V' THEN 'factors'
            WHEN left(code, 1) = 'E' THEN 'external'
            ELSE CASE
                WHEN TRY_CAST(left(code, 3) AS INTEGER) IS NULL THEN NULL
                WHEN TRY_CAST(left(code, 3) AS INTEGER) <= 139 THEN 'infectious'
                WHEN TRY_CAST(left(code, 3) AS INTEGER) <= 239 THEN 'neoplasms'
                WHEN TRY_CAST(left(code, 3) AS INTEGER) <= 278 THEN 'endocrine'
                WHEN TRY_CAST(left(code, 3) AS INTEGER) <= 289 THEN 'blood'
                WHEN TRY_CAST(left(code, 3) AS INTEGER) <= 319 THEN 'mental'
                WHEN TRY_CAST(left(code, 3) AS INTEGER) <= 359 THEN 'nervous'
                WHEN TRY_CAST(left(code, 3) AS INTEGER) <= 379 THEN 'eye'
                WHEN TRY_CAST(left(code, 3) AS INTEGER) <= 389 THEN 'ear'
                WHEN TRY_CAST(left(code, 3) AS INTEGER) <= 459 THEN 'circulatory'
                WHEN TRY_CAST(left(code, 3) AS INTEGER) <= 519 THEN 'respiratory'
                WHEN TRY_CAST(left(code, 3) AS INTEGER) <= 579 THEN 'digestive'
                WHEN TRY_CAST(left(code, 3) AS INTEGER) <= 629 THEN 'genitourinary'
                WHEN TRY_CAST(left(code, 3) AS INTEGER) <= 679 THEN 'pregnancy'
                WHEN TRY_CAST(left(code, 3) AS INTEGER) <= 709 THEN 'skin'
                WHEN TRY_CAST(left(code, 3) AS INTEGER) <= 739 THEN 'musculoskeletal'
                WHEN TRY_CAST(left(code, 3) AS INTEGER) <= 759 THEN 'congenital'
                WHEN TRY_CAST(left(code, 3) AS INTEGER) <= 779 THEN 'perinatal'
                WHEN TRY_CAST(left(code, 3) AS INTEGER) <= 799 THEN 'symptoms'
                WHEN TRY_CAST(left(code, 3) AS INTEGER) <= 999 THEN 'injury'
            END
        END
    END
    FROM c
);

-- Age at ICU admission (method age, mimic-code age.sql via clinops_age) and sex (method sex:
-- 1 = 'M', 0 = 'F', anything else missing), from patients. Needs macros.sql and
-- clinops_fx_window. Parameters: $age_feature, $sex_feature VARCHAR (NULL = not requested).
-- Output: stay_id, feature, value.
SELECT w.stay_id, $age_feature AS feature,
       CAST(clinops_age(p.anchor_age, p.anchor_year, w.intime) AS DOUBLE) AS value
FROM clinops_fx_window AS w
JOIN mimiciv_hosp.patients AS p ON p.subject_id = w.subject_id
WHERE $age_feature IS NOT NULL
UNION ALL
SELECT w.stay_id, $sex_feature AS feature,
       CASE p.gender WHEN 'M' THEN 1.0 WHEN 'F' THEN 0.0 END AS value
FROM clinops_fx_window AS w
JOIN mimiciv_hosp.patients AS p ON p.subject_id = w.subject_id
WHERE $sex_feature IS NOT NULL

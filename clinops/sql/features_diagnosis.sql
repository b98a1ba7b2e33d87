-- Primary diagnosis category (method icd_chapter): the ICD-10 chapter (ICD-9 mapped, see
-- clinops_icd_chapter in macros.sql) of the admission's diagnosis with seq_num = $seq_num.
-- Should an admission list two rows with that seq_num, ICD-10 is preferred, then the smallest
-- code, so the result is deterministic. Needs macros.sql and clinops_fx_window.
-- Parameters: $feature VARCHAR, $seq_num INTEGER. Output: stay_id, feature, category.
SELECT
    w.stay_id, $feature AS feature,
    clinops_icd_chapter(d.icd_code, d.icd_version) AS category
FROM clinops_fx_window AS w
JOIN mimiciv_hosp.diagnoses_icd AS d ON d.hadm_id = w.hadm_id AND d.seq_num = $seq_num
QUALIFY row_number() OVER (PARTITION BY w.stay_id ORDER BY d.icd_version DESC, d.icd_code) = 1

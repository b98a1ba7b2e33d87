-- At-admission proxies of the diagnosis (issue 15 item 2): what is known when the patient
-- arrives in the ICU, unlike the billing principal diagnosis (dx_chapter, coded after
-- discharge). Not model features of the manifest: the task table carries them, integer-coded
-- (clinops/tasks/mortality/proxies.py), for the sensitivity model without dx_chapter.
-- Needs clinops_fx_proxy_cohort(stay_id, hadm_id). Output: stay_id, first_careunit,
-- admission_type (NULL when the stay or the admission is not found).
SELECT
    c.stay_id, i.first_careunit, a.admission_type
FROM clinops_fx_proxy_cohort AS c
LEFT JOIN mimiciv_icu.icustays AS i ON i.stay_id = c.stay_id
LEFT JOIN mimiciv_hosp.admissions AS a ON a.hadm_id = c.hadm_id

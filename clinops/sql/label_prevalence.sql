-- Label prevalence for several horizons on an analysis cohort (the report's explanation of
-- the label's ambiguity). Needs macros.sql and a table clinops_prevalence_cohort(intime,
-- death_time, hospital_expire_flag, split) and clinops_prevalence_horizons(horizon_hours
-- DOUBLE, NULL = any in-hospital death). Parameter: $window_hours DOUBLE.
SELECT
    h.horizon_hours,
    CASE WHEN grouping(c.split) = 1 THEN 'all' ELSE COALESCE(c.split, 'none') END AS split,
    count(*) AS n,
    sum(clinops_mortality_label(c.intime, c.death_time, c.hospital_expire_flag,
                                $window_hours, h.horizon_hours)) AS n_positive
FROM clinops_prevalence_cohort AS c
CROSS JOIN clinops_prevalence_horizons AS h
GROUP BY GROUPING SETS ((h.horizon_hours, c.split), (h.horizon_hours))

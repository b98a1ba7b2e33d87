"""The paper's figures that the synthetic generator is calibrated to (issue #2, section 2).

These are inputs of the generator (what it aims at) and the reference values of its calibration
tests; they are never written into a report as results. Source: the paper, section 4
("Prediction task", "Feature engineering", "Drift simulation", "Secondary validation").
"""
from __future__ import annotations

from types import MappingProxyType

#: ICU cohort after inclusion/exclusion (clinops/docs/architecture.md steps 1-8), at scale 1.
COHORT_SIZE = 23_841
#: train (2008-2016) / test (2017-2019) split of that cohort.
TRAIN_SIZE = 16_751
TEST_SIZE = 7_090
#: mortality prevalence under the default label (death in (intime+24h, intime+72h]).
MORTALITY_PREVALENCE = 0.113
#: share of cohort stays (training years) with no measurement of a feature in [intime, intime+24h].
MISSING_SHARE = MappingProxyType({
    "lactate": 0.382, "albumin": 0.317, "bilirubin": 0.294, "gcs": 0.076, "heart_rate": 0.004,
    "resp_rate": 0.011, "map": 0.018, "spo2": 0.023, "mech_vent": 0.002, "vasopressor": 0.003,
})
#: share of test-year cohort stays with the mechanical ventilation flag set to 1.
VENTILATION_TEST = 0.384
#: 30-day readmission cohort (MED discharges, no ICU stay) and its unplanned-readmission rate.
READMISSION_COHORT = 31_847
READMISSION_RATE = 0.147

# Missing shares the paper does not report; the generator's own choices (documented).
MISSING_SHARE_UNREPORTED = MappingProxyType({
    "temperature": 0.015, "creatinine": 0.012, "platelets": 0.014, "inr": 0.12,
})

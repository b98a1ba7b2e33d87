"""Shares, drift trends, vocabularies and code maps of the synthetic population (one place for every number the generator is calibrated to)."""
from __future__ import annotations

from typing import Callable
import numpy as np

from .. import reference as ref


H = 3600
DAY = 86400
YEAR = 365.2425 * DAY

# Features whose presence in the first 24 h is decided per stay (bit i of `missing`).
MISSABLE = ("lactate", "albumin", "bilirubin", "gcs", "heart_rate", "resp_rate", "map", "spo2",
            "mech_vent", "vasopressor", "temperature", "creatinine", "platelets", "inr")
MISS_BIT = {f: 1 << i for i, f in enumerate(MISSABLE)}
# Sparse stays (the cohort's more-than-half-missing exclusion) lack these 10 of the 17 features.
SPARSE_MISSING = ("lactate", "albumin", "bilirubin", "gcs", "spo2", "temperature", "creatinine",
                  "platelets", "inr", "resp_rate")
# Implausible charted values (bit i of `artifacts`), always next to valid values of the item.
ARTIFACTS = ("hr_zero", "hr_999", "temp_wrong_unit", "map_zero", "spo2_zero")
ART_BIT = {a: 1 << i for i, a in enumerate(ARTIFACTS)}
ARTIFACT_SHARE = {"hr_zero": 0.004, "hr_999": 0.003, "temp_wrong_unit": 0.015, "map_zero": 0.003,
                  "spo2_zero": 0.003}

# First ICU stays that fail one cohort rule (shares of ICU patients).
SHARE_SHORT = 0.17      # ICU length of stay < 24 h (incl. deaths in the first day)
SHARE_SPARSE = 0.012    # more than 8 of the 17 features missing in the window
SHARE_NOLABEL = 0.003   # hospital_expire_flag unknown
CAT_COHORT, CAT_SHORT, CAT_SPARSE, CAT_NOLABEL, CAT_OTHER = 0, 1, 2, 3, 4

TRAIN_GROUP_SHARES = (0.31, 0.33, 0.36)   # of the training years, by group (more stays later)

# Practice drift across anchor_year_group (index 0 = 2008 - 2010): log-odds shifts.
DRIFT_VENT = np.array([0.15, 0.10, 0.05, 0.0])
DRIFT_VASO = np.array([-0.10, 0.0, 0.05, 0.10])
DRIFT_DEATH = np.array([0.10, 0.05, -0.03, -0.10])
DRIFT_LACTATE_MISSING = np.array([0.25, 0.10, -0.05, -0.30])   # lactate ordered more (SEP-1)
DRIFT_ALBUMIN_MISSING = np.array([-0.10, 0.0, 0.05, 0.10])     # albumin ordered less
DRIFT_READMIT = np.array([0.10, 0.03, -0.03, -0.08])           # readmission reduction programmes
SHARE_FAHRENHEIT = np.array([0.75, 0.70, 0.62, 0.55])           # temperature charted in degF
SHARE_HAMILTON = np.array([0.0, 0.05, 0.15, 0.25])              # Hamilton ventilators
# First vasopressor by year group: norepinephrine, phenylephrine, dopamine, epinephrine,
# dobutamine, milrinone (columns), drifting from dopamine / phenylephrine to norepinephrine.
VASO_DRUGS = (221906, 221749, 221662, 221289, 221653, 221986)
VASO_DRUG_P = np.array([[0.58, 0.22, 0.12, 0.04, 0.02, 0.02],
                        [0.63, 0.20, 0.09, 0.04, 0.02, 0.02],
                        [0.68, 0.18, 0.06, 0.04, 0.02, 0.02],
                        [0.73, 0.16, 0.03, 0.04, 0.02, 0.02]])
VASO_DRUG_P_CARDSURG = np.array([0.35, 0.15, 0.05, 0.25, 0.05, 0.15])
VASOPRESSIN = 222315

ICU_GROUP_NAMES = tuple(ref.ICU_GROUPS)
WARD_GROUP_NAMES = tuple(ref.WARD_GROUPS)
CARDIAC_SURGERY = ("cad", "aortic_valve")
# Age preference of diagnosis groups: weight * exp(a * (age - 65) / 15).
ICU_GROUP_AGE = {"overdose": -1.0, "dka": -0.9, "etoh_withdrawal": -0.6, "hip_fracture": 0.8,
                 "chf": 0.4, "sepsis": 0.2, "afib": 0.5, "alcoholic_cirrhosis": -0.3,
                 "sdh": 0.3, "stroke": 0.3}
WARD_GROUP_AGE = {"overdose": -1.0, "dka": -0.8, "etoh_withdrawal": -0.6, "depression_psych": -0.7,
                  "appendicitis": -0.8, "hip_fracture": 0.9, "chf": 0.6, "syncope": 0.3,
                  "uti": 0.4, "knee_oa": 0.2}

SERVICES = ("MED", "CMED", "OMED", "NMED", "SURG", "CSURG", "VSURG", "NSURG", "TSURG", "TRAUM",
            "ORTHO", "GU", "GYN", "PSYCH", "PSURG", "ENT")
SVC = {s: i for i, s in enumerate(SERVICES)}
ATYPE = {t: i for i, t in enumerate(ref.ADMISSION_TYPES)}
ALOC = {t: i for i, t in enumerate(ref.ADMISSION_LOCATIONS)}
DLOC = {t: i for i, t in enumerate(ref.DISCHARGE_LOCATIONS)}
ICU_UNIT_KEYS = tuple(ref.ICU_UNITS)
UNIT = {k: i for i, k in enumerate(ICU_UNIT_KEYS)}
O2_DEVICE = {d: i for i, d in enumerate(ref.O2_DEVICES)}
EXCLUDED_DLOC = np.array([DLOC[x] for x in ref.READMISSION_EXCLUDED_LOCATIONS])
POSTACUTE_DLOC = np.array([DLOC[x] for x in ("SKILLED NURSING FACILITY", "HOME HEALTH CARE",
                                              "REHAB", "CHRONIC/LONG TERM ACUTE CARE",
                                              "OTHER FACILITY", "HEALTHCARE FACILITY",
                                              "ASSISTED LIVING")])

MAX_ADMISSIONS = 10          # per patient
PROGRESS = Callable[[str, float], None]

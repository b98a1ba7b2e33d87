"""Patients, admissions and ICU stays of the synthetic MIMIC-IV, with the latent risk model.

Everything here is per patient, per admission or per ICU stay (hundreds of thousands of rows at
most); the per-measurement tables are expanded from these plans in :mod:`.events`.

The construction, in order (clinops/docs/synthetic.md explains each choice):

1. **ICU patients.** ``round(23,841 * scale)`` of them are *constructed* to pass the cohort rules
   (first ICU stay >= 24 h, at most 8 of the 17 features missing, outcome known); the others
   fail exactly one rule (a first stay < 24 h, sparse documentation, or an unknown outcome), so
   the cohort size is exact. Year groups are assigned to cohort patients by exact quota
   (16,751 / 7,090 at scale 1).
2. **ICU courses.** Each ICU hospitalisation draws a diagnosis group, seven latent organ
   states (circulatory, respiratory, neurological, renal, hepatic, coagulation, inflammation)
   from a shared severity, and from them: invasive ventilation, vasopressors, an arterial
   line, which features go unmeasured in the first 24 h, and the outcome. Intercepts are
   solved by bisection on the cohort patients so that the expected shares equal the paper's
   (mortality 11.3 %, ventilation 38.4 % in 2017-2019, each missing share in 2008-2016).
3. **Admission chains.** Every patient has a sequence of hospital admissions; after each
   discharge alive an unplanned readmission within 30 days is drawn from a readmission risk
   model whose intercept is solved so that MED discharges (the readmission cohort) return at
   14.7 %. Ward-only patients are added until the readmission cohort reaches 31,847 * scale.

Times are int64 seconds since 1970-01-01 in the *shifted* calendar (years 2100-2200).
"""
from __future__ import annotations

import zlib
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from . import reference as ref
from . import targets as T
from .schema import NULL_INT

H = 3600
DAY = 86400
YEAR = 365.2425 * DAY

# Features whose presence in the first 24 h is decided per stay (bit i of `missing`).
MISSABLE = ("lactate", "albumin", "bilirubin", "gcs", "heart_rate", "resp_rate", "map", "spo2",
            "mech_vent", "vasopressor", "temperature", "creatinine", "platelets", "inr")
MISS_BIT = {f: 1 << i for i, f in enumerate(MISSABLE)}
# Sparse stays (cohort step 8 exclusions) lack these 10 of the 17 features.
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


# ---------------------------------------------------------------------------------------------
# small helpers
# ---------------------------------------------------------------------------------------------
def rng_for(seed: int, *keys: object) -> np.random.Generator:
    """Independent random stream for (seed, keys): the same keys give the same stream."""
    words = [seed & 0xFFFFFFFF, (seed >> 32) & 0xFFFFFFFF]
    words += [zlib.crc32(str(k).encode()) for k in keys]
    return np.random.default_rng(np.random.SeedSequence(words))


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(x, -40, 40)))


def solve_intercept(lp: np.ndarray, target: float, *, allowed: np.ndarray | None = None,
                    denominator: int | None = None) -> float:
    """Intercept ``b`` with ``sum(sigmoid(b + lp[allowed])) / denominator == target``.

    ``denominator`` defaults to the number of rows of ``lp``: rows outside ``allowed`` count as
    probability 0 (e.g. a ventilation flag cannot be missing for a ventilated stay).
    """
    lp = np.asarray(lp, dtype=float)
    n = len(lp) if denominator is None else denominator
    x = lp if allowed is None else lp[allowed]
    if n == 0 or len(x) == 0:
        return 0.0
    want = target * n
    if want >= len(x):
        raise ValueError(f"target share {target} is not reachable with {len(x)} of {n} rows")
    lo, hi = -40.0, 40.0
    for _ in range(80):
        mid = (lo + hi) / 2
        if sigmoid(mid + x).sum() < want:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2


def exact_assign(rng: np.random.Generator, n: int, shares: np.ndarray) -> np.ndarray:
    """Category per row with counts as close as possible to ``n * shares``, in random order."""
    shares = np.asarray(shares, dtype=float) / np.sum(shares)
    raw = n * shares
    counts = np.floor(raw).astype(int)
    counts[np.argsort(-(raw - counts))[: n - counts.sum()]] += 1
    return rng.permutation(np.repeat(np.arange(len(shares)), counts))


def sample_rows(rng: np.random.Generator, probs: np.ndarray) -> np.ndarray:
    """One category per row of ``probs`` (rows need not be normalised)."""
    probs = np.atleast_2d(probs)
    c = np.cumsum(probs, axis=1)
    u = rng.random(len(c))[:, None] * c[:, -1:]
    return np.minimum((u > c).sum(axis=1), probs.shape[1] - 1)


def choice(rng: np.random.Generator, n: int, options: dict | tuple, probs=None) -> np.ndarray:
    """``n`` draws of indices into ``options`` with probabilities ``probs`` (normalised)."""
    p = np.asarray(probs if probs is not None else np.ones(len(options)), dtype=float)
    return rng.choice(len(p), size=n, p=p / p.sum())


def lognormal(rng: np.random.Generator, median: float | np.ndarray, sigma: float, n: int
              ) -> np.ndarray:
    return np.asarray(median) * np.exp(sigma * rng.standard_normal(n))


def to_minute(t: np.ndarray) -> np.ndarray:
    return (np.asarray(t, dtype=np.int64) // 60) * 60


def unique_ids(rng: np.random.Generator, n: int, base: int) -> np.ndarray:
    """``n`` distinct 8-digit ids ``base + [0, 10**7)`` (e.g. base 10**7 -> 1xxxxxxx)."""
    if n > 10**7:
        raise ValueError(f"cannot draw {n} distinct ids below {base + 10**7}")
    return base + rng.choice(10**7, size=n, replace=False).astype(np.int64)


def age_weighted_groups(rng: np.random.Generator, age: np.ndarray, names: tuple[str, ...],
                        groups: dict, age_pref: dict[str, float]) -> np.ndarray:
    w = np.array([groups[g].weight for g in names])
    a = np.array([age_pref.get(g, 0.0) for g in names])
    probs = w[None, :] * np.exp(a[None, :] * ((age[:, None] - 65.0) / 15.0))
    return sample_rows(rng, probs)


# ---------------------------------------------------------------------------------------------
# patients
# ---------------------------------------------------------------------------------------------
def _comorbidities(rng: np.random.Generator, age: np.ndarray, frailty: np.ndarray,
                   icu: bool) -> dict[str, np.ndarray]:
    """Chronic conditions (constant over the patient's admissions; documented simplification)."""
    # prevalence at age 65, frailty 0; log-odds per decade of age
    base = {"c_chf": (0.16, 0.45), "c_mi_old": (0.07, 0.3), "c_pvd": (0.06, 0.35),
            "c_cvd": (0.04, 0.4), "c_dementia": (0.025, 0.9), "c_copd": (0.14, 0.2),
            "c_rheum": (0.03, 0.1), "c_liver_mild": (0.06, -0.2), "c_liver_severe": (0.02, -0.2),
            "c_diabetes": (0.16, 0.1), "c_diabetes_cc": (0.07, 0.15), "c_renal": (0.13, 0.45),
            "c_dialysis": (0.025, 0.0), "c_malignancy": (0.08, 0.3), "c_metastatic": (0.035, 0.1),
            "c_hiv": (0.008, -0.5), "htn": (0.42, 0.45), "hld": (0.33, 0.3),
            "afib_chronic": (0.16, 0.7), "obesity": (0.10, -0.2), "tobacco": (0.14, -0.4),
            "depression": (0.14, -0.1), "anemia": (0.17, 0.25), "hypothyroid": (0.09, 0.3),
            "gerd": (0.14, 0.1), "anticoag": (0.10, 0.5)}
    out = {}
    scale_icu = 1.15 if icu else 0.85
    for name in ref.COMORBIDITIES:
        p0, slope = base[name]
        p0 = min(p0 * scale_icu, 0.9)
        lp = np.log(p0 / (1 - p0)) + slope * (age - 65.0) / 10.0 + 0.6 * frailty
        out[name] = rng.random(len(age)) < sigmoid(lp)
    out["c_diabetes"] &= ~out["c_diabetes_cc"]       # coded as one or the other
    out["c_renal"] |= out["c_dialysis"]
    return out


def charlson_points(c: dict[str, np.ndarray]) -> np.ndarray:
    """Charlson comorbidity points (without the age score) from the comorbidity flags."""
    pts = np.zeros(len(next(iter(c.values()))))
    for name, w in ref.CHARLSON_WEIGHT.items():
        pts += w * c[name]
    # mimic-code hierarchy rules: the larger member of each pair only
    pts -= np.minimum(1 * c["c_liver_mild"], 3 * c["c_liver_severe"])
    pts -= np.minimum(2 * c["c_malignancy"], 6 * c["c_metastatic"])
    return pts


# ---------------------------------------------------------------------------------------------
# ICU courses: one ICU hospitalisation each, times relative to admittime
# ---------------------------------------------------------------------------------------------
@dataclass
class Intercepts:
    """Intercepts solved on the constructed cohort, reused for every other ICU course."""

    vent: float = 0.0
    vaso: float = 0.0
    label: float = 0.0
    late: float = 0.0
    early: float = 0.0
    missing: dict[str, float] = field(default_factory=dict)


def _icu_courses(rng: np.random.Generator, age: np.ndarray, male: np.ndarray,
                 frailty: np.ndarray, comorb: dict[str, np.ndarray], ygroup: np.ndarray,
                 category: np.ndarray, intercepts: Intercepts | None
                 ) -> tuple[dict[str, np.ndarray], Intercepts]:
    """Plan ``len(age)`` ICU hospitalisations; solve the intercepts if ``intercepts`` is None.

    Returns arrays keyed by field; all ``*_h`` fields are hours after ICU intime unless named
    ``*_adm_h`` (hours after admittime).
    """
    n = len(age)
    solve = intercepts is None
    icpt = Intercepts() if solve else intercepts
    cohort = category == CAT_COHORT
    test = ygroup == 3
    train = ~test
    c = {k: v.astype(float) for k, v in comorb.items()}

    grp = age_weighted_groups(rng, age, ICU_GROUP_NAMES, ref.ICU_GROUPS, ICU_GROUP_AGE)
    g = [ref.ICU_GROUPS[ICU_GROUP_NAMES[i]] for i in range(len(ICU_GROUP_NAMES))]
    shift = {k: np.array([getattr(x, k) for x in g])[grp]
             for k in ("circ", "resp", "neuro", "renal", "liver", "coag", "infl", "death")}
    surgical = np.array([x.surgical for x in g])[grp]
    cardsurg = np.isin(grp, [ICU_GROUP_NAMES.index(x) for x in CARDIAC_SURGERY])

    # Latent physiology: a shared severity plus organ-specific noise (standard-normal scale).
    e = rng.standard_normal((8, n))
    z = e[0] + 0.25 * frailty
    short_alive_bias = np.where(category == CAT_SHORT, -0.3, 0.0)  # quick ICU discharges
    z = z + short_alive_bias
    circ = 0.65 * z + 0.75 * e[1] + shift["circ"] + 0.25 * c["c_chf"]
    resp = 0.60 * z + 0.80 * e[2] + shift["resp"] + 0.40 * c["c_copd"]
    neuro = 0.50 * z + 0.85 * e[3] + shift["neuro"] + 0.30 * c["c_dementia"]
    renal = 0.45 * z + 0.85 * e[4] + shift["renal"] + 1.0 * c["c_renal"] + 1.5 * c["c_dialysis"]
    liver = 0.30 * z + 0.90 * e[5] + shift["liver"] + 1.2 * c["c_liver_mild"] + 0.8 * c["c_liver_severe"]
    coag = 0.40 * z + 0.90 * e[6] + shift["coag"] + 0.5 * c["c_liver_mild"] + 0.3 * c["c_malignancy"]
    infl = 0.30 * z + 0.90 * e[7] + shift["infl"]
    unobserved = rng.standard_normal(n)  # goals of care, frailty not in the record, ...

    # Invasive ventilation in the first 24 h: respiratory and neurological failure, surgery.
    lp_vent = (1.3 * resp + 0.8 * np.maximum(neuro, 0) + 0.4 * circ + 2.2 * cardsurg
               + 0.8 * (surgical & ~cardsurg) + DRIFT_VENT[ygroup])
    if solve:
        icpt.vent = solve_intercept(lp_vent[cohort & test], T.VENTILATION_TEST)
    vent = rng.random(n) < sigmoid(icpt.vent + lp_vent)
    # Vasopressors in the first 24 h: circulatory failure.
    lp_vaso = 1.6 * circ + 0.3 * infl + 1.0 * cardsurg + DRIFT_VASO[ygroup]
    if solve:
        icpt.vaso = solve_intercept(lp_vaso[cohort], 0.27)
    vaso = rng.random(n) < sigmoid(icpt.vaso + lp_vaso)
    artline = rng.random(n) < sigmoid(-1.2 + 2.2 * vent + 1.8 * vaso + 2.5 * cardsurg + 0.4 * z)

    # Death. The organ states drive it; the unobserved term keeps the task from being separable.
    lp_death = (0.55 * circ + 0.45 * resp + 0.55 * neuro + 0.30 * renal + 0.30 * liver
                + 0.20 * coag + 0.10 * infl + 0.035 * (age - 65) + 0.30 * frailty
                + 0.9 * c["c_metastatic"] + 0.4 * c["c_malignancy"] + shift["death"]
                + DRIFT_DEATH[ygroup] + 0.8 * unobserved)
    if solve:
        icpt.label = solve_intercept(lp_death[cohort], T.MORTALITY_PREVALENCE)
    label = rng.random(n) < sigmoid(icpt.label + lp_death)
    if solve:  # later in-hospital deaths: about 7 % of the cohort (a modelling choice)
        icpt.late = solve_intercept(0.7 * lp_death[cohort & ~label], 0.07 / (1 - T.MORTALITY_PREVALENCE))
        icpt.early = solve_intercept(lp_death[category == CAT_SHORT], 0.15) if (category == CAT_SHORT).any() else icpt.label
    late = ~label & (rng.random(n) < sigmoid(icpt.late + 0.7 * lp_death))
    # short ICU stays (< 24 h): the constructed exclusions, and 18 % of later ICU admissions
    short = (category == CAT_SHORT) | ((category == CAT_OTHER) & (rng.random(n) < 0.18))
    early = (category == CAT_SHORT) & (rng.random(n) < sigmoid(icpt.early + lp_death))
    nolabel = category == CAT_NOLABEL
    label &= ~short & ~nolabel
    late &= ~early & ~nolabel

    # ICU length of stay (hours) and where death happens.
    los = np.where(cardsurg, 24 + lognormal(rng, 16.0, 0.8, n), 24 + lognormal(rng, 32.0, 1.4, n))
    los = np.minimum(los, 60 * 24.0)
    los = np.where(short, rng.uniform(3.0, 23.8, n), los)
    death_h = np.full(n, np.nan)
    death_h = np.where(label, 24.0 + rng.uniform(0.05, 48.0, n), death_h)
    los = np.where(label, death_h, los)
    death_h = np.where(early, los, death_h)
    late_t = 72.5 + lognormal(rng, 96.0, 0.8, n)  # never on the 72 h edge
    where = rng.random(n)
    late_icu = late & (where < 0.55) & ~short
    los = np.where(late_icu, late_t, los)
    late_ward = late & ~late_icu
    los = np.where(late_ward, np.minimum(los, np.maximum(late_t - rng.uniform(8, 48, n), 3.0)), los)
    death_h = np.where(late, late_t, death_h)
    died = np.isfinite(death_h)
    died_in_icu1 = died & (np.abs(death_h - los) < 1e-9)

    # A second ICU stay in the same hospitalisation (bounce-back), never inside a label window.
    bounce = ~died_in_icu1 & (rng.random(n) < 0.06)
    gap2 = rng.uniform(12.0, 96.0, n)
    los2 = np.maximum(lognormal(rng, 40.0, 0.8, n), 4.0)
    in2 = los + gap2
    out2 = in2 + los2
    # a late ward death may fall in the second stay: move the stay so the death ends it
    bounce_death = bounce & late_ward & (in2 + 4.0 < death_h)
    out2 = np.where(bounce_death, death_h, out2)
    bounce &= ~(late_ward & ~bounce_death)
    in2 = np.where(bounce, in2, np.nan)
    out2 = np.where(bounce, out2, np.nan)

    # Post-ICU ward time until hospital discharge (hours after the last ICU outtime).
    last_out = np.where(bounce, out2, los)
    ward_after = np.maximum(lognormal(rng, 70.0, 0.75, n), 5.0)
    disch_h = np.where(died, death_h, last_out + ward_after)
    disch_h = np.maximum(disch_h, last_out)

    # Arrival: time from admittime to ICU intime.
    ward_first = ~surgical & (rng.random(n) < 0.25)
    pre = np.where(surgical, rng.uniform(2.0, 7.0, n), rng.uniform(0.5, 6.0, n))
    pre = np.where(ward_first, np.clip(lognormal(rng, 40.0, 0.9, n), 6.0, 480.0), pre)

    # Ventilation episode (hours after intime).
    vstart = np.where(rng.random(n) < np.where(cardsurg, 0.95, 0.65), 0.0, rng.uniform(0.5, 20.0, n))
    vdur = np.where(cardsurg, np.maximum(lognormal(rng, 7.0, 0.6, n), 2.0),
                    np.maximum(lognormal(rng, 45.0, 1.0, n), 3.0))
    vend = vstart + vdur
    till_death = died_in_icu1 & (rng.random(n) < 0.7)
    vend = np.where(till_death, los, np.minimum(vend, los - 0.5))
    vent_ok = vent & (vend > vstart + 1.0) & (vstart <= 20.0)
    vent = vent_ok
    later_v = ~vent & (los > 34) & (rng.random(n) < 0.05)
    lvstart = rng.uniform(25.0, np.maximum(los - 6.0, 25.5))
    lvend = np.minimum(lvstart + np.maximum(lognormal(rng, 30.0, 0.8, n), 3.0), los - 0.5)
    later_v &= lvend > lvstart + 1.0
    vent_start = np.where(vent, vstart, np.where(later_v, lvstart, np.nan))
    vent_end = np.where(vent, vend, np.where(later_v, lvend, np.nan))

    # Vasopressor episode (hours after intime).
    pstart = np.where(rng.random(n) < 0.5, rng.uniform(0.1, 2.0, n), rng.uniform(2.0, 20.0, n))
    pdur = np.where(cardsurg, np.maximum(lognormal(rng, 10.0, 0.7, n), 1.0),
                    np.maximum(lognormal(rng, 28.0, 0.9, n), 1.0))
    pend = np.where(died_in_icu1 & (rng.random(n) < 0.8), los, np.minimum(pstart + pdur, los - 0.2))
    vaso &= pend > pstart + 0.5
    later_p = ~vaso & (los > 34) & (rng.random(n) < 0.04)
    lpstart = rng.uniform(25.0, np.maximum(los - 4.0, 25.5))
    lpend = np.minimum(lpstart + np.maximum(lognormal(rng, 20.0, 0.8, n), 1.0), los - 0.2)
    later_p &= lpend > lpstart + 0.5
    vaso_start = np.where(vaso, pstart, np.where(later_p, lpstart, np.nan))
    vaso_end = np.where(vaso, pend, np.where(later_p, lpend, np.nan))
    drug_p = np.where(cardsurg[:, None], VASO_DRUG_P_CARDSURG[None, :], VASO_DRUG_P[ygroup])
    drug1 = np.array(VASO_DRUGS)[sample_rows(rng, drug_p)]
    drug2 = np.where((drug1 == 221906) & (rng.random(n) < sigmoid(-1.6 + 0.9 * circ)), VASOPRESSIN, 0)

    # Which features are not measured in [intime, intime + 24 h].
    lft_propensity = rng.standard_normal(n)   # liver tests ordered together
    x = {
        "lactate": -0.9 * circ - 0.3 * infl - 1.0 * vent - 1.2 * cardsurg + DRIFT_LACTATE_MISSING[ygroup],
        "albumin": -0.35 * z - 0.5 * liver + 1.3 * lft_propensity + DRIFT_ALBUMIN_MISSING[ygroup],
        "bilirubin": -0.3 * z - 0.8 * liver + 1.3 * lft_propensity,
        "gcs": 1.8 * vent,
        "heart_rate": np.zeros(n),
        "resp_rate": 0.5 * vent,
        "map": -1.5 * artline,
        "spo2": 0.4 * circ,
        "mech_vent": np.zeros(n),
        "vasopressor": np.zeros(n),
        "temperature": np.zeros(n),
        "creatinine": -0.3 * z,
        "platelets": -0.3 * z,
        "inr": -0.4 * coag - 0.6 * liver - 1.2 * c["anticoag"] - 0.2 * z,
    }
    allowed = {f: np.ones(n, bool) for f in MISSABLE}
    allowed["mech_vent"] = ~vent
    allowed["vasopressor"] = ~vaso
    shares = dict(T.MISSING_SHARE) | dict(T.MISSING_SHARE_UNREPORTED)
    ref_rows = cohort & train
    missing = np.zeros(n, dtype=np.int64)
    for f in MISSABLE:
        if solve:
            icpt.missing[f] = solve_intercept(x[f][ref_rows], shares[f],
                                              allowed=allowed[f][ref_rows],
                                              denominator=int(ref_rows.sum()))
        m = allowed[f] & (rng.random(n) < sigmoid(icpt.missing[f] + x[f]))
        missing |= np.where(m, MISS_BIT[f], 0)
    sparse_bits = sum(MISS_BIT[f] for f in SPARSE_MISSING)
    missing = np.where(category == CAT_SPARSE, missing | sparse_bits, missing)
    # cohort stays keep at most 8 of the 17 features missing (14 can be, 3 never are)
    n_missing = np.bitwise_count(missing.astype(np.uint64))
    too_many = cohort & (n_missing > 8)
    missing = np.where(too_many, missing & (MISS_BIT["lactate"] | MISS_BIT["albumin"]
                                            | MISS_BIT["bilirubin"] | MISS_BIT["inr"]), missing)

    artifacts = np.zeros(n, dtype=np.int64)
    needs = {"hr_zero": "heart_rate", "hr_999": "heart_rate", "temp_wrong_unit": "temperature",
             "map_zero": "map", "spo2_zero": "spo2"}
    for a, share in ARTIFACT_SHARE.items():
        ok = (missing & MISS_BIT[needs[a]]) == 0
        artifacts |= np.where(ok & (rng.random(n) < share), ART_BIT[a], 0)

    # Devices of non-ventilated patients, by respiratory state.
    dev_p = np.stack([
        np.where(resp > 1.5, 0.30, np.where(resp > 0.5, 0.60, 0.50)),   # Nasal cannula
        np.where(resp > 1.5, 0.00, np.where(resp > 0.5, 0.05, 0.40)),   # None
        np.where(resp > 1.5, 0.05, 0.10),                               # Face tent
        np.where(resp > 1.5, 0.25, 0.10),                               # High flow nasal cannula
        np.where(resp > 1.5, 0.10, 0.02),                               # Non-rebreather
        np.where(resp > 1.5, 0.22, 0.03),                               # Bipap mask
        np.full(n, 0.02), np.full(n, 0.02), np.where(resp > 1.5, 0.04, 0.01)], axis=1)
    device = sample_rows(rng, dev_p)

    # Admission: type, location, services, units.
    emergent_surgery = surgical & np.array([x.procedure in ("craniotomy", "hip_orif", "hemicolectomy")
                                            for x in g])[grp]
    planned_surgery = surgical & ~emergent_surgery
    med_types = np.array([ATYPE[t] for t in ("EW EMER.", "URGENT", "DIRECT EMER.",
                                              "OBSERVATION ADMIT", "EU OBSERVATION",
                                              "DIRECT OBSERVATION", "ELECTIVE")])
    atype = med_types[choice(rng, n, med_types, [0.64, 0.12, 0.07, 0.07, 0.06, 0.03, 0.01])]
    st = np.array([ATYPE[t] for t in ("SURGICAL SAME DAY ADMISSION", "ELECTIVE", "URGENT", "EW EMER.")])
    atype = np.where(planned_surgery, st[choice(rng, n, st, [0.55, 0.25, 0.15, 0.05])], atype)
    et = np.array([ATYPE[t] for t in ("EW EMER.", "URGENT", "DIRECT EMER.")])
    atype = np.where(emergent_surgery, et[choice(rng, n, et, [0.7, 0.2, 0.1])], atype)

    svc_opts = [x.services for x in g]
    svc = np.empty(n, dtype=np.int64)
    u = rng.random(n)
    for gi, opts in enumerate(svc_opts):
        rows = grp == gi
        if rows.any():
            cum = np.cumsum([p for _, p in opts])
            k = np.minimum(np.searchsorted(cum, u[rows] * cum[-1]), len(opts) - 1)
            svc[rows] = np.array([SVC[s] for s, _ in opts])[k]
    unit1 = np.array([UNIT[x.unit] for x in g])[grp]
    # MICU overflow into the mixed MICU/SICU unit
    unit1 = np.where((unit1 == UNIT["MICU"]) & (rng.random(n) < 0.2), UNIT["MSICU"], unit1)
    unit_change = rng.random(n) < 0.05
    unit_last = np.where(unit_change, np.where(unit1 == UNIT["MSICU"], UNIT["MICU"], UNIT["MSICU"]), unit1)
    unit_change_h = np.where(unit_change, los * rng.uniform(0.3, 0.7, n), np.nan)
    unit2 = np.where(rng.random(n) < 0.7, unit_last, unit1)

    # Discharge location of survivors.
    dl = np.array([DLOC[x] for x in ("HOME", "HOME HEALTH CARE", "SKILLED NURSING FACILITY",
                                     "REHAB", "CHRONIC/LONG TERM ACUTE CARE", "HOSPICE",
                                     "ACUTE HOSPITAL", "AGAINST ADVICE", "OTHER FACILITY",
                                     "ASSISTED LIVING")])
    old = (age > 75) | (frailty > 1.0)
    p_old = [0.14, 0.30, 0.34, 0.10, 0.04, 0.03, 0.01, 0.005, 0.02, 0.015]
    p_young = [0.40, 0.27, 0.14, 0.07, 0.04, 0.02, 0.02, 0.02, 0.03, 0.01]
    dloc = np.where(old, dl[choice(rng, n, dl, p_old)], dl[choice(rng, n, dl, p_young)])
    dloc = np.where(died, DLOC["DIED"], dloc)

    # Body size (constant per course), temperature unit habit, Hamilton ventilator.
    weight = np.where(male, lognormal(rng, 84.0, 0.22, n), lognormal(rng, 70.0, 0.24, n))
    height = np.where(male, rng.normal(176, 7, n), rng.normal(162, 7, n))
    temp_f = rng.random(n) < SHARE_FAHRENHEIT[ygroup]
    hamilton = rng.random(n) < SHARE_HAMILTON[ygroup]
    vent_documented = rng.random(n) < 0.85      # 225792 in procedureevents
    deathtime_null = died & (rng.random(n) < 0.01)

    course = {
        "grp": grp, "category": category, "cardsurg": cardsurg, "surgical": surgical,
        "z": z, "circ": circ, "resp": resp, "neuro": neuro, "renal": renal, "liver": liver,
        "coag": coag, "infl": infl, "lp_death": lp_death,
        "label": label, "late_death": late, "early_death": early, "died": died,
        "pre_adm_h": pre, "ward_first": ward_first,
        "los_h": los, "in2_h": in2, "out2_h": out2, "death_h": death_h, "disch_h": disch_h,
        "vent_window": vent, "vent_start_h": vent_start, "vent_end_h": vent_end,
        "vaso_window": vaso, "vaso_start_h": vaso_start, "vaso_end_h": vaso_end,
        "vaso_drug1": drug1, "vaso_drug2": drug2, "artline": artline, "device": device,
        "missing": missing, "artifacts": artifacts, "atype": atype, "service": svc,
        "unit1": unit1, "unit_last": unit_last, "unit_change_h": unit_change_h, "unit2": unit2,
        "dloc": dloc, "weight": np.round(weight, 1), "height": np.round(height, 0),
        "temp_f": temp_f, "hamilton": hamilton, "vent_documented": vent_documented,
        "deathtime_null": deathtime_null, "hef_null": nolabel,
    }
    return course, icpt


# ---------------------------------------------------------------------------------------------
# ward admissions (no ICU stay)
# ---------------------------------------------------------------------------------------------
def _ward_admissions(rng: np.random.Generator, age: np.ndarray, frailty: np.ndarray,
                     comorb_idx: np.ndarray, comorb: dict[str, np.ndarray],
                     readmit: np.ndarray, planned: np.ndarray, survive: np.ndarray
                     ) -> dict[str, np.ndarray]:
    """Plan ward admissions.

    ``readmit`` rows are unplanned returns, ``planned`` rows elective ones; ``survive`` rows
    cannot end in death (a patient whose ICU admission is still to come).
    """
    n = len(age)
    grp = age_weighted_groups(rng, age, WARD_GROUP_NAMES, ref.WARD_GROUPS, WARD_GROUP_AGE)
    planned_groups = np.array([WARD_GROUP_NAMES.index(x) for x in
                               ("knee_oa", "cholecystitis", "cad", "lung_cancer", "bowel_obstruction")])
    grp = np.where(planned, planned_groups[choice(rng, n, planned_groups, [0.4, 0.2, 0.2, 0.1, 0.1])], grp)
    g = [ref.WARD_GROUPS[x] for x in WARD_GROUP_NAMES]
    elective_p = np.array([x.elective for x in g])[grp]
    is_planned = planned | (~readmit & (rng.random(n) < elective_p))

    svc = np.empty(n, dtype=np.int64)
    u = rng.random(n)
    for gi, x in enumerate(g):
        rows = grp == gi
        if rows.any():
            cum = np.cumsum([p for _, p in x.services])
            k = np.minimum(np.searchsorted(cum, u[rows] * cum[-1]), len(x.services) - 1)
            svc[rows] = np.array([SVC[s] for s, _ in x.services])[k]

    unpl = np.array([ATYPE[t] for t in ("EW EMER.", "EU OBSERVATION", "OBSERVATION ADMIT",
                                         "URGENT", "DIRECT EMER.", "DIRECT OBSERVATION",
                                         "AMBULATORY OBSERVATION")])
    atype = unpl[choice(rng, n, unpl, [0.45, 0.15, 0.14, 0.12, 0.05, 0.06, 0.03])]
    pl = np.array([ATYPE["ELECTIVE"], ATYPE["SURGICAL SAME DAY ADMISSION"]])
    atype = np.where(is_planned, pl[choice(rng, n, pl, [0.4, 0.6])], atype)
    observation = np.isin(atype, [ATYPE[t] for t in ("EU OBSERVATION", "OBSERVATION ADMIT",
                                                     "DIRECT OBSERVATION", "AMBULATORY OBSERVATION")])
    los_h = np.where(observation, np.minimum(lognormal(rng, 24.0, 0.5, n), 72.0),
                     np.where(is_planned, lognormal(rng, 50.0, 0.5, n), lognormal(rng, 80.0, 0.75, n)))
    los_h = np.clip(los_h * np.exp(0.12 * frailty), 3.0, 40 * 24.0)

    mortal = np.isin(grp, [WARD_GROUP_NAMES.index(x) for x in ("sepsis", "lung_cancer", "alcoholic_cirrhosis")])
    died = ~survive & (rng.random(n) < sigmoid(-5.5 + 0.6 * frailty + 0.045 * (age - 65) + 1.3 * mortal))

    # a few admissions start under another service and end under the discharging one
    changed = rng.random(n) < 0.06
    first_opts = np.array([SVC[s] for s in ("MED", "SURG", "CMED", "OMED", "ORTHO")])
    first_svc = first_opts[choice(rng, n, first_opts)]
    changed &= first_svc != svc
    first_svc = np.where(changed, first_svc, svc)
    change_h = np.where(changed, los_h * rng.uniform(0.2, 0.8, n), np.nan)

    dl_names = ("HOME", "HOME HEALTH CARE", "SKILLED NURSING FACILITY", "REHAB",
                "CHRONIC/LONG TERM ACUTE CARE", "ACUTE HOSPITAL", "HOSPICE", "PSYCH FACILITY",
                "OTHER FACILITY", "ASSISTED LIVING", "HEALTHCARE FACILITY", "AGAINST ADVICE")
    dl = np.array([DLOC[x] for x in dl_names])
    base = np.array([0.50, 0.23, 0.13, 0.03, 0.006, 0.01, 0.012, 0.004, 0.008, 0.015, 0.002, 0.013])
    w = np.tile(base, (n, 1))
    old = (age > 75) | (frailty > 1.0)
    w[old, 0] *= 0.6
    w[old, 1] *= 1.3
    w[old, 2] *= 2.2
    w[grp == WARD_GROUP_NAMES.index("depression_psych"), 7] = 0.4
    w[grp == WARD_GROUP_NAMES.index("etoh_withdrawal"), 11] *= 5
    cancer = (grp == WARD_GROUP_NAMES.index("lung_cancer")) | comorb["c_metastatic"][comorb_idx]
    w[cancer, 6] *= 5
    dloc = dl[sample_rows(rng, w)]
    dloc = np.where(died, DLOC["DIED"], dloc)
    # PhysioNet leaves discharge_location empty on many short stays; only on non-MED ones here,
    # so the readmission cohort does not depend on how NULL is treated.
    null_loc = observation & (svc != SVC["MED"]) & ~died & (rng.random(n) < 0.3)
    dloc = np.where(null_loc, -1, dloc)
    invalid = rng.random(n) < 0.0005     # dischtime <= admittime (organ-donor-like accounts)
    return {"grp": grp, "service": svc, "first_service": first_svc, "service_change_h": change_h,
            "atype": atype, "planned": is_planned, "los_h": los_h, "died": died, "dloc": dloc,
            "invalid": invalid, "instability": rng.standard_normal(n)}


# ---------------------------------------------------------------------------------------------
# the population
# ---------------------------------------------------------------------------------------------
@dataclass
class Population:
    """Per-patient, per-admission and per-ICU-stay arrays (see :func:`build_population`)."""

    patients: dict[str, np.ndarray]
    admissions: dict[str, np.ndarray]
    stays: dict[str, np.ndarray]
    comorbidities: dict[str, np.ndarray]
    intercepts: Intercepts


def _real_first_admission(rng: np.random.Generator, ygroup: np.ndarray) -> np.ndarray:
    """Real (unshifted) time of each patient's first admission, inside its year group."""
    start = np.array([np.datetime64(f"{ref.FIRST_GROUP_YEAR + 3 * k}-01-01", "s").astype(np.int64)
                      for k in range(4)])
    span = 3 * YEAR - DAY
    return start[ygroup] + (rng.random(len(ygroup)) * span).astype(np.int64)


def _year_of(t: np.ndarray) -> np.ndarray:
    return np.asarray(t, dtype="datetime64[s]").astype("datetime64[Y]").astype(np.int64) + 1970


def build_population(scale: float, seed: int, progress: PROGRESS | None = None) -> Population:
    """Plan every patient, admission and ICU stay of a synthetic MIMIC-IV at ``scale``."""
    report = progress or (lambda msg, frac: None)
    rng = rng_for(seed, "icu-patients")
    n_cohort = int(round(T.COHORT_SIZE * scale))
    if n_cohort < 20:
        raise ValueError(f"scale={scale} gives a cohort of {n_cohort} stays; use scale >= 0.001")
    keep = 1.0 - SHARE_SHORT - SHARE_SPARSE - SHARE_NOLABEL
    n_icu = int(round(n_cohort / keep))
    n_short = int(round(n_icu * SHARE_SHORT))
    n_sparse = int(round(n_icu * SHARE_SPARSE))
    n_nolabel = n_icu - n_cohort - n_short - n_sparse
    category = rng.permutation(np.repeat([CAT_COHORT, CAT_SHORT, CAT_SPARSE, CAT_NOLABEL],
                                         [n_cohort, n_short, n_sparse, n_nolabel]))
    test_share = T.TEST_SIZE / T.COHORT_SIZE
    group_shares = np.array([*(np.array(TRAIN_GROUP_SHARES) * (1 - test_share)), test_share])
    ygroup = np.empty(n_icu, dtype=np.int64)
    ygroup[category == CAT_COHORT] = exact_assign(rng, n_cohort, group_shares)
    ygroup[category != CAT_COHORT] = choice(rng, n_icu - n_cohort, group_shares, group_shares)

    age_icu = 18 + 84 * rng.beta(2.8, 2.0, n_icu)
    male_icu = rng.random(n_icu) < 0.56
    frail_icu = rng.standard_normal(n_icu)
    comorb_icu = _comorbidities(rng, age_icu, frail_icu, icu=True)
    # Age of the index ICU admission is drawn first; the first admission of the patient may be
    # earlier (pre-ICU ward admissions), so the patient's age at first admission is derived later.
    n_pre = choice(rng, n_icu, (0, 1, 2), [0.72, 0.19, 0.09])
    report("planning ICU courses", 0.02)
    idx_course, icpt = _icu_courses(rng_for(seed, "icu-courses"), age_icu, male_icu, frail_icu,
                                    comorb_icu, ygroup, category, None)
    later_course, _ = _icu_courses(rng_for(seed, "icu-later"), age_icu, male_icu, frail_icu,
                                   comorb_icu, ygroup, np.full(n_icu, CAT_OTHER), icpt)

    # Ward-only candidates: more than needed; the chain keeps just enough of them.
    n_cand = int(T.READMISSION_COHORT * scale * 1.25) + 200
    rng_w = rng_for(seed, "ward-patients")
    age_w = 18 + 84 * rng_w.beta(2.2, 2.0, n_cand)
    male_w = rng_w.random(n_cand) < 0.48
    frail_w = rng_w.standard_normal(n_cand)
    comorb_w = _comorbidities(rng_w, age_w, frail_w, icu=False)
    ygroup_w = choice(rng_w, n_cand, group_shares, group_shares)

    report("admission chains", 0.05)

    def chains(n_ward: int):
        """Admission chains of all ICU patients and the first ``n_ward`` ward candidates."""
        n_pat = n_icu + n_ward
        is_icu = np.r_[np.ones(n_icu, bool), np.zeros(n_ward, bool)]
        comorb = {k: np.r_[comorb_icu[k], comorb_w[k][:n_ward]] for k in comorb_icu}
        out = _admission_chains(
            rng_for(seed, "chains"), n_pat, is_icu, np.r_[n_pre, np.zeros(n_ward, np.int64)],
            np.r_[ygroup, ygroup_w[:n_ward]], np.r_[frail_icu, frail_w[:n_ward]], comorb,
            charlson_points(comorb), age_icu, age_w[:n_ward], idx_course, later_course, scale)
        return out, is_icu, comorb

    # The readmission intercept is solved over the patients the chains contain, so a first
    # pass finds how many ward patients the readmission cohort needs and a second pass
    # calibrates on (almost) exactly those; otherwise the ICU patients' share would be off.
    (adm, keep_pat, _), _, _ = chains(n_cand)
    needed = int(keep_pat[n_icu:].sum())
    for n_ward in [min(n_cand, int(needed * m) + 20) for m in (1.03, 1.10, 1.25)] + [n_cand]:
        try:   # the last try, all candidates, is the first pass again and cannot fail
            (adm, keep_pat, age_first), is_icu, comorb = chains(n_ward)
            break
        except _NotEnoughWardPatients:
            continue
    n_pat = n_icu + n_ward
    ygroup_all = np.r_[ygroup, ygroup_w[:n_ward]]
    frail = np.r_[frail_icu, frail_w[:n_ward]]
    male = np.r_[male_icu, male_w[:n_ward]]
    charlson = charlson_points(comorb)

    # Drop unneeded ward candidates.
    kept = np.flatnonzero(keep_pat)
    remap = np.full(n_pat, -1, dtype=np.int64)
    remap[kept] = np.arange(len(kept))
    sel = keep_pat[adm["pat"]]
    adm = {k: v[sel] for k, v in adm.items()}
    adm["pat"] = remap[adm["pat"]]
    n_keep = len(kept)
    pat = {"is_icu": is_icu[kept], "ygroup": ygroup_all[kept], "frailty": frail[kept],
           "male": male[kept], "age_first": age_first[kept], "charlson": charlson[kept]}
    comorb = {k: v[kept] for k, v in comorb.items()}
    icu_pos = np.full(n_keep, -1)
    icu_pos[: n_icu] = np.arange(n_icu)  # ICU patients come first and are all kept

    report("identifiers and calendar", 0.08)
    return _finalise(seed, pat, comorb, adm, idx_course, later_course, icu_pos, icpt)


class _NotEnoughWardPatients(RuntimeError):
    """The ward candidates of a chain pass do not reach the readmission cohort size."""


def _admission_chains(rng: np.random.Generator, n_pat: int, is_icu: np.ndarray,
                      n_pre: np.ndarray, ygroup: np.ndarray, frail: np.ndarray,
                      comorb: dict[str, np.ndarray], charlson: np.ndarray,
                      age_icu: np.ndarray, age_w: np.ndarray, idx_course: dict,
                      later_course: dict, scale: float):
    """Admissions of every patient, position by position (vectorised over patients)."""
    n_icu = int(is_icu.sum())
    # Real first-admission time and per-patient date shift.
    real_first = _real_first_admission(rng, ygroup)
    anchor_year = rng.integers(2110, 2181, n_pat)
    real_year = _year_of(real_first)
    shift_days = np.round((anchor_year - real_year) * 365.2425).astype(np.int64) + rng.integers(-120, 121, n_pat)
    t_first = real_first + shift_days * DAY
    # time of day of admissions: keep the real one (the shift is whole days)
    t = to_minute(t_first)
    # age at first admission: ICU patients' index age is at the ICU admission; pre-ICU
    # admissions happen earlier, so subtract the gap once it is known (approximation: 1.2 y each)
    age_first = np.r_[age_icu - n_pre[: n_icu] * 1.2, age_w]
    age_first = np.maximum(age_first, 18.0)

    active = np.ones(n_pat, bool)
    flag_readmit = np.zeros(n_pat, bool)      # this admission is an unplanned return within 30 d
    flag_planned = np.zeros(n_pat, bool)      # this admission is a planned return within 30 d
    later_used = np.zeros(n_pat, bool)
    prior_times = np.full((n_pat, MAX_ADMISSIONS), np.iinfo(np.int64).min // 2)
    out: dict[str, list] = {k: [] for k in (
        "pat", "pos", "admittime", "dischtime", "kind", "course", "readmit_in", "planned_in",
        "eligible", "q", "readmitted", "w_grp", "w_service", "w_first_service",
        "w_service_change_h", "w_atype", "w_los_h", "w_died", "w_dloc", "w_invalid",
        "w_instability", "dod_after")}
    dod = np.full(n_pat, NULL_INT)
    for k in range(MAX_ADMISSIONS):
        idx = np.flatnonzero(active)
        if len(idx) == 0:
            break
        m = len(idx)
        age_now = age_first[idx] + (t[idx] - t_first[idx]) / YEAR
        icu_idx_now = is_icu[idx] & (n_pre[idx] == k)
        icu_later_now = (is_icu[idx] & (n_pre[idx] < k) & ~later_used[idx]
                         & ~flag_planned[idx] & (rng.random(m) < 0.12))
        later_used[idx[icu_later_now]] = True
        kind = np.where(icu_idx_now, 1, np.where(icu_later_now, 2, 0))
        ward = kind == 0
        forced = is_icu[idx] & (n_pre[idx] > k)       # the index ICU admission is still to come
        wa = _ward_admissions(rng, age_now, frail[idx], idx, comorb,
                              flag_readmit[idx], flag_planned[idx], forced)
        # ICU courses (index / later) give the hospital course of ICU admissions
        ci = np.where(kind > 0, idx, 0)
        csrc = {key: np.where(kind == 1, idx_course[key][ci], later_course[key][ci])
                for key in ("disch_h", "pre_adm_h", "died", "dloc", "atype")}
        los_h = np.where(ward, wa["los_h"], csrc["pre_adm_h"] + csrc["disch_h"])
        died = np.where(ward, wa["died"], csrc["died"])
        dloc = np.where(ward, wa["dloc"], csrc["dloc"])
        admit = t[idx]
        disch = to_minute(admit + (los_h * H).astype(np.int64))
        disch = np.where(ward & wa["invalid"], admit - rng.integers(0, 120, m) * 60, disch)
        final_svc = np.where(ward, wa["service"], -1)
        eligible = (ward & ~died & (final_svc == SVC["MED"]) & ~wa["invalid"]
                    & ~np.isin(dloc, EXCLUDED_DLOC) & (dloc >= 0) & (age_now >= 18))
        # prior admissions in the 12 months before this admission
        prior12 = ((prior_times[idx] >= (admit - 365 * DAY)[:, None])
                   & (prior_times[idx] < admit[:, None])).sum(axis=1)
        prior_times[idx, k] = admit
        grp_eff = np.zeros(m)
        for name, eff in {"chf": 0.35, "copd": 0.30, "alcoholic_cirrhosis": 0.45, "lung_cancer": 0.40,
                          "sepsis": 0.15, "gi_bleed": 0.20, "chest_pain": -0.30, "syncope": -0.20,
                          "cellulitis": -0.10}.items():
            grp_eff += np.where(ward & (wa["grp"] == WARD_GROUP_NAMES.index(name)), eff, 0.0)
        lp_r = (0.45 * frail[idx] + 0.10 * charlson[idx] + 0.30 * np.minimum(prior12, 3)
                + 0.25 * (los_h > 120) + 0.25 * np.isin(dloc, POSTACUTE_DLOC)
                + 0.50 * wa["instability"] + 0.20 * (age_now >= 75) + grp_eff
                + 0.30 * (dloc == DLOC["AGAINST ADVICE"]) - 1.5 * (dloc == DLOC["HOSPICE"])
                + DRIFT_READMIT[ygroup[idx]])
        b = solve_intercept(lp_r[eligible], T.READMISSION_RATE) if eligible.any() else -2.0
        q = sigmoid(b + lp_r)
        alive = ~died
        readmit = alive & ~flag_planned[idx] & (rng.random(m) < q)
        # competing risk and the chance of another admission later on
        metastatic = comorb["c_metastatic"][idx]
        d30 = alive & ~readmit & (rng.random(m) < sigmoid(
            -4.0 + 0.6 * frail[idx] + 0.04 * (age_now - 65) + 2.8 * (dloc == DLOC["HOSPICE"])
            + 0.8 * metastatic))
        d30 &= ~forced
        more = alive & ~readmit & ~d30 & (forced | (rng.random(m) < sigmoid(
            -0.4 + 0.5 * frail[idx] + 0.08 * charlson[idx])))
        more &= k + 1 < MAX_ADMISSIONS
        planned_next = more & ~forced & ~flag_planned[idx] & (rng.random(m) < 0.025)
        # gaps after discharge: a return within 30 days stays inside it (<= 29.6 d) and any
        # other return comes after it (>= 31 d), whatever the minute rounding downstream
        gap_readmit = (0.5 + 29 * rng.beta(1.1, 1.9, m)) * DAY
        gap_planned = rng.uniform(3, 29, m) * DAY
        gap_long = (31 + np.minimum(lognormal(rng, 200.0, 1.1, m), 2500.0)) * DAY
        gap = np.where(readmit, gap_readmit, np.where(planned_next, gap_planned, gap_long))
        base_t = np.maximum(disch, admit)
        next_t = to_minute(base_t + gap.astype(np.int64) + rng.integers(0, 2 * 60, m) * 60)
        # death dates: in hospital, within 30 days of discharge, or within a year of the last one
        dod_now = np.where(died, disch, NULL_INT)
        dod_now = np.where(d30, base_t + rng.uniform(1, 30, m).astype(np.int64) * DAY, dod_now)
        stop = alive & ~readmit & ~d30 & ~more
        late_death = stop & (rng.random(m) < sigmoid(-2.4 + 0.6 * frail[idx] + 0.04 * (age_now - 65)
                                                     + 1.0 * metastatic))
        dod_now = np.where(late_death, base_t + rng.uniform(31, 365, m).astype(np.int64) * DAY, dod_now)
        dod[idx] = np.where(dod_now != NULL_INT, dod_now, dod[idx])

        for key, val in (("pat", idx), ("pos", np.full(m, k)), ("admittime", admit),
                         ("dischtime", disch), ("kind", kind), ("course", ci),
                         ("readmit_in", flag_readmit[idx]), ("planned_in", flag_planned[idx]),
                         ("eligible", eligible), ("q", q), ("readmitted", readmit),
                         ("w_grp", wa["grp"]), ("w_service", wa["service"]),
                         ("w_first_service", wa["first_service"]),
                         ("w_service_change_h", wa["service_change_h"]), ("w_atype", wa["atype"]),
                         ("w_los_h", los_h), ("w_died", died), ("w_dloc", dloc),
                         ("w_invalid", ward & wa["invalid"]), ("w_instability", wa["instability"]),
                         ("dod_after", dod_now)):
            out[key].append(val)
        flag_readmit[idx] = readmit
        flag_planned[idx] = planned_next
        t[idx] = next_t
        active[idx] = readmit | more
    adm = {k: np.concatenate(v) for k, v in out.items()}

    # Keep every ICU patient and just enough ward-only patients for the readmission cohort.
    target = int(round(T.READMISSION_COHORT * scale))
    elig_per_pat = np.bincount(adm["pat"], weights=adm["eligible"], minlength=n_pat)
    from_icu = int(elig_per_pat[:n_icu].sum())
    cum = np.cumsum(elig_per_pat[n_icu:])
    need = max(target - from_icu, 0)
    if need > 0 and (len(cum) == 0 or cum[-1] < need):
        raise _NotEnoughWardPatients(f"{cum[-1] if len(cum) else 0} of {need} index admissions")
    n_ward_keep = int(np.searchsorted(cum, need) + 1) if need > 0 else 0
    keep = np.r_[np.ones(n_icu, bool), np.arange(n_pat - n_icu) < n_ward_keep]
    adm["real_first"] = real_first[adm["pat"]]
    adm["shift_days"] = shift_days[adm["pat"]]
    adm["t_first"] = t_first[adm["pat"]]
    adm["dod"] = dod[adm["pat"]]
    return adm, keep, age_first


def _finalise(seed: int, pat: dict, comorb: dict, adm: dict, idx_course: dict,
              later_course: dict, icu_pos: np.ndarray, icpt: Intercepts) -> Population:
    """Identifiers, calendar, patients / admissions / stays arrays."""
    rng = rng_for(seed, "finalise")
    n_pat = len(pat["is_icu"])
    n_adm = len(adm["pat"])
    subject_ids = unique_ids(rng, n_pat, 10**7)
    # patient order = subject_id order (PhysioNet files are sorted by subject_id)
    p_order = np.argsort(subject_ids, kind="stable")
    p_rank = np.empty(n_pat, dtype=np.int64)
    p_rank[p_order] = np.arange(n_pat)
    subject_ids = subject_ids[p_order]
    pat = {k: v[p_order] for k, v in pat.items()}
    comorb = {k: v[p_order] for k, v in comorb.items()}
    icu_pos = icu_pos[p_order]
    adm["pat"] = p_rank[adm["pat"]]
    a_order = np.lexsort((adm["admittime"], adm["pat"]))
    adm = {k: v[a_order] for k, v in adm.items()}
    adm["hadm_id"] = unique_ids(rng, n_adm, 2 * 10**7)

    # Patients: anchor year = shifted year of the first admission, anchor age at that time.
    first = np.flatnonzero(np.r_[True, adm["pat"][1:] != adm["pat"][:-1]])
    t_first = adm["t_first"][first]
    anchor_year = _year_of(t_first)
    age_first = pat["age_first"]
    anchor_age = np.floor(age_first).astype(np.int64)
    anchor_age = np.where(anchor_age > 89, 91, anchor_age)
    last = np.r_[first[1:] - 1, n_adm - 1]
    dod_t = adm["dod"][first]
    patients = {"subject_id": subject_ids, "male": pat["male"], "anchor_age": anchor_age,
                "anchor_year": anchor_year, "ygroup": pat["ygroup"], "dod_t": dod_t,
                "is_icu": pat["is_icu"], "frailty": pat["frailty"], "age_first": age_first,
                "charlson": pat["charlson"], "t_first": t_first,
                "last_disch": adm["dischtime"][last], "race": rng.choice(
                    len(ref.RACES), size=n_pat, p=np.array(ref.RACE_WEIGHTS) / sum(ref.RACE_WEIGHTS)),
                "marital": rng.choice(5, size=n_pat, p=[0.42, 0.30, 0.12, 0.08, 0.08]),
                "language": (rng.random(n_pat) < 0.09).astype(np.int64),
                "height_cm": np.where(pat["male"], rng.normal(176, 7, n_pat), rng.normal(162, 7, n_pat)),
                "weight_kg": np.where(pat["male"], 84.0, 70.0) * np.exp(
                    0.2 * rng.standard_normal(n_pat) - 0.05 * pat["frailty"])}

    # Admissions: merge ward plans and ICU courses.
    kind = adm["kind"]
    is_icu_adm = kind > 0
    pidx = adm["pat"]
    ci = icu_pos[pidx]
    src = {}
    for key in idx_course:
        a = idx_course[key]
        b = later_course[key]
        safe = np.where(ci >= 0, ci, 0)
        src[key] = np.where(kind == 1, a[safe], b[safe])
    adm["icu_src"] = src
    age_adm = age_first[pidx] + (adm["admittime"] - adm["t_first"]) / YEAR
    real_time = adm["admittime"] - adm["shift_days"] * DAY
    icd10_start = np.datetime64("%04d-%02d-%02d" % ref.ICD10_START, "s").astype(np.int64)
    adm["icd_version"] = np.where(real_time >= icd10_start, 10, 9)
    adm["age"] = age_adm
    adm["real_time"] = real_time

    atype = np.where(is_icu_adm, src["atype"], adm["w_atype"])
    # a return within 30 days flagged unplanned must carry an unplanned admission type
    planned_types = np.array([ATYPE[t] for t in ref.PLANNED_ADMISSION_TYPES])
    atype = np.where(adm["readmit_in"] & np.isin(atype, planned_types), ATYPE["URGENT"], atype)
    adm["atype"] = atype
    adm["service"] = np.where(is_icu_adm, src["service"], adm["w_service"])
    adm["first_service"] = np.where(is_icu_adm, src["service"], adm["w_first_service"])
    adm["dloc"] = np.where(is_icu_adm, src["dloc"], adm["w_dloc"])
    adm["died"] = adm["w_died"].astype(bool)
    adm["hef_null"] = np.where(is_icu_adm, src["hef_null"], False)
    adm["deathtime_null"] = np.where(is_icu_adm, src["deathtime_null"], False)

    # Admission location, ED times.
    n = n_adm
    aloc = np.full(n, ALOC["EMERGENCY ROOM"])
    u = rng.random(n)
    ed_types = np.isin(atype, [ATYPE[t] for t in ("EW EMER.", "EU OBSERVATION", "OBSERVATION ADMIT")])
    aloc = np.where(ed_types & (u > 0.80), ALOC["WALK-IN/SELF REFERRAL"], aloc)
    aloc = np.where(ed_types & (u > 0.90), ALOC["TRANSFER FROM HOSPITAL"], aloc)
    urgent = atype == ATYPE["URGENT"]
    aloc = np.where(urgent, np.where(u < 0.6, ALOC["TRANSFER FROM HOSPITAL"], ALOC["PHYSICIAN REFERRAL"]), aloc)
    direct = np.isin(atype, [ATYPE["DIRECT EMER."], ATYPE["DIRECT OBSERVATION"]])
    aloc = np.where(direct, np.where(u < 0.5, ALOC["PHYSICIAN REFERRAL"], np.where(
        u < 0.8, ALOC["CLINIC REFERRAL"], ALOC["TRANSFER FROM SKILLED NURSING FACILITY"])), aloc)
    planned = np.isin(atype, planned_types)
    aloc = np.where(planned, np.where(u < 0.8, ALOC["PHYSICIAN REFERRAL"], np.where(
        u < 0.9, ALOC["PROCEDURE SITE"], ALOC["AMBULATORY SURGERY TRANSFER"])), aloc)
    amb = atype == ATYPE["AMBULATORY OBSERVATION"]
    aloc = np.where(amb, np.where(u < 0.5, ALOC["PROCEDURE SITE"], ALOC["PACU"]), aloc)
    adm["aloc"] = aloc
    ed = np.isin(aloc, [ALOC["EMERGENCY ROOM"], ALOC["WALK-IN/SELF REFERRAL"]])
    adm["ed"] = ed
    adm["edregtime"] = np.where(ed, to_minute(adm["admittime"] - rng.uniform(1.5, 8.0, n) * H), NULL_INT)
    # Arrival on the first unit: the ICU itself for ED -> ICU admissions, otherwise a ward
    # (or the PACU after surgery). Patients admitted through the ED leave it on arrival.
    boarding = np.where(ed, rng.uniform(0.5, 5.0, n), 0.0)
    direct_icu = is_icu_adm & ~src["ward_first"] & ~src["surgical"]
    first_h = np.where(direct_icu, src["pre_adm_h"],
                       np.where(is_icu_adm, np.minimum(boarding, src["pre_adm_h"] - 1.0), boarding))
    adm["arrive"] = to_minute(adm["admittime"] + (np.maximum(first_h, 0.0) * H).astype(np.int64))
    adm["direct_icu"] = direct_icu
    adm["edouttime"] = np.where(ed, adm["arrive"], NULL_INT)
    insurance = np.where(age_adm >= 65, choice(rng, n, (0, 1, 2), [0.75, 0.08, 0.17]),
                         choice(rng, n, (0, 1, 2), [0.10, 0.30, 0.60]))
    adm["insurance"] = insurance

    # ICU stays: first stay (and second, after a bounce-back) of each ICU admission.
    ia = np.flatnonzero(is_icu_adm)
    intime1 = adm["admittime"][ia] + (src["pre_adm_h"][ia] * H).astype(np.int64)
    intime1 = to_minute(intime1)
    # ICU intimes never fall on the hour, so hourly charting never ties with the window edges
    intime1 = np.where(intime1 % H == 0, intime1 + 60 * rng.integers(1, 59, len(ia)), intime1)
    los1 = src["los_h"][ia]
    outtime1 = to_minute(intime1 + (los1 * H).astype(np.int64))
    death_abs = np.where(adm["died"][ia], to_minute(intime1 + (np.nan_to_num(src["death_h"][ia]) * H).astype(np.int64)), NULL_INT)
    died_icu1 = adm["died"][ia] & (np.abs(src["death_h"][ia] - los1) < 1e-9)
    outtime1 = np.where(died_icu1, death_abs, outtime1)
    has2 = np.isfinite(src["in2_h"][ia])
    in2 = to_minute(intime1 + (np.nan_to_num(src["in2_h"][ia]) * H).astype(np.int64))
    in2 = np.where(in2 % H == 0, in2 + 60 * 7, in2)
    out2 = to_minute(intime1 + (np.nan_to_num(src["out2_h"][ia]) * H).astype(np.int64))
    died_icu2 = has2 & adm["died"][ia] & (np.abs(src["death_h"][ia] - src["out2_h"][ia]) < 1e-9)
    out2 = np.where(died_icu2, death_abs, out2)
    # hospital discharge / death time of ICU admissions follows the course exactly
    disch = np.where(adm["died"][ia], death_abs,
                     to_minute(intime1 + (src["disch_h"][ia] * H).astype(np.int64)))
    disch = np.maximum(disch, np.where(has2, out2, outtime1))
    adm["dischtime"][ia] = disch
    adm["deathtime"] = np.where(adm["died"], adm["dischtime"], NULL_INT)
    adm["deathtime"][ia] = np.where(adm["died"][ia], death_abs, NULL_INT)
    adm["dischtime"] = np.where(adm["died"], np.where(adm["deathtime"] != NULL_INT, adm["deathtime"],
                                                      adm["dischtime"]), adm["dischtime"])
    adm["deathtime"] = np.where(adm["deathtime_null"], NULL_INT, adm["deathtime"])

    n1 = len(ia)
    stay_adm = np.r_[ia, ia[has2]]
    first_stay = np.r_[np.ones(n1, bool), np.zeros(int(has2.sum()), bool)]
    course_row = np.r_[np.arange(n1), np.flatnonzero(has2)]
    stays = {
        "adm": stay_adm, "first_in_hadm": first_stay,
        "intime": np.r_[intime1, in2[has2]], "outtime": np.r_[outtime1, out2[has2]],
        "intime1": np.r_[intime1, intime1[has2]],
    }
    for key in ("grp", "category", "cardsurg", "surgical", "z", "circ", "resp", "neuro", "renal",
                "liver", "coag", "infl", "label", "vent_window", "vent_start_h", "vent_end_h",
                "vaso_window", "vaso_start_h", "vaso_end_h", "vaso_drug1", "vaso_drug2",
                "artline", "device", "missing", "artifacts", "unit1", "unit_last",
                "unit_change_h", "unit2", "weight", "height", "temp_f", "hamilton",
                "vent_documented", "lp_death"):
        stays[key] = src[key][ia][course_row]
    second = ~first_stay
    # a second stay (bounce-back) is planned simply: no window-level control, no unit change
    stays["unit1"] = np.where(second, stays["unit2"], stays["unit1"])
    stays["unit_last"] = np.where(second, stays["unit2"], stays["unit_last"])
    stays["unit_change_h"] = np.where(second, np.nan, stays["unit_change_h"])
    for key in ("vent_start_h", "vent_end_h", "vaso_start_h", "vaso_end_h"):
        stays[key] = np.where(second, np.nan, stays[key])
    stays["vent_window"] &= ~second
    stays["vaso_window"] &= ~second
    stays["missing"] = np.where(second, 0, stays["missing"])
    stays["artifacts"] = np.where(second, 0, stays["artifacts"])
    stays["category"] = np.where(second, CAT_OTHER, stays["category"])
    death_stay = np.r_[np.where(died_icu1, death_abs, NULL_INT),
                       np.where(died_icu2[has2], death_abs[has2], NULL_INT)]
    stays["death_time"] = death_stay
    stays["pat"] = pidx[stays["adm"]]
    stays["subject_id"] = subject_ids[stays["pat"]]
    stays["hadm_id"] = adm["hadm_id"][stays["adm"]]
    stays["ygroup"] = patients["ygroup"][stays["pat"]]
    stays["age"] = age_adm[stays["adm"]]
    stays["male"] = patients["male"][stays["pat"]]
    stays["anticoag"] = comorb["anticoag"][stays["pat"]]
    stays["dialysis"] = comorb["c_dialysis"][stays["pat"]]
    stays["ckd"] = comorb["c_renal"][stays["pat"]]
    s_order = np.lexsort((stays["intime"], stays["pat"]))
    stays = {k: v[s_order] for k, v in stays.items()}
    adm["icu_in1"] = np.full(n_adm, NULL_INT)
    adm["icu_out1"] = np.full(n_adm, NULL_INT)
    adm["icu_in2"] = np.full(n_adm, NULL_INT)
    adm["icu_out2"] = np.full(n_adm, NULL_INT)
    adm["icu_in1"][ia] = intime1
    adm["icu_out1"][ia] = outtime1
    adm["icu_in2"][ia] = np.where(has2, in2, NULL_INT)
    adm["icu_out2"][ia] = np.where(has2, out2, NULL_INT)

    # Patients' date of death: hospital deaths and registry deaths within a year of discharge.
    dod_t = np.full(n_pat, NULL_INT)
    hosp_death = adm["died"]
    np.maximum.at(dod_t, pidx[hosp_death], adm["dischtime"][hosp_death])
    after = adm["dod_after"] != NULL_INT
    np.maximum.at(dod_t, pidx[after], adm["dod_after"][after])
    patients["dod_t"] = dod_t

    return Population(patients=patients, admissions=adm, stays=stays, comorbidities=comorb,
                      intercepts=icpt)

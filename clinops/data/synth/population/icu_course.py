"""One ICU hospitalisation per row: diagnosis group, latent organ states, treatments, missing features, outcome."""
from __future__ import annotations

from dataclasses import dataclass, field
import numpy as np
from scipy.special import ndtr

from .. import reference as ref
from .. import targets as T
from .constants import (ARTIFACT_SHARE, ART_BIT, ATYPE, CARDIAC_SURGERY, CAT_COHORT, CAT_NOLABEL, CAT_OTHER,
                        CAT_SHORT, CAT_SPARSE, DLOC, DRIFT_ALBUMIN_MISSING, DRIFT_DEATH,
                        DRIFT_LACTATE_MISSING, DRIFT_VASO, DRIFT_VENT, ICU_GROUP_AGE, ICU_GROUP_NAMES,
                        MISSABLE, MISS_BIT, SHARE_FAHRENHEIT, SHARE_HAMILTON, SPARSE_MISSING, SVC, UNIT,
                        VASOPRESSIN, VASO_DRUGS, VASO_DRUG_P, VASO_DRUG_P_CARDSURG)
from .sampling import age_weighted_groups, choice, lognormal, sample_rows, sigmoid, solve_intercept


@dataclass
class Intercepts:
    """Intercepts solved on the constructed cohort, reused for every other ICU course."""

    vent: float = 0.0
    vaso: float = 0.0
    label: float = 0.0
    late: float = 0.0
    early: float = 0.0
    missing: dict[str, float] = field(default_factory=dict)


#: Hazard of death after the 24 h window: constant in the label's 48 h (mean time scale, hours) ...
LABEL_HAZARD_SCALE_H = 48.0
#: ... then decreasing as a Lomax (Pareto II) tail of this shape, continuous at 72 h.
LATE_HAZARD_SHAPE = 2.0
#: Share of the cohort dying in hospital after 72 h (a modelling choice, as the intercept below).
LATE_DEATH_SHARE = 0.07
#: No death is placed within this margin (hours) of a label edge, so minute rounding never moves one across.
EDGE_MARGIN_H = 0.05
#: Latest death after 72 h (hours), as long as the longest hospital stays.
LATE_DEATH_MAX_H = 1400.0


def death_hours(u_label: np.ndarray, u_late: np.ndarray, *, label_share: float = T.MORTALITY_PREVALENCE,
                late_share: float = LATE_DEATH_SHARE) -> tuple[np.ndarray, np.ndarray]:
    """Hours after ICU intime of a death inside the label window and of a later death.

    One hazard after the 24 h window: constant (time scale :data:`LABEL_HAZARD_SCALE_H`) within
    (24 h, 72 h], so label deaths are denser early, then a Lomax tail (shape
    :data:`LATE_HAZARD_SHAPE`) whose scale makes the death density continuous at 72 h given the
    shares of label and later deaths. Deaths therefore fall at every horizon (72-96 h included).

    Parameters
    ----------
    u_label, u_late : ndarray of float in [0, 1)
        Uniform draws (inverse-CDF sampling).
    label_share, late_share : float
        Cohort shares of deaths in (24 h, 72 h] and after 72 h.

    Returns
    -------
    label_t : ndarray, in (24 + margin, 72]
    late_t : ndarray, in (72 + margin, 72 + margin + LATE_DEATH_MAX_H]

    Examples
    --------
    >>> label_t, late_t = death_hours(np.array([0.0, 0.5, 1.0]), np.array([0.0, 0.5, 0.9]))
    >>> label_t.round(2).tolist()
    [24.05, 42.27, 72.0]
    >>> late_t.round(1).tolist()
    [72.0, 114.3, 292.6]
    """
    scale, width = LABEL_HAZARD_SCALE_H, 48.0 - EDGE_MARGIN_H
    tail = np.exp(-width / scale)
    label_t = 24.0 + EDGE_MARGIN_H - scale * np.log1p(-np.asarray(u_label) * (1.0 - tail))
    density_at_72 = label_share * tail / (scale * (1.0 - tail))  # label deaths per hour just before 72 h
    lam = LATE_HAZARD_SHAPE * late_share / density_at_72       # Lomax density at 0 is shape / lam
    s = lam * (np.power(1.0 - np.asarray(u_late), -1.0 / LATE_HAZARD_SHAPE) - 1.0)
    return label_t, 72.0 + EDGE_MARGIN_H + np.minimum(s, LATE_DEATH_MAX_H)


def icu_courses(rng: np.random.Generator, age: np.ndarray, male: np.ndarray,
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
        icpt.late = solve_intercept(0.7 * lp_death[cohort & ~label], LATE_DEATH_SHARE / (1 - T.MORTALITY_PREVALENCE))
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
    # Death times after the window from one hazard (deaths at every horizon, not only inside the
    # label's 48 h); the same draws as before, transformed, so the rest of the stream is unchanged.
    u_label = (rng.uniform(0.05, 48.0, n) - 0.05) / 47.95
    label_t, late_t = death_hours(u_label, ndtr(rng.standard_normal(n)))
    death_h = np.where(label, label_t, np.nan)
    los = np.where(label, death_h, los)
    death_h = np.where(early, los, death_h)
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

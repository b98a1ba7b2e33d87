"""The population: ICU and ward patients, their admission chains and stays, assembled and finalised into plain arrays."""
from __future__ import annotations

from dataclasses import dataclass
import numpy as np

from .. import reference as ref
from .. import targets as T
from ..schema import NULL_INT
from .constants import (ALOC, ATYPE, CAT_COHORT, CAT_NOLABEL, CAT_OTHER, CAT_SHORT, CAT_SPARSE, DAY, H,
                        PROGRESS, SHARE_NOLABEL, SHARE_SHORT, SHARE_SPARSE, TRAIN_GROUP_SHARES, YEAR)
from .sampling import choice, exact_assign, rng_for, to_minute, unique_ids
from .comorbidity import charlson_points, comorbidities
from .icu_course import Intercepts, icu_courses
from .chains import NotEnoughWardPatients, admission_chains, year_of


@dataclass
class Population:
    """Per-patient, per-admission and per-ICU-stay arrays (see :func:`build_population`)."""

    patients: dict[str, np.ndarray]
    admissions: dict[str, np.ndarray]
    stays: dict[str, np.ndarray]
    comorbidities: dict[str, np.ndarray]
    intercepts: Intercepts






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
    comorb_icu = comorbidities(rng, age_icu, frail_icu, icu=True)
    # Age of the index ICU admission is drawn first; the first admission of the patient may be
    # earlier (pre-ICU ward admissions), so the patient's age at first admission is derived later.
    n_pre = choice(rng, n_icu, (0, 1, 2), [0.72, 0.19, 0.09])
    report("planning ICU courses", 0.02)
    idx_course, icpt = icu_courses(rng_for(seed, "icu-courses"), age_icu, male_icu, frail_icu,
                                    comorb_icu, ygroup, category, None)
    later_course, _ = icu_courses(rng_for(seed, "icu-later"), age_icu, male_icu, frail_icu,
                                   comorb_icu, ygroup, np.full(n_icu, CAT_OTHER), icpt)

    # Ward-only candidates: more than needed; the chain keeps just enough of them.
    n_cand = int(T.READMISSION_COHORT * scale * 1.25) + 200
    rng_w = rng_for(seed, "ward-patients")
    age_w = 18 + 84 * rng_w.beta(2.2, 2.0, n_cand)
    male_w = rng_w.random(n_cand) < 0.48
    frail_w = rng_w.standard_normal(n_cand)
    comorb_w = comorbidities(rng_w, age_w, frail_w, icu=False)
    ygroup_w = choice(rng_w, n_cand, group_shares, group_shares)

    report("admission chains", 0.05)

    def chains(n_ward: int):
        """Admission chains of all ICU patients and the first ``n_ward`` ward candidates."""
        n_pat = n_icu + n_ward
        is_icu = np.r_[np.ones(n_icu, bool), np.zeros(n_ward, bool)]
        comorb = {k: np.r_[comorb_icu[k], comorb_w[k][:n_ward]] for k in comorb_icu}
        out = admission_chains(
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
        except NotEnoughWardPatients:
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
    anchor_year = year_of(t_first)
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
    # An intime on the hour (about 1 in 60 at minute resolution) is kept: hourly charting then
    # falls exactly on both window edges, a trap of the real data the feature SQL must handle
    # (issue 15). The draw that used to move them off the hour stays, so later draws are unchanged.
    rng.integers(1, 59, len(ia))
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

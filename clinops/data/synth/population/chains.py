"""Sequences of hospital admissions per patient, with unplanned 30-day readmissions drawn after each discharge alive."""
from __future__ import annotations

import numpy as np

from .. import reference as ref
from .. import targets as T
from ..schema import NULL_INT
from .constants import (DAY, DLOC, DRIFT_READMIT, EXCLUDED_DLOC, H, MAX_ADMISSIONS, POSTACUTE_DLOC, SVC,
                        WARD_GROUP_NAMES, YEAR)
from .sampling import lognormal, sigmoid, solve_intercept, to_minute
from .ward import ward_admissions



def real_first_admission(rng: np.random.Generator, ygroup: np.ndarray) -> np.ndarray:
    """Real (unshifted) time of each patient's first admission, inside its year group."""
    start = np.array([np.datetime64(f"{ref.FIRST_GROUP_YEAR + 3 * k}-01-01", "s").astype(np.int64)
                      for k in range(4)])
    span = 3 * YEAR - DAY
    return start[ygroup] + (rng.random(len(ygroup)) * span).astype(np.int64)


def year_of(t: np.ndarray) -> np.ndarray:
    return np.asarray(t, dtype="datetime64[s]").astype("datetime64[Y]").astype(np.int64) + 1970


class NotEnoughWardPatients(RuntimeError):
    """The ward candidates of a chain pass do not reach the readmission cohort size."""


def admission_chains(rng: np.random.Generator, n_pat: int, is_icu: np.ndarray,
                      n_pre: np.ndarray, ygroup: np.ndarray, frail: np.ndarray,
                      comorb: dict[str, np.ndarray], charlson: np.ndarray,
                      age_icu: np.ndarray, age_w: np.ndarray, idx_course: dict,
                      later_course: dict, scale: float):
    """Admissions of every patient, position by position (vectorised over patients)."""
    n_icu = int(is_icu.sum())
    # Real first-admission time and per-patient date shift.
    real_first = real_first_admission(rng, ygroup)
    anchor_year = rng.integers(2110, 2181, n_pat)
    real_year = year_of(real_first)
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
        wa = ward_admissions(rng, age_now, frail[idx], idx, comorb,
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
        # an unplanned return can follow a planned one (soon: complications of the procedure),
        # so an index whose FIRST return is planned may have an unplanned one within 30 days
        # (CMS counts only the first)
        readmit = alive & (rng.random(m) < q)
        # competing risk and the chance of another admission later on
        metastatic = comorb["c_metastatic"][idx]
        d30 = alive & ~readmit & (rng.random(m) < sigmoid(
            -4.0 + 0.6 * frail[idx] + 0.04 * (age_now - 65) + 2.8 * (dloc == DLOC["HOSPICE"])
            + 0.8 * metastatic))
        d30 &= ~forced
        more = alive & ~readmit & ~d30 & (forced | (rng.random(m) < sigmoid(
            -0.4 + 0.5 * frail[idx] + 0.08 * charlson[idx])))
        more &= k + 1 < MAX_ADMISSIONS
        planned_next = more & ~forced & ~flag_planned[idx] & (rng.random(m) < 0.04)
        # gaps after discharge: a return within 30 days stays inside it (<= 29.6 d) and any
        # other return comes after it (>= 31 d), whatever the minute rounding downstream
        gap_readmit = (0.5 + 29 * rng.beta(1.1, 1.9, m)) * DAY
        gap_planned = rng.uniform(3, 29, m) * DAY
        gap_long = (31 + np.minimum(lognormal(rng, 200.0, 1.1, m), 2500.0)) * DAY
        gap_readmit = np.where(flag_planned[idx], gap_readmit / 3, gap_readmit)
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
        raise NotEnoughWardPatients(f"{cum[-1] if len(cum) else 0} of {need} index admissions")
    n_ward_keep = int(np.searchsorted(cum, need) + 1) if need > 0 else 0
    keep = np.r_[np.ones(n_icu, bool), np.arange(n_pat - n_icu) < n_ward_keep]
    adm["real_first"] = real_first[adm["pat"]]
    adm["shift_days"] = shift_days[adm["pat"]]
    adm["t_first"] = t_first[adm["pat"]]
    adm["dod"] = dod[adm["pat"]]
    return adm, keep, age_first

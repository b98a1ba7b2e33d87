"""The per-patient and per-admission tables of the synthetic MIMIC-IV, built from a Population.

patients, admissions, transfers (and icustays from them), services, diagnoses_icd,
procedures_icd, omr, the d_* dictionaries, provider and caregiver. The per-measurement tables
come from :mod:`.events`.
"""
from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from . import reference as ref
from .population.build import Population
from .population.constants import ATYPE, DAY, H, ICU_GROUP_NAMES, ICU_UNIT_KEYS, SERVICES, WARD_GROUP_NAMES
from .population.sampling import rng_for, to_minute
from .schema import NULL_INT, Text

CAREUNITS = (ref.ED_UNIT, ref.PACU_UNIT, *ref.ICU_UNITS.values(), *ref.WARD_UNITS,
             ref.DISCHARGE_LOUNGE)
CU = {u: i for i, u in enumerate(CAREUNITS)}
ICU_CU = np.array([CU[ref.ICU_UNITS[k]] for k in ICU_UNIT_KEYS])
SERVICE_WARD_CU = np.array([CU[ref.SERVICE_WARD_UNIT.get(s, "Med/Surg")] for s in SERVICES])
EVENTTYPES = ("ED", "admit", "transfer", "discharge")
OMR_RESULTS = ("Blood Pressure", "Weight (Lbs)", "BMI (kg/m2)", "Height (Inches)")


def _days(t: np.ndarray) -> np.ndarray:
    """Seconds -> days since epoch (NULL kept)."""
    t = np.asarray(t, dtype=np.int64)
    return np.where(t == NULL_INT, NULL_INT, np.floor_divide(t, DAY))


def _base36(values: np.ndarray, width: int) -> list[str]:
    digits = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"
    out = []
    for v in values.tolist():
        s = []
        for _ in range(width):
            v, r = divmod(v, 36)
            s.append(digits[r])
        out.append("".join(reversed(s)))
    return out


def id_pools(scale: float, seed: int) -> tuple[list[str], np.ndarray]:
    """Provider ids (``P`` + 5 characters) and caregiver ids (integers) used in the tables."""
    rng = rng_for(seed, "id-pools")
    n_prov = int(600 + 3000 * scale)
    n_cg = int(400 + 2000 * scale)
    prov = ["P" + s for s in _base36(rng.choice(36**5, size=n_prov, replace=False), 5)]
    caregivers = np.sort(1 + rng.choice(99_998, size=n_cg, replace=False)).astype(np.int64)
    return prov, caregivers


# ---------------------------------------------------------------------------------------------
def patients_table(pop: Population) -> dict:
    p = pop.patients
    return {"subject_id": p["subject_id"],
            "gender": Text(np.where(p["male"], 0, 1).astype(np.int32), ("M", "F")),
            "anchor_age": p["anchor_age"], "anchor_year": p["anchor_year"],
            "anchor_year_group": Text(p["ygroup"].astype(np.int32), ref.ANCHOR_YEAR_GROUPS),
            "dod": _days(p["dod_t"])}


def admissions_table(pop: Population, providers: list[str], seed: int) -> dict:
    a = pop.admissions
    p = pop.patients
    rng = rng_for(seed, "admissions-table")
    n = len(a["hadm_id"])
    pat = a["pat"]
    hef = np.where(a["died"], 1, 0)
    hef = np.where(a["hef_null"], NULL_INT, hef)
    dloc = np.where(a["hef_null"], -1, a["dloc"])     # unknown outcome: no disposition either
    marital = p["marital"][pat]
    return {
        "subject_id": p["subject_id"][pat], "hadm_id": a["hadm_id"],
        "admittime": a["admittime"], "dischtime": a["dischtime"], "deathtime": a["deathtime"],
        "admission_type": Text(a["atype"].astype(np.int32), ref.ADMISSION_TYPES),
        "admit_provider_id": Text(rng.integers(0, len(providers), n).astype(np.int32), providers),
        "admission_location": Text(a["aloc"].astype(np.int32), ref.ADMISSION_LOCATIONS),
        "discharge_location": Text(dloc.astype(np.int32), ref.DISCHARGE_LOCATIONS),
        "insurance": Text(a["insurance"].astype(np.int32), ref.INSURANCES),
        "language": Text(p["language"][pat].astype(np.int32), ref.LANGUAGES),
        "marital_status": Text(np.where(marital >= 4, -1, marital).astype(np.int32),
                               ref.MARITAL_STATUSES),
        "race": Text(p["race"][pat].astype(np.int32), ref.RACES),
        "edregtime": a["edregtime"], "edouttime": a["edouttime"],
        "hospital_expire_flag": hef,
    }


# ---------------------------------------------------------------------------------------------
def transfers_and_icustays(pop: Population, seed: int) -> tuple[dict, dict]:
    """Transfers of every admission and the ICU stays derived from them.

    Writes ``stay_id`` into ``pop.stays`` (stay_id = transfer_id of the stay's first ICU row,
    as in MIMIC-IV).
    """
    a = pop.admissions
    s = pop.stays
    rng = rng_for(seed, "transfers")
    n = len(a["hadm_id"])
    icu = a["kind"] > 0
    src = a["icu_src"]
    ward_cu = SERVICE_WARD_CU[a["service"]]
    ward_cu = np.where(rng.random(n) < 0.15, CU["Med/Surg"], ward_cu)
    segs: list[tuple] = []   # (adm, seq, eventtype, careunit, intime, outtime, stay_slot)

    def add(mask, seq, etype, unit, tin, tout, slot=-1):
        idx = np.flatnonzero(mask)
        if len(idx):
            segs.append((idx, np.full(len(idx), seq), np.broadcast_to(etype, (n,))[idx],
                         np.broadcast_to(unit, (n,))[idx], np.asarray(tin)[idx],
                         np.asarray(tout)[idx], np.full(len(idx), slot)))

    admit = a["admittime"]
    disch = a["dischtime"]
    first_unit_t = np.where(a["ed"], a["edouttime"], admit)
    add(a["ed"], 0, 0, CU[ref.ED_UNIT], a["edregtime"], a["edouttime"])
    # ward admissions: one ward unit, sometimes a second one
    ward = ~icu
    moved = ward & (rng.random(n) < 0.10) & (disch - first_unit_t > 12 * H)
    mid = to_minute(first_unit_t + (disch - first_unit_t) * rng.uniform(0.3, 0.7, n))
    other_cu = np.where(ward_cu == CU["Med/Surg"], CU["Medicine"], CU["Med/Surg"])
    valid = disch > admit
    add(ward, 1, 1, ward_cu, first_unit_t, np.where(moved, mid, np.where(valid, disch, admit)))
    add(moved, 2, 2, other_cu, mid, disch)
    # ICU admissions: PACU or ward before the ICU, the ICU stay(s), the ward after
    in1, out1, in2, out2 = a["icu_in1"], a["icu_out1"], a["icu_in2"], a["icu_out2"]
    pre_unit = np.where(src["surgical"], CU[ref.PACU_UNIT], ward_cu)
    has_pre = icu & (in1 > first_unit_t)
    add(has_pre, 1, 1, pre_unit, first_unit_t, in1)
    unit1 = ICU_CU[np.where(icu, src["unit1"], 0)]
    unit_last = ICU_CU[np.where(icu, src["unit_last"], 0)]
    change = icu & np.isfinite(src["unit_change_h"])
    change_t = to_minute(in1 + (np.nan_to_num(src["unit_change_h"]) * H).astype(np.int64))
    change &= (change_t > in1) & (change_t < out1)
    add(icu, 3, np.where(has_pre, 2, 1), unit1, in1, np.where(change, change_t, out1), 0)
    add(change, 4, 2, unit_last, change_t, out1)
    has2 = icu & (in2 != NULL_INT)
    add(has2, 5, 2, ward_cu, out1, in2)
    add(has2, 6, 2, ICU_CU[np.where(icu, src["unit2"], 0)], in2, out2, 1)
    last_out = np.where(has2, out2, out1)
    add(icu & (disch > last_out), 7, 2, ward_cu, last_out, disch)
    add(np.ones(n, bool), 9, 3, -1, disch, np.full(n, NULL_INT))

    cat = [np.concatenate([sg[i] for sg in segs]) for i in range(7)]
    adm_i, seq, etype, unit, tin, tout, slot = cat
    order = np.lexsort((seq, adm_i))
    adm_i, etype, unit, tin, tout, slot = (x[order] for x in (adm_i, etype, unit, tin, tout, slot))
    transfer_id = 3 * 10**7 + rng.choice(10**7, size=len(adm_i), replace=False)
    transfers = {"subject_id": pop.patients["subject_id"][a["pat"][adm_i]],
                 "hadm_id": a["hadm_id"][adm_i], "transfer_id": transfer_id,
                 "eventtype": Text(etype.astype(np.int32), EVENTTYPES),
                 "careunit": Text(unit.astype(np.int32), CAREUNITS),
                 "intime": tin, "outtime": tout}

    # stay_id of each planned ICU stay = transfer_id of its first ICU row
    key_rows = np.flatnonzero(slot >= 0)
    lookup = {(int(h), int(sl)): int(tid) for h, sl, tid in
              zip(adm_i[key_rows], slot[key_rows], transfer_id[key_rows])}
    s_slot = np.where(s["first_in_hadm"], 0, 1)
    s["stay_id"] = np.array([lookup[(int(h), int(sl))] for h, sl in zip(s["adm"], s_slot)],
                            dtype=np.int64)
    first_cu = ICU_CU[s["unit1"]]
    last_cu = ICU_CU[s["unit_last"]]
    # the first stay's last unit is where the unit change (if any) took it
    has_change = s["first_in_hadm"] & np.isfinite(s["unit_change_h"])
    last_cu = np.where(has_change, last_cu, first_cu)
    icustays = {"subject_id": s["subject_id"], "hadm_id": s["hadm_id"], "stay_id": s["stay_id"],
                "first_careunit": Text(first_cu.astype(np.int32), CAREUNITS),
                "last_careunit": Text(last_cu.astype(np.int32), CAREUNITS),
                "intime": s["intime"], "outtime": s["outtime"],
                "los": (s["outtime"] - s["intime"]) / DAY}
    return transfers, icustays


def services_table(pop: Population) -> dict:
    a = pop.admissions
    n = len(a["hadm_id"])
    change_h = np.where(a["kind"] > 0, np.nan, a["w_service_change_h"])
    changed = np.isfinite(change_h) & (a["first_service"] != a["service"])
    t_change = to_minute(a["admittime"] + (np.nan_to_num(change_h) * H).astype(np.int64))
    adm_i = np.r_[np.arange(n), np.flatnonzero(changed)]
    t = np.r_[a["admittime"], t_change[changed]]
    prev = np.r_[np.full(n, -1), a["first_service"][changed]]
    curr = np.r_[a["first_service"], a["service"][changed]]
    order = np.lexsort((t, adm_i))
    adm_i, t, prev, curr = adm_i[order], t[order], prev[order], curr[order]
    return {"subject_id": pop.patients["subject_id"][a["pat"][adm_i]], "hadm_id": a["hadm_id"][adm_i],
            "transfertime": t, "prev_service": Text(prev.astype(np.int32), SERVICES),
            "curr_service": Text(curr.astype(np.int32), SERVICES)}


# ---------------------------------------------------------------------------------------------
DX_KEYS = tuple(ref.DIAGNOSES)
DX = {k: i for i, k in enumerate(DX_KEYS)}
PX_KEYS = tuple(ref.PROCEDURES)
PX = {k: i for i, k in enumerate(PX_KEYS)}


def _code_vocab(table: dict[str, ref.Dx]) -> tuple[tuple[str, ...], tuple[int, ...], tuple[str, ...], np.ndarray]:
    """Distinct (code, version) pairs of a code table and the map key*2+is_icd10 -> pair index."""
    pairs: dict[tuple[str, int], str] = {}
    for d in table.values():
        pairs.setdefault((d.icd9, 9), d.title9)
        pairs.setdefault((d.icd10, 10), d.title10)
    keys = sorted(pairs, key=lambda p: (p[1], p[0]))
    index = {p: i for i, p in enumerate(keys)}
    key_to_pair = np.array([[index[(d.icd9, 9)], index[(d.icd10, 10)]] for d in table.values()])
    return (tuple(k[0] for k in keys), tuple(k[1] for k in keys),
            tuple(pairs[k] for k in keys), key_to_pair)


DX_CODES, DX_VERSIONS, DX_TITLES, DX_PAIR = _code_vocab(ref.DIAGNOSES)
PX_CODES, PX_VERSIONS, PX_TITLES, PX_PAIR = _code_vocab(ref.PROCEDURES)


def dictionary_tables() -> dict[str, dict]:
    """d_icd_diagnoses, d_icd_procedures, d_labitems, d_items."""
    items = {**ref.CHART_ITEMS, **ref.PROCEDURE_ITEMS}
    for iid, it in ref.INPUT_ITEMS.items():
        items[iid] = ref.Item(it.label, it.label, "inputevents", it.category, it.amountuom, "Solution")
    ids = np.array(sorted(items), dtype=np.int64)
    rows = [items[int(i)] for i in ids]
    labs = np.array(sorted(ref.LAB_ITEMS), dtype=np.int64)
    return {
        "hosp/d_icd_diagnoses": {"icd_code": np.array(DX_CODES, dtype=object),
                                 "icd_version": np.array(DX_VERSIONS),
                                 "long_title": np.array(DX_TITLES, dtype=object)},
        "hosp/d_icd_procedures": {"icd_code": np.array(PX_CODES, dtype=object),
                                  "icd_version": np.array(PX_VERSIONS),
                                  "long_title": np.array(PX_TITLES, dtype=object)},
        "hosp/d_labitems": {"itemid": labs,
                            "label": np.array([ref.LAB_ITEMS[int(i)].label for i in labs], dtype=object),
                            "fluid": np.array([ref.LAB_ITEMS[int(i)].fluid for i in labs], dtype=object),
                            "category": np.array([ref.LAB_ITEMS[int(i)].category for i in labs], dtype=object)},
        "icu/d_items": {"itemid": ids,
                        "label": np.array([r.label for r in rows], dtype=object),
                        "abbreviation": np.array([r.abbreviation for r in rows], dtype=object),
                        "linksto": np.array([r.linksto for r in rows], dtype=object),
                        "category": np.array([r.category for r in rows], dtype=object),
                        "unitname": np.array([r.unitname for r in rows], dtype=object),
                        "param_type": np.array([r.param_type for r in rows], dtype=object),
                        "lownormalvalue": np.full(len(ids), np.nan),
                        "highnormalvalue": np.full(len(ids), np.nan)},
    }


def diagnoses_table(pop: Population, seed: int) -> dict:
    """Principal diagnosis (seq_num 1), acute ICU diagnoses, then chronic comorbidities."""
    a = pop.admissions
    c = pop.comorbidities
    rng = rng_for(seed, "diagnoses")
    n = len(a["hadm_id"])
    icu = a["kind"] > 0
    src = a["icu_src"]
    principal = np.where(icu, np.array([DX[ref.ICU_GROUPS[g].dx] for g in ICU_GROUP_NAMES])[np.where(icu, src["grp"], 0)],
                         np.array([DX[ref.WARD_GROUPS[g].dx] for g in WARD_GROUP_NAMES])[a["w_grp"]])
    # a planned lung-cancer return is a chemotherapy admission (CMS PR2); the cancer comes second
    chemo = ~icu & a["planned_in"] & (a["w_grp"] == WARD_GROUP_NAMES.index("lung_cancer"))
    principal = np.where(chemo, DX["chemo_maintenance"], principal)
    rows_adm = [np.arange(n), np.flatnonzero(chemo)]
    rows_key = [principal, np.full(int(chemo.sum()), DX["lung_cancer"])]
    rows_rank = [np.zeros(n), np.full(int(chemo.sum()), 0.5)]
    sepsis = icu & (src["grp"] == ICU_GROUP_NAMES.index("sepsis"))
    acute = {"septic_shock": sepsis & src["vaso_window"],
             "severe_sepsis": sepsis & ~src["vaso_window"],
             "a_resp_failure": icu & src["vent_window"],
             "a_aki": icu & (src["renal"] > 1.2),
             "acidosis": icu & (src["circ"] > 1.3),
             "hyperkalemia": icu & (src["renal"] > 1.8) & (rng.random(n) < 0.5),
             "thrombocytopenia": icu & (src["coag"] > 1.3),
             "coma": icu & (src["neuro"] > 1.8)}
    for k, m in acute.items():
        idx = np.flatnonzero(m)
        rows_adm.append(idx)
        rows_key.append(np.full(len(idx), DX[k]))
        rows_rank.append(1 + rng.random(len(idx)))
    coded_p = np.where(icu, 0.9, 0.8)
    for k in ref.COMORBIDITIES:
        m = c[k][a["pat"]] & (rng.random(n) < coded_p)
        idx = np.flatnonzero(m)
        rows_adm.append(idx)
        rows_key.append(np.full(len(idx), DX[k]))
        # Charlson conditions tend to be listed before the minor ones
        rows_rank.append((2 if k in ref.CHARLSON_WEIGHT else 3) + rng.random(len(idx)))
    adm_i = np.concatenate(rows_adm)
    key = np.concatenate(rows_key)
    rank = np.concatenate(rows_rank)
    version = a["icd_version"][adm_i]
    pair = DX_PAIR[key, (version == 10).astype(int)]
    order = np.lexsort((rank, adm_i))
    adm_i, pair, version = adm_i[order], pair[order], version[order]
    # the same code twice in one admission is listed once
    _, first = np.unique(adm_i * 1_000_003 + pair, return_index=True)
    keep = np.zeros(len(adm_i), bool)
    keep[first] = True
    adm_i, pair, version = adm_i[keep], pair[keep], version[keep]
    start = np.r_[0, np.flatnonzero(np.diff(adm_i)) + 1]
    seq = np.arange(len(adm_i)) - np.repeat(start, np.diff(np.r_[start, len(adm_i)])) + 1
    return {"subject_id": pop.patients["subject_id"][a["pat"][adm_i]], "hadm_id": a["hadm_id"][adm_i],
            "seq_num": seq, "icd_code": Text(pair.astype(np.int32), DX_CODES),
            "icd_version": version}


def procedures_table(pop: Population, seed: int) -> dict:
    a = pop.admissions
    c = pop.comorbidities
    rng = rng_for(seed, "procedures")
    n = len(a["hadm_id"])
    icu = a["kind"] > 0
    src = a["icu_src"]
    rows = []   # (adm idx, key, time)

    def add(mask, key, t):
        idx = np.flatnonzero(mask)
        rows.append((idx, np.full(len(idx), PX[key]), np.asarray(t)[idx]))

    icu_proc = np.array([ref.ICU_GROUPS[g].procedure or "" for g in ICU_GROUP_NAMES])
    ward_proc = np.array([ref.WARD_GROUPS[g].procedure or "" for g in WARD_GROUP_NAMES])
    gproc = np.where(icu, icu_proc[np.where(icu, src["grp"], 0)], ward_proc[a["w_grp"]])
    ward_done = ~icu & ((a["w_atype"] == ATYPE["ELECTIVE"]) | (a["w_atype"] == ATYPE["SURGICAL SAME DAY ADMISSION"])
                        | (rng.random(n) < 0.7))
    t_proc = np.where(icu, a["icu_in1"] - 2 * H, a["admittime"] + (rng.uniform(2, 30, n) * H).astype(np.int64))
    t_proc = np.maximum(t_proc, a["admittime"])
    for key in PX_KEYS:
        add((gproc == key) & (icu | ward_done), key, t_proc)
    vent_t = a["icu_in1"] + (np.nan_to_num(src["vent_start_h"]) * H).astype(np.int64)
    vented = icu & np.isfinite(src["vent_start_h"])
    vdur = np.nan_to_num(src["vent_end_h"] - src["vent_start_h"])
    add(vented & (src["vent_start_h"] > 0), "intubation", vent_t)
    add(vented & (vdur < 96), "vent_short", vent_t)
    add(vented & (vdur >= 96), "vent_long", vent_t)
    add(icu & src["vaso_window"], "central_line", a["icu_in1"])
    add(icu & (src["grp"] == ICU_GROUP_NAMES.index("gi_bleed")) & (rng.random(n) < 0.6), "transfusion", a["icu_in1"])
    add(c["c_dialysis"][a["pat"]] & (rng.random(n) < 0.8) & (gproc != "hemodialysis"), "hemodialysis",
        a["admittime"] + DAY)
    adm_i = np.concatenate([r[0] for r in rows])
    key = np.concatenate([r[1] for r in rows])
    t = np.concatenate([r[2] for r in rows])
    t = np.minimum(np.maximum(t, a["admittime"][adm_i]), np.maximum(a["dischtime"][adm_i], a["admittime"][adm_i]))
    version = a["icd_version"][adm_i]
    pair = PX_PAIR[key, (version == 10).astype(int)]
    order = np.lexsort((t, adm_i))
    adm_i, pair, version, t = adm_i[order], pair[order], version[order], t[order]
    start = np.r_[0, np.flatnonzero(np.diff(adm_i)) + 1] if len(adm_i) else np.zeros(0, int)
    seq = np.arange(len(adm_i)) - np.repeat(start, np.diff(np.r_[start, len(adm_i)])) + 1
    return {"subject_id": pop.patients["subject_id"][a["pat"][adm_i]], "hadm_id": a["hadm_id"][adm_i],
            "seq_num": seq, "chartdate": _days(t), "icd_code": Text(pair.astype(np.int32), PX_CODES),
            "icd_version": version}


# ---------------------------------------------------------------------------------------------
def outpatient_visits(pop: Population, seed: int) -> dict[str, np.ndarray]:
    """Clinic visit days of each patient (omr rows and outpatient labs), outside admissions."""
    p = pop.patients
    a = pop.admissions
    rng = rng_for(seed, "visits")
    n_pat = len(p["subject_id"])
    # about 2.5 clinic visits a year (more for frailer patients) from a year before the first
    # admission to a year after the last discharge
    span_years = (p["last_disch"] - p["t_first"]) / (365.25 * DAY) + 2.0
    k = rng.poisson(np.clip(2.5 + 0.8 * p["frailty"], 0.5, None) * span_years)
    pat = np.repeat(np.arange(n_pat), k)
    lo = p["t_first"][pat] - 365 * DAY
    hi = p["last_disch"][pat] + 365 * DAY
    day = (lo + (rng.random(len(pat)) * (hi - lo)).astype(np.int64)) // DAY
    # drop visits inside an admission (from the day before admission to the day after discharge)
    adm_pat = a["pat"]
    a_lo = a["admittime"] // DAY - 1
    a_hi = np.maximum(a["dischtime"], a["admittime"]) // DAY + 1
    order = np.lexsort((a_lo, adm_pat))
    key_lo = adm_pat[order] * 10**6 + a_lo[order]
    vkey = pat * 10**6 + day
    j = np.searchsorted(key_lo, vkey, side="right") - 1
    inside = (j >= 0) & (adm_pat[order][np.maximum(j, 0)] == pat) & (day <= a_hi[order][np.maximum(j, 0)])
    pat, day = pat[~inside], day[~inside]
    order = np.lexsort((day, pat))
    pat, day = pat[order], day[order]
    dup = np.r_[False, (pat[1:] == pat[:-1]) & (day[1:] == day[:-1])]
    return {"pat": pat[~dup], "day": day[~dup], "labs": rng.random(int((~dup).sum())) < 0.25}


def omr_table(pop: Population, visits: dict[str, np.ndarray], seed: int) -> dict:
    p = pop.patients
    c = pop.comorbidities
    rng = rng_for(seed, "omr")
    pat, day = visits["pat"], visits["day"]
    n = len(pat)
    htn = c["htn"][pat]
    sbp = np.round(rng.normal(126 + 8 * htn - 4 * p["frailty"][pat], 15)).astype(np.int64)
    dbp = np.round(np.clip(rng.normal(74 + 0.25 * (sbp - 126), 9), 35, None)).astype(np.int64)
    kg = p["weight_kg"][pat] * np.exp(rng.normal(0, 0.03, n))
    inch = p["height_cm"][pat] / 2.54
    bmi = kg / (p["height_cm"][pat] / 100) ** 2
    has_w = rng.random(n) < 0.85
    has_bmi = has_w & (rng.random(n) < 0.85)
    has_h = rng.random(n) < 0.25
    # result_value is text ('128/74', '181.2'); built with Arrow, not as Python strings
    as_text = lambda x: pc.cast(pa.array(x), pa.string())            # noqa: E731
    bp = pc.binary_join_element_wise(as_text(sbp), as_text(dbp), "/")
    parts = [(np.ones(n, bool), 0, bp),
             (has_w, 1, as_text(np.round(kg * 2.2046226, 1))),
             (has_bmi, 2, as_text(np.round(bmi, 1))),
             (has_h, 3, as_text(np.round(inch)))]
    vi = np.concatenate([np.flatnonzero(m) for m, _, _ in parts])
    res = np.concatenate([np.full(int(m.sum()), r) for m, r, _ in parts])
    val = pa.concat_arrays([v.filter(pa.array(m)) for m, _, v in parts])
    order = np.lexsort((res, vi))
    vi, res = vi[order], res[order]
    return {"subject_id": p["subject_id"][pat[vi]], "chartdate": day[vi], "seq_num": np.ones(len(vi), np.int64),
            "result_name": Text(res.astype(np.int32), OMR_RESULTS), "result_value": val.take(pa.array(order))}

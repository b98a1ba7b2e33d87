"""Per-measurement tables for one chunk of patients: chartevents, labevents, inputevents,
procedureevents.

A chunk is a contiguous run of patients (in subject_id order) with their admissions and ICU
stays. :func:`make_chunk` expands the stay and admission plans of :mod:`.population` into rows
and returns one gzip member per table, so chunks can be made in any process and concatenated
in order. Every random draw comes from a stream keyed by (seed, chunk index), so the bytes do
not depend on how many processes run.

Physiology of a stay over time (hours ``tau`` since ICU intime): each latent organ state
``x`` becomes ``x(tau) = x - 0.6 * recovery(tau) * max(x, 0) + 1.5 * ramp(tau)``, where
``recovery = 1 - exp(-tau / 48)`` for patients who leave the ICU alive and
``ramp = exp(-(death - tau) / 10)`` for patients who die in it; vital signs add AR(1) noise
(hour-to-hour correlation 0.8) and measurement noise to a linear function of these states.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from . import reference as ref
from .population import (ART_BIT, DAY, H, ICU_GROUP_NAMES, MISS_BIT, O2_DEVICE, rng_for,
                         to_minute)
from .schema import NULL_INT, Text, encode_member

# ---------------------------------------------------------------------------------------------
# vocabularies of the text columns
# ---------------------------------------------------------------------------------------------
CHART_TEXT = tuple(dict.fromkeys(
    [*ref.GCS_EYE.values(), *ref.GCS_VERBAL.values(), ref.GCS_VERBAL_ETT, *ref.GCS_MOTOR.values(),
     *ref.VENT_MODES, *ref.VENT_MODES_HAMILTON, ref.DEVICE_ETT, *ref.O2_DEVICES,
     *ref.HEART_RHYTHMS, *ref.ECTOPY_TYPES, *ref.TEMP_SITES]))
CT = {v: i for i, v in enumerate(CHART_TEXT)}
CHART_UNITS = tuple(dict.fromkeys(i.unitname for i in ref.CHART_ITEMS.values() if i.unitname))
_MAX_ITEM = 230_000
CHART_UOM_CODE = np.full(_MAX_ITEM, -1, dtype=np.int32)
for _iid, _it in ref.CHART_ITEMS.items():
    if _it.unitname and _it.param_type == "Numeric":
        CHART_UOM_CODE[_iid] = CHART_UNITS.index(_it.unitname)

GCS_EYE_CODE = np.array([-1] + [CT[ref.GCS_EYE[k]] for k in (1, 2, 3, 4)])
GCS_VERBAL_CODE = np.array([-1] + [CT[ref.GCS_VERBAL[k]] for k in (1, 2, 3, 4, 5)])
GCS_MOTOR_CODE = np.array([-1] + [CT[ref.GCS_MOTOR[k]] for k in (1, 2, 3, 4, 5, 6)])
# GCS deficit (15 - total) -> (eye, verbal, motor) components
GCS_SPLIT = np.array([(4, 5, 6), (4, 4, 6), (3, 4, 6), (3, 3, 6), (3, 3, 5), (2, 3, 5), (2, 2, 5),
                      (2, 2, 4), (1, 2, 4), (1, 2, 3), (1, 1, 3), (1, 1, 2), (1, 1, 1)])
DEVICE_CODE = np.array([CT[d] for d in ref.O2_DEVICES])
MODE_CODE = np.array([CT[m] for m in ref.VENT_MODES])
MODE_P = np.array([0.40, 0.15, 0.20, 0.10, 0.07, 0.04, 0.02, 0.02])
HAMILTON_CODE = np.array([CT[m] for m in ref.VENT_MODES_HAMILTON])
RHYTHM_CODE = np.array([CT[r] for r in ref.HEART_RHYTHMS])
SITE_CODE = np.array([CT[s] for s in ref.TEMP_SITES])

# items of each window-controlled chart feature (rows dropped in the window when "missing")
FEATURE_CHART_ITEMS = {
    "heart_rate": (220045,), "resp_rate": (220210, 224690), "map": (220052, 220181, 225312),
    "spo2": (220277,), "temperature": (223761, 223762, 224642),
    "gcs": (220739, 223900, 223901), "mech_vent": (223849, 229314, 226732, 223834, 223835, 220339),
}

LAB_ITEMS = tuple(sorted(ref.LAB_ITEMS))
LAB_UNITS = tuple(dict.fromkeys(i.uom for i in ref.LAB_ITEMS.values() if i.uom))
PANELS = {"chem": 1, "cbc": 2, "coag": 4, "lft": 8, "alb": 16, "bg": 32}
PRIORITIES = ("ROUTINE", "STAT")
LAB_FLAGS = ("abnormal",)

INPUT_TEXT = ("01-Drips", "02-Fluids (Crystalloids)", "03-IV Fluid Bolus", "05-Med Bolus",
              "08-Antibiotics (IV)", "Continuous Med", "Continuous IV", "Bolus", "Drug Push",
              "Main order parameter", "Changed", "FinishedRunning", "Stopped")
IT = {v: i for i, v in enumerate(INPUT_TEXT)}
INPUT_UNITS = ("mg", "units", "ml", "mEq", "dose", "mcg/kg/min", "units/hour", "mL/hour",
               "mcg/hour")
IU = {v: i for i, v in enumerate(INPUT_UNITS)}

PROC_TEXT = ("min", "None", "Ventilation", "Intubation/Extubation", "Invasive Lines", "Imaging",
             "Procedures", "Task", "FinishedRunning", "Left Radial", "Right Radial",
             "Left Femoral", "Invasive Arterial")
PT = {v: i for i, v in enumerate(PROC_TEXT)}

ID_SPACE = 2**26   # specimen / order ids are scrambled into [1, 2**26]
LATENT = ("z", "circ", "renal", "liver", "coag", "infl", "resp")


@dataclass
class ChunkSpec:
    """Everything :func:`make_chunk` needs; plain arrays so it pickles to worker processes."""

    index: int
    n_chunks: int
    seed: int
    stays: dict
    admissions: dict
    visits: dict
    caregivers: np.ndarray
    providers: tuple


def scramble(counter: np.ndarray, salt: int) -> np.ndarray:
    """Distinct counters in [0, 2**26) -> distinct ids in [1, 2**26] that look random."""
    mult = (0x9E3779B1 + 2 * salt) | 1            # odd multiplier: a bijection modulo 2**26
    shifted = (counter.astype(np.uint64) + np.uint64(7_654_321)) % np.uint64(ID_SPACE)
    return ((shifted * np.uint64(mult)) % np.uint64(ID_SPACE)).astype(np.int64) + 1


def _ar1(rng: np.random.Generator, n: int, phi: float = 0.8) -> np.ndarray:
    """AR(1)-like noise with unit variance and lag-1 correlation ``phi``.

    White noise filtered by the AR(1) impulse response ``phi**k`` truncated at k = 24
    (``0.8**24 < 0.005``), in numpy only. It runs across stay boundaries: harmless, since
    the first hours of a stay still get N(0, 1) noise.
    """
    kernel = phi ** np.arange(25) * np.sqrt(1 - phi * phi)
    return np.convolve(rng.standard_normal(n), kernel)[:n]


def _course(x: np.ndarray, rec: np.ndarray, ramp: np.ndarray) -> np.ndarray:
    return x - 0.6 * rec * np.maximum(x, 0.0) + 1.5 * ramp


# ---------------------------------------------------------------------------------------------
# chartevents
# ---------------------------------------------------------------------------------------------
def _chartevents(spec: ChunkSpec, rng: np.random.Generator) -> dict:
    s = spec.stays
    S = len(s["intime"])
    intime, outtime = s["intime"], s["outtime"]
    first = (intime // H + 1) * H                       # next clock hour (intime is never on it)
    nh = np.where(outtime >= first, (outtime - first) // H + 1, 0)
    r = np.repeat(np.arange(S), nh)
    j = np.arange(len(r)) - np.repeat(np.cumsum(nh) - nh, nh)
    t = first[r] + j * H
    tau = (t - intime[r]) / H
    n = len(r)

    died = s["death_time"] != NULL_INT
    death_tau = np.where(died, (s["death_time"] - intime) / H, np.inf)
    ramp = np.where(died[r], np.exp(-np.maximum(death_tau[r] - tau, 0.0) / 10.0), 0.0)
    rec = np.where(died[r], 0.0, 1.0 - np.exp(-tau / 48.0))
    circ = _course(s["circ"][r], rec, ramp)
    resp = _course(s["resp"][r], rec, ramp)
    neuro = _course(s["neuro"][r], rec, ramp)
    infl = _course(s["infl"][r], rec, ramp)

    def active(start, end):
        st, en = s[start][r], s[end][r]
        return np.isfinite(st) & (tau >= st) & (tau <= en)

    vent = active("vent_start_h", "vent_end_h")
    vaso = active("vaso_start_h", "vaso_end_h")
    extubated = np.isfinite(s["vent_end_h"][r]) & (tau > s["vent_end_h"][r])
    art = s["artline"][r]
    art_alt = (s["stay_id"] % 20 == 0)[r]                # a few stays use the 'ART BP' items

    # per-stay schedule offsets
    off = rng.integers(0, 12, (6, S))
    every = lambda k, o: ((j + off[o][r]) % k) == 0     # noqa: E731
    keep = rng.random((4, n)) >= 0.03                     # missed hourly charting

    # vital signs: a per-stay baseline unrelated to acuity (beta-blockers, chronic hypertension,
    # COPD, ...), the organ states, hour-to-hour AR(1) variation and measurement noise
    base = rng.standard_normal((5, S))[:, r]
    hr = 84 + 10 * base[0] + 5 * circ + 4 * infl + 2 * resp + 9 * _ar1(rng, n) + 3 * rng.standard_normal(n)
    hr = np.clip(np.round(hr), 30, 220)
    map_raw = 80 + 8 * base[1] - 8 * circ - 3 * vent + 6 * _ar1(rng, n) + 3 * rng.standard_normal(n)
    mapv = np.where(vaso, np.maximum(map_raw, 63 + 4 * rng.standard_normal(n)), map_raw)
    mapv = np.clip(mapv, 25, 160)
    pp = np.clip(45 + 0.3 * (s["age"][r] - 65) + 8 * rng.standard_normal(n), 15, 110)
    sbp = np.round(mapv + 2 * pp / 3)
    dbp = np.round(mapv - pp / 3)
    mbp = np.round((sbp + 2 * dbp) / 3)
    rr = np.where(vent, 16 + 2 * resp + 2 * rng.standard_normal(n),
                  18 + 2.5 * base[2] + 3.0 * resp + 1.5 * infl + 2.5 * _ar1(rng, n)
                  + 1.5 * rng.standard_normal(n))
    rr = np.clip(np.round(rr), 4, 60)
    # transient desaturations (suctioning, position, probe) on top of the respiratory state
    dips = np.where(rng.random(n) < 0.015, rng.uniform(3, 12, n), 0.0)
    spo2 = 97.0 + 1.2 * base[3] - np.where(vent, 0.8, 2.2) * np.maximum(resp, 0) \
        - 1.5 * np.abs(_ar1(rng, n)) + 0.8 * rng.standard_normal(n) - dips
    spo2 = np.clip(np.round(spo2), 55, 100)
    temp_c = 37.0 + 0.25 * base[4] + 0.55 * infl - 0.2 * np.maximum(circ - 2, 0) \
        + 0.35 * _ar1(rng, n) + 0.15 * rng.standard_normal(n)
    temp_c = np.round(np.clip(temp_c, 32.0, 42.5), 1)
    temp_f = np.round(temp_c * 1.8 + 32, 1)
    deficit = np.clip(np.round(3.2 * np.maximum(neuro + 0.1, 0) + 0.7 * rng.standard_normal(n)), 0, 12)
    eye, verbal, motor = (GCS_SPLIT[deficit.astype(int)][:, k] for k in range(3))

    blocks: list[tuple] = []   # (grid rows, itemid, valuenum, text code, seconds after the hour)

    def emit(mask, itemid, valuenum=None, code=None):
        idx = np.flatnonzero(mask)
        vn = np.full(len(idx), np.nan) if valuenum is None else np.asarray(valuenum, float)[idx]
        tc = np.full(len(idx), -1) if code is None else np.asarray(code)[idx]
        blocks.append((idx, np.full(len(idx), itemid), vn, tc, np.zeros(len(idx), np.int64)))

    emit(keep[0], 220045, hr)
    emit(keep[1], 220277, spo2)
    emit(keep[2] & vent, 224690, rr)
    emit(keep[2] & ~vent, 220210, rr)
    abp = art & keep[3]
    for iid, iid_alt, v in ((220050, 225309, sbp), (220051, 225310, dbp), (220052, 225312, mbp)):
        emit(abp & ~art_alt, iid, v)
        emit(abp & art_alt, iid_alt, v)
    # every 15 min while vasopressors are titrated and in the first hour after admission
    sub = np.repeat(np.flatnonzero(vaso | (j == 0)), 3)
    sub_off = np.tile(np.array([15, 30, 45]) * 60, len(sub) // 3)
    sub_noise = rng.standard_normal((3, len(sub)))
    sub_art = art[sub]
    for iid, iid_nbp, v, k in ((220050, 220179, sbp, 0), (220051, 220180, dbp, 1), (220052, 220181, mbp, 2)):
        vv = np.round(v[sub] + 3 * sub_noise[0] * (1 - 0.5 * (k == 1)))
        item = np.where(sub_art, np.where(art_alt[sub], {220050: 225309, 220051: 225310, 220052: 225312}[iid], iid), iid_nbp)
        blocks.append((sub, item, vv, np.full(len(sub), -1), sub_off))
    blocks.append((sub, np.full(len(sub), 220045), np.clip(np.round(hr[sub] + 3 * sub_noise[1]), 30, 220),
                   np.full(len(sub), -1), sub_off))
    blocks.append((sub, np.full(len(sub), 220277), np.clip(np.round(spo2[sub] + sub_noise[2]), 55, 100),
                   np.full(len(sub), -1), sub_off))
    nbp = (~art & keep[3]) | (art & every(4, 0))
    nbp_noise = 4 * rng.standard_normal(n)
    emit(nbp, 220179, np.round(sbp + nbp_noise))
    emit(nbp, 220180, np.round(dbp + nbp_noise / 2))
    emit(nbp, 220181, np.round(mbp + nbp_noise * 2 / 3))
    afib = (s["stay_id"] % 7 == 0)[r]
    rhythm = np.where(afib, 3, np.where(hr > 100, 1, np.where(hr < 55, 2, 0)))
    rhythm_rows = keep[0] & (every(2, 1) | (rng.random(n) < 0.6))
    emit(rhythm_rows, 220048, None, RHYTHM_CODE[rhythm])
    ectopy = np.where(rng.random(n) < 0.85, CT["None"], np.where(rng.random(n) < 0.6, CT["PVC's"], CT["PAC's"]))
    emit(rhythm_rows, 224650, None, ectopy)
    gcs_rows = every(4, 2)
    emit(gcs_rows, 220739, eye, GCS_EYE_CODE[eye])
    emit(gcs_rows, 223900, np.where(vent, 1, verbal), np.where(vent, CT[ref.GCS_VERBAL_ETT],
                                                                GCS_VERBAL_CODE[verbal]))
    emit(gcs_rows, 223901, motor, GCS_MOTOR_CODE[motor])
    temp_rows = every(4, 3)
    use_f = s["temp_f"][r]
    emit(temp_rows & use_f, 223761, temp_f)
    emit(temp_rows & ~use_f, 223762, temp_c)
    site = np.where(vent, 2, rng.integers(0, 5, n))      # blood (catheter) temperature if vented
    emit(temp_rows & (rng.random(n) < 0.5), 224642, None, SITE_CODE[site])
    # respiratory support: device every 4 h, plus a row at the start of ventilation
    vent_begins = vent & (tau - 1 < s["vent_start_h"][r])
    resp_rows = every(4, 4) | vent_begins
    dev = np.where(vent, CT[ref.DEVICE_ETT],
                   np.where(extubated, CT["Nasal cannula"], DEVICE_CODE[s["device"][r]]))
    emit(resp_rows, 226732, None, dev)
    ham = s["hamilton"][r]
    mode = np.where(ham, HAMILTON_CODE[(s["stay_id"] % len(HAMILTON_CODE))[r]],
                    MODE_CODE[np.searchsorted(np.cumsum(MODE_P), (s["stay_id"] % 1000)[r] / 1000.0)])
    emit(resp_rows & vent & ~ham, 223849, None, mode)
    emit(resp_rows & vent & ham, 229314, None, mode)
    emit(resp_rows & vent, 223835, np.clip(np.round(40 + 12 * resp + 5 * rng.standard_normal(n)), 21, 100))
    emit(resp_rows & vent, 220339, np.clip(np.round(5 + 2 * np.maximum(resp, 0)), 5, 20))
    flow_dev = np.isin(dev, [CT["Nasal cannula"], CT["High flow nasal cannula"]])
    emit(resp_rows & ~vent & flow_dev, 223834,
         np.where(dev == CT["High flow nasal cannula"], np.round(30 + 20 * rng.random(n)),
                  np.round(2 + 2 * rng.random(n))))
    dka = (s["grp"] == ICU_GROUP_NAMES.index("dka"))[r]
    emit(every(6, 5), 225664, np.round(np.clip(135 + 30 * rng.standard_normal(n) + 150 * dka, 40, 600)))
    emit(j == 0, 226512, s["weight"][r])
    # alarm limits, set per stay and re-documented at each 4-hourly assessment
    alarm = every(4, 2)
    sid = s["stay_id"][r]
    emit(alarm, 220046, np.where(sid % 3 == 0, 130.0, 120.0))
    emit(alarm, 220047, np.where(sid % 5 == 0, 40.0, 50.0))
    emit(alarm, 223769, np.full(n, 100.0))
    emit(alarm, 223770, np.where(sid % 4 == 0, 88.0, 90.0))
    emit(alarm, 224161, np.where(sid % 2 == 0, 30.0, 35.0))
    emit(alarm, 224162, np.full(n, 8.0))

    row = np.concatenate([b[0] for b in blocks])
    itemid = np.concatenate([b[1] for b in blocks])
    valuenum = np.concatenate([b[2] for b in blocks])
    code = np.concatenate([b[3] for b in blocks])
    offset = np.concatenate([b[4] for b in blocks])
    stay = r[row]
    ct = t[row] + offset
    # features not measured in [intime, intime + 24 h]: drop their rows there
    in_window = (ct - intime[stay]) <= 24 * H
    drop = np.zeros(len(row), bool)
    for feat, items in FEATURE_CHART_ITEMS.items():
        missing = (s["missing"] & MISS_BIT[feat]) != 0
        drop |= missing[stay] & in_window & np.isin(itemid, items)
    stay, ct, itemid, valuenum, code = (x[~drop] for x in (stay, ct, itemid, valuenum, code))

    # implausible values next to valid ones (the feature step must drop them)
    art_rows = []
    for name, item_fn in (
            ("hr_zero", lambda m: (np.full(m.sum(), 220045), np.zeros(m.sum()))),
            ("hr_999", lambda m: (np.full(m.sum(), 220045), np.full(m.sum(), 999.0))),
            ("map_zero", lambda m: (np.where(s["artline"][m], 220052, 220181), np.zeros(m.sum()))),
            ("spo2_zero", lambda m: (np.full(m.sum(), 220277), np.zeros(m.sum()))),
            ("temp_wrong_unit", lambda m: (np.where(s["temp_f"][m], 223761, 223762),
                                           np.where(s["temp_f"][m], np.round(36.6 + rng.random(m.sum()), 1),
                                                    np.round(97.9 + 2 * rng.random(m.sum()), 1))))):
        m = ((s["artifacts"] & ART_BIT[name]) != 0) & (outtime - intime > 24 * H)
        if m.any():
            iid, v = item_fn(m)
            when = intime[m] + to_minute(rng.uniform(1.2, 22.8, m.sum()) * H)
            when = np.where(when % H == 0, when + 60 * 17, when)
            art_rows.append((np.flatnonzero(m), when, iid, v))
    if art_rows:
        stay = np.r_[stay, np.concatenate([a[0] for a in art_rows])]
        ct = np.r_[ct, np.concatenate([a[1] for a in art_rows])]
        itemid = np.r_[itemid, np.concatenate([a[2] for a in art_rows])]
        valuenum = np.r_[valuenum, np.concatenate([a[3] for a in art_rows])]
        code = np.r_[code, np.full(sum(len(a[0]) for a in art_rows), -1)]

    order = np.lexsort((itemid, ct, stay))
    stay, ct, itemid, valuenum, code = (x[order] for x in (stay, ct, itemid, valuenum, code))
    m = len(stay)
    shift = ct // (12 * H)
    cg = spec.caregivers[(s["stay_id"][stay] * 7919 + shift * 104_729) % len(spec.caregivers)]
    storetime = ct + 60 * np.round(1 + 39 * rng.random(m) ** 2).astype(np.int64)
    num = pa.array(valuenum, mask=np.isnan(valuenum))
    txt = pa.DictionaryArray.from_arrays(pa.array(code.astype(np.int32), mask=code < 0),
                                         pa.array(CHART_TEXT)).cast(pa.string())
    value = pc.coalesce(txt, pc.cast(num, pa.string()))
    warning = ((itemid == 220045) & ((valuenum > 130) | (valuenum < 45))) \
        | ((itemid == 220277) & (valuenum < 88))
    return {"subject_id": s["subject_id"][stay], "hadm_id": s["hadm_id"][stay],
            "stay_id": s["stay_id"][stay], "caregiver_id": cg, "charttime": ct,
            "storetime": storetime, "itemid": itemid, "value": value,
            "valuenum": np.where(code >= 0, np.where(np.isin(itemid, (220739, 223900, 223901)),
                                                     valuenum, np.nan), valuenum),
            "valueuom": Text(CHART_UOM_CODE[itemid], CHART_UNITS),
            "warning": warning.astype(np.int64)}


# ---------------------------------------------------------------------------------------------
# labevents
# ---------------------------------------------------------------------------------------------
def _mornings(rng: np.random.Generator, owner: np.ndarray, lo: np.ndarray, hi: np.ndarray,
              p: float) -> tuple[np.ndarray, np.ndarray]:
    """Morning draws (04:30-06:30) strictly inside each (lo, hi), each kept with probability p."""
    ok = hi > lo
    owner, lo, hi = owner[ok], lo[ok], hi[ok]
    k = (hi - lo) // DAY + 2
    o = np.repeat(np.arange(len(owner)), k)
    step = np.arange(len(o)) - np.repeat(np.cumsum(k) - k, k)
    tt = (lo[o] // DAY + step) * DAY + to_minute(rng.uniform(4.5, 6.5, len(o)) * H)
    keep = (tt > lo[o]) & (tt < hi[o]) & (rng.random(len(o)) < p)
    return owner[o[keep]], tt[keep]


def _labevents(spec: ChunkSpec, rng: np.random.Generator) -> dict:
    a = spec.admissions
    s = spec.stays
    A = len(a["hadm_id"])
    draws = []   # (admission, stay or -1, time, panels, stat, window-first-stay)

    def add(adm, stay, tt, panels, stat):
        adm = np.asarray(adm)
        draws.append((adm, np.broadcast_to(np.asarray(stay), adm.shape).copy(), np.asarray(tt),
                      np.broadcast_to(np.asarray(panels), adm.shape).copy(),
                      np.broadcast_to(np.asarray(stat), adm.shape).copy()))

    P = PANELS
    icu = a["kind"] > 0
    ward = ~icu
    # ward admissions: admission labs, then mornings (the last one before discharge is drawn)
    idx = np.flatnonzero(ward & (a["dischtime"] > a["admittime"] + H))
    add(idx, -1, a["admittime"][idx] + to_minute(rng.uniform(0.2, 1.0, len(idx)) * H),
        P["chem"] | P["cbc"] | np.where(rng.random(len(idx)) < 0.3, P["coag"], 0)
        | np.where(rng.random(len(idx)) < 0.25, P["lft"] | P["alb"], 0), 1)
    own, tt = _mornings(rng, idx, a["admittime"][idx] + 2 * H, a["dischtime"][idx] - 2 * H, 0.75)
    add(own, -1, tt, P["chem"] | P["cbc"] | np.where(rng.random(len(own)) < 0.15, P["coag"], 0), 0)
    # ICU admissions: before the ICU
    idx = np.flatnonzero(icu & (a["icu_in1"] - a["admittime"] > 0.7 * H))
    pre = (a["icu_in1"][idx] - a["admittime"][idx]) / H
    add(idx, -1, a["admittime"][idx] + to_minute(rng.uniform(0.2, np.minimum(1.5, pre - 0.4)) * H),
        P["chem"] | P["cbc"] | np.where(rng.random(len(idx)) < 0.5, P["coag"], 0)
        | np.where(rng.random(len(idx)) < 0.35, P["bg"], 0), 1)
    own, tt = _mornings(rng, idx, a["admittime"][idx] + 3 * H, a["icu_in1"][idx] - 20 * 60, 0.8)
    add(own, -1, tt, P["chem"] | P["cbc"], 0)

    # ICU stays. First stays: labs in [intime, intime + 24 h] follow the stay's missing flags.
    S = len(s["intime"])
    adm_of_stay = s["adm_local"]
    miss = s["missing"]
    have = {f: (miss & MISS_BIT[f]) == 0 for f in ("creatinine", "platelets", "inr", "bilirubin",
                                                    "albumin", "lactate")}
    window_panels = (np.where(have["creatinine"], P["chem"], 0) | np.where(have["platelets"], P["cbc"], 0)
                     | np.where(have["inr"], P["coag"], 0) | np.where(have["bilirubin"], P["lft"], 0)
                     | np.where(have["albumin"], P["alb"], 0) | np.where(have["lactate"], P["bg"], 0))
    first = s["first_in_hadm"]
    st = np.arange(S)
    t_adm = s["intime"] + to_minute(rng.uniform(0.3, 2.5, S) * H)
    add(adm_of_stay, st, t_adm, np.where(first, window_panels, 0b111111 & ~P["alb"]), 1)
    # a morning draw inside the window
    morning = (t_adm // DAY) * DAY + to_minute(rng.uniform(4.5, 6.5, S) * H)
    morning = np.where(morning < t_adm + 3 * H, morning + DAY, morning)
    ok = first & (morning <= s["intime"] + to_minute(np.full(S, 23.5 * H)))
    mp = (np.where(have["creatinine"], P["chem"], 0) | np.where(have["platelets"], P["cbc"], 0)
          | np.where(have["inr"] & (rng.random(S) < 0.5), P["coag"], 0)
          | np.where(have["lactate"] & (s["vent_window"] | (rng.random(S) < 0.3)), P["bg"], 0))
    add(adm_of_stay[ok], st[ok], morning[ok], mp[ok], 0)
    # repeated lactate while it is high (sepsis bundles)
    high = first & have["lactate"] & (s["circ"] > 0.8)
    for k in (1, 2):
        tk = t_adm + k * to_minute(np.full(S, 4 * H)) + to_minute(rng.uniform(0, 1.5, S) * H)
        ok = high & (tk <= s["intime"] + 23 * H) & (rng.random(S) < 0.8)
        add(adm_of_stay[ok], st[ok], tk[ok], P["bg"], 1)
    # daily labs for the rest of the ICU stay (after the window for first stays)
    lo = np.where(first, s["intime"] + 24 * H + 5 * 60, s["intime"] + 3 * H)
    own, tt = _mornings(rng, st, lo, s["outtime"], 0.97)
    u = rng.random(len(own))
    vented = np.isfinite(s["vent_start_h"][own])
    add(adm_of_stay[own], own, tt, P["chem"] | P["cbc"] | np.where(u < 0.6, P["coag"], 0)
        | np.where(u < 0.25, P["lft"] | P["alb"], 0)
        | np.where(vented | (rng.random(len(own)) < 0.2), P["bg"], 0), 0)
    # ward days after each ICU stay
    nxt = np.r_[s["intime"][1:], 0]
    same_adm = np.r_[s["hadm_id"][1:] == s["hadm_id"][:-1], False]
    hi = np.where(same_adm, nxt - 30 * 60, a["dischtime"][adm_of_stay])
    own, tt = _mornings(rng, st, s["outtime"] + 30 * 60, hi, 0.8)
    add(adm_of_stay[own], -2 - own, tt, P["chem"] | P["cbc"], 0)   # -2 - stay: after that stay

    adm_i = np.concatenate([d[0] for d in draws]).astype(np.int64)
    stay_i = np.concatenate([d[1] for d in draws]).astype(np.int64)
    t_draw = np.concatenate([d[2] for d in draws]).astype(np.int64)
    panels = np.concatenate([d[3] for d in draws]).astype(np.int64)
    stat = np.concatenate([d[4] for d in draws]).astype(np.int64)
    # outpatient labs (no hadm_id) on clinic days
    v = spec.visits
    vi = np.flatnonzero(v["labs"])
    n_out = len(vi)
    out_t = v["day"][vi] * DAY + to_minute(rng.uniform(8, 15, n_out) * H)

    # latent state of each draw: ICU admissions use their stays' states and time courses,
    # ward admissions their own (milder) state
    D = len(adm_i)
    has_icu = icu[adm_i]
    lat = {key: a["lat_" + key][adm_i].astype(float) for key in LATENT}
    if S:
        in_stay = stay_i >= 0
        after_stay = stay_i <= -2
        sref = np.where(in_stay, stay_i, np.where(after_stay, -2 - stay_i,
                                                  np.maximum(a["first_stay_local"][adm_i], 0)))
        tau = (t_draw - s["intime"][sref]) / H
        died = s["death_time"][sref] != NULL_INT
        death_tau = np.where(died, (s["death_time"][sref] - s["intime"][sref]) / H, np.inf)
        ramp = np.where(died, np.exp(-np.maximum(death_tau - tau, 0) / 10.0), 0.0)
        rec = np.where(died, 0.0, 1.0 - np.exp(-np.maximum(tau, 0) / 48.0))
        rec = np.where(after_stay, np.maximum(rec, 0.7), rec)
        for key in LATENT:
            lat[key] = np.where(has_icu, _course(s[key][sref], rec, ramp), lat[key])
    ckd = a["ckd"][adm_i]
    dial = a["dialysis"][adm_i]
    anticoag = a["anticoag"][adm_i]
    male = a["male"][adm_i]
    anemia = a["anemia"][adm_i]
    dka = a["dka"][adm_i]
    gib = a["gi_bleed"][adm_i]
    # a ward admission's instability (readmission risk) shows in its labs, most in the last one
    order0 = np.lexsort((t_draw, adm_i))
    adm_i, stay_i, t_draw, panels, stat = (x[order0] for x in (adm_i, stay_i, t_draw, panels, stat))
    lat = {k: v_[order0] for k, v_ in lat.items()}
    ckd, dial, anticoag, male, anemia, dka, gib = (x[order0] for x in (ckd, dial, anticoag, male, anemia, dka, gib))
    last_draw = np.r_[adm_i[1:] != adm_i[:-1], True] if D else np.zeros(0, bool)
    instab = np.where(~icu[adm_i], a["instability"][adm_i] * np.where(last_draw, 1.0, 0.5), 0.0)

    # outpatient draws appended (hadm_id NULL): baseline state
    n_all = D + n_out
    adm_all = np.r_[adm_i, np.full(n_out, -1)]
    t_all = np.r_[t_draw, out_t]
    panels_all = np.r_[panels, np.full(n_out, P["chem"] | P["cbc"])]
    stat_all = np.r_[stat, np.full(n_out, -1)]

    for key in lat:
        lat[key] = np.r_[lat[key], v["lat_" + key][vi]]
    ckd, dial, anticoag, male, anemia = (np.r_[x, v[k][vi]] for x, k in (
        (ckd, "ckd"), (dial, "dialysis"), (anticoag, "anticoag"), (male, "male"), (anemia, "anemia")))
    dka, gib = np.r_[dka, np.zeros(n_out, bool)], np.r_[gib, np.zeros(n_out, bool)]
    instab = np.r_[instab, np.zeros(n_out)]
    subj_all = np.r_[a["subject_id"][adm_i], v["subject_id"][vi]]
    hadm_all = np.r_[a["hadm_id"][adm_i], np.full(n_out, NULL_INT)]
    art_all = np.r_[(stay_i >= 0) & (s["artline"][np.maximum(stay_i, 0)] if S else False),
                    np.zeros(n_out, bool)]

    # one row per (draw, item)
    z, circ, renal, liver, coag, infl, resp = (lat[k] for k in ("z", "circ", "renal", "liver", "coag", "infl", "resp"))
    N = lambda: rng.standard_normal(n_all)  # noqa: E731
    cr = np.exp(np.log(np.where(male, 0.95, 0.75)) + 0.32 * renal + 0.7 * ckd + 1.5 * dial
                + 0.2 * instab + 0.08 * N())
    hco3 = np.round(np.clip(24 - 2.2 * np.maximum(circ, 0) - 1.5 * ckd + 2 * N(), 5, 45))
    na = np.round(np.clip(139 - 1.5 * liver - 2.5 * instab + 3 * N(), 110, 165))
    cl = np.round(np.clip(na - 36 + 3 * N(), 80, 130))
    values = {
        50912: np.round(np.clip(cr, 0.2, 20), 1),
        51006: np.round(np.clip(cr * 16 + 4 * N(), 3, 200)),
        50983: na,
        50971: np.round(np.clip(4.1 + 0.25 * renal + 0.35 * N(), 2.2, 7.5), 1),
        50902: cl,
        50882: hco3,
        50931: np.round(np.clip(125 + 30 * N() + 250 * dka, 40, 900)),
        50868: np.clip(na - cl - hco3, 3, 40),
        50862: np.round(np.clip(3.6 - 0.28 * z - 0.35 * liver - 0.1 * infl + 0.25 * N(), 1.0, 5.5), 1),
        50885: np.round(np.clip(np.exp(np.log(0.6) + 0.65 * liver + 0.2 * N()), 0.1, 40), 1),
        50861: np.round(np.clip(np.exp(np.log(28) + 0.4 * liver + 0.5 * N()), 3, 5000)),
        50878: np.round(np.clip(np.exp(np.log(32) + 0.45 * liver + 0.3 * circ + 0.5 * N()), 5, 8000)),
        50863: np.round(np.clip(np.exp(np.log(90) + 0.3 * liver + 0.3 * N()), 20, 2000)),
        51301: np.round(np.clip(np.exp(np.log(8.5) + 0.3 * infl + 0.2 * instab + 0.25 * N()), 0.2, 80), 1),
        51222: np.round(np.clip(12.2 - 1.2 * (~male) - 1.6 * gib - 1.0 * anemia - 0.35 * z
                                - 1.0 * instab + 1.1 * N(), 4.0, 19.0), 1),
        51265: np.round(np.clip(np.exp(np.log(230) - 0.33 * coag + 0.2 * N()), 4, 900)),
        51237: np.round(np.clip(np.exp(np.log(1.1) + 0.15 * np.maximum(coag, 0) + 0.2 * np.maximum(liver, 0)
                                       + 0.5 * anticoag + 0.05 * N()), 0.8, 12), 1),
        50820: np.round(np.clip(7.39 - 0.04 * np.maximum(circ, 0) + 0.03 * N(), 6.8, 7.7), 2),
        50821: np.round(np.clip(np.where(art_all, 95 - 14 * np.maximum(resp, 0), 40) + 15 * N(), 25, 500)),
        50818: np.round(np.clip(40 + 3 * resp + 4 * N(), 15, 110)),
        50802: np.round(np.clip(-2.2 * np.maximum(circ, 0) + 2 * N(), -25, 15)),
        50804: np.round(np.clip(hco3 + 1 + N(), 5, 45)),
        50813: np.round(np.clip(np.exp(np.log(1.3) + 0.42 * circ + 0.15 * infl + 0.18 * N()), 0.3, 25), 1),
    }
    values[51221] = np.round(np.clip(values[51222] * 3.0 + N(), 12, 60), 1)
    values[51274] = np.round(values[51237] * 11.5 + 0.5 * N(), 1)
    values[51275] = np.round(np.clip(30 + 4 * np.maximum(coag, 0) + 2 * N(), 20, 150), 1)
    panel_items = ((P["chem"], ref.PANEL_CHEM), (P["cbc"], ref.PANEL_CBC), (P["coag"], ref.PANEL_COAG),
                   (P["lft"], ref.PANEL_LFT), (P["alb"], (50862,)), (P["bg"], ref.PANEL_BG))
    rows_d, rows_item, rows_spec = [], [], []
    specimen_group = {P["chem"]: 0, P["lft"]: 0, P["alb"]: 0, P["cbc"]: 1, P["coag"]: 2, P["bg"]: 3}
    for bit, items in panel_items:
        d = np.flatnonzero(panels_all & bit)
        for iid in items:
            rows_d.append(d)
            rows_item.append(np.full(len(d), iid))
            rows_spec.append(d * 4 + specimen_group[bit])
    d = np.concatenate(rows_d)
    item = np.concatenate(rows_item)
    spec_key = np.concatenate(rows_spec)
    order = np.lexsort((item, spec_key, t_all[d], subj_all[d]))
    d, item, spec_key = d[order], item[order], spec_key[order]
    m = len(d)
    valuenum = np.full(m, np.nan)
    for iid, vals in values.items():
        sel = item == iid
        valuenum[sel] = vals[d[sel]]
    is_spec_type = item == 52033
    spec_text = np.where(art_all[d], 0, 1)
    lab = [ref.LAB_ITEMS[i] for i in LAB_ITEMS]
    pos = np.searchsorted(LAB_ITEMS, item)
    lo = np.array([np.nan if x.ref_lower is None else x.ref_lower for x in lab])[pos]
    hi = np.array([np.nan if x.ref_upper is None else x.ref_upper for x in lab])[pos]
    uom = np.array([-1 if x.uom is None else LAB_UNITS.index(x.uom) for x in lab])[pos]
    flag = np.where((valuenum < lo) | (valuenum > hi), 0, -1)
    num = pa.array(valuenum, mask=np.isnan(valuenum))
    txt = pa.DictionaryArray.from_arrays(
        pa.array(np.where(is_spec_type, spec_text, -1).astype(np.int32), mask=~is_spec_type),
        pa.array(list(ref.SPECIMEN_TYPES))).cast(pa.string())
    value = pc.coalesce(txt, pc.cast(num, pa.string()))
    # ids: labevent_id increases through the file; specimen_id is one per tube, scrambled
    cap = (2**31 - 2) // spec.n_chunks
    if m >= cap:
        raise RuntimeError(f"chunk {spec.index}: {m} lab rows exceed the id capacity {cap}")
    labevent_id = 1 + spec.index * cap + np.arange(m)
    uniq, inv = np.unique(spec_key, return_inverse=True)
    scap = ID_SPACE // spec.n_chunks
    if len(uniq) >= scap:
        raise RuntimeError(f"chunk {spec.index}: {len(uniq)} specimens exceed the id capacity {scap}")
    specimen_id = scramble(spec.index * scap + inv, salt=1)
    prov = rng.integers(0, len(spec.providers), m)
    prov = np.where(rng.random(m) < 0.45, -1, prov)
    st_all = stat_all[d]
    charttime = t_all[d]
    return {"labevent_id": labevent_id, "subject_id": subj_all[d], "hadm_id": hadm_all[d],
            "specimen_id": specimen_id, "itemid": item,
            "order_provider_id": Text(prov.astype(np.int32), spec.providers),
            "charttime": charttime,
            "storetime": charttime + 60 * np.round(20 + 100 * rng.random(m)).astype(np.int64),
            "value": value, "valuenum": valuenum,
            "valueuom": Text(uom.astype(np.int32), LAB_UNITS),
            "ref_range_lower": lo, "ref_range_upper": hi,
            "flag": Text(flag.astype(np.int32), LAB_FLAGS),
            "priority": Text(st_all.astype(np.int32), PRIORITIES),
            "comments": Text(np.full(m, -1, np.int32), ("",))}


# ---------------------------------------------------------------------------------------------
# inputevents and procedureevents
# ---------------------------------------------------------------------------------------------
def _segments(stay: np.ndarray, start_h: np.ndarray, end_h: np.ndarray, seg_h: float
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Split intervals into consecutive pieces of about ``seg_h`` hours.

    Returns (stay, piece start, piece end, is-last-piece) in hours since intime.
    """
    dur = end_h - start_h
    k = np.maximum(1, np.ceil(dur / seg_h)).astype(np.int64)
    o = np.repeat(np.arange(len(stay)), k)
    i = np.arange(len(o)) - np.repeat(np.cumsum(k) - k, k)
    step = dur[o] / k[o]
    return stay[o], start_h[o] + i * step, start_h[o] + (i + 1) * step, i == k[o] - 1


def _inputevents(spec: ChunkSpec, rng: np.random.Generator) -> dict:
    s = spec.stays
    S = len(s["intime"])
    los = (s["outtime"] - s["intime"]) / H
    st = np.arange(S)
    vaso_missing = (s["missing"] & MISS_BIT["vasopressor"]) != 0
    parts = []   # dicts of per-row arrays

    def add(stay, t0, t1, item, amount, amountuom, rate, rateuom, cat, desc, status, link):
        parts.append({"stay": stay, "t0": t0, "t1": t1, "item": np.broadcast_to(item, stay.shape),
                      "amount": amount, "amountuom": np.broadcast_to(amountuom, stay.shape),
                      "rate": np.broadcast_to(rate, stay.shape).astype(float),
                      "rateuom": np.broadcast_to(rateuom, stay.shape),
                      "cat": np.broadcast_to(cat, stay.shape), "desc": np.broadcast_to(desc, stay.shape),
                      "status": status, "link": link})

    link_counter = [0]

    def links(n):
        out = np.arange(link_counter[0], link_counter[0] + n)
        link_counter[0] += n
        return out

    # maintenance fluid: starts early (or after the window when the stay has no inputevents there)
    t0 = np.where(vaso_missing, 24.5 + rng.uniform(0, 3, S), rng.uniform(0.2, 3.0, S))
    t1 = np.minimum(los - 0.3, t0 + rng.uniform(12, 96, S))
    ok = t1 > t0 + 0.5
    fluid = np.where(rng.random(S) < 0.7, 225158, 220949)
    ss, a0, a1, last = _segments(st[ok], t0[ok], t1[ok], 8.0)
    lk = links(int(ok.sum()))[np.searchsorted(st[ok], ss)]
    rate = np.round(rng.choice([50.0, 75.0, 100.0, 125.0], len(ss)))
    add(ss, a0, a1, fluid[ss], np.round(rate * (a1 - a0), 1), IU["ml"], rate, IU["mL/hour"],
        IT["02-Fluids (Crystalloids)"], IT["Continuous IV"],
        np.where(last, IT["FinishedRunning"], IT["Changed"]), lk)
    # fluid boluses in shock
    nb = np.where(s["circ"] > 0.5, rng.integers(1, 4, S), 0)
    bs = np.repeat(st, nb)
    bt = np.where(vaso_missing[bs], 25.0 + rng.uniform(0, 6, len(bs)), rng.uniform(0.2, 12, len(bs)))
    okb = bt + 1 < los[bs]
    bs, bt = bs[okb], bt[okb]
    add(bs, bt, bt + rng.uniform(0.4, 1.0, len(bs)), 225828, np.full(len(bs), 1000.0), IU["ml"],
        np.nan, -1, IT["03-IV Fluid Bolus"], IT["Bolus"], np.full(len(bs), IT["FinishedRunning"]),
        links(len(bs)))
    # vasopressors: rate rows of about 3 h, a new rate at each row
    vs = np.flatnonzero(np.isfinite(s["vaso_start_h"]))
    base = {221906: 0.12, 221749: 1.0, 221662: 7.0, 221289: 0.06, 221653: 5.0, 221986: 0.4}
    for drug_col in ("vaso_drug1", "vaso_drug2"):
        drug = s[drug_col][vs]
        sel = vs[drug > 0]
        if not len(sel):
            continue
        d0 = s["vaso_start_h"][sel]
        d1 = s["vaso_end_h"][sel]
        if drug_col == "vaso_drug2":
            d0 = d0 + (d1 - d0) * rng.uniform(0.1, 0.5, len(sel))
        ss, a0, a1, last = _segments(sel, d0, d1, 3.0)
        owner = np.searchsorted(sel, ss)
        lk = links(len(sel))[owner]
        item = s[drug_col][ss]
        is_vp = item == 222315
        level = np.exp(0.45 * np.maximum(s["circ"][ss], 0) + 0.3 * rng.standard_normal(len(ss)))
        rate = np.where(is_vp, 2.4, np.array([base.get(int(x), 0.1) for x in item]) * level)
        rate = np.round(rate, 3)
        hours = a1 - a0
        w = s["weight"][ss]
        amount = np.where(is_vp, rate * hours, rate * w * hours * 60 / 1000.0)  # mg (units for vasopressin)
        add(ss, a0, a1, item, np.round(amount, 4), np.where(is_vp, IU["units"], IU["mg"]), rate,
            np.where(is_vp, IU["units/hour"], IU["mcg/kg/min"]), IT["01-Drips"], IT["Continuous Med"],
            np.where(last, np.where(rng.random(len(ss)) < 0.5, IT["FinishedRunning"], IT["Stopped"]),
                     IT["Changed"]), lk)
    # sedation / analgesia while ventilated
    ve = np.flatnonzero(np.isfinite(s["vent_start_h"]))
    for item, p, r_lo, r_hi, amt_div, ru in ((222168, 0.7, 10, 50, None, IU["mcg/kg/min"]),
                                             (221744, 0.5, 25, 150, 1000.0, IU["mcg/hour"])):
        sel = ve[rng.random(len(ve)) < p]
        if not len(sel):
            continue
        ss, a0, a1, last = _segments(sel, s["vent_start_h"][sel], s["vent_end_h"][sel], 4.0)
        lk = links(len(sel))[np.searchsorted(sel, ss)]
        rate = np.round(rng.uniform(r_lo, r_hi, len(ss)))
        hours = a1 - a0
        amount = rate * s["weight"][ss] * hours * 60 / 1000.0 if amt_div is None else rate * hours / amt_div
        add(ss, a0, a1, item, np.round(amount, 4), IU["mg"], rate, ru, IT["01-Drips"], IT["Continuous Med"],
            np.where(last, IT["FinishedRunning"], IT["Changed"]), lk)
    # heparin drip
    hep = st[(s["anticoag"] | (rng.random(S) < 0.1)) & (los > 6)]
    if len(hep):
        h0 = np.where(vaso_missing[hep], 25.0, 2.0) + rng.uniform(0, 4, len(hep))
        h1 = np.minimum(los[hep] - 0.5, h0 + rng.uniform(12, 72, len(hep)))
        okh = h1 > h0 + 1
        ss, a0, a1, last = _segments(hep[okh], h0[okh], h1[okh], 6.0)
        lk = links(int(okh.sum()))[np.searchsorted(hep[okh], ss)]
        rate = np.round(rng.uniform(800, 1400, len(ss)) / 50) * 50
        add(ss, a0, a1, 225152, np.round(rate * (a1 - a0)), IU["units"], rate, IU["units/hour"],
            IT["01-Drips"], IT["Continuous Med"], np.where(last, IT["FinishedRunning"], IT["Changed"]), lk)
    # pushes and antibiotics
    infect = np.isin(s["grp"], [ICU_GROUP_NAMES.index(g) for g in ("sepsis", "pneumonia")])
    chf = s["grp"] == ICU_GROUP_NAMES.index("chf")
    for item, who, every_h, amount, uom, dur_h, cat in (
            (225798, infect, 12.0, 1.0, IU["dose"], 1.0, IT["08-Antibiotics (IV)"]),
            (221794, chf, 12.0, 40.0, IU["mg"], 1 / 60, IT["05-Med Bolus"]),
            (225166, rng.random(S) < 0.3, 24.0, 20.0, IU["mEq"], 1 / 60, IT["05-Med Bolus"])):
        sel = st[who]
        if not len(sel):
            continue
        k = np.maximum(1, (los[sel] // every_h).astype(np.int64))
        ss = np.repeat(sel, k)
        i = np.arange(len(ss)) - np.repeat(np.cumsum(k) - k, k)
        tt = 1.0 + i * every_h + rng.uniform(0, 1, len(ss))
        tt = np.where(vaso_missing[ss] & (tt < 24.5), tt + 24.5, tt)
        ok = tt + dur_h < los[ss]
        ss, tt = ss[ok], tt[ok]
        add(ss, tt, tt + dur_h, item, np.full(len(ss), amount), uom, np.nan, -1, cat, IT["Drug Push"],
            np.full(len(ss), IT["FinishedRunning"]), links(len(ss)))

    stay = np.concatenate([p_["stay"] for p_ in parts])
    col = {k: np.concatenate([np.asarray(p_[k]) for p_ in parts]) for k in parts[0] if k != "stay"}
    # no row may touch the window of a stay flagged as having no inputevents there
    t0 = s["intime"][stay] + to_minute(col["t0"] * H)
    t1 = s["intime"][stay] + to_minute(col["t1"] * H)
    t1 = np.maximum(t1, t0 + 60)
    bad = vaso_missing[stay] & (t0 <= s["intime"][stay] + 24 * H) & (t1 >= s["intime"][stay])
    keep = ~bad
    stay, t0, t1 = stay[keep], t0[keep], t1[keep]
    col = {k: v[keep] for k, v in col.items()}
    order = np.lexsort((col["item"], t0, stay))
    stay, t0, t1 = stay[order], t0[order], t1[order]
    col = {k: v[order] for k, v in col.items()}
    m = len(stay)
    ocap = ID_SPACE // (2 * spec.n_chunks)   # inputevents use the lower half of the id space
    if m >= ocap:
        raise RuntimeError(f"chunk {spec.index}: {m} input rows exceed the order id capacity {ocap}")
    orderid = scramble(spec.index * ocap + np.arange(m), salt=2)
    # linkorderid: the orderid of the first row of the same infusion
    _, first_row, inverse = np.unique(col["link"], return_index=True, return_inverse=True)
    linkorderid = orderid[first_row][inverse]
    drip = col["cat"] == IT["01-Drips"]
    w = s["weight"][stay]
    return {"subject_id": s["subject_id"][stay], "hadm_id": s["hadm_id"][stay], "stay_id": s["stay_id"][stay],
            "caregiver_id": spec.caregivers[(s["stay_id"][stay] * 31 + t0 // (12 * H)) % len(spec.caregivers)],
            "starttime": t0, "endtime": t1, "storetime": t0 + 60 * rng.integers(5, 90, m),
            "itemid": col["item"], "amount": col["amount"],
            "amountuom": Text(col["amountuom"].astype(np.int32), INPUT_UNITS),
            "rate": col["rate"], "rateuom": Text(col["rateuom"].astype(np.int32), INPUT_UNITS),
            "orderid": orderid, "linkorderid": linkorderid,
            "ordercategoryname": Text(col["cat"].astype(np.int32), INPUT_TEXT),
            "secondaryordercategoryname": Text(np.where(drip, IT["02-Fluids (Crystalloids)"], -1).astype(np.int32), INPUT_TEXT),
            "ordercomponenttypedescription": Text(np.full(m, IT["Main order parameter"], np.int32), INPUT_TEXT),
            "ordercategorydescription": Text(col["desc"].astype(np.int32), INPUT_TEXT),
            "patientweight": w,
            "totalamount": np.where(drip, 250.0, np.where(col["amountuom"] == IU["ml"], col["amount"], np.nan)),
            "totalamountuom": Text(np.where(drip | (col["amountuom"] == IU["ml"]), IU["ml"], -1).astype(np.int32), INPUT_UNITS),
            "isopenbag": np.where(drip, 1, 0), "continueinnextdept": np.zeros(m, np.int64),
            "statusdescription": Text(col["status"].astype(np.int32), INPUT_TEXT),
            "originalamount": col["amount"], "originalrate": col["rate"]}


def _procedureevents(spec: ChunkSpec, rng: np.random.Generator) -> dict:
    s = spec.stays
    S = len(s["intime"])
    los = (s["outtime"] - s["intime"]) / H
    st = np.arange(S)
    rows = []   # (stay, t0 h, t1 h, item, value, uom, category, location)

    def add(stay, t0, t1, item, value, uom, catg, loc=-1, loccat=-1):
        n = len(stay)
        rows.append((stay, t0, t1, np.full(n, item), value, np.full(n, uom), np.full(n, catg),
                     np.broadcast_to(loc, (n,)), np.full(n, loccat)))

    vent = np.isfinite(s["vent_start_h"])
    doc = vent & s["vent_documented"]
    v = st[doc]
    add(v, s["vent_start_h"][v], s["vent_end_h"][v], 225792,
        np.round((s["vent_end_h"][v] - s["vent_start_h"][v]) * 60), PT["min"], PT["Ventilation"])
    intub = st[vent & (s["vent_start_h"] > 0)]
    add(intub, s["vent_start_h"][intub], s["vent_start_h"][intub] + 1 / 3600, 224385, np.ones(len(intub)),
        PT["None"], PT["Intubation/Extubation"])
    died_on = s["death_time"] != NULL_INT
    extub = st[vent & ~(died_on & (s["vent_end_h"] >= los - 1e-6))]
    add(extub, s["vent_end_h"][extub], s["vent_end_h"][extub] + 1 / 3600, 227194, np.ones(len(extub)),
        PT["None"], PT["Intubation/Extubation"])
    niv = st[~vent & (s["device"] == O2_DEVICE["Bipap mask "])]
    n0 = rng.uniform(0.5, 3, len(niv))
    n1 = np.minimum(n0 + rng.uniform(4, 24, len(niv)), los[niv] - 0.2)
    okn = n1 > n0 + 0.5
    add(niv[okn], n0[okn], n1[okn], 225794, np.round((n1 - n0)[okn] * 60), PT["min"], PT["Ventilation"])
    art = st[s["artline"]]
    a0 = rng.uniform(0, 1, len(art))
    a1 = np.maximum(los[art] - rng.uniform(0, 1, len(art)), a0 + 0.5)
    add(art, a0, a1, 225752, np.round((a1 - a0) * 60), PT["min"], PT["Invasive Lines"],
        rng.choice([PT["Left Radial"], PT["Right Radial"], PT["Left Femoral"]], len(art), p=[0.45, 0.45, 0.1]),
        PT["Invasive Arterial"])
    fol = st[rng.random(S) < 0.6]
    f0 = rng.uniform(0, 3, len(fol))
    f1 = np.maximum(los[fol] - 0.5, f0 + 0.5)
    add(fol, f0, f1, 229351, np.round((f1 - f0) * 60), PT["min"], PT["Procedures"])
    k = np.where(vent, np.maximum(1, (los // 24).astype(np.int64)), (rng.random(S) < 0.7).astype(np.int64))
    cx = np.repeat(st, k)
    i = np.arange(len(cx)) - np.repeat(np.cumsum(k) - k, k)
    ct = 1.0 + 24 * i + rng.uniform(0, 6, len(cx))
    okc = ct < los[cx]
    add(cx[okc], ct[okc], ct[okc] + 1 / 3600, 225459, np.ones(int(okc.sum())), PT["None"], PT["Imaging"])

    stay = np.concatenate([r[0] for r in rows])
    t0h, t1h, item, value, uom, catg, loc, loccat = (np.concatenate([r[k] for r in rows]) for k in range(1, 9))
    t0 = s["intime"][stay] + np.round(t0h * H).astype(np.int64)
    t1 = s["intime"][stay] + np.round(t1h * H).astype(np.int64)
    t0 = np.where(item == 225459, t0, to_minute(t0))
    instant = np.isin(item, (224385, 227194, 225459))
    t0 = to_minute(t0)
    t1 = np.where(instant, t0 + 1, np.maximum(to_minute(t1), t0 + 60))
    order = np.lexsort((item, t0, stay))
    stay, t0, t1, item, value, uom, catg, loc, loccat = (x[order] for x in (stay, t0, t1, item, value, uom, catg, loc, loccat))
    m = len(stay)
    ocap = ID_SPACE // (2 * spec.n_chunks)   # procedureevents use the upper half of the id space
    if m >= ocap:
        raise RuntimeError(f"chunk {spec.index}: {m} procedure rows exceed the order id capacity {ocap}")
    orderid = scramble(ID_SPACE // 2 + spec.index * ocap + np.arange(m), salt=2)
    return {"subject_id": s["subject_id"][stay], "hadm_id": s["hadm_id"][stay], "stay_id": s["stay_id"][stay],
            "caregiver_id": spec.caregivers[(s["stay_id"][stay] * 17 + t0 // (12 * H)) % len(spec.caregivers)],
            "starttime": t0, "endtime": t1, "storetime": t0 + 60 * rng.integers(1, 120, m),
            "itemid": item, "value": value, "valueuom": Text(uom.astype(np.int32), PROC_TEXT),
            "location": Text(loc.astype(np.int32), PROC_TEXT),
            "locationcategory": Text(loccat.astype(np.int32), PROC_TEXT),
            "orderid": orderid, "linkorderid": orderid,
            "ordercategoryname": Text(catg.astype(np.int32), PROC_TEXT),
            "ordercategorydescription": Text(np.full(m, PT["Task"], np.int32), PROC_TEXT),
            "patientweight": s["weight"][stay], "isopenbag": np.zeros(m, np.int64),
            "continueinnextdept": np.zeros(m, np.int64),
            "statusdescription": Text(np.full(m, PT["FinishedRunning"], np.int32), PROC_TEXT),
            "originalamount": value, "originalrate": np.where(instant, 0.0, 1.0)}


EVENT_TABLES = ("icu/chartevents", "hosp/labevents", "icu/inputevents", "icu/procedureevents")


def make_chunk(spec: ChunkSpec) -> dict[str, tuple[bytes, int]]:
    """Rows of the four event tables for one chunk, as (gzip member, row count) per table."""
    out = {}
    for name, fn in (("icu/chartevents", _chartevents), ("hosp/labevents", _labevents),
                     ("icu/inputevents", _inputevents), ("icu/procedureevents", _procedureevents)):
        rng = rng_for(spec.seed, name, spec.index)
        cols = fn(spec, rng)
        n = len(cols["subject_id"])
        out[name] = (encode_member(name, cols), n)
    return out


# ---------------------------------------------------------------------------------------------
# chunk planning
# ---------------------------------------------------------------------------------------------
#: Work per chunk in ICU stay-hours (plus 30 per admission): about 0.5-0.7 M chartevents rows,
#: a few hundred MB of memory per worker. Fixed, so the chunks (and the bytes) depend only on
#: the seed and the scale.
CHUNK_WEIGHT = 60_000

STAY_FIELDS = ("subject_id", "hadm_id", "stay_id", "intime", "outtime", "death_time", "age",
               "grp", "z", "circ", "resp", "neuro", "renal", "liver", "coag", "infl",
               "vent_window", "vent_start_h", "vent_end_h", "vaso_start_h", "vaso_end_h",
               "vaso_drug1", "vaso_drug2", "artline", "device", "missing", "artifacts",
               "weight", "temp_f", "hamilton", "vent_documented", "first_in_hadm", "anticoag")


def _ward_latent(pop, seed: int) -> dict[str, np.ndarray]:
    """Latent organ states of ward admissions (milder than ICU, shaped by comorbidities)."""
    a = pop.admissions
    c = pop.comorbidities
    rng = rng_for(seed, "ward-latent")
    n = len(a["hadm_id"])
    pat = a["pat"]
    z = 0.3 * pop.patients["frailty"][pat] + 0.5 * rng.standard_normal(n)
    infectious = np.isin(a["w_grp"], [i for i, g in enumerate(ref.WARD_GROUPS)
                                      if g in ("sepsis", "pneumonia", "cellulitis", "uti")])
    return {"z": z,
            "circ": 0.3 * z + 0.4 * rng.standard_normal(n),
            "resp": 0.3 * z + 0.4 * rng.standard_normal(n) + 0.5 * c["c_copd"][pat],
            "renal": 0.3 * z + 0.4 * rng.standard_normal(n),
            "liver": 0.3 * z + 0.4 * rng.standard_normal(n) + 1.0 * c["c_liver_mild"][pat]
            + 0.8 * c["c_liver_severe"][pat],
            "coag": 0.2 * z + 0.4 * rng.standard_normal(n) + 0.4 * c["c_liver_mild"][pat],
            "infl": 0.3 * z + 0.5 * rng.standard_normal(n) + 0.6 * infectious}


def plan_chunks(pop, visits: dict, caregivers: np.ndarray, providers: tuple, seed: int
                ) -> list[ChunkSpec]:
    """Split the population into chunks of contiguous patients of similar work."""
    a = pop.admissions
    s = pop.stays
    c = pop.comorbidities
    p = pop.patients
    n_pat = len(p["subject_id"])
    stay_hours = np.bincount(s["pat"], weights=(s["outtime"] - s["intime"]) / H, minlength=n_pat)
    weight = stay_hours + 30.0 * np.bincount(a["pat"], minlength=n_pat)
    total = float(weight.sum())
    n_chunks = max(1, int(np.ceil(total / CHUNK_WEIGHT)))
    cum = np.cumsum(weight)
    bounds = np.r_[0, np.searchsorted(cum, total * np.arange(1, n_chunks) / n_chunks), n_pat]
    bounds = np.maximum.accumulate(bounds)

    lat = _ward_latent(pop, seed)
    pat = a["pat"]
    adm_all = {"hadm_id": a["hadm_id"], "subject_id": p["subject_id"][pat], "kind": a["kind"],
               "admittime": a["admittime"], "dischtime": a["dischtime"], "icu_in1": a["icu_in1"],
               "instability": a["w_instability"], "ckd": c["c_renal"][pat],
               "dialysis": c["c_dialysis"][pat], "anticoag": c["anticoag"][pat],
               "male": p["male"][pat], "anemia": c["anemia"][pat],
               "dka": (a["kind"] == 0) & (a["w_grp"] == list(ref.WARD_GROUPS).index("dka")),
               "gi_bleed": np.where(a["kind"] > 0,
                                    a["icu_src"]["grp"] == ICU_GROUP_NAMES.index("gi_bleed"),
                                    a["w_grp"] == list(ref.WARD_GROUPS).index("gi_bleed"))}
    adm_all.update({"lat_" + k: v for k, v in lat.items()})
    first_stay = np.full(len(a["hadm_id"]), -1, dtype=np.int64)
    firsts = np.flatnonzero(s["first_in_hadm"])
    first_stay[s["adm"][firsts]] = firsts
    rng = rng_for(seed, "visit-latent")
    vp = visits["pat"]
    nv = len(vp)
    vz = 0.2 * p["frailty"][vp] + 0.3 * rng.standard_normal(nv)
    vis_all = {"subject_id": p["subject_id"][vp], "day": visits["day"], "labs": visits["labs"],
               "ckd": c["c_renal"][vp], "dialysis": c["c_dialysis"][vp], "anticoag": c["anticoag"][vp],
               "male": p["male"][vp], "anemia": c["anemia"][vp]}
    vis_all.update({"lat_" + k: (vz if k == "z" else 0.3 * vz + 0.3 * rng.standard_normal(nv))
                    for k in LATENT})

    specs = []
    for k in range(n_chunks):
        p0, p1 = bounds[k], bounds[k + 1]
        a0, a1 = np.searchsorted(a["pat"], [p0, p1])
        s0, s1 = np.searchsorted(s["pat"], [p0, p1])
        v0, v1 = np.searchsorted(vp, [p0, p1])
        stays = {f: s[f][s0:s1] for f in STAY_FIELDS}
        stays["adm_local"] = s["adm"][s0:s1] - a0
        adms = {f: v[a0:a1] for f, v in adm_all.items()}
        fs = first_stay[a0:a1]
        adms["first_stay_local"] = np.where(fs >= 0, fs - s0, -1)
        vis = {f: v[v0:v1] for f, v in vis_all.items()}
        specs.append(ChunkSpec(index=k, n_chunks=n_chunks, seed=seed, stays=stays, admissions=adms,
                               visits=vis, caregivers=caregivers, providers=providers))
    return specs

"""chartevents of one chunk: vital signs, GCS, ventilation settings and devices, hour by hour."""
from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .. import reference as ref
from ..population.constants import ART_BIT, H, ICU_GROUP_NAMES, MISS_BIT
from ..population.sampling import to_minute
from ..schema import NULL_INT, Text
from .vocabulary import (CHART_TEXT, CHART_UNITS, CHART_UOM_CODE, CT, ChunkSpec, DEVICE_CODE,
                         FEATURE_CHART_ITEMS, GCS_EYE_CODE, GCS_MOTOR_CODE, GCS_SPLIT, GCS_VERBAL_CODE,
                         HAMILTON_CODE, MODE_CODE, MODE_P, NUMERIC_ITEM_TEXT, RHYTHM_CODE, SITE_CODE,
                         TRACH_MASK, TRACH_TUBE, ar1_noise, time_course, unit_hash)

#: Share of stays that arrive with a tracheostomy (ventilated through it while ventilated, on a
#: trach mask otherwise), of stays with a heart-rate row copied exactly to each window edge, and
#: of vital-sign rows charted twice or with a text entry beside them (issue 15 traps).
TRACH_SHARE, EDGE_SHARE, DUPLICATE_SHARE, TEXT_SHARE = 0.04, 0.10, 0.005, 0.003


# ---------------------------------------------------------------------------------------------
# chartevents
# ---------------------------------------------------------------------------------------------
def chartevents(spec: ChunkSpec, rng: np.random.Generator) -> dict:
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
    circ = time_course(s["circ"][r], rec, ramp)
    resp = time_course(s["resp"][r], rec, ramp)
    neuro = time_course(s["neuro"][r], rec, ramp)
    infl = time_course(s["infl"][r], rec, ramp)

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
    hr = 84 + 10 * base[0] + 5 * circ + 4 * infl + 2 * resp + 9 * ar1_noise(rng, n) + 3 * rng.standard_normal(n)
    hr = np.clip(np.round(hr), 30, 220)
    map_raw = 80 + 8 * base[1] - 8 * circ - 3 * vent + 6 * ar1_noise(rng, n) + 3 * rng.standard_normal(n)
    mapv = np.where(vaso, np.maximum(map_raw, 63 + 4 * rng.standard_normal(n)), map_raw)
    mapv = np.clip(mapv, 25, 160)
    pp = np.clip(45 + 0.3 * (s["age"][r] - 65) + 8 * rng.standard_normal(n), 15, 110)
    sbp = np.round(mapv + 2 * pp / 3)
    dbp = np.round(mapv - pp / 3)
    mbp = np.round((sbp + 2 * dbp) / 3)
    rr = np.where(vent, 16 + 2 * resp + 2 * rng.standard_normal(n),
                  18 + 2.5 * base[2] + 3.0 * resp + 1.5 * infl + 2.5 * ar1_noise(rng, n)
                  + 1.5 * rng.standard_normal(n))
    rr = np.clip(np.round(rr), 4, 60)
    # transient desaturations (suctioning, position, probe) on top of the respiratory state
    dips = np.where(rng.random(n) < 0.015, rng.uniform(3, 12, n), 0.0)
    spo2 = 97.0 + 1.2 * base[3] - np.where(vent, 0.8, 2.2) * np.maximum(resp, 0) \
        - 1.5 * np.abs(ar1_noise(rng, n)) + 0.8 * rng.standard_normal(n) - dips
    spo2 = np.clip(np.round(spo2), 55, 100)
    temp_c = 37.0 + 0.25 * base[4] + 0.55 * infl - 0.2 * np.maximum(circ - 2, 0) \
        + 0.35 * ar1_noise(rng, n) + 0.15 * rng.standard_normal(n)
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
    # a tracheostomy: mimic-code's Tracheostomy status whether or not the ventilator runs; the
    # ventilator modes below are still charted, so a ventilated trach stays invasive
    trach = (unit_hash(s["stay_id"], 21) < TRACH_SHARE)[r]
    dev = np.where(trach, np.where(vent, CT[TRACH_TUBE], CT[TRACH_MASK]), dev)
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

    stay, ct, itemid, valuenum, code = _edge_duplicate_and_text_rows(s, stay, ct, itemid, valuenum, code)

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


def _edge_duplicate_and_text_rows(s: dict, stay, ct, itemid, valuenum, code):
    """Rows real chartevents has and the hourly grid lacks (issue 15), added from kept rows only,
    so a feature missing in the window stays missing and no worst value changes:

    - window edges: copies of the heart rates of the first hour exactly at ``intime`` and of the
      last hour exactly at ``intime + 24 h`` (both ends are in the window; copies of in-window
      values, so no worst value moves);
    - duplicates: a vital sign charted twice at one charttime with the same value;
    - text in a numeric item: ``UNABLE TO ASSESS`` / ``Pt refused`` 7 minutes after a vital
      sign, valuenum NULL.
    """
    intime = s["intime"][stay]
    sid = s["stay_id"][stay]
    hr = itemid == 220045
    edge = unit_hash(s["stay_id"], 22) < EDGE_SHARE
    first_hr = hr & edge[stay] & (ct > intime) & (ct <= intime + H)
    last_hr = hr & edge[stay] & (ct > intime + 23 * H) & (ct < intime + 24 * H)
    row_key = sid.astype(np.int64) * 1_000_003 + ct // 60
    vital = np.isin(itemid, (220045, 220277, 220181, 220052))
    dup = vital & (unit_hash(row_key, 23) < DUPLICATE_SHARE)
    text = vital & (unit_hash(row_key, 24) < TEXT_SHARE)
    text_code = np.array([CT[t] for t in NUMERIC_ITEM_TEXT])[(unit_hash(row_key, 25) < 0.5).astype(int)]
    new_ct = np.r_[intime[first_hr], intime[last_hr] + 24 * H, ct[dup], ct[text] + 7 * 60]
    pick = np.r_[np.flatnonzero(first_hr), np.flatnonzero(last_hr), np.flatnonzero(dup), np.flatnonzero(text)]
    new_code = np.r_[code[first_hr], code[last_hr], code[dup], text_code[text]]
    new_val = np.r_[valuenum[first_hr], valuenum[last_hr], valuenum[dup], np.full(int(text.sum()), np.nan)]
    return (np.r_[stay, stay[pick]], np.r_[ct, new_ct], np.r_[itemid, itemid[pick]],
            np.r_[valuenum, new_val], np.r_[code, new_code])

"""inputevents and procedureevents of one chunk: vasoactive drips, fluids, ventilation and line procedures."""
from __future__ import annotations

import numpy as np

from ..population.constants import H, ICU_GROUP_NAMES, MISS_BIT, O2_DEVICE
from ..population.sampling import to_minute
from ..schema import NULL_INT, Text
from .vocabulary import ChunkSpec, ID_SPACE, INPUT_TEXT, INPUT_UNITS, IT, IU, PROC_TEXT, PT, scramble


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


def inputevents(spec: ChunkSpec, rng: np.random.Generator) -> dict:
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


def procedureevents(spec: ChunkSpec, rng: np.random.Generator) -> dict:
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

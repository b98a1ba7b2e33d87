"""labevents of one chunk: panels drawn mostly in the morning, values from the latent organ states."""
from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .. import reference as ref
from ..population.constants import CAT_SPARSE, DAY, H, MISS_BIT
from ..population.sampling import to_minute
from ..schema import NULL_INT, Text
from .vocabulary import (ChunkSpec, ID_SPACE, LAB_FLAGS, LAB_ITEMS, LAB_UNITS, LATENT, PANELS, PRIORITIES,
                         time_course, scramble, unit_hash)

#: Issue 15 traps. ED_LAB_SHARE: first ICU stays admitted through the emergency department with
#: a blood gas (lactate), chemistry and blood count drawn there in the 6 h before ICU intime
#: (mimic-code's first_day_lab pre-window counts them; the paper's window does not).
#: EDGE_LAB_SHARE: first stays whose admission labs are drawn exactly at intime, and (another
#: draw) whose chemistry is drawn exactly at intime + 24 h: both ends are in the window.
#: LATE_RESULT_SHARE: results stored 2-30 h after the draw (add-on and send-out tests), so a
#: lab drawn late in the window may be resulted after it (features.lab_time: storetime).
ED_LAB_SHARE, EDGE_LAB_SHARE, LATE_RESULT_SHARE = 0.35, 0.05, 0.03


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


def labevents(spec: ChunkSpec, rng: np.random.Generator) -> dict:
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
    t_adm = np.where(first & (unit_hash(s["stay_id"], 31) < EDGE_LAB_SHARE), s["intime"], t_adm)
    add(adm_of_stay, st, t_adm, np.where(first, window_panels, 0b111111 & ~P["alb"]), 1)
    # emergency-department labs in the 6 h before ICU intime (after ED registration): outside
    # [intime, intime + 24 h], so the window's missing flags above are untouched
    t_ed = s["intime"] - to_minute((0.3 + 5.5 * unit_hash(s["stay_id"], 32)) * H)
    ed_ok = (first & a["ed"][adm_of_stay] & (t_ed >= a["edregtime"][adm_of_stay])
             & (unit_hash(s["stay_id"], 33) < ED_LAB_SHARE))
    add(adm_of_stay[ed_ok], -1, t_ed[ed_ok], P["bg"] | P["chem"] | P["cbc"], 1)
    # a chemistry drawn exactly at intime + 24 h for stays whose window has creatinine
    edge_end = first & have["creatinine"] & (unit_hash(s["stay_id"], 34) < EDGE_LAB_SHARE)
    add(adm_of_stay[edge_end], st[edge_end], s["intime"][edge_end] + 24 * H, P["chem"], 0)
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
    # Sparse-documentation stays (the cohort's more-than-half-missing exclusion) are patients
    # whose labs before the ICU were drawn elsewhere (transfers from a referring hospital): no
    # pre-ICU draw here, so the lab pre-window cannot fill them and that step excludes them under
    # either window.
    sparse_adm = np.zeros(A, bool)
    sparse_adm[adm_of_stay[first & (s["category"] == CAT_SPARSE)]] = True
    drawn_here = ~(sparse_adm[adm_i] & (stay_i == -1) & (t_draw < a["icu_in1"][adm_i]))
    adm_i, stay_i, t_draw, panels, stat = (x[drawn_here] for x in (adm_i, stay_i, t_draw, panels, stat))
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
            lat[key] = np.where(has_icu, time_course(s[key][sref], rec, ramp), lat[key])
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
    storetime = charttime + 60 * np.round(20 + 100 * rng.random(m)).astype(np.int64)
    # drawn after every other value, so the rows' values and times above are unchanged
    late = rng.random(m) < LATE_RESULT_SHARE
    storetime = storetime + np.where(late, 60 * rng.integers(2 * 60, 30 * 60, m), 0)
    return {"labevent_id": labevent_id, "subject_id": subj_all[d], "hadm_id": hadm_all[d],
            "specimen_id": specimen_id, "itemid": item,
            "order_provider_id": Text(prov.astype(np.int32), spec.providers),
            "charttime": charttime,
            "storetime": storetime,
            "value": value, "valuenum": valuenum,
            "valueuom": Text(uom.astype(np.int32), LAB_UNITS),
            "ref_range_lower": lo, "ref_range_upper": hi,
            "flag": Text(flag.astype(np.int32), LAB_FLAGS),
            "priority": Text(st_all.astype(np.int32), PRIORITIES),
            "comments": Text(np.full(m, -1, np.int32), ("",))}

"""Chunks: the plan that cuts the population into pieces of similar weight, and the expansion of one chunk into gzip members."""
from __future__ import annotations

import numpy as np

from .. import reference as ref
from ..population.constants import H, ICU_GROUP_NAMES
from ..population.sampling import rng_for
from ..schema import encode_member
from .vocabulary import ChunkSpec, LATENT
from .chart import chartevents
from .labs import labevents
from .infusions import inputevents, procedureevents


EVENT_TABLES = ("icu/chartevents", "hosp/labevents", "icu/inputevents", "icu/procedureevents")


def make_chunk(spec: ChunkSpec) -> dict[str, tuple[bytes, int]]:
    """Rows of the four event tables for one chunk, as (gzip member, row count) per table."""
    out = {}
    for name, fn in (("icu/chartevents", chartevents), ("hosp/labevents", labevents),
                     ("icu/inputevents", inputevents), ("icu/procedureevents", procedureevents)):
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
               "weight", "temp_f", "hamilton", "vent_documented", "first_in_hadm", "anticoag", "category")


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
               "ed": a["ed"], "edregtime": a["edregtime"],
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

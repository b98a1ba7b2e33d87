"""Hospital admissions without an ICU stay (ward patients of the readmission cohort)."""
from __future__ import annotations

import numpy as np

from .. import reference as ref
from .constants import ATYPE, DLOC, SVC, WARD_GROUP_AGE, WARD_GROUP_NAMES
from .sampling import age_weighted_groups, choice, lognormal, sample_rows, sigmoid


def ward_admissions(rng: np.random.Generator, age: np.ndarray, frailty: np.ndarray,
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
    grp = np.where(planned, planned_groups[choice(rng, n, planned_groups, [0.3, 0.2, 0.2, 0.2, 0.1])], grp)
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

"""Chronic conditions of a patient and their Charlson points."""
from __future__ import annotations

import numpy as np

from .. import reference as ref
from .sampling import sigmoid


def comorbidities(rng: np.random.Generator, age: np.ndarray, frailty: np.ndarray,
                   icu: bool) -> dict[str, np.ndarray]:
    """Chronic conditions (constant over the patient's admissions; documented simplification)."""
    # prevalence at age 65, frailty 0; log-odds per decade of age
    base = {"c_chf": (0.16, 0.45), "c_mi_old": (0.07, 0.3), "c_pvd": (0.06, 0.35),
            "c_cvd": (0.04, 0.4), "c_dementia": (0.025, 0.9), "c_copd": (0.14, 0.2),
            "c_rheum": (0.03, 0.1), "c_liver_mild": (0.06, -0.2), "c_liver_severe": (0.02, -0.2),
            "c_diabetes": (0.16, 0.1), "c_diabetes_cc": (0.07, 0.15), "c_renal": (0.13, 0.45),
            "c_dialysis": (0.025, 0.0), "c_malignancy": (0.08, 0.3), "c_metastatic": (0.035, 0.1),
            "c_hiv": (0.008, -0.5), "htn": (0.42, 0.45), "hld": (0.33, 0.3),
            "afib_chronic": (0.16, 0.7), "obesity": (0.10, -0.2), "tobacco": (0.14, -0.4),
            "depression": (0.14, -0.1), "anemia": (0.17, 0.25), "hypothyroid": (0.09, 0.3),
            "gerd": (0.14, 0.1), "anticoag": (0.10, 0.5)}
    out = {}
    scale_icu = 1.15 if icu else 0.85
    for name in ref.COMORBIDITIES:
        p0, slope = base[name]
        p0 = min(p0 * scale_icu, 0.9)
        lp = np.log(p0 / (1 - p0)) + slope * (age - 65.0) / 10.0 + 0.6 * frailty
        out[name] = rng.random(len(age)) < sigmoid(lp)
    out["c_diabetes"] &= ~out["c_diabetes_cc"]       # coded as one or the other
    out["c_renal"] |= out["c_dialysis"]
    return out


def charlson_points(c: dict[str, np.ndarray]) -> np.ndarray:
    """Charlson comorbidity points (without the age score) from the comorbidity flags."""
    pts = np.zeros(len(next(iter(c.values()))))
    for name, w in ref.CHARLSON_WEIGHT.items():
        pts += w * c[name]
    # mimic-code hierarchy rules: the larger member of each pair only
    pts -= np.minimum(1 * c["c_liver_mild"], 3 * c["c_liver_severe"])
    pts -= np.minimum(2 * c["c_malignancy"], 6 * c["c_metastatic"])
    return pts

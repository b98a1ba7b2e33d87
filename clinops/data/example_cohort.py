"""An example cohort table of another hospital, from a documented simple model (not real patients).

Written by ``clinops table example OUT.csv``; the committed copy is
``tests/fixtures/own_cohort/example_cohort.csv``, the table of ``params/example-own-cohort.yaml``.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def example_cohort(n_stays: int = 3000, *, seed: int, prevalence: float = 0.12) -> pd.DataFrame:
    """A plausible ICU cohort table of another hospital, from a documented simple model.

    Not real patients. Admissions are spread uniformly over 2019-2021. A latent severity
    ``z ~ N(0, 1)`` drives the first-day worst values: heart rate ``92 + 12 z + N(0, 14)`` bpm,
    systolic pressure ``100 - 10 z + N(0, 14)`` mmHg, respiratory rate ``22 + 3 z + N(0, 5)``
    /min, SpO2 ``100 - exp(N(0.8 + 0.4 z, 0.6))`` %, temperature ``37.4 + 0.2 z + N(0, 0.6)``
    degC, GCS ``15 - Binomial(12, sigmoid(-2.2 + 0.9 z))``, creatinine ``exp(N(0.25 z, 0.5))``
    mg/dL, lactate ``1.6 exp(N(0.3 z, 0.45))`` mmol/L (measured with probability
    ``sigmoid(-0.3 + 0.8 z)``: sicker patients are tested more), ventilation and vasopressors
    Bernoulli with logits ``-0.9 + 0.9 z + 0.8 [emergency surgery] + 1.2 [GCS < 9]`` and
    ``-1.4 + 0.9 z - 0.03 (SBP - 100)``. In-hospital death is Bernoulli with logit
    ``b0 + 0.03 (age - 63) + 0.6 z + 0.015 (HR - 92) - 0.012 (SBP - 100) + 0.04 (RR - 22)
    - 0.05 (SpO2 - 96) + 0.1 (15 - GCS) + 0.4 ln creatinine + 0.5 ln lactate + 0.5 vent
    + 0.5 vaso + 0.3 [emergency surgery] - 0.8 [elective surgery]``, ``b0`` set by bisection
    so the mean risk equals ``prevalence``. About 2 % of vitals and 3-5 % of GCS/creatinine
    are missing at random. Care units: medical 45 %, surgical 33.5 %, cardiac 20 %, burns 1.5 %
    (small on purpose: its fairness metrics are not estimable).

    Parameters
    ----------
    n_stays : number of rows.
    seed : seed of every random draw.
    prevalence : target mean risk of the outcome (0-1).

    Returns
    -------
    DataFrame, shape (n_stays, 17): ``stay_ref, admit_date, sex, age_years, care_unit,
    admission_type, heart_rate_max, sbp_min, resp_rate_max, spo2_min, temperature_max, gcs_min,
    creatinine_max, lactate_max, ventilated, vasopressors, died_in_hospital``.

    Examples
    --------
    >>> frame = example_cohort(200, seed=1)
    >>> frame.shape, frame["stay_ref"].is_unique, sorted(frame["sex"].unique())
    ((200, 17), True, ['female', 'male'])
    """
    if not isinstance(n_stays, (int, np.integer)) or n_stays < 10:
        raise ValueError(f"n_stays: must be an integer >= 10, got {n_stays!r}")
    if not 0 < prevalence < 1:
        raise ValueError(f"prevalence: must lie strictly between 0 and 1, got {prevalence}")
    rng = np.random.default_rng(seed)
    n = int(n_stays)
    days = np.sort(rng.integers(0, 1096, n))
    admit = pd.Timestamp("2019-01-01") + pd.to_timedelta(days, unit="D")
    age = np.clip(np.round(rng.normal(63, 17, n)), 18, 100)
    sex = np.where(rng.random(n) < 0.57, "male", "female")
    unit = rng.choice(["medical ICU", "surgical ICU", "cardiac ICU", "burns unit"], size=n,
                      p=[0.45, 0.335, 0.20, 0.015])
    adm = rng.choice(["medical", "emergency surgery", "elective surgery"], size=n, p=[0.55, 0.25, 0.20])
    z = rng.normal(0, 1, n)
    hr = np.clip(np.round(92 + 12 * z + rng.normal(0, 14, n)), 30, 220)
    sbp = np.clip(np.round(100 - 10 * z + rng.normal(0, 14, n)), 40, 220)
    rr = np.clip(np.round(22 + 3 * z + rng.normal(0, 5, n)), 6, 60)
    spo2 = np.clip(np.round(100 - np.exp(rng.normal(0.8 + 0.4 * z, 0.6))), 50, 100)
    temp = np.clip(np.round(37.4 + 0.2 * z + rng.normal(0, 0.6, n), 1), 34, 42)
    gcs = 15 - rng.binomial(12, _sigmoid(-2.2 + 0.9 * z))
    creat = np.clip(np.round(np.exp(rng.normal(0.25 * z, 0.5)), 2), 0.1, 15)
    lact = np.clip(np.round(1.6 * np.exp(rng.normal(0.3 * z, 0.45)), 1), 0.3, 25)
    emerg, elect = adm == "emergency surgery", adm == "elective surgery"
    vent = (rng.random(n) < _sigmoid(-0.9 + 0.9 * z + 0.8 * emerg + 1.2 * (gcs < 9))).astype(int)
    vaso = (rng.random(n) < _sigmoid(-1.4 + 0.9 * z - 0.03 * (sbp - 100))).astype(int)
    risk = (0.03 * (age - 63) + 0.6 * z + 0.015 * (hr - 92) - 0.012 * (sbp - 100) + 0.04 * (rr - 22)
            - 0.05 * (spo2 - 96) + 0.1 * (15 - gcs) + 0.4 * np.log(creat) + 0.5 * np.log(lact) + 0.5 * vent
            + 0.5 * vaso + 0.3 * emerg - 0.8 * elect)
    lo, hi = -20.0, 20.0
    for _ in range(60):  # bisection on the intercept: mean risk is increasing in b0
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if _sigmoid(mid + risk).mean() < prevalence else (lo, mid)
    died = (rng.random(n) < _sigmoid((lo + hi) / 2 + risk)).astype(int)

    def blank(values: np.ndarray, p: float | np.ndarray, whole: bool = False) -> pd.Series:
        out = pd.Series(values.astype(float))
        out[rng.random(n) < p] = np.nan
        return out.round().astype("Int64") if whole else out  # whole numbers print without '.0'

    return pd.DataFrame({
        "stay_ref": [f"ST{100000 + i}" for i in range(n)],
        "admit_date": admit.strftime("%Y-%m-%d"),
        "sex": sex, "age_years": age.astype(int), "care_unit": unit, "admission_type": adm,
        "heart_rate_max": blank(hr, 0.02, True), "sbp_min": blank(sbp, 0.02, True),
        "resp_rate_max": blank(rr, 0.02, True), "spo2_min": blank(spo2, 0.02, True),
        "temperature_max": blank(temp, 0.02), "gcs_min": blank(gcs, 0.05, True),
        "creatinine_max": blank(creat, 0.03), "lactate_max": blank(lact, 1 - _sigmoid(-0.3 + 0.8 * z)),
        "ventilated": vent, "vasopressors": vaso, "died_in_hospital": died,
    })

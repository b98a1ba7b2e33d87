"""Patients, admissions and ICU stays of the synthetic MIMIC-IV, with the latent risk model.

Everything here is per patient, per admission or per ICU stay (hundreds of thousands of rows at
most); the per-measurement tables are expanded from these plans in :mod:`.events`.

The construction, in order (clinops/docs/synthetic.md explains each choice):

1. **ICU patients.** ``round(23,841 * scale)`` of them are *constructed* to pass the cohort rules
   (first ICU stay >= 24 h, at most 8 of the 17 features missing, outcome known); the others
   fail exactly one rule (a first stay < 24 h, sparse documentation, or an unknown outcome), so
   the cohort size is exact. Year groups are assigned to cohort patients by exact quota
   (16,751 / 7,090 at scale 1).
2. **ICU courses.** Each ICU hospitalisation draws a diagnosis group, seven latent organ
   states (circulatory, respiratory, neurological, renal, hepatic, coagulation, inflammation)
   from a shared severity, and from them: invasive ventilation, vasopressors, an arterial
   line, which features go unmeasured in the first 24 h, and the outcome. Intercepts are
   solved by bisection on the cohort patients so that the expected shares equal the paper's
   (mortality 11.3 %, ventilation 38.4 % in 2017-2019, each missing share in 2008-2016).
3. **Admission chains.** Every patient has a sequence of hospital admissions; after each
   discharge alive an unplanned readmission within 30 days is drawn from a readmission risk
   model whose intercept is solved so that MED discharges (the readmission cohort) return at
   14.7 %. Ward-only patients are added until the readmission cohort reaches 31,847 * scale.

Times are int64 seconds since 1970-01-01 in the *shifted* calendar (years 2100-2200).
"""
from __future__ import annotations

from .build import Population, build_population
from .sampling import exact_assign, rng_for, solve_intercept, to_minute

__all__ = ["Population", "build_population", "exact_assign", "rng_for", "solve_intercept", "to_minute"]

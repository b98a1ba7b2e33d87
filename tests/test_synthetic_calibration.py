"""Calibration targets of the synthetic MIMIC-IV (issue #2), measured with plain SQL.

The figures come from :func:`clinops.data.synth.calibration.measure`, an SQL count over the
raw ``.csv.gz`` files that follows clinops/docs/architecture.md (cohort steps 1-8, the default label,
the temporal split, missing-feature and ventilation definitions, the readmission cohort).

- ``test_quick_scale_targets`` (default run, scale 0.05): the same targets with tolerances
  widened by three binomial standard errors, since ~1,200 stays carry sampling noise.
- ``test_paper_scale_targets`` (``@pytest.mark.slow``, scale 1.0, a few minutes): the
  tolerances of the issue: cohort and split within 2 %, mortality within 0.5 points, missing
  shares within 2 points.
"""
from __future__ import annotations

import math

import pytest

from clinops.data import synthetic
from clinops.data.synth import targets as T
from clinops.data.synth.calibration import measure


def _sd(p: float, n: int) -> float:
    return math.sqrt(p * (1 - p) / max(n, 1))


def _check(m: dict, scale: float, noise_sd: float) -> None:
    """Assert every target; ``noise_sd`` standard errors are added to each share tolerance."""
    for key, target in (("cohort", T.COHORT_SIZE), ("train", T.TRAIN_SIZE), ("test", T.TEST_SIZE)):
        want = target * scale
        assert abs(m[key] - want) <= 0.02 * want, (key, m[key], want)
    n, n_train, n_test = m["cohort"], m["train"], m["test"]

    p = T.MORTALITY_PREVALENCE
    assert abs(m["label_prevalence"] - p) <= 0.005 + noise_sd * _sd(p, n), m["label_prevalence"]
    # any in-hospital death is more common than death in the 48 h after the window
    assert m["any_death_prevalence"] > m["label_prevalence"] + 0.02

    for feature, p in T.MISSING_SHARE.items():
        got = m["missing_train"][feature]
        assert abs(got - p) <= 0.02 + noise_sd * _sd(p, n_train), (feature, got, p)

    p = T.VENTILATION_TEST
    assert abs(m["mech_vent_test"] - p) <= 0.02 + noise_sd * _sd(p, n_test), m["mech_vent_test"]

    want = T.READMISSION_COHORT * scale
    assert abs(m["readmission_cohort"] - want) <= 0.02 * want, m["readmission_cohort"]
    p = T.READMISSION_RATE
    assert abs(m["readmission_rate"] - p) <= 0.01 + noise_sd * _sd(p, m["readmission_cohort"]), \
        m["readmission_rate"]

    # the flow table has real exclusions at every step the generator constructs
    flow = m["flow"]
    assert flow[0] > flow[2] > flow[3] > flow[5] > flow[6] > flow[7] == n
    # heart rate 0 / 999 and temperatures in the wrong unit are in the raw data
    assert any(k.startswith("220045:") for k in m["implausible_rows"])
    assert any(k.startswith(("223761:", "223762:")) for k in m["implausible_rows"])


def test_quick_scale_targets(tmp_path):
    scale = 0.05
    out = tmp_path / "quick"
    synthetic.generate(out, scale=scale, seed=20260318)
    m = measure(out)
    # construction makes the cohort and its split exact, not just close
    assert m["cohort"] == round(T.COHORT_SIZE * scale)
    assert m["test"] == round(T.TEST_SIZE * scale)
    _check(m, scale, noise_sd=3.0)


@pytest.mark.slow
def test_paper_scale_targets(tmp_path):
    out = tmp_path / "paper"
    synthetic.generate(out, scale=1.0, seed=20260318)
    _check(measure(out), 1.0, noise_sd=0.0)

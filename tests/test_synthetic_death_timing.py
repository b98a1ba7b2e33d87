"""Death timing of the synthetic generator (issue 15): one hazard after the window, deaths at every horizon."""
from __future__ import annotations

import numpy as np
import pytest

from clinops.data.synth.population.icu_course import EDGE_MARGIN_H, LATE_DEATH_MAX_H, death_hours


def test_label_deaths_stay_inside_the_label_window_and_late_ones_after_it():
    u = np.linspace(0.0, 0.999999, 10001)
    label_t, late_t = death_hours(u, u)
    assert label_t.min() == pytest.approx(24.0 + EDGE_MARGIN_H) and label_t.max() <= 72.0
    assert late_t.min() == pytest.approx(72.0 + EDGE_MARGIN_H) and late_t.max() <= 72.0 + EDGE_MARGIN_H + LATE_DEATH_MAX_H
    assert np.all(np.diff(label_t) > 0) and np.all(np.diff(late_t) >= 0)  # inverse CDFs: monotone


def test_the_hazard_puts_deaths_at_every_horizon_with_a_continuous_density_at_72_h():
    rng = np.random.default_rng(0)
    label_t, late_t = death_hours(rng.random(400_000), rng.random(400_000), label_share=0.1, late_share=0.07)
    # cohort deaths per hour just before and just after 72 h: equal up to sampling noise
    before = 0.1 * np.mean(label_t > 71.0)
    after = 0.07 * np.mean(late_t <= 73.0)
    assert after == pytest.approx(before, rel=0.1)
    # the old placement had no death in (72 h, 96 h]: now about a third of the later deaths are there
    assert 0.25 < np.mean(late_t <= 96.0) < 0.45
    # constant hazard in the window: more label deaths in its first day than in its second
    assert np.mean(label_t <= 48.0) == pytest.approx((1 - np.exp(-(24 - EDGE_MARGIN_H) / 48)) / (1 - np.exp(-(48 - EDGE_MARGIN_H) / 48)), abs=0.01)

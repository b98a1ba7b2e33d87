"""The stream detectors (clinops.drift.detectors): river's contract, the same alarms as river
used directly, and the CUSUM example's behaviour on streams with a known change point."""
from __future__ import annotations

import numpy as np
import pytest
from river import drift as river_drift

from clinops.drift import DETECTORS, DriftPolicy
from clinops.drift.detectors import ADWIN, BernoulliCUSUM, DetectorSettings, PageHinkley, build_detectors


def _stream(seed=0, n_before=1500, n_after=500):
    rng = np.random.default_rng(seed)
    return rng.beta(2, 12, 3000), np.r_[rng.beta(2, 12, n_before), rng.beta(4, 12, n_after)]


@pytest.mark.parametrize("name", list(DETECTORS))
def test_every_registered_detector_keeps_the_contract(name):
    cls = DETECTORS[name]
    assert issubclass(cls.Settings, DetectorSettings) and cls.flat_prefix.endswith("_")
    reference, stream = _stream()
    detector = cls.from_settings(cls.Settings(), reference_scores=reference)
    for x in stream[:50]:
        assert detector.update(float(x)) is detector
        assert isinstance(detector.drift_detected, bool)
    assert isinstance(detector.state(), dict)
    # every detector has a policy section of its own name and a distinct flat prefix
    assert isinstance(getattr(DriftPolicy(), name), cls.Settings)
    assert len({c.flat_prefix for c in DETECTORS.values()}) == len(DETECTORS)


def test_adwin_gives_rivers_alarms():
    _, stream = _stream(1)
    ours, theirs = ADWIN(delta=0.002, clock=32), river_drift.ADWIN(delta=0.002, clock=32)
    got = [i for i, x in enumerate(stream) if ours.update(float(x)).drift_detected]
    want = [i for i, x in enumerate(stream) if theirs.update(float(x)) is None and theirs.drift_detected]
    assert got == want and got and min(got) >= 1500
    assert ours.estimation == pytest.approx(theirs.estimation)


@pytest.mark.parametrize("transform", ["logit", "identity"])
def test_page_hinkley_works_in_reference_sd_units_on_its_scale(transform):
    reference, stream = _stream(2)
    settings = PageHinkley.Settings(transform=transform)
    ours = PageHinkley.from_settings(settings, reference_scores=reference)
    on_scale = (lambda s: np.log(np.clip(s, 1e-6, 1 - 1e-6) / (1 - np.clip(s, 1e-6, 1 - 1e-6)))) \
        if transform == "logit" else (lambda s: np.asarray(s, dtype=float))
    sd = float(np.std(on_scale(reference), ddof=1))
    theirs = river_drift.PageHinkley(min_instances=100, delta=0.125 * sd, threshold=25 * sd, alpha=1.0, mode="both")
    got = [i for i, x in enumerate(stream) if ours.update(float(x)).drift_detected]
    want = [i for i, x in enumerate(stream) if theirs.update(float(on_scale(x))) is None and theirs.drift_detected]
    assert got == want and any(i >= 1500 for i in got)
    # the same settings in SD units mean the same thing on a stream of another scale
    scaled = PageHinkley.from_settings(PageHinkley.Settings(transform="identity", threshold_sd=10),
                                       reference_scores=reference * 0.1)
    unscaled = PageHinkley.from_settings(PageHinkley.Settings(transform="identity", threshold_sd=10),
                                         reference_scores=reference)
    assert [scaled.update(x * 0.1).drift_detected for x in stream] == [unscaled.update(x).drift_detected for x in stream]


def test_cusum_detects_a_rise_in_high_scores_and_is_quiet_without_one():
    reference, _ = _stream(3)
    rng = np.random.default_rng(4)
    quiet = BernoulliCUSUM.from_settings(BernoulliCUSUM.Settings(), reference_scores=reference)
    assert quiet.p0 == pytest.approx(0.1, abs=0.01)               # the reference's top decile
    assert sum(quiet.update(x).drift_detected for x in rng.beta(2, 12, 5000)) <= 2
    shifted = BernoulliCUSUM.from_settings(BernoulliCUSUM.Settings(), reference_scores=reference)
    first = next(i for i, x in enumerate(rng.beta(4, 12, 1000)) if shifted.update(x).drift_detected)
    assert first < 100
    # restarts after a detection
    assert shifted.update(0.0).statistic < shifted.threshold
    with pytest.raises(ValueError, match="p0"):
        BernoulliCUSUM(p0=1.0)
    with pytest.raises(ValueError, match="reference_scores"):
        BernoulliCUSUM.from_settings(BernoulliCUSUM.Settings(), reference_scores=[0.1])


def test_build_detectors_builds_the_enabled_ones_in_registry_order():
    reference, _ = _stream()
    policy = DriftPolicy.from_mapping({"cusum": {"enabled": True}, "adwin": {"enabled": False}})
    built = build_detectors(policy.detector_settings, reference_scores=reference)
    assert list(built) == ["page_hinkley", "cusum"]
    assert isinstance(built["cusum"], BernoulliCUSUM)

"""Issue 18 items 1-4: detectors on feature streams with budgeted thresholds, the benchmark, the
scenario strength check, the concept shift and CBPE, on hand-made streams with known answers."""
from __future__ import annotations

import math
from types import SimpleNamespace

import httpx
import numpy as np
import pandas as pd
import pytest
from prometheus_client.parser import text_string_to_metric_families
from sklearn.metrics import roc_auc_score

from clinops import drift
from clinops.drift.benchmark import COMBINED as COMBINED_LABEL
from clinops.drift import (DriftPolicy, FalseAlarmBudget, FeatureStream, PsiReference, StreamMonitor,
                           StreamPool, benchmark_runs, benchmark_table, cbpe_summary, expected_auroc,
                           plan_detectors, scenario_strength, simulate_concept_shift, simulate_stream,
                           stream_summary, targets_verdict)
from clinops.drift.detectors import DETECTORS, ADWIN, BernoulliCUSUM, KSWindow, StreamDetector, budgeted, \
    kl_bernoulli
from clinops.drift.thresholds import adwin_delta, cusum_threshold, ks_window_alpha, page_hinkley_threshold_sd
from clinops.features import FeatureManifest
from clinops.pipeline.drift import benchmark_note
from clinops.pipeline.drift_benchmark import DRIFT_DEFAULTS, build_scenarios
from serving.testing import ServerThread, build_demo_bundle, demo_app, demo_frame, demo_token

BUDGETED = {"monitor": {"false_alarms_per_30_days": 1, "admissions_per_hour": 10, "feature_streams": True}}


# -- thresholds from the budget ------------------------------------------------------------------

def test_budget_splits_over_detectors_and_sides():
    budget = FalseAlarmBudget(false_alarms_per_30_days=1, admissions_per_hour=10)
    assert budget.per_detector(4) == 0.25
    assert budget.arl0(4) == 7200 * 4
    assert budget.arl0(4, sides=2) == 7200 * 8
    assert cusum_threshold(budget.arl0(17)) == pytest.approx(math.log(122_400))
    assert adwin_delta(budget.arl0(1), clock=32) == pytest.approx(32 / 7200)
    assert ks_window_alpha(budget.arl0(1), clock=5) == pytest.approx(5 / 7200)
    # Siegmund: a larger ARL needs a larger threshold; k = 0 has the closed form b^2
    assert page_hinkley_threshold_sd(1e6, delta_sd=0.125) > page_hinkley_threshold_sd(1e4, delta_sd=0.125)
    assert page_hinkley_threshold_sd(100, delta_sd=0) == pytest.approx(10 - 1.166, abs=1e-6)


def test_budget_refuses_bad_values_naming_them():
    with pytest.raises(ValueError, match="false_alarms_per_30_days"):
        FalseAlarmBudget(false_alarms_per_30_days=0)
    with pytest.raises(ValueError, match="n_detectors"):
        FalseAlarmBudget().per_detector(0)
    with pytest.raises(Exception, match="false_alarms_per_30_days"):
        DriftPolicy.from_mapping({"monitor": {"false_alarms_per_30_days": -1}}, where="drift.yaml")


def test_plan_puts_cusum_on_binary_and_ks_window_on_numeric_features_with_budgeted_thresholds():
    policy = DriftPolicy.from_mapping(BUDGETED)
    streams = {"vent": FeatureStream("vent", [0, 1] * 50), "lactate": FeatureStream("lactate", np.arange(100.0))}
    plan = plan_detectors(policy, streams)
    assert [p.label for p in plan] == ["adwin", "page_hinkley", "adwin[vent]", "cusum[vent]", "adwin[lactate]",
                                       "ks_window[lactate]"]
    budget = FalseAlarmBudget(1, 10)
    by = {p.label: p.settings for p in plan}
    assert by["cusum[vent]"].mode == "both" and by["cusum[vent]"].odds_ratio == 2.0
    assert by["cusum[vent]"].threshold == pytest.approx(math.log(budget.arl0(6, sides=2)))
    assert by["adwin[vent]"].delta == pytest.approx(32 / budget.arl0(6))
    assert by["ks_window[lactate]"].alpha == pytest.approx(5 / budget.arl0(6))
    # without the budget the sections' own values stand
    plain = plan_detectors(DriftPolicy.from_mapping({"monitor": {"feature_streams": True}}), streams)
    assert {p.label: p.settings for p in plain}["cusum[vent]"].threshold == 5.0


# The rule each detector had in the if-chain of clinops.drift.streams.budgeted before the registry
# held it (detector name -> (field, its value for settings s, budget b, n detectors)).
OLD_BUDGET_RULES = {
    "adwin": lambda s, b, n: ("delta", adwin_delta(b.arl0(n), clock=s.clock)),
    "cusum": lambda s, b, n: ("threshold", cusum_threshold(b.arl0(n, sides=2 if s.mode == "both" else 1))),
    "ks_window": lambda s, b, n: ("alpha", ks_window_alpha(b.arl0(n), clock=s.clock)),
    "page_hinkley": lambda s, b, n: ("threshold_sd", page_hinkley_threshold_sd(
        b.arl0(n, sides=2 if s.mode == "both" else 1), delta_sd=float(s.delta_sd))),
}
SETTINGS_VARIANTS = {
    "adwin": [{}, {"clock": 16}, {"clock": 1, "delta": 0.01}],
    "cusum": [{}, {"mode": "both"}, {"mode": "both", "odds_ratio": 3.0}],
    "ks_window": [{}, {"clock": 1}, {"clock": 7, "window": 50}],
    "page_hinkley": [{}, {"mode": "up"}, {"mode": "down", "delta_sd": 0}, {"mode": "both", "delta_sd": 0.3}],
}


@pytest.mark.parametrize("name", sorted(OLD_BUDGET_RULES))
def test_each_registry_entry_takes_its_share_of_the_budget_as_the_old_formula_did(name):
    for budget in (FalseAlarmBudget(1, 10), FalseAlarmBudget(0.5, 7), FalseAlarmBudget(3, 25)):
        for n in (1, 6, 17):
            for variant in SETTINGS_VARIANTS[name]:
                settings = DETECTORS[name].Settings(**variant)
                field, old = OLD_BUDGET_RULES[name](settings, budget, n)
                new = budgeted(name, settings, budget, n)
                assert getattr(new, field) == old                      # exactly, not approximately
                assert new == settings.model_copy(update={field: old})  # nothing else changed
                assert DETECTORS[name].within_budget(settings, budget, n) == new


def test_every_registered_detector_has_a_budget_rule_and_an_unknown_name_is_refused(monkeypatch):
    budget = FalseAlarmBudget(1, 10)
    for name, cls in DETECTORS.items():
        assert isinstance(budgeted(name, cls.Settings(), budget, 4), cls.Settings)
    with pytest.raises(ValueError, match=r"detector: 'kswin' is not in the registry .*DETECTORS: adwin, "):
        budgeted("kswin", KSWindow.Settings(), budget, 4)

    class Bare(StreamDetector):   # a registry entry without its budget rule is named, not skipped
        pass
    monkeypatch.setitem(DETECTORS, "bare", Bare)
    with pytest.raises(NotImplementedError, match="Bare: no rule for its share of the false-alarm budget"):
        budgeted("bare", Bare.Settings(), budget, 4)


@pytest.mark.parametrize("kind", ["prevalence", "additive"])
def test_build_scenarios_builds_the_stages_own_scenario_last_as_the_stage_built_it(kind):
    """The drift stage takes its scenario and strength from build_scenarios (the one place they are
    built): the run's own is the last, equal to what the stage's own calls used to give."""
    rng = np.random.default_rng(5)
    X = pd.DataFrame({"vent": (rng.random(400) < 0.38).astype(float), "hr": rng.normal(80, 10, 400).round()})
    y = (rng.random(400) < 0.15 + 0.3 * X["vent"]).astype(int).to_numpy()

    def predict(frame):
        return (1 / (1 + np.exp(-(1.2 * frame["vent"] + (frame["hr"] - 80) / 20 - 1.5)))).to_numpy()

    if kind == "prevalence":
        own = {"feature": "vent", "target_prevalence": 0.72}
        arg = {"target_prevalence": 0.72}
    else:
        own = {"feature": "hr", "shift": 5.0, "benchmark_shifts": [2.0]}
        arg = {"shift": 5.0}
    d = {**DRIFT_DEFAULTS, **own, "n_shifted": 150, "rate_per_hour": 10}
    setup = SimpleNamespace(d=d, seed=3, predict=predict, X_test=X, y_test=y, cusum_threshold=10.0)
    built = build_scenarios(setup)
    assert len(built) == (3 if kind == "prevalence" else 2) and built[-1].name.startswith("scenario: ")
    column = own["feature"]
    before = drift.shift_scenario(predict, X, y, column=column, n=150, seed=3, **arg)
    got = built[-1].scenario
    pd.testing.assert_frame_equal(got.X_shifted, before.X_shifted)
    np.testing.assert_array_equal(got.scores_after, before.scores_after)
    assert got.summary() == before.summary()
    strength = scenario_strength(X[column], column=column, threshold_nats=10.0, rate_per_hour=10.0,
                                 min_effect=0.2, **arg)
    pd.testing.assert_series_equal(pd.Series(built[-1].strength.to_dict()), pd.Series(strength.to_dict()))


# -- detectors on streams with known change points -----------------------------------------------

def test_binary_cusum_detects_a_prevalence_change_near_the_information_bound():
    rng = np.random.default_rng(0)
    h = 10.0
    delays = []
    for _ in range(40):
        detector = BernoulliCUSUM(p0=0.38, odds_ratio=2.0, threshold=h, mode="both")
        before = (rng.random(500) < 0.38).astype(float)
        assert not any(detector.update(x).drift_detected for x in before[:50])  # cannot be sure so soon
        for x in before[50:]:
            detector.update(x)
        detector.statistics = [0.0, 0.0]   # the delay from a fresh start, as the bound assumes
        after = (rng.random(2000) < 0.72).astype(float)
        delays.append(next(i for i, x in enumerate(after) if detector.update(x).drift_detected) + 1)
    bound = h / kl_bernoulli(0.72, 0.38)                     # ~42 admissions
    designed = h / (0.72 * math.log(0.551 / 0.38) + 0.28 * math.log(0.449 / 0.62))   # E[llr] of OR 2: ~57
    assert bound < np.median(delays) < 1.3 * designed


def test_binary_cusum_false_alarms_stay_within_the_budgeted_run_length():
    rng = np.random.default_rng(1)
    arl0 = 2000.0
    detector = BernoulliCUSUM(p0=0.38, odds_ratio=2.0, threshold=cusum_threshold(arl0), mode="up")
    n = 40_000
    alarms = sum(detector.update(x).drift_detected for x in (rng.random(n) < 0.38).astype(float))
    assert alarms <= n / arl0            # Wald: ARL0 >= exp(h), so at most ~20 expected, fewer in fact


def test_ks_window_and_adwin_on_a_numeric_feature_stream():
    rng = np.random.default_rng(2)
    stream = FeatureStream("lactate", rng.lognormal(0.5, 0.5, 5000))
    ks = KSWindow(reference=stream.reference, alpha=1e-5, window=100, clock=5)
    adwin = ADWIN(delta=1e-4)
    stationary = stream.transform(rng.lognormal(0.5, 0.5, 5000))
    assert sum(ks.update(x).drift_detected for x in stationary) == 0
    assert sum(adwin.update(x).drift_detected for x in stationary) == 0
    shifted = stream.transform(rng.lognormal(1.0, 0.5, 400))     # lactate up ~65 %
    ks_hits = [i for i, x in enumerate(shifted) if ks.update(x).drift_detected]
    ad_hits = [i for i, x in enumerate(shifted) if adwin.update(x).drift_detected]
    assert ks_hits and ks_hits[0] < 100 and ad_hits and ad_hits[0] < 200


def test_stream_monitor_names_the_feature_whose_stream_changed():
    rng = np.random.default_rng(3)
    train = pd.DataFrame({"vent": (rng.random(4000) < 0.38).astype(float), "hr": rng.normal(80, 10, 4000)})
    policy = DriftPolicy.from_mapping({**BUDGETED, "adwin": {"enabled": False}, "page_hinkley": {"enabled": False}})
    reference = PsiReference.fit(train)
    monitor = StreamMonitor.from_policy(policy, reference, reference_scores=rng.beta(2, 8, 4000),
                                        reference_features=train)
    assert monitor.labels == ["adwin[vent]", "cusum[vent]", "adwin[hr]", "ks_window[hr]"]
    before = pd.DataFrame({"vent": (rng.random(3000) < 0.38).astype(float), "hr": rng.normal(80, 10, 3000)})
    after = pd.DataFrame({"vent": (rng.random(2000) < 0.72).astype(float), "hr": rng.normal(80, 10, 2000)})
    _, alarms = simulate_stream(rng.beta(2, 8, 3000), rng.beta(2, 8, 2000), before, after, monitor=monitor,
                                rate_per_hour=10, change_at_hours=48.0, duration_hours=96.0, seed=4)
    summary = stream_summary(alarms, change_at_hours=48.0, duration_hours=96.0)
    assert summary.loc["cusum[vent]", "detected"] and summary.loc["cusum[vent]", "delay_hours"] < 12
    assert summary.loc["cusum[vent]", "false_alarms_before_change"] == 0
    assert not summary.loc["ks_window[hr]", "detected"] and summary.loc["ks_window[hr]", "false_alarms_before_change"] == 0
    assert "cbpe_auroc" in monitor.timeline()


# -- the benchmark -------------------------------------------------------------------------------

def test_benchmark_measures_delay_and_false_alarms_of_the_combined_monitor():
    rng = np.random.default_rng(5)
    train = pd.DataFrame({"vent": (rng.random(4000) < 0.38).astype(float)})
    policy = DriftPolicy.from_mapping({**BUDGETED, "adwin": {"enabled": False}, "page_hinkley": {"enabled": False}})
    reference = PsiReference.fit(train)

    def new_monitor():
        return StreamMonitor.from_policy(policy, reference, reference_scores=rng.beta(2, 8, 500),
                                         reference_features=train)

    before = StreamPool(rng.beta(2, 8, 2000), pd.DataFrame({"vent": (rng.random(2000) < 0.38).astype(float)}))
    strong = StreamPool(rng.beta(2, 8, 2000), pd.DataFrame({"vent": (rng.random(2000) < 0.9).astype(float)}))
    runs = benchmark_runs(new_monitor, before=before, scenarios={"strong": strong}, seeds=[0, 1, 2],
                          rate_per_hour=10, change_at_hours=48, after_hours=24, no_shift_hours=240)
    table = benchmark_table(runs, bounds={"strong": (30.0, 3.0)})
    combined = table[(table["scenario"] == "strong") & (table["detector"] == COMBINED_LABEL)].iloc[0]
    assert combined["detected_share"] == 1.0 and 0 < combined["delay_hours_median"] < 6
    assert combined["delay_hours_median"] <= combined["delay_hours_p90"]
    assert combined["bound_hours"] == 3.0
    assert set(table["scenario"]) == {"strong", drift.NO_SHIFT}
    assert table.loc[table["detector"] == COMBINED_LABEL, "false_alarms_per_30_days"].max() <= 1.0
    assert targets_verdict(table, scenario="strong")["met"]


# -- the scenario and the concept shift ----------------------------------------------------------

def test_strength_check_flags_the_weak_real_table_scenario_and_states_the_bound():
    paper = scenario_strength(np.r_[np.ones(38), np.zeros(62)], column="mech_vent", target_prevalence=0.72,
                              threshold_nats=12.0, rate_per_hour=10)
    assert paper.effect_size == pytest.approx(2 * math.asin(math.sqrt(0.72)) - 2 * math.asin(math.sqrt(0.38)))
    assert paper.bound_admissions == pytest.approx(12.0 / kl_bernoulli(0.72, 0.38))
    assert not paper.too_weak and "at least a small effect" in paper.verdict
    near = scenario_strength(np.r_[np.ones(70), np.zeros(30)], column="mech_vent", target_prevalence=0.72)
    assert near.too_weak and "TOO WEAK" in near.verdict and math.isnan(near.bound_hours)
    with pytest.raises(ValueError, match="exactly one"):
        scenario_strength([0, 1], column="x")


def test_concept_shift_lowers_auroc_while_cbpe_stays_put():
    rng = np.random.default_rng(6)
    p = rng.beta(1, 6, 20_000)
    y = (rng.random(len(p)) < p).astype(int)                   # calibrated by construction
    covariate = p[p > 0.1]                                     # a covariate shift: other inputs, same P(y | x)
    y_cov = y[p > 0.1]
    assert cbpe_summary(covariate, y_cov)["expected_auroc"] == pytest.approx(roc_auc_score(y_cov, covariate), abs=0.015)
    y_concept = simulate_concept_shift(y, fraction=0.5, seed=0)
    realised = roc_auc_score(y_concept, p)
    assert realised < roc_auc_score(y, p) - 0.08             # about half the signal is gone
    assert expected_auroc(p) == pytest.approx(roc_auc_score(y, p), abs=0.01)   # the estimate does not see it
    assert abs(y_concept.mean() - y.mean()) < 0.01            # same base rate
    with pytest.raises(ValueError, match="fraction"):
        simulate_concept_shift(y, fraction=1.5, seed=0)


def test_expected_auroc_known_answers():
    assert expected_auroc([0.0, 0.0, 1.0, 1.0]) == 1.0
    assert expected_auroc([0.5, 0.5]) == 0.5
    # pairs (i, j), i != j, weight p_i (1 - p_j): right when p_i > p_j
    p = np.array([0.1, 0.4, 0.7])
    num = sum(p[i] * (1 - p[j]) for i in range(3) for j in range(3) if p[i] > p[j])
    den = sum(p[i] * (1 - p[j]) for i in range(3) for j in range(3) if i != j)
    assert expected_auroc(p) == pytest.approx(num / den)
    with pytest.raises(ValueError, match="probabilities"):
        expected_auroc([0.2, 1.3])


# -- the server: /metrics exposes CBPE ------------------------------------------------------------

def _gauges(client):
    r = client.get("/metrics", headers=demo_token("system"))
    assert r.status_code == 200
    return {s.name: s.value for f in text_string_to_metric_families(r.text) for s in f.samples if not s.labels}


def test_metrics_expose_the_cbpe_estimate_before_and_beside_outcomes(tmp_path):
    manifest = FeatureManifest.load("mortality")
    bundle_dir = build_demo_bundle(tmp_path / "bundle", n=800, seed=21)
    X, _ = demo_frame(40, seed=22, manifest=manifest)
    binary = {s.name for s in manifest.specs if s.kind == "binary"}
    with ServerThread(demo_app(bundle_dir, tmp_path / "state", psi_window=20, min_outcomes=10)) as server, \
            httpx.Client(base_url=server.base_url, timeout=30) as client:
        ids, probs = [], []
        for row in X.to_dict("records"):
            record = {k: (None if isinstance(v, float) and np.isnan(v) else int(v) if k in binary else v)
                      for k, v in row.items()}
            body = {"encounter_id": "30000001", "purpose": "direct_care", "features": record}
            r = client.post("/v1/predictions", json=body, headers=demo_token("clinician"))
            assert r.status_code == 200, r.text
            ids.append(r.json()["prediction_id"])
            probs.append(r.json()["probability"])
        before = _gauges(client)
        assert "clinops_cbpe_auroc" in before and "clinops_cbpe_event_rate" in before
        assert before["clinops_cbpe_event_rate"] == pytest.approx(np.mean(probs[-20:]), abs=1e-9)
        assert before["clinops_cbpe_auroc"] == pytest.approx(expected_auroc(probs[-20:]), abs=1e-9)
        y = (np.array(probs) >= np.median(probs)).astype(int)
        for pid, outcome in zip(ids, y):
            r = client.post("/v1/outcomes", json={"prediction_id": pid, "outcome": int(outcome)},
                            headers=demo_token("system"))
            assert r.status_code == 200, r.text
        live = r.json()["live"]
        after = _gauges(client)
    assert live["cbpe_auroc"] == pytest.approx(expected_auroc(probs), abs=1e-9)
    assert after["clinops_live_cbpe_auroc"] == pytest.approx(live["cbpe_auroc"], abs=1e-9)
    assert after["clinops_live_auroc"] == pytest.approx(roc_auc_score(y, probs), abs=1e-9)


def test_the_benchmark_note_names_the_cusum_bound_only_when_a_scenario_shifts_a_binary_feature():
    verdict = {"met": True, "delay_met": True, "false_alarms_met": True}
    d = {"benchmark_hours_after_change": 48}
    binary = SimpleNamespace(verdict=verdict, table=pd.DataFrame(
        {"scenario": ["mech_vent 0.38 -> 0.50"], "bound_admissions": [470.2]}))
    continuous = SimpleNamespace(verdict=verdict, table=pd.DataFrame(
        {"scenario": ["prior_admissions_12m +1"], "bound_admissions": [float("nan")]}))
    assert "threshold / KL per admission (binary feature only)" in benchmark_note(binary, d)
    note = benchmark_note(continuous, d)
    assert "bound_*: empty, no scenario here has a CUSUM information bound" in note and "threshold / KL" not in note

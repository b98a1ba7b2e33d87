"""Unit tests for clinops.drift: PSI known answers, reference bins, shift simulation, the stream
monitor on synthetic streams with a known change point, Evidently agreement, the policy, figures.

The detectors themselves: tests/test_drift_detectors.py; the server's monitor:
tests/test_live_monitor.py."""
from __future__ import annotations

import io
import json
import math

import numpy as np
import pandas as pd
import pytest

from clinops.drift import (
    DriftPolicy,
    PsiReference,
    StreamMonitor,
    evidently_report,
    plot_psi_over_time,
    plot_stream,
    prevalence_shift_scenario,
    psi,
    psi_status,
    reference_statistics,
    simulate_additive_shift,
    simulate_prevalence_shift,
    simulate_stream,
    stream_summary,
)

from clinops.drift.detectors import PageHinkley
from clinops.policy import PolicyError


# -------------------------------------------------------------------------------- PSI values

def test_psi_numeric_hand_computed():
    # reference 1..10, 2 bins -> median edge 5.5; current has 7 values <= 5.5 and 3 above
    ref = np.arange(1, 11)
    cur = [1, 2, 3, 4, 5, 6, 7, 8, 1, 2]
    expected = (0.7 - 0.5) * math.log(0.7 / 0.5) + (0.3 - 0.5) * math.log(0.3 / 0.5)   # 0.1694595
    assert psi(ref, cur, bins=2) == pytest.approx(expected, abs=1e-12)
    assert psi(ref, cur, edges=[5.5]) == pytest.approx(expected, abs=1e-12)
    # values beyond the reference range fall into the outer bins: 100 counts as 'above 5.5'
    assert psi(ref, [1, 2, 3, 4, 5, 1, 2, 100, 100, 100], bins=2) == pytest.approx(expected, abs=1e-12)
    assert psi(ref, ref, bins=5) == 0.0


def test_psi_categorical_and_empty_bins_hand_computed():
    ref = [0] * 60 + [1] * 40
    cur = [0] * 30 + [1] * 70
    expected = (0.3 - 0.6) * math.log(0.3 / 0.6) + (0.7 - 0.4) * math.log(0.7 / 0.4)   # 0.3758289
    assert psi(ref, cur, kind="categorical") == pytest.approx(expected, abs=1e-12)
    # a category never seen in the reference: its reference share 0 becomes eps = 1e-4
    got = psi([0] * 10, [0, 1], kind="categorical")
    eps = 1e-4
    assert got == pytest.approx((0.5 - 1) * math.log(0.5 / 1) + (0.5 - eps) * math.log(0.5 / eps), abs=1e-12)
    # missingness is its own bin: half the current values missing
    got = psi([1.0, 2.0, 3.0, 4.0], [1.0, np.nan, 3.0, np.nan], edges=[2.5])
    expected = (0.25 - 0.5) * math.log(0.25 / 0.5) * 2 + (0.5 - eps) * math.log(0.5 / eps)
    assert got == pytest.approx(expected, abs=1e-12)


def test_psi_refuses_bad_input():
    with pytest.raises(ValueError, match="kind: must be one of"):
        psi([1, 2], [1, 2], kind="ordinal")
    with pytest.raises(ValueError, match="edges: must be strictly increasing"):
        psi([1, 2], [1, 2], edges=[2, 1])
    with pytest.raises(ValueError, match="reference: needs at least one non-missing value"):
        psi([np.nan], [1.0])


def test_psi_status_levels():
    assert [psi_status(v) for v in (0.05, 0.1, 0.15, 0.2, 0.9, np.nan)] == \
        ["stable", "watch", "watch", "drift", "drift", "unknown"]


def test_psi_reference_fixes_bins_and_round_trips(tmp_path):
    rng = np.random.default_rng(0)
    X = pd.DataFrame({"lactate": rng.lognormal(0.5, 0.5, 400), "mech_vent": (rng.random(400) < 0.4).astype(int),
                      "dx": rng.choice(["I", "J", "K"], 400)})
    X.loc[:50, "lactate"] = np.nan
    ref = PsiReference.fit(X)
    assert {f: ref.kind(f) for f in ref.features} == {"lactate": "numeric", "mech_vent": "categorical", "dx": "categorical"}
    Y = X.sample(200, random_state=1).copy()
    Y["mech_vent"] = 1
    got = ref.psi(Y)
    for f in X.columns:
        assert got[f] == pytest.approx(psi(X[f], Y[f], kind=ref.kind(f)), abs=1e-12)
    assert got.idxmax() == "mech_vent"
    # JSON round trip gives the same numbers (the server reuses the stored reference)
    path = ref.save(tmp_path / "psi.json")
    back = PsiReference.load(path)
    pd.testing.assert_series_equal(back.psi(Y), got)
    json.loads(path.read_text())
    with pytest.raises(KeyError, match="mech_vent"):
        ref.psi(Y.drop(columns="mech_vent"))


def test_psi_matches_evidently_on_a_binary_column(tmp_path):
    """Same statistic, same eps: Evidently's PSI on a categorical column equals ours."""
    rng = np.random.default_rng(2)
    ref = pd.DataFrame({"mech_vent": (rng.random(1500) < 0.384).astype(int), "hr": rng.normal(80, 12, 1500)})
    cur = pd.DataFrame({"mech_vent": (rng.random(800) < 0.72).astype(int), "hr": rng.normal(80, 12, 800)})
    out = evidently_report(ref, cur, tmp_path / "drift" / "report.html", threshold=0.2,
                           numerical_columns=["hr"], categorical_columns=["mech_vent"])
    assert (tmp_path / "drift" / "report.html").stat().st_size > 10_000
    assert (tmp_path / "drift" / "report.json").exists()
    row = out.set_index("column").loc["mech_vent"]
    assert row["value"] == pytest.approx(psi(ref["mech_vent"], cur["mech_vent"], kind="categorical"), abs=1e-9)
    assert bool(row["drifted"]) and not bool(out.set_index("column").loc["hr", "drifted"])
    assert (out["method"] == "psi").all()


# -------------------------------------------------------------------------------- shifts

def _frame(n=1000, seed=0):
    rng = np.random.default_rng(seed)
    return pd.DataFrame({"age": rng.integers(18, 95, n).astype(float),
                         "mech_vent": (rng.random(n) < 0.384).astype(int),
                         "lactate": rng.lognormal(0.5, 0.5, n)}, index=np.arange(1000, 1000 + n))


def test_prevalence_shift_changes_only_the_column():
    X = _frame()
    S = simulate_prevalence_shift(X, "mech_vent", 0.72, n=500, seed=4)
    assert len(S) == 500 and S.index.isin(X.index).all() and S.index.is_unique
    assert S["mech_vent"].sum() == round(0.72 * 500)
    before = X.loc[S.index]
    pd.testing.assert_frame_equal(S.drop(columns="mech_vent"), before.drop(columns="mech_vent"))
    assert (S.loc[before["mech_vent"] == 1, "mech_vent"] == 1).all()      # raising keeps every 1
    pd.testing.assert_frame_equal(S, simulate_prevalence_shift(X, "mech_vent", 0.72, n=500, seed=4))
    down = simulate_prevalence_shift(X, "mech_vent", 0.1, n=500, seed=4)
    assert down["mech_vent"].sum() == 50 and (down.loc[X.loc[down.index, "mech_vent"] == 0, "mech_vent"] == 0).all()
    with pytest.raises(ValueError, match="must be binary 0/1"):
        simulate_prevalence_shift(X, "lactate", 0.5, n=10, seed=0)
    with pytest.raises(ValueError, match="target_prevalence"):
        simulate_prevalence_shift(X, "mech_vent", 1.5, n=10, seed=0)
    with pytest.raises(ValueError, match="n: must be an integer"):
        simulate_prevalence_shift(X, "mech_vent", 0.5, n=5000, seed=0)


def test_additive_shift():
    X = _frame()
    S = simulate_additive_shift(X, "age", 1.0, n=100, seed=1, upper=100)
    assert (S["age"] == np.minimum(X.loc[S.index, "age"] + 1, 100)).all()
    with pytest.raises(ValueError, match="must be numeric"):
        simulate_additive_shift(X.assign(s="a"), "s", 1.0, seed=0)


def test_shift_scenario_with_a_model_that_uses_the_flag():
    X = _frame(2000, seed=3)
    rng = np.random.default_rng(5)

    def predict(Z):   # the true risk: ventilated patients are sicker
        return 1 / (1 + np.exp(-(-2.5 + 0.03 * (Z["age"].to_numpy() - 60) + 2.0 * Z["mech_vent"].to_numpy())))

    y = (rng.random(len(X)) < predict(X)).astype(int)
    # flipping the flag on patients who were not ventilated makes their predicted risk wrong,
    # so the ranking (AUROC) on the same patients must get worse

    sc = prevalence_shift_scenario(predict, X, y, column="mech_vent", target_prevalence=0.72, n=800, seed=2)
    assert sc.prevalence_after == pytest.approx(0.72, abs=1 / 800)
    assert sc.auroc_after < sc.auroc_before
    assert sc.relative_drop == pytest.approx((sc.auroc_before - sc.auroc_after) / sc.auroc_before)
    assert set(sc.summary()) >= {"auroc_before", "auroc_after", "relative_drop", "relative_drop_vs_full"}


# -------------------------------------------------------------------------------- monitor

@pytest.fixture(scope="module")
def pools():
    """Unshifted and shifted admissions with known properties.

    Before: scores ~ Beta(2, 12) (mean 0.14), flag prevalence 0.3. After: scores ~ Beta(4, 12)
    (mean 0.25) and flag prevalence 0.8; 'noise' never changes.
    """
    rng = np.random.default_rng(7)
    nb, na = 4000, 2000
    Xb = pd.DataFrame({"flag": (rng.random(nb) < 0.3).astype(int), "noise": rng.normal(size=nb)})
    Xa = pd.DataFrame({"flag": (rng.random(na) < 0.8).astype(int), "noise": rng.normal(size=na)})
    sb, sa = rng.beta(2, 12, nb), rng.beta(4, 12, na)
    Xtrain = pd.DataFrame({"flag": (rng.random(5000) < 0.3).astype(int), "noise": rng.normal(size=5000)})
    ref = PsiReference.fit(Xtrain, {"flag": "categorical", "noise": "numeric"})
    return sb, Xb, sa, Xa, ref, rng.beta(2, 12, 5000)


def test_detectors_fire_after_the_change_point_not_before(pools):
    sb, Xb, sa, Xa, ref, train_scores = pools
    policy = DriftPolicy()
    mon = StreamMonitor.from_policy(policy, ref, reference_scores=train_scores)
    change, duration = 48.0, 96.0
    timeline, alarms = simulate_stream(sb, sa, Xb, Xa, monitor=mon, rate_per_hour=20, change_at_hours=change,
                                       duration_hours=duration, seed=1)
    assert len(timeline) == duration * 4                       # one evaluation per 15 minutes
    assert np.allclose(np.diff(timeline["t_hours"]), 0.25)
    assert not alarms["after_change"].eq(False).any(), alarms[~alarms["after_change"]]
    summary = stream_summary(alarms, change_at_hours=change, duration_hours=duration)
    for det in ("adwin", "page_hinkley", "psi_drift"):
        assert summary.loc[det, "detected"], det
        assert summary.loc[det, "false_alarms_before_change"] == 0
        assert 0 < summary.loc[det, "delay_hours"] < 24
        assert summary.loc[det, "delay_admissions"] > 0
    assert summary.loc["psi_drift", "features"] == "flag"      # the monitor names the drifted feature
    assert mon.drifted_features() == ["flag"]
    assert set(alarms.loc[alarms["detector"] == "psi", "feature"]) == {"flag"}
    # reproducible under the seed
    mon2 = StreamMonitor.from_policy(policy, ref, reference_scores=train_scores)
    _, alarms2 = simulate_stream(sb, sa, Xb, Xa, monitor=mon2, rate_per_hour=20, change_at_hours=change,
                                 duration_hours=duration, seed=1)
    pd.testing.assert_frame_equal(alarms, alarms2)
    figs = [plot_stream(timeline, alarms, change_at_hours=change), plot_psi_over_time(timeline, change_at_hours=change)]
    for fig in figs:
        buf = io.BytesIO()
        fig.savefig(buf, format="png")
        assert buf.getvalue()[:4] == b"\x89PNG"


def test_no_shift_stream_raises_no_alarm(pools):
    sb, Xb, _, _, ref, train_scores = pools
    mon = StreamMonitor.from_policy(DriftPolicy(), ref, reference_scores=train_scores)
    timeline, alarms = simulate_stream(sb, None, Xb, None, monitor=mon, rate_per_hour=20, change_at_hours=None,
                                       duration_hours=7 * 24, seed=2)
    s = stream_summary(alarms, change_at_hours=None, duration_hours=7 * 24)
    assert not s["detected"].any()
    assert s.loc["adwin", "false_alarms_before_change"] == 0
    assert s.loc["psi_drift", "false_alarms_before_change"] == 0 and s.loc["psi_watch", "false_alarms_before_change"] == 0
    assert timeline[["psi[flag]", "psi[noise]"]].max().max() < 0.1
    # Page-Hinkley's in-control run length is ~11,000 admissions by design (drift.yaml), so
    # 3,360 admissions expect ~0.3 false alarms; 3 or more would have probability < 0.5 %
    assert s.loc["page_hinkley", "false_alarms_before_change"] <= 2


def test_monitor_evaluates_on_the_clock(pools):
    *_, ref, _ = pools
    mon = StreamMonitor(ref, eval_minutes=15, psi_window=10)
    row = {"flag": 1, "noise": 0.0}
    assert mon.add(0.05, 0.1, row) == [] and mon.add(0.20, 0.2, row) == []
    assert mon.timeline().empty                     # nothing evaluated before 15 minutes
    mon.add(0.30, 0.3, row)                         # passes 0.25 h: first evaluation (2 admissions)
    tl = mon.timeline()
    assert list(tl["t_hours"]) == [0.25] and list(tl["n_batch"]) == [2]
    assert tl["score_mean_batch"].iloc[0] == pytest.approx(0.15)
    assert np.isnan(tl["psi[flag]"].iloc[0])        # PSI waits for a full window
    mon.advance(1.0)
    assert list(mon.timeline()["t_hours"]) == [0.25, 0.5, 0.75, 1.0]
    assert mon.n_seen == 3
    with pytest.raises(ValueError, match="earlier than the last admission"):
        mon.add(0.1, 0.1, row)
    with pytest.raises(ValueError, match="eval_minutes"):
        StreamMonitor(ref, eval_minutes=0)
    with pytest.raises(ValueError, match="score_sd"):
        PageHinkley(score_sd=0.0)


def test_psi_alarms_name_the_feature_and_call_back(pools):
    *_, ref, _ = pools
    seen = []
    mon = StreamMonitor(ref, psi_window=50, on_event=seen.append)
    from scipy.stats import norm
    # 'noise' spread evenly over N(0, 1) quantiles (PSI ~ 0 even in a 50-admission window)
    X = pd.DataFrame({"flag": [1] * 50, "noise": norm.ppf((np.arange(50) + 0.5) / 50)})
    mon.add_many(np.linspace(0, 0.2, 50), np.full(50, 0.1), X)
    events = mon.advance(0.25)
    psi_events = [e for e in events if e.detector == "psi"]
    assert [(e.feature, e.kind) for e in psi_events] == [("flag", "drift")]
    assert psi_events[0].value == pytest.approx(ref.psi(X)["flag"], abs=1e-12)   # the whole window
    assert seen == events and "flag" in psi_events[0].message


def test_drift_policy_file_sets_what_the_monitor_runs(tmp_path, pools):
    """A policy file's sections reach the monitor: PSI levels, which detectors run, task overrides."""
    sb, Xb, sa, Xa, ref, train_scores = pools
    path = tmp_path / "drift.yaml"
    path.write_text("psi: {window: 50, alert: 0.5}\nadwin: {enabled: false}\n"
                    "tasks: {strict: {psi: {alert: 0.25}}}\n")
    pol = DriftPolicy.load(path)
    assert pol.enabled_detectors == ["page_hinkley"] and pol.psi_window == 50
    mon = StreamMonitor.from_policy(pol, ref, reference_scores=train_scores)
    assert list(mon.detectors) == ["page_hinkley"] and mon.psi_alert == 0.5
    _, alarms = simulate_stream(sb, sa, Xb, Xa, monitor=mon, rate_per_hour=20, change_at_hours=48.0,
                                duration_hours=96.0, seed=1)
    assert "adwin" not in set(alarms["detector"])
    assert list(stream_summary(alarms, change_at_hours=48.0, duration_hours=96.0).index) == \
        ["page_hinkley", "psi_drift", "psi_watch", "any"]
    assert DriftPolicy.load(path, task="strict").psi_alert == 0.25        # a task's override
    # the flat form the bundle stores gives the same policy back
    assert DriftPolicy(**pol.to_dict()) == pol
    assert pol.to_dict()["adwin_enabled"] is False and "adwin_delta" not in pol.to_dict()


@pytest.mark.parametrize("text, message", [
    ("psi: {alert: 0.05}\n", "psi: Value error, watch: must be below alert"),
    ("psi: {window: 5}\n", "psi.window: Input should be greater than or equal to 10"),
    ("adwin: {deltaa: 0.1}\n", "adwin.deltaa: unknown setting"),
    ("page_hinkley: {mode: sideways}\n", "page_hinkley.mode: Input should be 'up', 'down' or 'both'"),
    ("retrain: {on_drift: true}\n", "retrain: unknown setting"),
])
def test_drift_policy_errors_name_file_setting_and_rule(tmp_path, text, message):
    path = tmp_path / "drift.yaml"
    path.write_text(text)
    with pytest.raises(PolicyError, match=f"{path}: .*{message}"):
        DriftPolicy.load(path)


def test_drift_policy_defaults_are_stated_once():
    """The flat form of the defaults has exactly the bundle's keys, in order (no CUSUM: off)."""
    flat = DriftPolicy().to_dict()
    assert list(flat) == ["psi_bins", "psi_watch", "psi_alert", "psi_eps", "psi_window", "psi_hysteresis",
                          "adwin_delta", "adwin_clock", "adwin_grace_period", "adwin_min_window_length",
                          "ph_min_instances", "ph_delta_sd", "ph_threshold_sd", "ph_alpha", "ph_mode",
                          "ph_transform"]
    assert DriftPolicy(**flat) == DriftPolicy()
    assert isinstance(DriftPolicy(ph_threshold_sd=25).to_dict()["ph_threshold_sd"], int)   # the value as given


def test_reference_statistics_is_what_psi_reference_reads():
    """One binning and one format: the bundle's reference gives the same PSI as fitting here."""
    rng = np.random.default_rng(3)
    X = pd.DataFrame({"lactate": rng.lognormal(0.5, 0.5, 500), "gcs": rng.integers(3, 16, 500).astype(float),
                      "mech_vent": (rng.random(500) < 0.4).astype(float)})
    X.loc[:99, "lactate"] = np.nan
    stats = reference_statistics(X, n_bins=10)
    assert stats["mech_vent"]["bin_edges"] == [0.0]                   # a flag: one bin per value
    assert len(stats["gcs"]["bin_edges"]) == 9                        # 13 GCS values > 10: deciles
    assert stats["lactate"]["missing_rate"] == 0.2
    assert all(sum(st["proportions"]) == pytest.approx(1.0) for st in stats.values())
    from_bundle = PsiReference.from_dict(stats)
    fitted = PsiReference.fit(X, {c: "numeric" for c in X.columns})
    Y = simulate_prevalence_shift(X, "mech_vent", 0.8, n=300, seed=1)
    Y.loc[Y.index[:150], "lactate"] = np.nan
    pd.testing.assert_series_equal(from_bundle.psi(Y), fitted.psi(Y), atol=1e-12)
    assert from_bundle.psi(Y)["mech_vent"] > 0.2 and from_bundle.psi(Y)["gcs"] < 0.1
    # what PsiReference writes is the same format
    assert fitted.to_dict()["gcs"]["bin_edges"] == stats["gcs"]["bin_edges"]
    with pytest.raises(ValueError, match="edges need"):
        PsiReference.from_dict({"x": {"bin_edges": [1.0], "proportions": [1.0], "missing_rate": 0}})


def test_psi_handles_nullable_integer_columns():
    ref = pd.Series([1, 2, 3, 4, None, 6, 7, 8], dtype="Int64")
    cur = pd.Series([1, None, None, 4], dtype="Int64")
    # bins (<= 4.5, > 4.5, missing): reference 4/8, 3/8, 1/8; current 2/4, 0 (-> eps), 2/4
    eps = 1e-4
    assert psi(ref, cur, edges=[4.5]) == pytest.approx(
        (eps - 3 / 8) * math.log(eps / (3 / 8)) + (0.5 - 1 / 8) * math.log(0.5 / (1 / 8)), abs=1e-12)

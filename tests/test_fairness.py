"""Unit tests for clinops.fairness: hand-computed metrics, fairlearn agreement, CIs, policy, alerts."""
from __future__ import annotations

import io
import math
from functools import partial

import numpy as np
import pandas as pd
import pytest
from fairlearn.metrics import MetricFrame, demographic_parity_difference, equalized_odds_difference

from clinops.bootstrap import safe_div
from clinops.fairness import (
    GAP_METRICS,
    SUBGROUP_METRICS,
    FairnessAlert,
    FairnessPolicy,
    age_groups,
    fairness_alerts,
    fairness_gaps,
    plot_subgroups,
    subgroup_table,
)
from clinops.fairness.metrics import RATES, SubgroupMetric

# The rules these tests apply, stated here (a unit test never reads the live params/ files).
POLICY_YAML = """
action: human_review
min_group_size: 30
pairwise_gap_limits: {auroc: 0.03}
disparity_limits: {equalized_odds_difference: 0.05, demographic_parity_difference: 0.05,
                   predictive_parity_difference: 0.05}
tasks:
  mortality: {}
  readmission: {pairwise_gap_limits: {auroc: 0.05}}
"""


@pytest.fixture
def policy_path(tmp_path):
    path = tmp_path / "fairness.yaml"
    path.write_text(POLICY_YAML)
    return path


def _sk_metrics(threshold):
    return {m: partial(spec.point, threshold=threshold) for m, spec in SUBGROUP_METRICS.items()}


def _with(policy, **changes):
    return FairnessPolicy(**{**policy.to_dict(), **changes})

# two small groups with metrics worked out by hand (threshold 0.45, predicted positive if >=)
#   A: y 0 0 1 1, p .1 .5 .4 .9 -> AUROC 3/4; TP 1 FN 1 FP 1 TN 1 -> sens .5 spec .5 PPV .5
#   B: y 0 1 1 0 0, p .2 .6 .45 .45 .3 -> AUROC (3 + 2.5)/6; TP 2 FN 0 FP 1 TN 2
#      -> sens 1, spec 2/3, PPV 2/3, selection rate 3/5
#   overall AUROC: positives .4 .9 .6 .45 vs negatives .1 .5 .2 .45 .3 -> (3 + 5 + 5 + 3.5)/20
Y = np.array([0, 0, 1, 1, 0, 1, 1, 0, 0])
P = np.array([0.1, 0.5, 0.4, 0.9, 0.2, 0.6, 0.45, 0.45, 0.3])
G = np.array(["A"] * 4 + ["B"] * 5)


@pytest.fixture(scope="module")
def synthetic():
    """600 stays, two attributes, a score that carries signal; ties included (rounded)."""
    rng = np.random.default_rng(1)
    n = 600
    y = (rng.random(n) < 0.2).astype(int)
    p = np.clip(0.25 * y + rng.random(n) * 0.75, 0, 1).round(2)
    sex = rng.choice(["F", "M"], n)
    age = age_groups(rng.integers(18, 95, n))
    return y, p, sex, age


def test_age_groups_known_labels():
    ages = pd.Series([18, 44, 44.9, 45, 64, 65, 79, 80, 101], index=list("abcdefghi"))
    got = age_groups(ages)
    assert list(got.astype(str)) == ["18-44", "18-44", "18-44", "45-64", "45-64", "65-79", "65-79", "80+", "80+"]
    assert list(got.index) == list("abcdefghi")
    assert list(got.cat.categories) == ["18-44", "45-64", "65-79", "80+"]


@pytest.mark.parametrize("ages, edges, match", [
    ([17, 30], (18, 45, 65, 80), "age: must be >= the first edge"),
    ([30, np.nan], (18, 45, 65, 80), "age: must be numeric and not missing"),
    ([30], (18, 65, 45), "edges: must be strictly increasing"),
])
def test_age_groups_refuses_bad_input(ages, edges, match):
    with pytest.raises(ValueError, match=match):
        age_groups(ages, edges)


def test_subgroup_table_hand_computed():
    t = subgroup_table(Y, P, {"grp": G}, threshold=0.45, n_boot=0, seed=0, min_group_size=1)
    assert list(t.index) == [("overall", "all"), ("grp", "A"), ("grp", "B")]
    a, b, o = t.loc[("grp", "A")], t.loc[("grp", "B")], t.loc[("overall", "all")]
    assert (a["n"], a["events"], a["prevalence"]) == (4, 2, 0.5)
    assert (b["n"], b["events"], b["prevalence"]) == (5, 2, 0.4)
    assert a["auroc"] == pytest.approx(0.75, abs=1e-12)
    assert (a["sensitivity"], a["specificity"], a["ppv"]) == pytest.approx((0.5, 0.5, 0.5), abs=1e-12)
    assert b["auroc"] == pytest.approx(5.5 / 6, abs=1e-12)
    assert (b["sensitivity"], b["specificity"], b["ppv"]) == pytest.approx((1.0, 2 / 3, 2 / 3), abs=1e-12)
    assert o["auroc"] == pytest.approx(16.5 / 20, abs=1e-12)
    assert t["estimable"].all()
    assert t["auroc_lo"].isna().all()          # n_boot = 0 -> no CIs


def test_bootstrap_cis_equal_fairlearn_metricframe(synthetic):
    """Our vectorised bootstrap draws fairlearn's resamples and gives fairlearn's CIs."""
    y, p, sex, _ = synthetic
    t = subgroup_table(y, p, {"sex": sex}, threshold=0.4, n_boot=30, seed=7)
    mf = MetricFrame(metrics=_sk_metrics(0.4), y_true=y, y_pred=p, sensitive_features=pd.Series(sex, name="sex"),
                     n_boot=30, ci_quantiles=[0.025, 0.975], random_state=7)
    for m in ("auroc", "sensitivity", "specificity", "ppv"):
        for g in ("F", "M"):
            assert t.loc[("sex", g), f"{m}_lo"] == pytest.approx(mf.by_group_ci[0].loc[g, m], abs=1e-12)
            assert t.loc[("sex", g), f"{m}_hi"] == pytest.approx(mf.by_group_ci[1].loc[g, m], abs=1e-12)
            assert t.loc[("sex", g), m] == pytest.approx(mf.by_group.loc[g, m], abs=1e-12)
        assert t.loc[("overall", "all"), f"{m}_lo"] == pytest.approx(mf.overall_ci[0][m], abs=1e-12)
        assert t.loc[("overall", "all"), f"{m}_hi"] == pytest.approx(mf.overall_ci[1][m], abs=1e-12)


def test_bootstrap_is_deterministic_under_a_seed(synthetic):
    y, p, sex, age = synthetic
    kw = dict(threshold=0.4, n_boot=50, min_group_size=30)
    t1 = subgroup_table(y, p, {"sex": sex, "age_group": age}, seed=11, **kw)
    t2 = subgroup_table(y, p, {"sex": sex, "age_group": age}, seed=11, **kw)
    t3 = subgroup_table(y, p, {"sex": sex, "age_group": age}, seed=12, **kw)
    pd.testing.assert_frame_equal(t1, t2)
    assert not np.allclose(t1["auroc_lo"], t3["auroc_lo"])
    ok = t1["estimable"]
    assert (t1.loc[ok, "auroc_lo"] <= t1.loc[ok, "auroc"]).all() and (t1.loc[ok, "auroc"] <= t1.loc[ok, "auroc_hi"]).all()
    g1 = fairness_gaps(y, p, age, threshold=0.4, n_boot=50, seed=11)
    g2 = fairness_gaps(y, p, age, threshold=0.4, n_boot=50, seed=11)
    pd.testing.assert_frame_equal(g1, g2)


def test_small_or_one_class_groups_are_not_estimable():
    rng = np.random.default_rng(0)
    y = np.r_[(rng.random(100) < 0.3).astype(int), np.zeros(40, int), [1, 0, 1, 0, 1]]
    p = rng.random(len(y))
    grp = np.array(["big"] * 100 + ["no_events"] * 40 + ["tiny"] * 5)
    t = subgroup_table(y, p, {"g": grp}, threshold=0.5, n_boot=20, seed=1, min_group_size=30)
    tiny, none, big = t.loc[("g", "tiny")], t.loc[("g", "no_events")], t.loc[("g", "big")]
    assert not tiny["estimable"] and np.isnan(tiny[["auroc", "sensitivity", "specificity", "ppv"]].astype(float)).all()
    assert "n=5 < min_group_size=30" in tiny["note"]
    assert tiny["n"] == 5                       # n and prevalence are still reported
    assert not none["estimable"] and np.isnan(none["auroc"]) and np.isnan(none["sensitivity"])
    assert "one outcome class" in none["note"]
    assert np.isfinite(none["specificity"])     # specificity is defined without events
    assert big["estimable"] and np.isfinite(big["auroc_lo"])


@pytest.mark.parametrize("kwargs, match", [
    (dict(y_true=[0, 2, 1], prob=[0.1, 0.2, 0.3]), "y_true: labels must be 0 or 1"),
    (dict(y_true=[0, 1, 1], prob=[0.1, 1.2, 0.3]), r"prob: must be probabilities in \[0, 1\]"),
    (dict(y_true=[0, 1, 1], prob=[0.1, 0.2]), "prob: must be one-dimensional with 3"),
    (dict(y_true=[0, 1, 1], prob=[0.1, 0.2, 0.3], groups={"sex": ["F", None, "M"]}), r"groups\['sex'\]: must not contain missing"),
    (dict(y_true=[0, 1, 1], prob=[0.1, 0.2, 0.3], threshold=1.5), "threshold: must lie strictly between 0 and 1"),
    (dict(y_true=[0, 1, 1], prob=[0.1, 0.2, 0.3], seed=None), "seed: required"),
])
def test_subgroup_table_refuses_bad_input(kwargs, match):
    args = dict(groups={"sex": ["F", "M", "M"]}, threshold=0.4, n_boot=5, seed=0, min_group_size=1)
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        subgroup_table(args.pop("y_true"), args.pop("prob"), args.pop("groups"), **args)


def test_fairness_gaps_hand_computed_and_equal_to_fairlearn():
    g = fairness_gaps(Y, P, G, threshold=0.45, n_boot=0, seed=0, min_group_size=1, attribute="grp").set_index("metric")
    # TPR A .5 vs B 1 (gap .5), FPR A .5 vs B 1/3 (gap 1/6) -> EOD .5 from the TPR
    assert g.loc["equalized_odds_difference", "value"] == pytest.approx(0.5, abs=1e-12)
    assert g.loc["equalized_odds_difference", "component"] == "tpr"
    assert (g.loc["equalized_odds_difference", "group_high"], g.loc["equalized_odds_difference", "group_low"]) == ("B", "A")
    assert g.loc["demographic_parity_difference", "value"] == pytest.approx(0.1, abs=1e-12)   # 3/5 - 2/4
    assert g.loc["predictive_parity_difference", "value"] == pytest.approx(2 / 3 - 0.5, abs=1e-12)
    pred = (P >= 0.45).astype(int)
    assert g.loc["equalized_odds_difference", "value"] == equalized_odds_difference(Y, pred, sensitive_features=G)
    assert g.loc["demographic_parity_difference", "value"] == demographic_parity_difference(Y, pred, sensitive_features=G)


def test_fairness_gaps_cis_and_exclusions(synthetic):
    y, p, _, age = synthetic
    g = fairness_gaps(y, p, age, threshold=0.4, n_boot=200, seed=3)
    assert list(g["metric"]) == list(GAP_METRICS)
    assert (g["ci_lo"] <= g["ci_hi"]).all() and (g["n_boot_defined"] == 200).all()
    assert (g["attribute"] == "age_group").all() and (g["n_groups"] == 4).all()
    # a group below min_group_size is left out and named
    tiny = np.r_[np.asarray(age.astype(str)), ["tiny"] * 3]
    g2 = fairness_gaps(np.r_[y, [0, 1, 0]], np.r_[p, [0.1, 0.9, 0.2]], tiny, threshold=0.4, n_boot=10, seed=3)
    assert (g2["excluded_groups"] == "tiny").all() and (g2["n_groups"] == 4).all()
    with pytest.raises(ValueError, match="fewer than two estimable groups"):
        fairness_gaps(y[:40], p[:40], np.array(["a"] * 35 + ["b"] * 5), threshold=0.4, n_boot=5, seed=0)


def _paper_table() -> pd.DataFrame:
    """Table 2's AUROCs (paper), with one extra non-estimable group that must never alert."""
    rows = [("overall", "all", 0.847, True), ("sex", "F", 0.839, True), ("sex", "M", 0.851, True),
            ("age_group", "18-44", 0.821, True), ("age_group", "45-64", 0.844, True),
            ("age_group", "65-79", 0.853, True), ("age_group", "80+", 0.838, True),
            ("age_group", "100+", np.nan, False)]
    idx = pd.MultiIndex.from_tuples([(a, g) for a, g, _, _ in rows], names=["attribute", "group"])
    return pd.DataFrame({"auroc": [r[2] for r in rows], "estimable": [r[3] for r in rows]}, index=idx)


def test_alerts_on_the_paper_table_name_groups_and_gap(policy_path):
    policy = FairnessPolicy.load(policy_path)
    alerts = fairness_alerts(_paper_table(), policy)
    # only 65-79 vs 18-44 (0.032) exceeds 0.03; sex differs by 0.012
    assert len(alerts) == 1
    a = alerts[0]
    assert (a.attribute, a.group_a, a.group_b, a.metric) == ("age_group", "65-79", "18-44", "auroc")
    assert a.gap == pytest.approx(0.032, abs=1e-12) and a.threshold == 0.03
    assert a.action == "human_review" and "human review" in a.message
    # the readmission task's +-0.05 limit: no AUROC alert on the same table
    assert fairness_alerts(_paper_table(), FairnessPolicy.load(policy_path, task="readmission")) == []


def test_alerts_from_gap_metrics_use_disparity_limits(policy_path):
    policy = FairnessPolicy.load(policy_path)
    gaps = pd.DataFrame([
        {"attribute": "age_group", "metric": "equalized_odds_difference", "value": 0.040, "group_high": "65-79", "group_low": "18-44"},
        {"attribute": "age_group", "metric": "predictive_parity_difference", "value": 0.080, "group_high": "65-79", "group_low": "18-44"},
        {"attribute": "sex", "metric": "predictive_parity_difference", "value": 0.027, "group_high": "M", "group_low": "F"},
    ])
    alerts = fairness_alerts(_paper_table(), _with(policy, pairwise_gap_limits={}), gaps=gaps)
    assert [(a.attribute, a.metric, a.gap) for a in alerts] == [("age_group", "predictive_parity_difference", 0.080)]
    assert isinstance(alerts[0], FairnessAlert)


def test_policy_refuses_retraining_and_unknown_keys(tmp_path, policy_path):
    bad = tmp_path / "p.yaml"
    bad.write_text("action: retrain\n")
    with pytest.raises(ValueError, match="p.yaml: action: .*must be 'human_review'"):
        FairnessPolicy.load(bad)
    bad.write_text("pairwise_gap_limits: {auroc: 0.03}\nauroc_gapp: 0.1\n")
    with pytest.raises(ValueError, match="auroc_gapp: unknown setting"):
        FairnessPolicy.load(bad)
    bad.write_text("pairwise_gap_limits: {auroc: -1}\n")
    with pytest.raises(ValueError, match="pairwise_gap_limits.auroc: Input should be greater than 0"):
        FairnessPolicy.load(bad)
    with pytest.raises(ValueError, match="tasks.nosuch"):
        FairnessPolicy.load(policy_path, task="nosuch")


def test_forest_plot(synthetic):
    y, p, sex, age = synthetic
    t = subgroup_table(y, p, {"sex": sex, "age_group": age}, threshold=0.4, n_boot=20, seed=0)
    fig = plot_subgroups(t, title="test")
    assert len(fig.axes) == 4
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    assert buf.getvalue()[:4] == b"\x89PNG"
    assert not math.isnan(t.loc[("overall", "all"), "auroc"])


def test_alerts_ignore_groups_below_the_policy_minimum(policy_path):
    t = _paper_table().assign(n=[7000, 3500, 3500, 2500, 1800, 1400, 20, 3])
    t.loc[("age_group", "80+"), "auroc"] = 0.70          # a huge gap, but from 20 stays
    policy = FairnessPolicy.load(policy_path)
    alerts = fairness_alerts(t, policy)
    assert [(a.group_a, a.group_b) for a in alerts] == [("65-79", "18-44")]
    assert len(fairness_alerts(t, _with(policy, min_group_size=10))) == 4   # 80+ now compared


def test_policy_from_flat_keywords_and_to_dict_round_trip(policy_path):
    policy = FairnessPolicy.load(policy_path, task="readmission")
    assert policy.pairwise_gap_limits == {"auroc": 0.05}
    assert FairnessPolicy(**policy.to_dict()) == policy
    assert list(policy.to_dict()) == ["pairwise_gap_limits", "disparity_limits", "min_group_size", "action",
                                      "alert_rule"]
    with pytest.raises(ValueError, match="min_group_size"):
        FairnessPolicy.from_mapping({"min_group_size": 0})
    with pytest.raises(ValueError, match="disparity_limits: .*unknown metric 'auroc'"):
        FairnessPolicy.from_mapping({"disparity_limits": {"auroc": 0.1}})
    with pytest.raises(ValueError, match="pairwise_gap_limits.auroc"):
        FairnessPolicy.from_mapping({"pairwise_gap_limits": {"auroc": True}})   # a bool is not a limit


def test_a_registered_metric_reaches_table_policy_alerts_and_plot(monkeypatch):
    """Adding a metric is one registry entry: the table, the policy, the alerts and the plot see it."""
    def npv(y, p, threshold):
        pred = p >= threshold
        return float(((~pred) & (y == 0)).sum() / max((~pred).sum(), 1))

    monkeypatch.setitem(RATES, "npv", lambda c: safe_div(c["tn"], c["tn"] + c["fn"], zero=0.0))
    monkeypatch.setitem(SUBGROUP_METRICS, "npv", SubgroupMetric("NPV", "npv", npv, "npv"))
    t = subgroup_table(Y, P, {"grp": G}, threshold=0.45, n_boot=20, seed=0, min_group_size=1)
    assert t.loc[("grp", "A"), "npv"] == pytest.approx(0.5)        # TN 1, FN 1
    assert t.loc[("grp", "B"), "npv"] == pytest.approx(1.0)        # TN 2, FN 0
    assert np.isfinite(t.loc[("overall", "all"), "npv_lo"])
    policy = FairnessPolicy(pairwise_gap_limits={"npv": 0.1}, min_group_size=1)
    alerts = fairness_alerts(t, policy)
    assert [(a.metric, a.group_a, a.group_b) for a in alerts] == [("npv", "B", "A")]
    assert len(plot_subgroups(t).axes) == 5

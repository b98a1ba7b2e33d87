"""Tests for the fairness alert rules: the paper's point rule and ``ci_excludes``, side by side.

Known answers: constructed gaps and CIs (one gap above its limit whose CI reaches below it, one
whose CI lies above it), groups drawn from one model (no true gap) and from two very different
ones, and Table 2 from the same resamples.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from clinops.fairness import (SEX_OUTSIDE_GAPS, FairnessPolicy, PolicyError, alerts_by_rule, fairness_alerts,
                              fairness_gaps, pairwise_gap_intervals, rule_fires, sex_groups, subgroup_table)
from clinops.tasks.own_table.validation import make_task_table


def _table(values: dict[str, float]) -> pd.DataFrame:
    idx = pd.MultiIndex.from_tuples([("overall", "all")] + [("age_group", g) for g in values],
                                    names=["attribute", "group"])
    return pd.DataFrame({"n": 300, "auroc": [0.8, *values.values()], "estimable": True}, index=idx)


TABLE = _table({"18-44": 0.85, "45-64": 0.80, "80+": 0.78})
PAIRWISE = pd.DataFrame([
    # gap 0.05 > 0.03 but its CI reaches 0.01: the point rule alerts, ci_excludes does not
    {"attribute": "age_group", "metric": "auroc", "group_a": "18-44", "group_b": "45-64", "gap": 0.05,
     "ci_lo": 0.01, "ci_hi": 0.09},
    # gap 0.07 with CI 0.04-0.10 entirely above 0.03: both rules alert
    {"attribute": "age_group", "metric": "auroc", "group_a": "18-44", "group_b": "80+", "gap": 0.07,
     "ci_lo": 0.04, "ci_hi": 0.10},
    # gap 0.02 within the limit: neither alerts
    {"attribute": "age_group", "metric": "auroc", "group_a": "45-64", "group_b": "80+", "gap": 0.02,
     "ci_lo": -0.02, "ci_hi": 0.06},
])


@pytest.mark.parametrize("gap, lo, point, ci", [(0.05, 0.01, True, False), (0.08, 0.04, True, True),
                                                 (0.03, 0.031, False, True), (0.02, np.nan, False, False)])
def test_rule_fires_on_constructed_gaps(gap, lo, point, ci):
    assert rule_fires(gap, lo, 0.03, "point") is point
    assert rule_fires(gap, lo, 0.03, "ci_excludes") is ci
    with pytest.raises(ValueError, match="alert_rule: must be one of"):
        rule_fires(gap, lo, 0.03, "bayes")


def test_point_rule_is_the_default_and_unchanged():
    assert FairnessPolicy().alert_rule == "point"
    with_cis = fairness_alerts(TABLE, FairnessPolicy(), pairwise=PAIRWISE)
    assert [(a.group_a, a.group_b) for a in with_cis] == [("18-44", "80+"), ("18-44", "45-64")]
    assert [a.to_dict() for a in with_cis] == [a.to_dict() for a in fairness_alerts(TABLE, FairnessPolicy())]


def test_ci_excludes_alerts_only_when_the_whole_ci_is_above_the_limit():
    policy = FairnessPolicy(alert_rule="ci_excludes")
    alerts = fairness_alerts(TABLE, policy, pairwise=PAIRWISE)
    assert [(a.group_a, a.group_b, round(a.gap, 3)) for a in alerts] == [("18-44", "80+", 0.07)]
    with pytest.raises(ValueError, match="pairwise: required when alert_rule is 'ci_excludes'"):
        fairness_alerts(TABLE, policy)


def test_ci_excludes_on_disparity_gaps():
    gaps = pd.DataFrame([{"attribute": "sex", "metric": "equalized_odds_difference", "value": 0.07,
                          "ci_lo": 0.02, "ci_hi": 0.12, "group_high": "male", "group_low": "female"},
                         {"attribute": "age_group", "metric": "equalized_odds_difference", "value": 0.09,
                          "ci_lo": 0.06, "ci_hi": 0.14, "group_high": "80+", "group_low": "18-44"}])
    limits = {"disparity_limits": {"equalized_odds_difference": 0.05}, "pairwise_gap_limits": {}}
    point = fairness_alerts(TABLE, FairnessPolicy(**limits), gaps=gaps)
    ci = fairness_alerts(TABLE, FairnessPolicy(**limits, alert_rule="ci_excludes"), gaps=gaps)
    assert len(point) == 2 and [a.attribute for a in ci] == ["age_group"]


def test_alerts_by_rule_lists_both_verdicts_and_their_counts():
    gaps = pd.DataFrame([{"attribute": "sex", "metric": "predictive_parity_difference", "value": 0.07,
                          "ci_lo": 0.02, "ci_hi": 0.12, "group_high": "male", "group_low": "female"}])
    policy = FairnessPolicy(disparity_limits={"predictive_parity_difference": 0.05})
    t = alerts_by_rule(policy, pairwise=PAIRWISE, gaps=gaps)
    assert list(t.columns) == ["metric", "attribute", "group_a", "group_b", "gap", "ci_lo", "ci_hi", "limit",
                               "alert_point", "alert_ci_excludes", "rule_in_force"]
    assert int(t["alert_point"].sum()) == 3 and int(t["alert_ci_excludes"].sum()) == 1
    # the point column is exactly what fairness_alerts gives under the point rule
    assert int(t["alert_point"].sum()) == len(fairness_alerts(TABLE, policy, gaps=gaps))
    assert set(t["rule_in_force"]) == {"point"}


def test_policy_file_names_a_bad_rule():
    with pytest.raises(PolicyError, match="alert_rule"):
        FairnessPolicy.from_mapping({"alert_rule": "strict"}, where="fairness.yaml")


def _groups_data(shift_b: float, seed: int, n: int = 1500):
    rng = np.random.default_rng(seed)
    g = np.repeat(["A", "B"], n)
    y = (rng.random(2 * n) < 0.25).astype(int)
    signal = np.where(g == "A", 2.0, 2.0 - shift_b)
    prob = 1 / (1 + np.exp(-(rng.normal(size=2 * n) + signal * y - 1.5)))
    return y, prob, g


def test_pairwise_intervals_match_table2_and_see_a_real_gap_but_not_noise():
    y, prob, g = _groups_data(shift_b=1.6, seed=0)
    out = pairwise_gap_intervals(y, prob, g, metrics=["auroc", "ppv"], threshold=0.4, n_boot=300, seed=1,
                                 attribute="grp")
    table = subgroup_table(y, prob, {"grp": g}, threshold=0.4, n_boot=0, seed=1)
    row = out.set_index("metric").loc["auroc"]
    assert row["group_a"] == "A" and row["gap"] == pytest.approx(table.loc[("grp", "A"), "auroc"]
                                                                 - table.loc[("grp", "B"), "auroc"])
    assert row["ci_lo"] > 0.05  # a true AUROC gap of ~0.15: the CI excludes a 0.05 limit
    y, prob, g = _groups_data(shift_b=0.0, seed=2)
    same = pairwise_gap_intervals(y, prob, g, metrics=["auroc"], threshold=0.4, n_boot=300, seed=1).iloc[0]
    assert same["ci_lo"] <= 0.0 <= same["ci_hi"] or same["ci_lo"] < 0.03  # no true gap: never excludes 0.03
    assert not rule_fires(same["gap"], same["ci_lo"], 0.03, "ci_excludes")


def test_pairwise_intervals_skip_small_groups_and_refuse_unknown_metrics():
    y, prob, g = _groups_data(shift_b=0.5, seed=3, n=200)
    g = g.copy()
    g[:10] = "C"  # 10 rows: below min_group_size, never compared
    out = pairwise_gap_intervals(y, prob, g, metrics=["auroc"], threshold=0.4, n_boot=0, seed=0)
    assert set(out["group_a"]) | set(out["group_b"]) == {"A", "B"} and out["ci_lo"].isna().all()
    with pytest.raises(ValueError, match="metrics: unknown metric 'odds'"):
        pairwise_gap_intervals(y, prob, g, metrics=["odds"], threshold=0.4, n_boot=0, seed=0)


def test_unknown_and_other_sex_are_reported_in_table2_but_never_gapped():
    """An own table whose sex column has missing and non-M/F values: the stays are kept, Table 2
    shows 'unknown' and 'other', and the gaps and alerts compare male with female only."""
    rng = np.random.default_rng(7)
    n = 800
    sex_raw = rng.choice(np.array(["M", "female", None, "X"], dtype=object), size=n, p=[0.45, 0.45, 0.05, 0.05])
    died = (rng.random(n) < 0.3).astype(int)
    raw = pd.DataFrame({"ref": [f"s{i}" for i in range(n)], "died": died, "lactate": rng.gamma(2.0, 1.0, n),
                        "part": np.where(np.arange(n) % 2 == 0, "train", "test"), "sex": sex_raw})
    spec = [{"name": "lactate", "kind": "numeric", "unit": "mmol/L", "plausible_range": [0, 30]}]
    table = make_task_table(raw, id_column="ref", outcome_column="died", features=spec, split_column="part",
                            sex_column="sex")
    assert len(table) == n  # no stay dropped
    groups = sex_groups(table["sensitive_sex"])
    assert set(groups) == {"male", "female", "unknown", "other"}
    assert (groups == "unknown").sum() == pd.isna(sex_raw).sum()
    # an unknown-sex group with a very different model, to make sure it would alert if compared
    y = table["label"].to_numpy()
    prob = np.where(groups.isin(SEX_OUTSIDE_GAPS), rng.random(n), np.clip(0.2 + 0.6 * y + 0.1 * rng.normal(size=n), 0, 1))
    t2 = subgroup_table(y, prob, {"sex": groups.to_numpy()}, threshold=0.5, n_boot=0, seed=0, min_group_size=10)
    assert {"unknown", "other"} <= set(t2.loc["sex"].index)  # reported
    gaps = fairness_gaps(y, prob, groups.to_numpy(), threshold=0.5, n_boot=0, seed=0, min_group_size=10,
                         attribute="sex", exclude=SEX_OUTSIDE_GAPS)
    assert set(gaps["n_groups"]) == {2}
    assert all(set(e.split(", ")) == {"unknown", "other"} for e in gaps["excluded_groups"])
    outside = {"sex": SEX_OUTSIDE_GAPS}
    policy = FairnessPolicy(min_group_size=10)
    assert fairness_alerts(t2, policy, exclude=outside) == []  # male vs female: same model, no alert
    assert fairness_alerts(t2, policy)  # compared, the unknown group would alert
    pw = pairwise_gap_intervals(y, prob, groups.to_numpy(), metrics=["auroc"], threshold=0.5, n_boot=0, seed=0,
                                min_group_size=10, attribute="sex", exclude=SEX_OUTSIDE_GAPS)
    assert len(pw) == 1 and {pw.loc[0, "group_a"], pw.loc[0, "group_b"]} == {"male", "female"}

"""Tests for the class-conditional (Mondrian) conformal option and the contradicting-singleton flag.

Known answers: a large synthetic sample with a rare class on which marginal split-conformal sets
under-cover the rare class and class-conditional ones cover each class; hand-computed quantiles
and flags; a real fitted bundle served in both modes.
"""
from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest

from clinops import modeling, uncertainty
from clinops.config import load_params
from clinops.governance import GovernancePolicy, escalation_reasons
from clinops.settings import SettingsError, TaskSettings, resolve_task_settings
from tests.fixtures.tiny import TINY_MANIFEST


def _rare_class(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """10 % positives, a weakly separating probability: the marginal set favours the majority."""
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 0.10).astype(int)
    p = 1 / (1 + np.exp(-rng.normal(-2.5 + 1.5 * y, 1.0)))
    return p, y


def _marginal_q(p: np.ndarray, y: np.ndarray, level: float) -> float:
    scores = np.sort(np.where(y == 1, 1 - p, p))
    return float(scores[int(np.ceil(level * (len(y) + 1))) - 1])


def test_mondrian_covers_each_class_where_marginal_undercovers_the_rare_one():
    p_cal, y_cal = _rare_class(10_000, seed=1)
    p_test, y_test = _rare_class(40_000, seed=2)
    q = _marginal_q(p_cal, y_cal, 0.9)
    q_k = uncertainty.class_conditional_thresholds(p_cal, y_cal, confidence_level=0.9)
    marginal = uncertainty.sets_from_probability(p_test, q)
    mondrian = uncertainty.class_conditional_sets(p_test, q_k)
    cover = lambda sets, k: sets[np.arange(len(y_test)), y_test][y_test == k].mean()  # noqa: E731
    # marginal: ~90 % overall, bought with the majority class; the rare class far below
    assert abs(marginal[np.arange(len(y_test)), y_test].mean() - 0.90) < 0.015
    assert cover(marginal, 1) < 0.80
    # class-conditional: each class at the level (sd of the rare class ~ sqrt(.09/1000) + test ~.005)
    for k in (0, 1):
        assert cover(mondrian, k) >= 0.90 - 0.025
    assert mondrian.sum(axis=1).mean() > marginal.sum(axis=1).mean()  # the price: larger sets


def test_class_thresholds_are_each_class_order_statistic():
    p, y = _rare_class(3_000, seed=3)
    q_k = uncertainty.class_conditional_thresholds(p, y, confidence_level=0.9)
    for k in (0, 1):
        scores = np.sort((1 - p if k == 1 else p)[y == k])
        assert q_k[k] == pytest.approx(scores[int(np.ceil(0.9 * (len(scores) + 1))) - 1])


def test_class_thresholds_refuse_bad_input():
    p, y = _rare_class(200, seed=4)
    with pytest.raises(ValueError, match="confidence_level"):
        uncertainty.class_conditional_thresholds(p, y, confidence_level=1.0)
    few = np.r_[np.zeros(100, int), np.ones(8, int)]  # 8 deaths: below the 9 a 90 % quantile needs
    q_k = uncertainty.class_conditional_thresholds(np.full(108, 0.2), few, confidence_level=0.9)
    assert q_k[1] == 1.0 and q_k[0] < 1.0  # the rare class is then in every set
    assert uncertainty.class_conditional_sets(np.array([0.0, 0.01]), q_k)[:, 1].all()
    nine = np.r_[np.zeros(100, int), np.ones(9, int)]
    p9 = np.r_[np.full(100, 0.2), np.linspace(0.1, 0.9, 9)]
    assert uncertainty.class_conditional_thresholds(p9, nine, confidence_level=0.9)[1] == pytest.approx(0.9)
    with pytest.raises(ValueError, match="prob: must have"):
        uncertainty.class_conditional_thresholds(p[:-1], y, confidence_level=0.9)


def test_sets_for_mode_names_the_mode_and_the_missing_quantiles():
    assert uncertainty.sets_for_mode(np.array([0.5]), mode="marginal", threshold=0.5,
                                     class_thresholds=None).tolist() == [[True, True]]
    with pytest.raises(ValueError, match="conformal_mode: must be one of"):
        uncertainty.sets_for_mode(np.array([0.5]), mode="bogus", threshold=0.5, class_thresholds=None)
    with pytest.raises(ValueError, match="class_thresholds: required"):
        uncertainty.sets_for_mode(np.array([0.5]), mode="mondrian", threshold=0.5, class_thresholds=None)


def test_contradicting_singleton_hand_computed():
    prob = np.array([0.45, 0.39, 0.9, 0.6])
    sets = np.array([[True, False], [True, False], [False, True], [True, True]])
    assert uncertainty.contradicting_singleton(prob, sets, high_probability=0.4).tolist() == [True, False, False, False]
    with pytest.raises(ValueError, match="high_probability"):
        uncertainty.contradicting_singleton(prob, sets, high_probability=0.0)


def test_class_coverage_table_marginal_rows_equal_coverage_table():
    p, y = _rare_class(2_000, seed=5)
    sex = np.where(np.arange(len(y)) % 3 == 0, "female", "male")
    q = _marginal_q(p[:1000], y[:1000], 0.9)
    q_k = uncertainty.class_conditional_thresholds(p[:1000], y[:1000], confidence_level=0.9)
    t = uncertainty.class_coverage_table(y[1000:], p[1000:], threshold=q, class_thresholds=q_k,
                                         high_probability=0.4, groups={"sex": sex[1000:]},
                                         class_names={0: "survived", 1: "died"})
    assert list(t.columns) == ["mode", "class", "class_name", "attribute", "group", "n", "coverage",
                               "mean_set_size", "share_singleton", "n_contradicting", "share_contradicting"]
    assert len(t) == 2 * 2 * 3  # modes x classes x (overall, female, male)
    ref = uncertainty.coverage_table(y[1000:], uncertainty.sets_from_probability(p[1000:], q)).set_index("level")
    marg = t[(t["mode"] == "marginal") & (t["attribute"] == "overall")].set_index("class")
    for k in (0, 1):
        assert marg.loc[k, "coverage"] == pytest.approx(ref.loc[str(k), "coverage"])
        assert marg.loc[k, "n"] == ref.loc[str(k), "n"]
    assert set(t["class_name"]) == {"survived", "died"}
    # per-group counts add up to the overall count
    for (mode, k), part in t.groupby(["mode", "class"]):
        assert part[part["attribute"] == "sex"]["n"].sum() == part[part["attribute"] == "overall"]["n"].iloc[0]


@pytest.fixture(scope="module")
def tiny_bundle():
    rng = np.random.default_rng(5)
    n = 3000
    age, lactate = rng.uniform(20, 90, n), rng.gamma(2.0, 1.2, n)
    vent, unit = rng.integers(0, 2, n).astype(float), rng.integers(0, 3, n).astype(float)
    logit = -3.0 + 0.04 * (age - 60) + 0.6 * lactate + 1.0 * vent + 0.5 * (unit == 2)
    y = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)
    X = pd.DataFrame({"age": age, "lactate": lactate, "vent": vent, "unit": unit})
    X_fit, X_cal, y_fit, y_cal = modeling.split_for_calibration(X.iloc[:2500], y[:2500], fraction=0.3, seed=1)
    config = {"n_estimators": 60, "max_depth": 3, "learning_rate": 0.1, "subsample": 1.0,
              "colsample_bytree": 1.0, "min_child_weight": 3}
    bundle = modeling.fit_final(X_fit, y_fit, X_cal, y_cal, params=config, manifest=TINY_MANIFEST, seed=1)
    return bundle, X.iloc[2500:].reset_index(drop=True)


def test_bundle_stores_both_modes_and_the_predictor_serves_the_settings_mode(tiny_bundle, tmp_path):
    bundle, X_test = tiny_bundle
    assert len(bundle.conformal_class_thresholds) == 2
    loaded = type(bundle).load(bundle.save(tmp_path / "b"))
    assert loaded.conformal_class_thresholds == pytest.approx(bundle.conformal_class_thresholds)
    # no settings: marginal, as before
    frame = uncertainty.RiskPredictor(bundle).predict_frame(X_test, encoded=True)
    np.testing.assert_array_equal(frame[["in_set_0", "in_set_1"]].to_numpy(),
                                  uncertainty.sets_from_probability(frame["probability"].to_numpy(),
                                                                    bundle.conformal_threshold))
    settings = resolve_task_settings(load_params("params/default.yaml"), "primary")
    assert settings.conformal_mode == "marginal" and settings.contradiction_probability == settings.operating_threshold
    mondrian = dataclasses.replace(settings, conformal_mode="mondrian", high_probability=0.3)
    served = dataclasses.replace(bundle, settings=mondrian.to_dict())
    predictor = uncertainty.RiskPredictor(served)
    frame = predictor.predict_frame(X_test, encoded=True)
    prob = frame["probability"].to_numpy()
    expected = uncertainty.class_conditional_sets(prob, np.asarray(bundle.conformal_class_thresholds))
    np.testing.assert_array_equal(frame[["in_set_0", "in_set_1"]].to_numpy(), expected)
    records = [{k: (None if pd.isna(v) else v) for k, v in row.items()} for row in
               X_test.head(200).assign(unit=lambda d: d["unit"].map({0.0: "micu", 1.0: "sicu", 2.0: "ccu"}))
               .to_dict("records")]
    results = predictor.predict_many(records)
    flags = uncertainty.contradicting_singleton(np.array([r.probability for r in results]),
                                               np.array([[0 in r.conformal_set, 1 in r.conformal_set]
                                                         for r in results]), high_probability=0.3)
    assert [r.contradicting_singleton for r in results] == flags.tolist()
    assert "contradicting_singleton" in results[0].to_dict()


def test_settings_refuse_an_unknown_mode_and_round_trip():
    settings = resolve_task_settings(load_params("params/default.yaml"), "primary")
    with pytest.raises(SettingsError, match="uncertainty.conformal_mode: must be one of"):
        dataclasses.replace(settings, conformal_mode="per_group")
    with pytest.raises(SettingsError, match="uncertainty.high_probability"):
        dataclasses.replace(settings, high_probability=1.5)
    changed = dataclasses.replace(settings, conformal_mode="mondrian", high_probability=0.6)
    assert TaskSettings.from_dict(changed.to_dict()) == changed
    old = settings.to_dict()
    del old["conformal_mode"], old["high_probability"]  # a bundle written before the option
    assert TaskSettings.from_dict(old).conformal_mode == "marginal"


def test_contradicting_singleton_escalates_unless_switched_off():
    assert escalation_reasons(state="ACTIVE", conformal_set={0}, contradicting_singleton=True) == [
        "contradicting_singleton"]
    off = GovernancePolicy(escalate_contradicting_singleton=False)
    assert escalation_reasons(state="ACTIVE", conformal_set={0}, contradicting_singleton=True, policy=off) == []
    assert escalation_reasons(state="ACTIVE", conformal_set={0}) == []

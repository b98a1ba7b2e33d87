"""Tests for clinops.uncertainty: calibration, ECE, conformal sets, coverage, RiskPredictor.

Known answers: synthetic probabilities whose true calibration is known, exchangeable data for
the conformal guarantee, hand-computed tables; real MAPIE, XGBoost and scikit-learn.
"""
from __future__ import annotations


import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure
from sklearn.calibration import calibration_curve
from sklearn.linear_model import LogisticRegression

from clinops import modeling, uncertainty
from clinops.features import FeatureManifest, FeatureValidationError
from tests.fixtures.tiny import TINY_MANIFEST

UNITS = ["micu", "sicu", "ccu"]


def tiny_data(n: int, seed: int) -> tuple[pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(seed)
    age = rng.uniform(20, 90, n)
    lactate = rng.gamma(2.0, 1.2, n)
    vent = rng.integers(0, 2, n).astype(float)
    unit = rng.integers(0, 3, n).astype(float)
    logit = -3.0 + 0.04 * (age - 60) + 0.6 * lactate + 1.0 * vent + 0.5 * (unit == 2)
    y = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)
    X = pd.DataFrame({"age": age, "lactate": lactate, "vent": vent, "unit": unit})
    X.loc[rng.random(n) < 0.3, "lactate"] = np.nan
    return X, y


# ------------------------------------------------------------------------------ calibration
def _known_calibration(n: int, seed: int):
    rng = np.random.default_rng(seed)
    p_true = rng.beta(1.0, 4.0, n)                      # skewed like a clinical risk score
    y = (rng.random(n) < p_true).astype(int)
    logit = np.log(p_true / (1 - p_true))
    p_distorted = 1 / (1 + np.exp(-(2.5 * logit + 1.5)))  # overconfident and shifted up
    return p_true, p_distorted, y


def test_ece_of_true_probabilities_is_small_and_of_distorted_large():
    p_true, p_bad, y = _known_calibration(40_000, seed=0)
    for strategy in ("uniform", "quantile"):
        assert uncertainty.expected_calibration_error(y, p_true, strategy=strategy) < 0.015
        assert uncertainty.expected_calibration_error(y, p_bad, strategy=strategy) > 0.05


def test_isotonic_fitted_on_other_rows_repairs_calibration():
    p_true, p_bad, y = _known_calibration(40_000, seed=1)
    fit, held = slice(0, 20_000), slice(20_000, None)
    iso = uncertainty.fit_isotonic(p_bad[fit], y[fit])
    assert iso.out_of_bounds == "clip"
    before = uncertainty.expected_calibration_error(y[held], p_bad[held])
    after = uncertainty.expected_calibration_error(y[held], iso.predict(p_bad[held]))
    assert before > 0.05 and after < 0.02
    # out-of-range scores are clipped to the end values, not extrapolated or NaN
    assert iso.predict(np.array([-1.0, 2.0])).tolist() == [
        iso.predict(np.array([p_bad[fit].min()]))[0], iso.predict(np.array([p_bad[fit].max()]))[0]]


def test_ece_hand_computed_and_table_columns():
    y = np.array([0, 1, 1, 0])
    p = np.array([0.05, 0.15, 0.95, 0.85])
    # four singleton bins with gaps 0.05, 0.85, 0.05, 0.85
    assert uncertainty.expected_calibration_error(y, p) == pytest.approx(0.45)
    t = uncertainty.reliability_table(y, p)
    assert t.bin.tolist() == [0, 1, 8, 9]
    assert t.n.tolist() == [1, 1, 1, 1]
    assert t.lower.tolist() == pytest.approx([0.0, 0.1, 0.8, 0.9])
    with pytest.raises(ValueError, match="strategy"):
        uncertainty.expected_calibration_error(y, p, strategy="equal")
    with pytest.raises(ValueError, match="prob: must be probabilities"):
        uncertainty.expected_calibration_error(y, p + 0.5)


@pytest.mark.parametrize("strategy", ["uniform", "quantile"])
def test_reliability_table_matches_sklearn_calibration_curve(strategy):
    _, p, y = _known_calibration(5_000, seed=2)
    t = uncertainty.reliability_table(y, p, n_bins=8, strategy=strategy)
    prob_true, prob_pred = calibration_curve(y, p, n_bins=8, strategy=strategy)
    np.testing.assert_allclose(t.observed_rate, prob_true)
    np.testing.assert_allclose(t.mean_predicted, prob_pred)
    assert t.n.sum() == len(y)


def test_plot_reliability_returns_a_figure():
    p_true, p_bad, y = _known_calibration(2_000, seed=3)
    fig = uncertainty.plot_reliability(y, {"raw": p_bad, "true": p_true})
    assert isinstance(fig, Figure) and len(fig.axes) == 2
    labels = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert any(lbl.startswith("raw (ECE ") for lbl in labels)


# ------------------------------------------------------------------------------ conformal
@pytest.fixture(scope="module")
def exchangeable():
    """Logistic data, a fitted LR, and disjoint calibration / test rows from one distribution."""
    rng = np.random.default_rng(4)
    n = 9_000
    X = rng.normal(size=(n, 3))
    y = (rng.random(n) < 1 / (1 + np.exp(-(X @ [1.5, -1.0, 0.5] - 1.0)))).astype(int)
    model = LogisticRegression().fit(X[:2000], y[:2000])
    return model, (X[2000:4000], y[2000:4000]), (X[4000:], y[4000:])


def test_conformal_coverage_within_binomial_tolerance(exchangeable):
    model, (Xc, yc), (Xt, yt) = exchangeable
    conf = uncertainty.fit_conformal(model, Xc, yc, confidence_level=0.90)
    sets = uncertainty.conformal_sets(conf, Xt)
    assert sets.shape == (len(yt), 2) and sets.dtype == bool
    coverage = sets[np.arange(len(yt)), yt].mean()
    # test-sampling sd sqrt(.09/5000) = .0042, calibration-draw sd sqrt(.09/2000) = .0067:
    # 4 combined sd ~ 0.032
    assert abs(coverage - 0.90) < 0.032
    lower = uncertainty.fit_conformal(model, Xc, yc, confidence_level=0.70)
    assert uncertainty.conformal_sets(lower, Xt).sum() < sets.sum()


def test_fast_sets_from_threshold_equal_mapie(exchangeable):
    model, (Xc, yc), (Xt, _) = exchangeable
    conf = uncertainty.fit_conformal(model, Xc, yc, confidence_level=0.90)
    q = uncertainty.conformal_threshold(conf, confidence_level=0.90)
    # LAC: q is the ceil(0.9 * (n + 1))-th smallest score 1 - p(true label)
    scores = np.sort(1 - model.predict_proba(Xc)[np.arange(len(yc)), yc])
    assert q == pytest.approx(scores[int(np.ceil(0.9 * (len(yc) + 1))) - 1])
    p1 = model.predict_proba(Xt)[:, 1]
    np.testing.assert_array_equal(uncertainty.sets_from_probability(p1, q),
                                  uncertainty.conformal_sets(conf, Xt))
    # boundary: p exactly 1 - q is in the set (MAPIE's <= with tolerance)
    assert uncertainty.sets_from_probability(np.array([1 - q]), q)[0, 1]


@pytest.mark.parametrize("level", [0.7, 0.8, 0.95])
def test_conformal_threshold_rebuilds_mapie_sets_at_any_level(exchangeable, level):
    """q read through MAPIE's public pieces reproduces predict_set at other levels too."""
    model, (Xc, yc), (Xt, _) = exchangeable
    conf = uncertainty.fit_conformal(model, Xc, yc, confidence_level=level)
    q = uncertainty.conformal_threshold(conf, confidence_level=level)
    np.testing.assert_array_equal(uncertainty.sets_from_probability(model.predict_proba(Xt)[:, 1], q),
                                  uncertainty.conformal_sets(conf, Xt))


def test_fit_conformal_rejects_bad_input(exchangeable):
    model, (Xc, yc), _ = exchangeable
    with pytest.raises(ValueError, match="confidence_level"):
        uncertainty.fit_conformal(model, Xc, yc, confidence_level=1.2)
    with pytest.raises(ValueError, match="y_cal: the conformalization set needs both classes"):
        uncertainty.fit_conformal(model, Xc[:5], np.zeros(5, dtype=int))


def test_coverage_table_hand_computed():
    y = np.array([0, 1, 1, 0])
    sets = np.array([[True, False], [True, True], [False, False], [False, True]])
    t = uncertainty.coverage_table(y, sets, {"sex": np.array(["F", "F", "M", "M"])})
    t = t.set_index(["group", "level"])
    overall = t.loc[("overall", "all")]
    assert overall.n == 4 and overall.coverage == 0.5
    assert overall.mean_set_size == 1.0
    shares = (overall.share_singleton, overall.share_ambiguous, overall.share_empty)
    assert shares == (0.5, 0.25, 0.25)
    assert t.loc[("class", "0")].coverage == 0.5 and t.loc[("class", "1")].coverage == 0.5
    assert t.loc[("sex", "F")].coverage == 1.0 and t.loc[("sex", "M")].coverage == 0.0
    assert t.loc[("sex", "F")].share_ambiguous == 0.5
    assert 0 <= overall.coverage_ci_low < 0.5 < overall.coverage_ci_high <= 1
    with pytest.raises(ValueError, match="sets: must be a boolean array"):
        uncertainty.coverage_table(y, sets.astype(int))
    with pytest.raises(ValueError, match=r"groups\['sex'\]: must have 4 values"):
        uncertainty.coverage_table(y, sets, {"sex": np.array(["F"])})


# ------------------------------------------------------------------------------ predictor
@pytest.fixture(scope="module")
def fitted():
    X, y = tiny_data(3000, seed=5)
    X_train, X_test, y_train, y_test = X.iloc[:2500], X.iloc[2500:], y[:2500], y[2500:]
    X_fit, X_cal, y_fit, y_cal = modeling.split_for_calibration(X_train, y_train, fraction=0.3,
                                                                seed=1)
    config = {"n_estimators": 150, "max_depth": 4, "learning_rate": 0.05, "subsample": 0.8,
              "colsample_bytree": 0.8, "min_child_weight": 3}
    bundle = modeling.fit_final(X_fit, y_fit, X_cal, y_cal, params=config,
                                manifest=TINY_MANIFEST, seed=1)
    bundle.lineage["run_id"] = "run-xyz"
    return bundle, X_test, y_test


def _raw_records(X: pd.DataFrame) -> list[dict]:
    recs = []
    for row in X.itertuples(index=False):
        r = {"age": row.age, "lactate": None if np.isnan(row.lactate) else row.lactate,
             "vent": int(row.vent)}
        if not np.isnan(row.unit):
            r["unit"] = UNITS[int(row.unit)]
        recs.append(r)
    return recs


def test_predict_one_matches_batch_and_mapie(fitted):
    bundle, X_test, _ = fitted
    pred = uncertainty.RiskPredictor(bundle)
    batch = pred.predict_frame(X_test, encoded=True)
    raw_frame = X_test.assign(unit=[None if np.isnan(u) else UNITS[int(u)] for u in X_test.unit])
    pd.testing.assert_frame_equal(pred.predict_frame(raw_frame), batch)
    singles = [pred.predict_one(r) for r in _raw_records(X_test)]
    np.testing.assert_allclose([s.raw_score for s in singles], batch.raw_score, rtol=1e-6)
    np.testing.assert_allclose([s.probability for s in singles], batch.probability, rtol=1e-6)
    assert [s.conformal_set for s in singles] == [
        tuple(k for k in (0, 1) if row[f"in_set_{k}"]) for _, row in batch.iterrows()]
    assert [s.low_confidence for s in singles] == batch.low_confidence.tolist()
    # the stored threshold reproduces MAPIE's own sets on the calibrated model
    Xi = X_test.fillna(bundle.frozen_medians)
    conf_probs = bundle.calibrated_model().predict_proba(Xi.to_numpy())[:, 1]
    np.testing.assert_allclose(batch.probability, conf_probs, rtol=1e-9)
    np.testing.assert_allclose(
        batch.probability, bundle.calibrator.predict(batch.raw_score.to_numpy()), rtol=1e-9)


def test_predict_many_equals_predict_one_row_by_row_exactly(fitted):
    # the server scores concurrent requests as one batch: batching must not change a number
    bundle, X_test, _ = fitted
    pred = uncertainty.RiskPredictor(bundle)
    records = _raw_records(X_test)[:64]
    records[3] = {"age": bundle.reference["age"]["max"] + 10, "unit": "micu"}  # imputed and out of range
    many = pred.predict_many(records)
    assert len(many) == len(records)
    for record, batched in zip(records, many):
        assert batched == pred.predict_one(record)  # dataclass equality: every field, exactly
    assert many[3].out_of_distribution and "lactate" in many[3].imputed
    assert pred.predict_many([]) == []
    with pytest.raises(FeatureValidationError, match="age: value 150 is outside"):
        pred.predict_many([records[0], {"age": 150}])


def test_predict_one_fields_shap_imputation_and_ood(fitted):
    bundle, _, _ = fitted
    pred = uncertainty.RiskPredictor(bundle)
    r = pred.predict_one({"age": 70, "unit": "ccu"})
    assert r.imputed == ("lactate", "vent")
    assert r.model_version == "run-xyz"
    assert set(r.contributions) == {"age", "lactate", "vent", "unit", "bias"}
    margin = sum(r.contributions.values())
    assert 1 / (1 + np.exp(-margin)) == pytest.approx(r.raw_score, abs=1e-5)
    assert r.low_confidence == (len(r.conformal_set) != 1)
    assert r.above_threshold == (r.probability >= 0.40)
    assert r.to_dict()["conformal_set"] == list(r.conformal_set)
    # imputed values equal an explicit record carrying the frozen values
    explicit = pred.predict_one({"age": 70, "unit": "ccu",
                                 "lactate": bundle.frozen_medians["lactate"],
                                 "vent": int(bundle.frozen_medians["vent"])})
    assert explicit.raw_score == r.raw_score and explicit.imputed == ()
    # out of distribution: plausible (manifest) but beyond the training range
    age_max = bundle.reference["age"]["max"]
    ood = pred.predict_one({"age": age_max + 10, "lactate": 2.0, "vent": 0, "unit": "micu"})
    assert ood.out_of_distribution and ood.ood_features == ("age",)
    assert not r.out_of_distribution and r.ood_features == ()


def test_predict_one_validates_through_the_manifest(fitted):
    pred = uncertainty.RiskPredictor(fitted[0])
    with pytest.raises(FeatureValidationError, match="heart_rate: unknown feature"):
        pred.predict_one({"age": 60, "heart_rate": 80})
    with pytest.raises(FeatureValidationError, match="age: value 150 is outside"):
        pred.predict_one({"age": 150})
    with pytest.raises(FeatureValidationError, match="unit: unknown category 'er'"):
        pred.predict_one({"unit": "er"})


def test_low_confidence_means_ambiguous_or_empty(fitted):
    bundle, X_test, y_test = fitted
    out = uncertainty.RiskPredictor(bundle).predict_frame(X_test, encoded=True)
    assert ((out.set_size != 1) == out.low_confidence).all()
    # coverage on exchangeable synthetic test rows: near 90 % (n = 500 and ~ 400 conformal rows)
    sets = out[["in_set_0", "in_set_1"]].to_numpy()
    table = uncertainty.coverage_table(y_test, sets)
    assert abs(table.loc[0, "coverage"] - 0.90) < 0.06


def test_predictor_rejects_a_bundle_whose_manifest_disagrees(fitted):
    bundle = fitted[0]
    broken = modeling.ModelBundle(**{**bundle.__dict__,
                                     "feature_names": list(reversed(bundle.feature_names))})
    with pytest.raises(ValueError, match="feature_names must equal the manifest"):
        uncertainty.RiskPredictor(broken)
    assert FeatureManifest.from_dict(bundle.manifest).names == bundle.feature_names

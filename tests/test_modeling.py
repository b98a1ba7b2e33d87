"""Tests for clinops.modeling: CV, random search, calibration split, final fit, bundle, evaluate.

Small synthetic data with known structure; real XGBoost / scikit-learn / MAPIE throughout.
"""
from __future__ import annotations

import json
import math
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import xgboost as xgb
from scipy import stats
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import StratifiedKFold

from sklearn.base import clone, is_classifier
from sklearn.utils.validation import check_is_fitted

from clinops import modeling
from clinops.bundle import CalibratedBooster
from clinops.drift import reference_statistics
from clinops.features import FeatureManifest
from tests.fixtures.tiny import TINY_MANIFEST

SMALL_CONFIG = {"n_estimators": 60, "max_depth": 3, "learning_rate": 0.1, "subsample": 0.9,
                "colsample_bytree": 0.9, "min_child_weight": 1}


def tiny_data(n: int, seed: int, missing: float = 0.3, *, with_logit: bool = False):
    """Encoded features of the tiny manifest; risk rises with age, lactate, vent and 'ccu'.

    Returns ``(X, y)``, or ``(X, y, true_logit)`` with ``with_logit``.
    """
    rng = np.random.default_rng(seed)
    age = rng.uniform(18, 95, n)
    lactate = rng.gamma(2.0, 1.2, n)
    vent = rng.integers(0, 2, n).astype(float)
    unit = rng.integers(0, 3, n).astype(float)
    logit = -3.0 + 0.04 * (age - 60) + 0.6 * lactate + 1.0 * vent + 0.5 * (unit == 2)
    y = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)
    X = pd.DataFrame({"age": age, "lactate": lactate, "vent": vent, "unit": unit})
    X.loc[rng.random(n) < missing, "lactate"] = np.nan
    X.loc[rng.random(n) < 0.05, "unit"] = np.nan
    return (X, y, logit) if with_logit else (X, y)


# ------------------------------------------------------------------------------ helpers
def test_scale_pos_weight_is_negatives_over_positives():
    assert modeling.scale_pos_weight(np.array([0, 0, 0, 1])) == 3.0
    assert modeling.scale_pos_weight([1, 1, 0, 0, 0, 1, 0, 0]) == pytest.approx(5 / 3)
    with pytest.raises(ValueError, match="y: .*both classes"):
        modeling.scale_pos_weight(np.zeros(5, dtype=int))
    with pytest.raises(ValueError, match="y: labels must be 0 or 1"):
        modeling.scale_pos_weight(np.array([0, 2, 1]))


def test_sample_configurations_stay_in_paper_ranges_and_are_seeded():
    a = modeling.sample_configurations(200, seed=3)
    b = modeling.sample_configurations(200, seed=3)
    c = modeling.sample_configurations(200, seed=4)
    assert a == b and a != c
    df = pd.DataFrame(a)
    assert set(df.columns) == set(modeling.XGB_PARAM_NAMES)
    assert df.n_estimators.between(100, 500).all() and df.n_estimators.dtype == np.int64
    assert df.max_depth.between(3, 8).all() and set(df.max_depth) == set(range(3, 9))
    assert df.learning_rate.between(0.01, 0.3).all()
    assert df.subsample.between(0.6, 1.0).all() and df.colsample_bytree.between(0.6, 1.0).all()
    assert df.min_child_weight.between(1, 10).all()
    # log-uniform: about half the draws fall below the geometric midpoint sqrt(0.01 * 0.3)
    assert 0.35 < (df.learning_rate < math.sqrt(0.003)).mean() < 0.65
    with pytest.raises(ValueError, match="space"):
        modeling.sample_configurations(3, seed=0, space={"max_depth": [3]})


def test_fold_imputer_follows_the_frozen_median_rule():
    X = np.array([[1.0, 0.0], [2.0, 1.0], [10.0, 1.0], [np.nan, np.nan]])
    out = modeling.fold_imputer([False, True]).fit(X[:3]).transform(X)
    assert out[3].tolist() == [2.0, 1.0]      # median of 1, 2, 10; mode of 0, 1, 1
    assert out[:3].tolist() == X[:3].tolist()  # column order kept


# ------------------------------------------------------------------------------ stage 1
def test_cross_validate_candidates_known_structure():
    X, y, logit = tiny_data(600, seed=1, missing=0.0, with_logit=True)
    table = modeling.cross_validate_candidates(X, y, n_splits=5, seed=7,
                                               manifest=TINY_MANIFEST, n_jobs=1)
    assert list(table.model) == sorted(table.model, key=lambda m: -table.set_index(
        "model").loc[m, "mean_auroc"])
    assert set(table.model) == {"logistic_regression", "random_forest", "xgboost"}
    folds = table[[f"auroc_fold{k}" for k in range(1, 6)]].to_numpy()
    # mean and 95 % t-interval over the five fold AUROCs, computed by hand
    np.testing.assert_allclose(table.mean_auroc, folds.mean(axis=1))
    half = stats.t.ppf(0.975, 4) * folds.std(axis=1, ddof=1) / math.sqrt(5)
    np.testing.assert_allclose(table.ci_low, folds.mean(axis=1) - half)
    np.testing.assert_allclose(table.ci_high, folds.mean(axis=1) + half)
    # every candidate learns the signal; none beats the true risk by more than CV noise, and
    # logistic regression (nearly the true model family) comes close to it
    oracle = roc_auc_score(y, logit)
    assert (table.mean_auroc > 0.6).all() and (table.mean_auroc < oracle + 0.03).all()
    assert table.set_index("model").loc["logistic_regression", "mean_auroc"] > oracle - 0.05
    # XGBoost got negatives/positives of each training fold
    skf = StratifiedKFold(5, shuffle=True, random_state=7)
    expected = [modeling.scale_pos_weight(y[tr]) for tr, _ in skf.split(X, y)]
    assert table.attrs["scale_pos_weight"]["xgboost"] == pytest.approx(expected)

    lr = table.set_index("model").loc["logistic_regression"]
    # hand-run the same LR fold 1 to pin the procedure
    tr, va = next(iter(skf.split(X, y)))
    pipe = modeling.candidate_models(7, discrete=modeling.discrete_mask(TINY_MANIFEST))[
        "logistic_regression"].fit(X.to_numpy()[tr], y[tr])
    assert lr.auroc_fold1 == pytest.approx(
        roc_auc_score(y[va], pipe.predict_proba(X.to_numpy()[va])[:, 1]))


def test_cross_validate_candidates_rejects_bad_input():
    X, y = tiny_data(100, seed=2)
    with pytest.raises(ValueError, match="X and y: must have the same number of rows"):
        modeling.cross_validate_candidates(X, y[:-1], seed=0, n_jobs=1)
    with pytest.raises(ValueError, match="X: must be a DataFrame with the manifest features"):
        modeling.cross_validate_candidates(X[["lactate", "age", "vent", "unit"]], y, seed=0,
                                           manifest=TINY_MANIFEST, n_jobs=1)
    with pytest.raises(ValueError, match="n_splits"):
        modeling.cross_validate_candidates(X, y, n_splits=1, seed=0, n_jobs=1)


# ------------------------------------------------------------------------------ stage 2
def test_random_search_deterministic_and_independent_of_workers():
    X, y = tiny_data(400, seed=3)
    kw = dict(n_iter=4, n_splits=3, seed=11, manifest=TINY_MANIFEST)
    best1, res1 = modeling.random_search_xgb(X, y, n_jobs=1, **kw)
    best2, res2 = modeling.random_search_xgb(X, y, n_jobs=2, **kw)
    pd.testing.assert_frame_equal(res1, res2)
    assert best1 == best2
    _, res3 = modeling.random_search_xgb(X, y, n_jobs=1, **{**kw, "seed": 12})
    assert not res3[list(modeling.XGB_PARAM_NAMES)].equals(res1[list(modeling.XGB_PARAM_NAMES)])
    # best = highest mean CV AUROC, ranks consecutive, configs as drawn
    assert res1.loc[0, "mean_auroc"] == res1.mean_auroc.max()
    assert res1["rank"].tolist() == [1, 2, 3, 4]
    assert best1 == modeling.sample_configurations(4, 11)[int(res1.loc[0, "iteration"])]


def test_random_search_uses_per_fold_imputation_and_scale_pos_weight():
    # 11 positives / 89 negatives: training folds hold 8 or 9 positives, so per-fold weights
    # differ from the global 89/11 and from each other.
    rng = np.random.default_rng(5)
    y = np.r_[np.ones(11, dtype=int), np.zeros(89, dtype=int)]
    X = pd.DataFrame({"a": rng.normal(size=100) + y, "b": rng.normal(size=100)})
    X.loc[rng.random(100) < 0.2, "a"] = np.nan
    config = dict(SMALL_CONFIG)
    progress = []
    _, res = modeling.random_search_xgb(
        X, y, n_iter=1, n_splits=5, seed=2, n_jobs=1, space={k: [v] for k, v in config.items()},
        progress=lambda done, total: progress.append((done, total)))
    assert progress[-1] == (1, 1)
    skf = StratifiedKFold(5, shuffle=True, random_state=2)
    expected_spw = [(y[tr] == 0).sum() / (y[tr] == 1).sum() for tr, _ in skf.split(X, y)]
    assert res.attrs["scale_pos_weight"] == pytest.approx(expected_spw)
    assert len(set(np.round(expected_spw, 6))) > 1 and 89 / 11 not in expected_spw
    # known answer: train each fold by hand with the training-fold median and fold weight
    Xa = X.to_numpy()
    for k, (tr, va) in enumerate(skf.split(X, y)):
        med = np.nanmedian(Xa[tr], axis=0)
        fill = lambda A: np.where(np.isnan(A), med, A)  # noqa: E731
        params = {"objective": "binary:logistic", "tree_method": "hist", "nthread": 1,
                  "seed": 2, "max_bin": modeling.DEFAULT_MAX_BIN, "max_depth": 3,
                  "learning_rate": 0.1, "subsample": 0.9, "colsample_bytree": 0.9,
                  "min_child_weight": 1, "scale_pos_weight": expected_spw[k]}
        d = xgb.QuantileDMatrix(fill(Xa[tr]), label=y[tr], max_bin=modeling.DEFAULT_MAX_BIN)
        booster = xgb.train(params, d, num_boost_round=60)
        auc = roc_auc_score(y[va], booster.inplace_predict(fill(Xa[va])))
        assert res.loc[0, f"auroc_fold{k + 1}"] == pytest.approx(auc)


def test_compare_with_paper_lists_every_parameter():
    t = modeling.compare_with_paper(SMALL_CONFIG)
    assert t.parameter.tolist() == list(modeling.XGB_PARAM_NAMES)
    assert t.set_index("parameter").loc["n_estimators"].tolist() == [60, 400]


# ------------------------------------------------------------------------------ split + fit
def test_split_for_calibration_is_disjoint_stratified_and_seeded():
    X, y = tiny_data(1000, seed=4)
    X_fit, X_cal, y_fit, y_cal = modeling.split_for_calibration(X, y, fraction=0.2, seed=9)
    assert len(X_cal) == 200 and len(X_fit) == 800
    assert X_fit.index.intersection(X_cal.index).empty
    assert X_fit.index.union(X_cal.index).sort_values().equals(X.index)
    assert y_cal.mean() == pytest.approx(y.mean(), abs=0.01)
    np.testing.assert_array_equal(y_cal, y[X_cal.index])
    again = modeling.split_for_calibration(X, y, fraction=0.2, seed=9)
    assert again[1].index.equals(X_cal.index)
    for bad in (0, 1, 1.5):
        with pytest.raises(ValueError, match="fraction"):
            modeling.split_for_calibration(X, y, fraction=bad, seed=0)


@pytest.fixture(scope="module")
def bundle_and_data():
    X, y = tiny_data(2400, seed=6)
    X_train, X_test = X.iloc[:2000], X.iloc[2000:]
    y_train, y_test = y[:2000], y[2000:]
    X_fit, X_cal, y_fit, y_cal = modeling.split_for_calibration(X_train, y_train, fraction=0.3,
                                                                seed=0)
    bundle = modeling.fit_final(X_fit, y_fit, X_cal, y_cal, params=SMALL_CONFIG,
                                manifest=FeatureManifest.from_dict(TINY_MANIFEST), seed=0,
                                lineage={"dataset_sha256": {"cohort": "0" * 64}})
    return bundle, (X_fit, y_fit, X_cal, y_cal, X_test, y_test)


def test_fit_final_bundle_contents(bundle_and_data):
    bundle, (X_fit, y_fit, X_cal, y_cal, *_) = bundle_and_data
    assert bundle.feature_names == ["age", "lactate", "vent", "unit"]
    assert bundle.booster.feature_names == bundle.feature_names
    assert bundle.booster.num_boosted_rounds() == 60
    # frozen values: median (numeric) / mode (binary, categorical) of the fitting rows only
    assert bundle.frozen_medians["lactate"] == pytest.approx(X_fit.lactate.median())
    assert bundle.frozen_medians["age"] == pytest.approx(X_fit.age.median())
    assert bundle.frozen_medians["unit"] == X_fit.unit.mode().min()
    assert bundle.lineage["scale_pos_weight"] == pytest.approx((y_fit == 0).sum() / y_fit.sum())
    assert bundle.lineage["n_fit"] == len(y_fit)
    assert bundle.lineage["n_isotonic"] + bundle.lineage["n_conformal"] == len(y_cal)
    assert bundle.lineage["dataset_sha256"] == {"cohort": "0" * 64}
    assert bundle.lineage["manifest_sha256"] == FeatureManifest.from_dict(TINY_MANIFEST).sha256
    assert 0 < bundle.conformal_threshold < 1
    assert bundle.threshold == 0.40 and bundle.confidence_level == 0.90
    ref = bundle.reference["age"]
    assert ref["min"] == X_fit.age.min() and ref["max"] == X_fit.age.max()
    assert sum(ref["proportions"]) == pytest.approx(1.0)
    assert bundle.reference["lactate"]["missing_rate"] == pytest.approx(X_fit.lactate.isna().mean())
    # the calibrated model is increasing in the raw score
    raw = np.linspace(0, 1, 101)
    assert np.all(np.diff(bundle.calibrator.predict(raw)) >= 0)


def test_fit_final_calibrates_and_conformalizes_on_disjoint_parts_of_the_slice(bundle_and_data):
    from sklearn.model_selection import train_test_split

    from clinops import uncertainty

    bundle, (_, _, X_cal, y_cal, X_test, _) = bundle_and_data
    iso_idx, conf_idx = train_test_split(np.arange(len(y_cal)), train_size=0.5, stratify=y_cal,
                                         random_state=0)
    assert not set(iso_idx) & set(conf_idx)
    Xc = X_cal.fillna(bundle.frozen_medians).to_numpy()
    Xt = X_test.fillna(bundle.frozen_medians).to_numpy()
    # isotonic: exactly the fit on the isotonic part's raw scores
    iso = uncertainty.fit_isotonic(bundle.raw_scores(Xc[iso_idx]), y_cal[iso_idx])
    grid = np.linspace(0, 1, 201)
    np.testing.assert_array_equal(iso.predict(grid), bundle.calibrator.predict(grid))
    # conformal: MAPIE on the calibrated model and the other part gives the stored threshold
    conf = uncertainty.fit_conformal(bundle.calibrated_model(), Xc[conf_idx], y_cal[conf_idx],
                                     confidence_level=0.90)
    assert uncertainty.conformal_threshold(conf, confidence_level=bundle.confidence_level) == bundle.conformal_threshold
    prob = bundle.calibrated_model().predict_proba(Xt)[:, 1]
    np.testing.assert_array_equal(
        uncertainty.sets_from_probability(prob, bundle.conformal_threshold),
        uncertainty.conformal_sets(conf, Xt))


def test_fit_final_rejects_overlap_and_wrong_columns(bundle_and_data):
    _, (X_fit, y_fit, X_cal, y_cal, *_) = bundle_and_data
    kw = dict(params=SMALL_CONFIG, manifest=TINY_MANIFEST, seed=0)
    with pytest.raises(ValueError, match="X_cal: shares row index labels with X_fit"):
        modeling.fit_final(X_fit, y_fit, X_fit.iloc[:300], y_fit[:300], **kw)
    with pytest.raises(ValueError, match="X_fit: columns must equal the manifest features"):
        modeling.fit_final(X_fit[["age", "vent", "lactate", "unit"]], y_fit, X_cal, y_cal, **kw)
    with pytest.raises(ValueError, match="params: XGBoost configuration"):
        modeling.fit_final(X_fit, y_fit, X_cal, y_cal, params={"max_depth": 3},
                           manifest=TINY_MANIFEST, seed=0)


def test_bundle_save_load_round_trip(bundle_and_data, tmp_path):
    bundle, (*_, X_test, _y) = bundle_and_data
    bundle.lineage["run_id"] = "abc123"
    try:
        bundle.save(tmp_path / "b")
        loaded = modeling.ModelBundle.load(tmp_path / "b")
    finally:
        bundle.lineage.pop("run_id")
    assert sorted(p.name for p in (tmp_path / "b").iterdir()) == [
        "bundle.json", "calibrator.joblib", "model.json"]
    json.loads((tmp_path / "b" / "bundle.json").read_text())  # plain JSON
    Xi = X_test.fillna(bundle.frozen_medians).to_numpy()
    np.testing.assert_array_equal(bundle.raw_scores(Xi), loaded.raw_scores(Xi))
    np.testing.assert_array_equal(bundle.calibrator.predict(bundle.raw_scores(Xi)),
                                  loaded.calibrator.predict(loaded.raw_scores(Xi)))
    for attr in ("feature_names", "manifest", "frozen_medians", "conformal_threshold",
                 "confidence_level", "threshold", "reference"):
        assert getattr(loaded, attr) == getattr(bundle, attr), attr
    assert loaded.run_id == "abc123"
    (tmp_path / "b" / "calibrator.joblib").unlink()
    with pytest.raises(FileNotFoundError, match="calibrator.joblib"):
        modeling.ModelBundle.load(tmp_path / "b")


def test_reference_statistics_known_values():
    X = pd.DataFrame({"v": np.r_[np.arange(1.0, 11.0), np.nan, np.nan],
                      "flag": np.r_[np.zeros(9), np.ones(3)]})
    ref = reference_statistics(X, n_bins=5)
    assert ref["v"]["bin_edges"] == pytest.approx([2.8, 4.6, 6.4, 8.2])
    assert ref["v"]["proportions"] == pytest.approx([0.2] * 5)
    assert ref["v"]["missing_rate"] == pytest.approx(2 / 12)
    assert (ref["v"]["min"], ref["v"]["max"]) == (1.0, 10.0)
    # a binary feature collapses to one cut point at 0 -> two bins {0}, {1}
    assert ref["flag"]["bin_edges"] == [0.0]
    assert ref["flag"]["proportions"] == pytest.approx([0.75, 0.25])


# ------------------------------------------------------------------------------ evaluate
def test_evaluate_hand_computed():
    y = np.array([1, 1, 0, 0, 0])
    p = np.array([0.9, 0.3, 0.5, 0.1, 0.2])
    m = modeling.evaluate(y, p, threshold=0.40, n_boot=200, seed=0)
    assert m["auroc"] == pytest.approx(5 / 6)
    assert m["auprc"] == pytest.approx(0.5 * 1 + 0.5 * 2 / 3)
    assert m["brier"] == pytest.approx(0.16)
    # predicted positive: 0.9 (TP), 0.5 (FP); 0.3 is a missed positive
    assert m["sensitivity"] == pytest.approx(0.5)
    assert m["specificity"] == pytest.approx(2 / 3)
    assert m["ppv"] == pytest.approx(0.5)
    assert m["npv"] == pytest.approx(2 / 3)
    assert m["n"] == 5 and m["prevalence"] == pytest.approx(0.4)
    # threshold is inclusive
    assert modeling.evaluate(y, p, threshold=0.5, n_boot=10, seed=0)["specificity"] == 2 / 3


def test_bootstrap_ci_is_seeded_and_brackets_the_estimate():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 800)
    p = np.clip(0.5 * y + rng.uniform(0, 0.6, 800), 0, 1)
    a = modeling.evaluate(y, p, n_boot=300, seed=1)
    b = modeling.evaluate(y, p, n_boot=300, seed=1)
    c = modeling.evaluate(y, p, n_boot=300, seed=2)
    assert (a["auroc_ci_low"], a["auroc_ci_high"]) == (b["auroc_ci_low"], b["auroc_ci_high"])
    assert (a["auroc_ci_low"], a["auroc_ci_high"]) != (c["auroc_ci_low"], c["auroc_ci_high"])
    assert a["auroc_ci_low"] < a["auroc"] < a["auroc_ci_high"]
    assert a["auroc_ci_high"] - a["auroc_ci_low"] < 0.1


def test_evaluate_rejects_bad_input():
    with pytest.raises(ValueError, match="prob: must be probabilities"):
        modeling.evaluate(np.array([0, 1]), np.array([0.2, 1.2]), seed=0)
    with pytest.raises(ValueError, match="y_true: needs both classes"):
        modeling.evaluate(np.array([1, 1]), np.array([0.2, 0.3]), seed=0)
    with pytest.raises(ValueError, match="prob: must be one-dimensional with 2 values"):
        modeling.evaluate(np.array([0, 1]), np.array([0.2]), seed=0)


# ------------------------------------------------------------------------------ paper scale


# ------------------------------------------------------------------------------ the bundle contract
def test_calibrated_booster_is_a_prefit_sklearn_classifier(bundle_and_data):
    """fit() follows scikit-learn's contract (returns self, changes nothing) and clone() works."""
    bundle, (*_, X_test, _) = bundle_and_data
    Xt = X_test.fillna(bundle.frozen_medians).to_numpy()
    model = bundle.calibrated_model()
    before = model.predict_proba(Xt)
    y = (before[:, 1] > 0.5).astype(int)
    assert model.fit(Xt, y) is model
    np.testing.assert_array_equal(model.predict_proba(Xt), before)
    assert is_classifier(model) and list(model.classes_) == [0, 1]
    check_is_fitted(model)
    assert clone(model) is model            # a prefit model clones to itself (as FrozenEstimator)
    np.testing.assert_array_equal(model.predict(Xt), (before[:, 1] >= 0.5).astype(int))
    with pytest.raises(ValueError, match="booster and calibrator must both be given"):
        CalibratedBooster().fit(Xt, y)
    with pytest.raises(ValueError, match="X: must have the booster's 4 features"):
        model.fit(Xt[:, :2])
    with pytest.raises(ValueError, match="y: labels must be 0 or 1"):
        model.fit(Xt, y + 2)


@pytest.mark.parametrize("module", ["clinops.bundle", "clinops.uncertainty", "clinops.modeling",
                                    "clinops.fairness", "clinops.lineage"])
def test_each_package_imports_on_its_own(module):
    """No import cycle: each imports first in a fresh interpreter; the bundle needs no modeling."""
    code = (f"import sys, {module}; "
            "bad = [m for m in ('clinops.modeling', 'clinops.uncertainty') if m in sys.modules]; "
            f"print(bad if '{module}' == 'clinops.bundle' else [])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"

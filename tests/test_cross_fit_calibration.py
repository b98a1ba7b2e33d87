"""Cross-fitted calibration, the strictly increasing calibrator, cross-conformal quantiles, ECE intervals.

Known answers on small hand-made or simulated data; real XGBoost, scikit-learn and MAPIE.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import average_precision_score, roc_auc_score

from clinops import modeling, uncertainty
from clinops.bundle import CalibratedBooster, ModelBundle
from clinops.features import FeatureManifest
from clinops.modeling.cross_fit import calibration_folds, fit_booster, out_of_fold_scores
from clinops.config import ParamsError, load_params
from clinops.features import impute
from clinops.settings import SettingsError, TaskSettings, resolve_task_settings
from tests.fixtures.tiny import TINY_MANIFEST
from tests.test_modeling import SMALL_CONFIG, tiny_data
from tests.test_settings import _project

MANIFEST = FeatureManifest.from_dict(TINY_MANIFEST)


def subjects_with_repeats(n: int, seed: int) -> np.ndarray:
    """MIMIC-shaped subject ids: most subjects one stay, some two or three (readmissions)."""
    rng = np.random.default_rng(seed)
    ids, sid = [], 10_000_000
    while len(ids) < n:
        ids += [sid] * int(rng.choice([1, 2, 3], p=[0.6, 0.3, 0.1]))
        sid += 1
    return np.array(ids[:n])


# ------------------------------------------------------------------ folds

@pytest.mark.parametrize("grouped", [False, True])
def test_oof_folds_are_disjoint_cover_every_row_and_keep_subjects_together(grouped):
    y = np.array([0, 0, 0, 1] * 30)
    subject = subjects_with_repeats(len(y), seed=1) if grouped else None
    folds = calibration_folds(y, n_splits=5, seed=3, groups=subject)
    tests = [te for _, te in folds]
    assert len(folds) == 5
    assert sorted(np.concatenate(tests).tolist()) == list(range(len(y)))       # cover, each once
    for tr, te in folds:
        assert not set(tr) & set(te)
        assert len(tr) + len(te) == len(y)
        assert y[te].sum() > 0                                                  # stratified
        if grouped:
            assert not set(subject[tr]) & set(subject[te])                     # no subject on both sides
    assert [te.tolist() for te in tests] == [te.tolist() for _, te in calibration_folds(y, n_splits=5, seed=3,
                                                                                         groups=subject)]


def test_folds_reject_bad_input():
    y = np.array([0, 1] * 5)
    with pytest.raises(ValueError, match="n_splits"):
        calibration_folds(y, n_splits=1, seed=0)
    # the rules (and messages) of clinops.modeling.cv, which makes the folds
    with pytest.raises(ValueError, match=r"groups: must be one subject id per row \(10 rows\)"):
        calibration_folds(y, n_splits=2, seed=0, groups=[1, 2])
    with pytest.raises(ValueError, match="groups: 2 subject.s. cannot fill 5 folds"):
        calibration_folds(y, n_splits=5, seed=0, groups=[1, 2] * 5)
    with pytest.raises(ValueError, match="groups: subject id missing in 1 row"):
        calibration_folds(y, n_splits=2, seed=0, groups=[1, 2, 3, 4, 5, 6, 7, 8, 9, None])


def test_out_of_fold_scores_come_from_the_model_without_the_row():
    X, y = tiny_data(300, seed=2)
    folds = calibration_folds(y, n_splits=3, seed=0)
    oof = out_of_fold_scores(X, y, folds, params=SMALL_CONFIG, manifest=MANIFEST, seed=0, max_bin=64)
    tr, te = folds[1]
    booster, medians, _ = fit_booster(X.iloc[tr], y[tr], params=SMALL_CONFIG, manifest=MANIFEST, seed=0, max_bin=64)
    X_te, _ = impute(X.iloc[te], medians)
    assert np.array_equal(oof[te], booster.inplace_predict(X_te.to_numpy(dtype=float)))
    with pytest.raises(ValueError, match="folds: the test parts must be disjoint and cover every row"):
        out_of_fold_scores(X, y, folds[:2], params=SMALL_CONFIG, manifest=MANIFEST, seed=0, max_bin=64)


# ------------------------------------------------------------------ calibrators

def test_interpolated_isotonic_keeps_auroc_and_auprc_exactly_where_isotonic_ties():
    rng = np.random.default_rng(0)
    scores = rng.uniform(0, 1, 2000)          # untied
    y = (rng.random(2000) < scores ** 2).astype(int)
    test = rng.uniform(0, 1, 1000)
    y_test = (rng.random(1000) < test ** 2).astype(int)
    step = uncertainty.fit_calibrator(scores, y, "isotonic").predict(test)
    smooth = uncertainty.fit_calibrator(scores, y, "isotonic_interpolated").predict(test)
    assert len(np.unique(smooth)) == len(np.unique(test))                    # no ties created
    assert len(np.unique(step)) < 100                                         # the step map ties
    assert np.all(np.diff(smooth[np.argsort(test)]) > 0)
    assert roc_auc_score(y_test, smooth) == pytest.approx(roc_auc_score(y_test, test), abs=1e-12)
    assert average_precision_score(y_test, smooth) == pytest.approx(average_precision_score(y_test, test), abs=1e-12)
    assert roc_auc_score(y_test, step) != roc_auc_score(y_test, test)


def test_interpolated_isotonic_knots_by_hand():
    # PAVA on y = 0 1 0 1 0 1: 0.1 -> 0 | 0.2 .. 0.5 -> 1/2 (two violations pooled) | 0.6 -> 1
    s = np.array([0.1, 0.2, 0.3, 0.4, 0.5, 0.6])
    y = np.array([0, 1, 0, 1, 0, 1])
    lo, hi, v = uncertainty.isotonic_blocks(s, y)
    assert (lo.tolist(), hi.tolist(), v.tolist()) == ([0.1, 0.2, 0.6], [0.1, 0.5, 0.6], [0.0, 0.5, 1.0])
    m = uncertainty.fit_interpolated_isotonic(s, y)
    # blocks valued 0 or 1 are left out; inner block (0.2 .. 0.5) -> midpoint 0.35, value 0.5
    assert m.X_thresholds_.tolist() == [0.0, 0.35, 1.0]
    assert m.y_thresholds_.tolist() == [0.0, 0.5, 1.0]
    with pytest.raises(ValueError, match="uncertainty.calibrator"):
        uncertainty.fit_calibrator(s, y, "platt")


# ------------------------------------------------------------------ ECE

def test_equal_mass_bins_have_equal_counts():
    rng = np.random.default_rng(4)
    p = np.round(rng.uniform(0, 1, 1003), 1)         # heavy ties: quantile bins would be unequal
    y = (rng.random(1003) < p).astype(int)
    t = uncertainty.reliability_table(y, p, n_bins=10, strategy="equal_mass")
    assert t["n"].max() - t["n"].min() <= 1 and t["n"].sum() == 1003 and len(t) == 10
    q = uncertainty.reliability_table(y, p, n_bins=10, strategy="quantile")
    assert q["n"].max() - q["n"].min() > 1


def test_ece_interval_contains_the_true_ece_most_of_the_time():
    # Known miscalibration: the predicted probability is the true one + 0.05 everywhere inside
    # (0.1, 0.8), so the population ECE in any binning is exactly 0.05.
    hits = 0
    for rep in range(20):
        rng = np.random.default_rng(100 + rep)
        true_p = rng.uniform(0.1, 0.8, 3000)
        y = (rng.random(3000) < true_p).astype(int)
        ece, lo, hi = uncertainty.ece_interval(y, true_p + 0.05, n_bins=10, strategy="uniform", n_boot=200, seed=rep)
        hits += lo <= 0.05 <= hi
        assert lo <= ece <= hi
    assert hits >= 16


def test_ece_interval_is_seeded_and_uses_the_one_bootstrap():
    y = np.array([0, 0, 1, 0, 1, 1, 0, 1, 0, 0])
    p = np.array([0.1, 0.2, 0.3, 0.6, 0.7, 0.9, 0.4, 0.8, 0.2, 0.1])
    assert uncertainty.ece_interval(y, p, n_bins=2, n_boot=50, seed=1) == \
        uncertainty.ece_interval(y, p, n_bins=2, n_boot=50, seed=1)
    ece, _, _ = uncertainty.ece_interval(y, p, n_bins=2, strategy="equal_mass", n_boot=50, seed=1)
    assert ece == pytest.approx(uncertainty.expected_calibration_error(y, p, n_bins=2, strategy="equal_mass"))
    with pytest.raises(ValueError, match="strategy"):
        uncertainty.ece_interval(y, p, strategy="width", n_boot=5, seed=0)


# ------------------------------------------------------------------ cross-conformal

def test_lac_threshold_equals_mapie_split_conformal_quantile():
    X, y = tiny_data(900, seed=3)
    bundle = modeling.fit_final(X.iloc[:500], y[:500], X.iloc[500:], y[500:], params=SMALL_CONFIG,
                                manifest=MANIFEST, seed=0)
    X_imp = impute(X.iloc[500:], bundle.frozen_medians)[0].to_numpy(dtype=float)
    prob = CalibratedBooster(bundle.booster, bundle.calibrator).predict_proba(X_imp)[:, 1]
    conformal = uncertainty.fit_conformal(bundle.calibrated_model(), X_imp, y[500:], confidence_level=0.9)
    assert uncertainty.lac_threshold(prob, y[500:], confidence_level=0.9) == pytest.approx(
        uncertainty.conformal_threshold(conformal, confidence_level=0.9), abs=1e-12)


# ------------------------------------------------------------------ the final fit

@pytest.fixture(scope="module")
def cross_fitted():
    X, y = tiny_data(1500, seed=8)
    X.index = pd.RangeIndex(30_000_000, 30_001_500)  # stay ids
    subject = subjects_with_repeats(1500, seed=8)
    bundle = modeling.fit_final(X, y, params=SMALL_CONFIG, manifest=MANIFEST, seed=0, calibration="cross_fit",
                                calibrator="isotonic_interpolated", n_folds=4, groups=subject, max_bin=64)
    return bundle, X, y, subject


def test_cross_fit_refits_on_every_row_and_calibrates_on_out_of_fold_scores(cross_fitted):
    bundle, X, y, subject = cross_fitted
    assert bundle.lineage["n_fit"] == bundle.lineage["n_isotonic"] == bundle.lineage["n_conformal"] == 1500
    assert bundle.lineage["calibration_scheme"] == "cross_fit" and bundle.lineage["grouped_by_subject"]
    # the served booster is the refit on all rows
    booster, _, _ = fit_booster(X, y, params=SMALL_CONFIG, manifest=MANIFEST, seed=0, max_bin=64)
    X_imp = impute(X, bundle.frozen_medians)[0].to_numpy(dtype=float)
    assert np.array_equal(bundle.booster.inplace_predict(X_imp), booster.inplace_predict(X_imp))
    # the calibrator and the quantiles are those of the out-of-fold scores
    folds = calibration_folds(y, n_splits=4, seed=0, groups=subject)
    oof = out_of_fold_scores(X, y, folds, params=SMALL_CONFIG, manifest=MANIFEST, seed=0, max_bin=64)
    expected = uncertainty.fit_interpolated_isotonic(oof, y)
    assert np.array_equal(bundle.calibrator.X_thresholds_, expected.X_thresholds_)
    cf = uncertainty.cross_fitted_probabilities(oof, y, folds, "isotonic_interpolated")
    assert bundle.conformal_threshold == pytest.approx(uncertainty.lac_threshold(cf, y, confidence_level=0.9))
    assert bundle.conformal_class_thresholds == pytest.approx(
        uncertainty.class_conditional_thresholds(cf, y, confidence_level=0.9).tolist())


def test_cross_fitted_bundle_is_served_unchanged(cross_fitted, tmp_path):
    bundle, X, y, _ = cross_fitted
    loaded = ModelBundle.load(bundle.save(tmp_path / "b"))
    pred = uncertainty.RiskPredictor(loaded).predict_frame(X.iloc[:200], encoded=True)
    assert np.allclose(pred["probability"], loaded.calibrator.predict(pred["raw_score"]), atol=1e-12)
    # strictly increasing map: the served probability ranks exactly as the raw score
    assert roc_auc_score(y[:200], pred["probability"]) == pytest.approx(roc_auc_score(y[:200], pred["raw_score"]))


def test_fit_final_scheme_errors_name_the_rule():
    X, y = tiny_data(200, seed=1)
    kw = dict(params=SMALL_CONFIG, manifest=MANIFEST, seed=0)
    with pytest.raises(ValueError, match="X_cal, y_cal: required by calibration 'split'"):
        modeling.fit_final(X, y, **kw)
    with pytest.raises(ValueError, match="must be None for 'cross_fit'"):
        modeling.fit_final(X.iloc[:100], y[:100], X.iloc[100:], y[100:], calibration="cross_fit", **kw)
    with pytest.raises(ValueError, match="modeling.calibration: must be one of"):
        modeling.fit_final(X, y, calibration="holdout", **kw)
    with pytest.raises(ValueError, match="groups: 1 subject"):
        modeling.fit_final(X.iloc[:100], y[:100], X.iloc[100:], y[100:], groups=[7] + list(range(1, 199)) + [7], **kw)


def test_split_for_calibration_by_subject_keeps_subjects_on_one_side():
    X, y = tiny_data(600, seed=5)
    subject = subjects_with_repeats(600, seed=5)
    X_fit, X_cal, y_fit, y_cal = modeling.split_for_calibration(X, y, fraction=0.2, seed=0, groups=subject)
    by_row = pd.Series(subject, index=X.index)
    assert not set(by_row[X_fit.index]) & set(by_row[X_cal.index])
    assert len(X_fit) + len(X_cal) == 600 and 0.15 < len(X_cal) / 600 < 0.25
    assert abs(y_cal.mean() - y.mean()) < 0.05


def test_fit_calibrated_splits_subject_ids_by_position_whatever_the_index():
    # a frame indexed by subject (repeated labels: readmissions) must give the model of the
    # same rows on a fresh index; subject ids were once looked up by index label
    X, y = tiny_data(600, seed=4)
    subject = subjects_with_repeats(600, seed=1)
    fresh = modeling.fit_calibrated(X, y, params=SMALL_CONFIG, manifest=MANIFEST, seed=0, fraction=0.3,
                                    groups=subject)
    by_subject = modeling.fit_calibrated(X.set_axis(pd.Index(subject), axis=0), y, params=SMALL_CONFIG,
                                         manifest=MANIFEST, seed=0, fraction=0.3, groups=subject)
    assert fresh.lineage["n_fit"] == by_subject.lineage["n_fit"]
    probe = X.iloc[:50].reset_index(drop=True)
    np.testing.assert_array_equal(uncertainty.RiskPredictor(fresh).predict_frame(probe, encoded=True)["probability"],
                                  uncertainty.RiskPredictor(by_subject).predict_frame(probe, encoded=True)["probability"])


def test_calibration_ranking_reports_every_scheme_and_map(base_settings):
    X, y = tiny_data(1400, seed=11)
    X_tr, y_tr, X_te, y_te = X.iloc[:1000], y[:1000], X.iloc[1000:].reset_index(drop=True), y[1000:]
    settings = _settings(base_settings, calibration="split", calibrator="isotonic")
    served = modeling.fit_calibrated(X_tr, y_tr, params=SMALL_CONFIG, manifest=MANIFEST, seed=0, settings=settings,
                                     fraction=0.2)
    table = modeling.calibration_ranking(X_tr, y_tr, X_te, y_te, params=SMALL_CONFIG, manifest=MANIFEST, seed=0,
                                         settings=settings, served=served, n_boot=30)
    assert list(zip(table["calibration"], table["calibrator"])) == [
        ("split", "isotonic"), ("split", "isotonic_interpolated"),
        ("cross_fit", "isotonic"), ("cross_fit", "isotonic_interpolated")]
    assert table["served"].tolist() == [True, False, False, False]
    smooth = table[table["calibrator"] == "isotonic_interpolated"]
    assert (smooth["auroc_change"].abs() < 1e-12).all() and smooth["auroc_target_met"].all()
    assert table.loc[table["calibration"] == "cross_fit", "n_booster_rows"].eq(1000).all()
    assert table.loc[table["calibration"] == "split", "n_booster_rows"].eq(800).all()
    # the raw score is the same booster for both maps of one scheme
    assert table.groupby("calibration")["raw_auroc"].nunique().eq(1).all()


@pytest.fixture(scope="module")
def base_settings(tmp_path_factory) -> TaskSettings:
    """Settings resolved from a temporary parameter file and policies (never the live ones)."""
    return resolve_task_settings(load_params(_project(tmp_path_factory.mktemp("settings"), {})), "primary")


def _settings(base: TaskSettings, *, calibration: str = "split", calibrator: str = "isotonic") -> TaskSettings:
    d = base.to_dict()
    d["calibrator"] = calibrator
    d["modeling"] = {**d["modeling"], "calibration": calibration, "cv_folds": 3, "calibration_fraction": 0.2}
    return TaskSettings.from_dict(d)


def test_calibration_ranking_fits_one_booster_per_scheme(base_settings, monkeypatch):
    # the maps of one scheme share its booster (and its out-of-fold boosters): with the split
    # isotonic model served, one booster for the split scheme's other map and K + 1 = 4 for both
    # cross_fit maps (it was 1 + 2 x 4: a refit per map)
    from clinops.modeling import cross_fit, final_fit
    X, y = tiny_data(1000, seed=11)
    settings = _settings(base_settings, calibration="split", calibrator="isotonic")
    served = modeling.fit_calibrated(X.iloc[:800], y[:800], params=SMALL_CONFIG, manifest=MANIFEST, seed=0,
                                     settings=settings, fraction=0.2)
    calls = []
    original = cross_fit.fit_booster

    def counting(*args, **kwargs):
        calls.append(len(args[0]))
        return original(*args, **kwargs)

    monkeypatch.setattr(cross_fit, "fit_booster", counting)
    monkeypatch.setattr(final_fit, "fit_booster", counting)
    modeling.calibration_ranking(X.iloc[:800], y[:800], X.iloc[800:].reset_index(drop=True), y[800:],
                                 params=SMALL_CONFIG, manifest=MANIFEST, seed=0, settings=settings, served=served,
                                 n_boot=10)
    assert len(calls) == 1 + 4, calls


def test_fit_final_maps_gives_each_map_its_own_bundle_and_refuses_a_map_twice():
    X, y = tiny_data(600, seed=4)
    X_fit, X_cal, y_fit, y_cal = modeling.split_for_calibration(X, y, fraction=0.3, seed=0)
    kw = dict(params=SMALL_CONFIG, manifest=MANIFEST, seed=0)
    both = modeling.fit_final_maps(X_fit, y_fit, X_cal, y_cal, calibrators=("isotonic", "isotonic_interpolated"), **kw)
    assert both["isotonic"].booster is not both["isotonic_interpolated"].booster  # a predictor sets params on it
    alone = modeling.fit_final(X_fit, y_fit, X_cal, y_cal, calibrator="isotonic_interpolated", **kw)
    probe = X.iloc[:50].reset_index(drop=True)
    np.testing.assert_array_equal(
        uncertainty.RiskPredictor(both["isotonic_interpolated"]).predict_frame(probe, encoded=True)["probability"],
        uncertainty.RiskPredictor(alone).predict_frame(probe, encoded=True)["probability"])
    with pytest.raises(ValueError, match=r"calibrators: one or more maps, each once; got \['isotonic', 'isotonic'\]"):
        modeling.fit_final_maps(X_fit, y_fit, X_cal, y_cal, calibrators=("isotonic", "isotonic"), **kw)


def test_resolved_settings_carry_the_calibration_keys(tmp_path):
    P = load_params(_project(tmp_path, {"modeling": {"calibration": "cross_fit"},
                                        "uncertainty": {"calibrator": "isotonic_interpolated"}}))
    rs = resolve_task_settings(P, "primary")
    assert (rs.modeling["calibration"], rs.calibrator) == ("cross_fit", "isotonic_interpolated")
    assert TaskSettings.from_dict(rs.to_dict()) == rs
    (tmp_path / "bad").mkdir()
    with pytest.raises(ParamsError, match="calibration"):
        load_params(_project(tmp_path / "bad", {"modeling": {"calibration": "holdout"}}))


def test_settings_reject_unknown_calibration_and_calibrator(base_settings):
    d = _settings(base_settings).to_dict()
    with pytest.raises(SettingsError, match="uncertainty.calibrator: must be one of"):
        TaskSettings.from_dict({**d, "calibrator": "platt"})
    with pytest.raises(SettingsError, match="modeling.calibration: must be one of"):
        TaskSettings.from_dict({**d, "modeling": {**d["modeling"], "calibration": "holdout"}})

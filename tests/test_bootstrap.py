"""Tests for clinops.bootstrap (the one bootstrap) and clinops.labels (the one label check)."""
from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from clinops import bootstrap, modeling
from clinops.fairness import subgroup_table
from clinops.labels import binary_labels, probabilities


@pytest.fixture(scope="module")
def scored():
    rng = np.random.default_rng(5)
    y = (rng.random(700) < 0.25).astype(int)
    p = np.clip(0.3 * y + rng.random(700) * 0.7, 0, 1).round(3)   # ties on purpose
    return y, p


def test_evaluation_and_fairness_give_one_interval_for_the_test_auroc(scored):
    """The test AUROC has one CI: evaluate's equals Table 2's overall row, to the last bit."""
    y, p = scored
    metrics = modeling.evaluate(y, p, threshold=0.4, n_boot=120, seed=9)
    table = subgroup_table(y, p, {"sex": np.where(np.arange(len(y)) % 2, "F", "M")},
                           threshold=0.4, n_boot=120, seed=9)
    overall = table.loc[("overall", "all")]
    assert (metrics["auroc_ci_low"], metrics["auroc_ci_high"]) == (overall["auroc_lo"], overall["auroc_hi"])
    assert metrics["auroc"] == pytest.approx(overall["auroc"], abs=1e-12)


def test_weighted_auroc_equals_sklearn_on_the_drawn_rows(scored):
    y, p = scored
    order, block, n_blocks = bootstrap.score_order(p)
    codes = np.zeros(len(y), dtype=np.int64)
    weights = next(bootstrap.resample_weights(len(y), n_boot=3, seed=1))
    auc = bootstrap.weighted_auroc(weights, codes, 1, y, order, block, n_blocks)
    for b in range(3):
        idx = np.repeat(np.arange(len(y)), weights[b].astype(int))
        assert auc[b, 0] == pytest.approx(roc_auc_score(y[idx], p[idx]), abs=1e-12)


def test_resamples_are_seeded_and_draw_n_rows():
    a = np.concatenate(list(bootstrap.resample_weights(50, n_boot=250, seed=3)))
    b = np.concatenate(list(bootstrap.resample_weights(50, n_boot=250, seed=3)))
    c = np.concatenate(list(bootstrap.resample_weights(50, n_boot=250, seed=4)))
    assert a.shape == (250, 50) and (a.sum(axis=1) == 50).all()
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    with pytest.raises(ValueError, match="seed: required"):
        next(bootstrap.resample_weights(5, n_boot=1, seed=None))


def test_auroc_interval_refuses_what_has_no_interval():
    with pytest.raises(ValueError, match="y_true: every bootstrap resample had a single class"):
        bootstrap.auroc_interval(np.zeros(4, int), np.full(4, 0.5), n_boot=5, seed=0)
    with pytest.raises(ValueError, match="n_boot: must be a positive integer"):
        bootstrap.auroc_interval(np.array([0, 1]), np.array([0.1, 0.9]), n_boot=0, seed=0)


def test_percentile_interval_leaves_out_undefined_resamples():
    samples = np.array([[0.1], [np.nan], [0.3], [0.5]])
    lo, hi, n_def = bootstrap.percentile_interval(samples, 0.5)
    assert int(n_def[0]) == 3
    assert (lo[0], hi[0]) == pytest.approx(tuple(np.quantile([0.1, 0.3, 0.5], [0.25, 0.75])))


@pytest.mark.parametrize("y, match", [
    (np.array([[0, 1]]), r"y: must be one-dimensional, got shape \(1, 2\)"),
    (np.array([]), "y: must not be empty"),
    (np.array([0, np.nan]), "y: must not contain missing labels"),
    (np.array([0, 1, 2]), r"y: labels must be 0 or 1, got values \[0, 1, 2\]"),
    (np.array(["a", "b"]), "y: labels must be 0 or 1"),
    (np.array([1, 2]), "y: labels must be 0 or 1"),
])
def test_binary_labels_name_the_field_and_the_rule(y, match):
    with pytest.raises(ValueError, match=match):
        binary_labels(y, "y")


def test_binary_labels_accept_bool_float_and_one_class():
    np.testing.assert_array_equal(binary_labels(np.array([True, False])), [1, 0])
    np.testing.assert_array_equal(binary_labels([0.0, 1.0, 1.0]), [0, 1, 1])
    assert binary_labels([1, 1]).dtype == np.int64
    np.testing.assert_array_equal(binary_labels(np.array([0, 1, 1], dtype=object)), [0, 1, 1])


@pytest.mark.parametrize("p, match", [
    ([0.1, np.nan], r"prob: must be probabilities in \[0, 1\] without NaN"),
    ([0.1, np.inf], "prob: must be probabilities"),
    ([-0.1, 0.5], r"prob: must be probabilities in \[0, 1\]; range found \[-0.1, 0.5\]"),
    ([0.1, 0.2, 0.3], r"prob: must be one-dimensional with 2 values \(the shape of y_true\)"),
])
def test_probabilities_name_the_field_and_the_rule(p, match):
    with pytest.raises(ValueError, match=match):
        probabilities(p, 2, "prob")

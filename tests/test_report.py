"""Report helpers: tables name their data source; the comparison joins recorded values with the paper's."""
from __future__ import annotations

import pandas as pd
import pytest

from clinops.report import paper_comparison, paper_values, record_values, write_paper_comparison, write_table


def test_write_table_names_the_data_source(tmp_path):
    df = pd.DataFrame({"group": ["a", "b"], "auroc": [0.81234, float("nan")], "n": [1200, 30]})
    csv, md = write_table(df, tmp_path / "t", title="T", data_label="synthetic MIMIC-IV")
    text = md.read_text()
    assert "Data: **synthetic MIMIC-IV**" in text
    assert "| a | 0.812 | 1,200 |" in text and "n/a" in text
    assert pd.read_csv(csv)["auroc"].iloc[0] == pytest.approx(0.81234)


def test_paper_values_have_unique_ids_and_sections():
    ids = [row["id"] for row in paper_values()]
    assert len(ids) == len(set(ids))
    assert all(row["section"] for row in paper_values())


def test_comparison_joins_recorded_values(tmp_path):
    record_values(tmp_path, "cohort", {"cohort_n": 23000, "prevalence": 0.12})
    df = paper_comparison(tmp_path, data_label="synthetic")
    row = df.set_index("quantity").loc["ICU cohort (after inclusion/exclusion)"]
    assert row["this run"] == 23000 and row["difference"] == 23000 - 23841
    missing = df.set_index("quantity").loc["Test AUROC (2017-2019)"]
    assert missing["data"] == "not computed"


def test_unknown_ids_are_refused(tmp_path):
    with pytest.raises(KeyError, match="not_a_paper_number"):
        record_values(tmp_path, "x", {"not_a_paper_number": 1})


def test_custom_cohort_has_no_comparison(tmp_path):
    path = write_paper_comparison(tmp_path, tmp_path / "r", data_label="user table", source="table")
    assert "Not produced" in path.read_text()


def test_paper_consistency_flags_the_ppv_contradiction():
    from clinops.report import _implied_ppv, paper_consistency

    # Bayes' rule on a case worked by hand: sens 0.8, spec 0.9, prevalence 0.1 -> 0.08 / (0.08 + 0.09)
    assert _implied_ppv(0.8, 0.9, 0.1) == pytest.approx(0.08 / 0.17)
    df = paper_consistency().set_index("check")
    row = df.loc["test PPV at 0.40 (overall)"]
    assert row["against"] == pytest.approx(0.373, abs=0.001)
    assert not row["consistent"]
    assert df.loc["mortality prevalence", "consistent"] and df.loc["drift relative AUROC drop", "consistent"]


def test_only_the_generators_calibration_targets_hold_by_construction():
    from clinops.report import holds_by_construction

    count = {"id": "cohort_n", "kind": "count", "calibrated": True}
    share = {"id": "prevalence", "kind": "proportion", "calibrated": True}
    metric = {"id": "test_auroc", "kind": "metric"}
    assert holds_by_construction(count, 1.0) and holds_by_construction(share, 1.0)
    assert not holds_by_construction(count, 0.05) and holds_by_construction(share, 0.05)  # counts scale
    assert not holds_by_construction(metric, 1.0)
    assert not holds_by_construction(share, None)                                           # real data


def test_every_generator_target_and_only_those_hold_by_construction():
    """The calibrated rows are exactly the targets of clinops/data/synth/targets.py (and the two
    counts they fix: deaths = cohort x prevalence, readmissions = cohort x rate), with the same values."""
    from clinops.data.synth import targets as T

    paper = {row["id"]: row for row in paper_values()}
    target_values = {"cohort_n": T.COHORT_SIZE, "cohort_train_n": T.TRAIN_SIZE, "cohort_test_n": T.TEST_SIZE,
                     "prevalence": T.MORTALITY_PREVALENCE, "vent_prevalence_test": T.VENTILATION_TEST,
                     "readm_cohort_n": T.READMISSION_COHORT, "readm_prevalence": T.READMISSION_RATE,
                     **{f"missing_{f}": share for f, share in T.MISSING_SHARE.items()}}
    derived = {"positives_n": T.COHORT_SIZE * T.MORTALITY_PREVALENCE,
               "readm_positives_n": T.READMISSION_COHORT * T.READMISSION_RATE}
    calibrated = {i for i, row in paper.items() if row.get("calibrated")}
    assert calibrated == set(target_values) | set(derived)
    for i, value in target_values.items():
        assert paper[i]["paper"] == pytest.approx(value)
    for i, value in derived.items():
        assert paper[i]["paper"] == pytest.approx(value, rel=0.002)


def test_comparison_marks_construction_row_by_row(tmp_path):
    record_values(tmp_path, "features", {"cohort_n": 1192, "missing_lactate": 0.38, "test_auroc": 0.85})
    quick = paper_comparison(tmp_path, data_label="synthetic MIMIC-IV", synthetic_scale=0.05).set_index("quantity")
    cohort, lactate = quick.loc["ICU cohort (after inclusion/exclusion)"], quick.loc["Missing in first 24 h: lactate"]
    assert cohort["holds by construction"] == "" and cohort["construction"] == "generator target scaled: 1,192 (paper x 0.05)"
    assert lactate["holds by construction"] == "yes" and lactate["construction"] == "generator target"
    assert quick.loc["Test AUROC (2017-2019)", "holds by construction"] == ""
    paper_scale = paper_comparison(tmp_path, data_label="synthetic MIMIC-IV", synthetic_scale=1.0).set_index("quantity")
    # at paper scale a target holds only when the run agrees with it (within the generator's 2 %)
    assert paper_scale.loc["ICU cohort (after inclusion/exclusion)", "holds by construction"] == \
        "no: this run's definitions move it"
    record_values(tmp_path / "paper", "features", {"cohort_n": 23841 - 300})
    at_target = paper_comparison(tmp_path / "paper", data_label="synthetic MIMIC-IV", synthetic_scale=1.0)
    assert at_target.set_index("quantity").loc["ICU cohort (after inclusion/exclusion)", "holds by construction"] == "yes"
    real = paper_comparison(tmp_path, data_label="MIMIC-IV v2.2", synthetic_scale=None)
    assert (real["holds by construction"] == "").all() and (real["construction"] == "").all()


def test_contract_values_read_not_recorded_until_their_stage_records_them(tmp_path):
    df = paper_comparison(tmp_path, data_label="synthetic").set_index("quantity")
    for q in ("Test sensitivity at 0.40, raw score", "Drift scenario AUROC on the same 2,000 rows after the shift",
              "Drift scenario relative AUROC drop within the same 2,000 rows"):
        assert df.loc[q, "data"] == "not recorded"
    assert df.loc["Test AUROC (2017-2019)", "data"] == "not computed"
    record_values(tmp_path, "drift_primary", {"auroc_same_rows_before": 0.838, "auroc_same_rows_after": 0.837})
    record_values(tmp_path, "model_primary", {"raw_sensitivity": 0.70, "raw_specificity": 0.85})
    df = paper_comparison(tmp_path, data_label="synthetic").set_index("quantity")
    drop = df.loc["Drift scenario relative AUROC drop within the same 2,000 rows"]
    assert drop["this run"] == pytest.approx(0.001 / 0.838) and drop["data"] == "synthetic"
    assert drop["difference"] == pytest.approx(0.001 / 0.838 - 0.064)
    raw = df.loc["Test sensitivity at 0.40, raw score"]
    assert raw["this run"] == 0.70 and raw["paper"] == 0.781
    assert df.loc["Drift scenario AUROC on the 2,000 scenario rows before the shift", "difference"] is None  # paper: none


def test_fairness_gap_cis_reach_the_comparison(tmp_path):
    from clinops.pipeline.paper_mapping import fairness_values
    from clinops.tasks import PaperIds

    gaps = pd.DataFrame({"attribute": ["age_group", "sex"], "metric": ["predictive_parity_difference"] * 2,
                         "value": [0.10, 0.02], "ci_lo": [0.06, 0.01], "ci_hi": [0.15, 0.04]})
    readm = fairness_values(PaperIds(gap_prefix="readm_"), pd.DataFrame(), gaps)
    assert readm == {}  # the paper gives no PPV-difference for readmission
    values = fairness_values(PaperIds(), pd.DataFrame(), gaps)
    assert values["ppd_age_ci_low"] == 0.06 and values["ppd_age_ci_high"] == 0.15 and values["ppd_sex_ci_high"] == 0.04
    record_values(tmp_path, "fairness_primary", values)
    df = paper_comparison(tmp_path, data_label="synthetic").set_index("quantity")
    row = df.loc["Predictive-parity (PPV) difference, age group: 95% CI low"]
    assert row["paper"] == 0.056 and row["this run"] == 0.06


def test_paper_consistency_sets_statements_against_the_reference():
    from clinops.report import paper_consistency

    df = paper_consistency().set_index("check")
    stays = df.loc["MIMIC-IV v2.2 ICU stays (4.1: 'over 40,000')"]
    assert stays["against"] == 73_181 and not stays["consistent"]
    assert df.loc["MIMIC-IV v2.2 hospital admissions (4.1: 'approximately 190,000')", "against"] == 431_231
    imbalance = df.loc["readmission has 'the higher class imbalance' (4.9)"]
    assert (imbalance["paper states"], imbalance["against"]) == (0.147, 0.113) and not imbalance["consistent"]
    assert "Platt" in df.loc["calibration method (4.5)", "against"]
    assert "No Response-ETT" in df.loc["GCS missing 'attributable predominantly to sedated patients' (4.4)", "against"]


def test_contract_values_come_from_the_primary_task_only(tmp_path):
    # both model stages may record the same id; the comparison is about the paper's primary model
    record_values(tmp_path, "model_primary", {"raw_sensitivity": 0.83})
    record_values(tmp_path, "model_readmission", {"raw_sensitivity": 0.99})
    df = paper_comparison(tmp_path, data_label="synthetic").set_index("quantity")
    assert df.loc["Test sensitivity at 0.40, raw score", "this run"] == 0.83

"""Bring your own cohort (issue #8): a one-row-per-stay table through the whole chain.

Bad-input tests build small tables by hand and check the error names the column and the rule.
The chain test runs the pipeline's own stage functions on the committed example table
(tests/fixtures/own_cohort/example_cohort.csv) at quick scale, into a temporary project root
(its own build/, reports/ and MLflow store).
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from clinops import pipeline
from clinops.config import Params, load_params
from clinops.data.example_cohort import example_cohort
from clinops.pipeline.table_cli import main as table_main
from clinops.tasks import own_table
from clinops.tasks.own_table import CohortTableError, make_task_table
from clinops.features import FeatureManifest

from tests.fixtures.params import EXAMPLE_CSV, own_table_params, write_policies

#: The example table's fairness rules (as params/policies/fairness.yaml states them for it).
EXAMPLE_FAIRNESS = ("min_group_size: 30\npairwise_gap_limits: {auroc: 0.03}\n"
                    "disparity_limits: {equalized_odds_difference: 0.05, demographic_parity_difference: 0.05, "
                    "predictive_parity_difference: 0.05}\n")

FEATURES = [
    {"name": "hr", "kind": "numeric", "unit": "bpm", "plausible_range": [0.0, 300.0]},
    {"name": "vent", "kind": "binary", "unit": "1 = yes"},
    {"name": "adm", "kind": "categorical", "unit": "type", "categories": ["medical", "surgical"]},
]


def small_table(n: int = 12) -> pd.DataFrame:
    """n stays, half train / half test, two positives in each split; every rule satisfied."""
    half = n // 2
    return pd.DataFrame({
        "pid": [f"P{i:03d}" for i in range(n)],
        "dead": [1, 1] + [0] * (half - 2) + [1, 1] + [0] * (n - half - 2),
        "part": ["Train"] * half + [" test"] * (n - half),
        "when": ["2020-06-01"] * half + ["2021-01-01"] * (n - half),
        "hr": np.linspace(60, 140, n),
        "vent": [0, 1] * half,
        "adm": ["medical", "surgical", None] * (n // 3) + ["medical"] * (n % 3),
        "gender": ["male", "F"] * half,
        "age": [30, 50, 70, 90] * (n // 4),
        "ward": ["A"] * (n - 1) + [None],
    })


def build(df: pd.DataFrame, **overrides) -> pd.DataFrame:
    kwargs = dict(id_column="pid", outcome_column="dead", features=FEATURES, split_column="part",
                  sex_column="gender", age_column="age", age_edges=[18, 45, 65, 80], other_columns=["ward"])
    kwargs.update(overrides)
    return make_task_table(df, **kwargs)


def error_of(df: pd.DataFrame, **overrides) -> CohortTableError:
    with pytest.raises(CohortTableError) as info:
        build(df, **overrides)
    return info.value


# ---------------------------------------------------------------------------------------------
# known answers
# ---------------------------------------------------------------------------------------------
def test_task_table_columns_and_values():
    out = build(small_table())
    assert list(out.columns) == ["id", "hr", "vent", "adm", "label", "split", "sensitive_sex", "sensitive_age",
                                 "group_ward"]
    assert out["id"].tolist()[:2] == ["P000", "P001"]
    assert out["split"].tolist() == ["train"] * 6 + ["test"] * 6       # 'Train', ' test' normalised
    assert out["label"].dtype == np.int64 and out["label"].sum() == 4
    assert out["sensitive_sex"].tolist()[:2] == ["M", "F"]              # 'male' -> M, 'F' -> F
    assert out["sensitive_age"].tolist()[:4] == [30.0, 50.0, 70.0, 90.0]
    assert out["adm"].tolist()[:3] == ["medical", "surgical", None]
    assert out["group_ward"].tolist()[-2:] == ["A", "unknown"]          # missing group labelled, not dropped
    assert out["hr"].iloc[-1] == pytest.approx(140.0)


def test_time_split_puts_the_cutoff_itself_in_test():
    out = build(small_table(), split_column=None, time_column="when", time_cutoff="2021-01-01")
    assert out["split"].tolist() == ["train"] * 6 + ["test"] * 6
    years = small_table().assign(year=[2019] * 6 + [2021] * 6)
    out = build(years, split_column=None, time_column="year", time_cutoff=2021)
    assert out["split"].tolist() == ["train"] * 6 + ["test"] * 6


def test_manifest_dict_of_the_example_declaration(tmp_path):
    P = load_params(own_table_params(tmp_path, name="example-own-cohort"), root=tmp_path)
    d = own_table.manifest_dict(P)
    m = FeatureManifest.from_dict(d)
    assert m.name == "example-own-cohort"
    assert m.names[:3] == ["age_years", "admission_type", "heart_rate_max"]
    assert m["admission_type"].categories == ("medical", "emergency surgery", "elective surgery")
    assert m["gcs_min"].plausible_range == (3.0, 15.0)
    assert m["ventilated"].source == {"method": "cohort_table", "column": "ventilated"}


def test_manifest_defaults_where_the_param_file_gives_none():
    d = own_table.manifest_from_features([{"name": "x", "kind": "numeric"}, {"name": "b", "kind": "binary"}],
                                             name="own cohort", description="d")
    m = FeatureManifest.from_dict(d)
    assert (m["x"].unit, m["x"].plausible_range, m["b"].unit) == ("as recorded", None, "1 = yes, 0 = no")
    assert m["x"].justification == "not given in the parameter file"


def test_example_table_is_the_documented_generator_output():
    # The committed fixture is exactly what `clinops table example` writes.
    frame = example_cohort(3000, seed=20260318)
    assert frame.to_csv(index=False) == EXAMPLE_CSV.read_text()
    assert EXAMPLE_CSV.stat().st_size < 500_000
    assert 0.10 < frame["died_in_hospital"].mean() < 0.16


def test_example_generator_is_seeded():
    a, b = example_cohort(50, seed=1), example_cohort(50, seed=1)
    pd.testing.assert_frame_equal(a, b)
    assert not a.equals(example_cohort(50, seed=2))


# ---------------------------------------------------------------------------------------------
# bad input: each case names the column and the rule
# ---------------------------------------------------------------------------------------------
def test_missing_columns_are_named_together():
    err = error_of(small_table().drop(columns=["hr", "gender"]))
    assert err.column == "hr, gender"
    assert "missing" in err.rule and "'hr'" in err.rule and "'gender'" in err.rule


def test_non_binary_outcome_names_the_values():
    df = small_table()
    df.loc[3, "dead"] = 2
    err = error_of(df)
    assert err.column == "dead" and "binary" in err.rule and "'2'" in err.rule


def test_missing_outcome():
    df = small_table()
    df["dead"] = df["dead"].astype(float)
    df.loc[4, "dead"] = np.nan
    err = error_of(df)
    assert err.column == "dead" and "missing in 1 row" in err.rule


@pytest.mark.parametrize("split, rows", [("test", [6, 7]), ("train", [0, 1])])
def test_split_without_positives(split, rows):
    df = small_table()
    df.loc[rows, "dead"] = 0
    err = error_of(df)
    assert err.column == "dead"
    assert f"the {split} split has 0 positive and 6 negative" in err.rule


def test_too_few_positives_for_the_cv_folds():
    err = error_of(small_table(), min_class_count=3)
    assert err.column == "dead" and "at least 3 of each class" in err.rule


def test_feature_all_missing():
    df = small_table()
    df["hr"] = np.nan
    err = error_of(df)
    assert err.column == "hr" and "every value is missing" in err.rule


def test_feature_all_missing_in_train_only():
    df = small_table()
    df.loc[:5, "hr"] = np.nan
    err = error_of(df)
    assert err.column == "hr" and "train split" in err.rule


def test_repeated_id():
    df = small_table()
    df.loc[5, "pid"] = "P000"
    err = error_of(df)
    assert err.column == "pid" and "id repeats" in err.rule and "'P000'" in err.rule and "2 rows" in err.rule


def test_value_outside_plausible_range_reports_count_and_rule():
    df = small_table()
    df.loc[[2, 9], "hr"] = [-5.0, 400.0]
    err = error_of(df)
    assert err.column == "hr"
    assert "2 value(s) outside the declared plausible range [0, 300] bpm" in err.rule


def test_unknown_split_label():
    df = small_table()
    df.loc[0, "part"] = "validation"
    err = error_of(df)
    assert err.column == "part" and "'validation'" in err.rule and "'train', 'test'" in err.rule


def test_unparseable_time_column():
    df = small_table()
    df.loc[2, "when"] = "last tuesday"
    err = error_of(df, split_column=None, time_column="when", time_cutoff="2021-01-01")
    assert err.column == "when" and "'last tuesday'" in err.rule


def test_unparseable_cutoff():
    err = error_of(small_table(), split_column=None, time_column="when", time_cutoff="soon")
    assert err.column == "data.table.time_cutoff" and "'soon'" in err.rule


def test_numeric_cutoff_for_a_date_column():
    err = error_of(small_table(), split_column=None, time_column="when", time_cutoff=2021)
    assert err.column == "data.table.time_cutoff" and "date string" in err.rule


def test_unknown_category_and_non_binary_feature_reported_together():
    df = small_table()
    df.loc[1, "adm"] = "obstetric"
    df.loc[2, "vent"] = 3
    err = error_of(df)
    assert [c for c, _ in err.problems] == ["vent", "adm"]
    assert "'obstetric' (1 rows)" in err.problems[1][1] and "0/1" in err.problems[0][1]
    assert "2 problems" in str(err)


def test_non_numeric_numeric_feature():
    df = small_table()
    df["hr"] = df["hr"].astype(object)
    df.loc[3, "hr"] = "high"
    err = error_of(df)
    assert err.column == "hr" and "'high'" in err.rule


def test_sensitive_attributes():
    df = small_table()
    df.loc[0, "gender"] = "X"      # neither M nor F: kept as 'other' (issue 18), not refused
    df.loc[1, "gender"] = None     # missing: kept as 'unknown'
    out = build(df)
    assert len(out) == len(df)
    assert out["sensitive_sex"].tolist()[:4] == ["other", "unknown", "M", "F"]
    df = small_table()
    df.loc[0, "age"] = 16
    err = error_of(df)
    assert err.column == "age" and "below the first age edge 18" in err.rule


def test_outcome_cannot_be_a_feature():
    err = error_of(small_table(), features=FEATURES + [{"name": "dead", "kind": "binary"}])
    assert err.column == "dead" and "leakage" in err.rule


@pytest.mark.parametrize("drift, key, words", [
    ({"feature": "mech_vent", "target_prevalence": 0.72}, "drift.feature", "not a declared feature"),
    ({"feature": "hr", "target_prevalence": 0.72}, "drift.shift", "numeric"),
    ({"feature": "vent", "target_prevalence": 0.72, "shift": 1.0}, "drift.shift", "binary"),
    ({"feature": "adm", "target_prevalence": 0.72}, "drift.feature", "categorical"),
])
def test_drift_settings_must_fit_the_features(drift, key, words):
    err = error_of(small_table(), drift=drift)
    assert err.column == key and words in err.rule


def test_categorical_without_categories_lists_the_values(tmp_path):
    csv = tmp_path / "t.csv"
    small_table().to_csv(csv, index=False)
    P = _params(tmp_path, {"path": str(csv), "id_column": "pid", "outcome_column": "dead", "split_column": "part",
                           "time_column": None, "features": [{"name": "adm", "kind": "categorical"}]})
    with pytest.raises(CohortTableError) as info:
        pipeline.build_task_table(P)
    assert info.value.column == "adm" and "['medical', 'surgical']" in info.value.rule


# ---------------------------------------------------------------------------------------------
# files: lineage description, atomic write
# ---------------------------------------------------------------------------------------------
def _params(tmp_path: Path, table: dict, **sections) -> Params:
    # The example declaration with ``table`` merged in (as a file that extends it would).
    return load_params(own_table_params(tmp_path, name="own-test", data={"table": table}, **sections),
                       root=tmp_path)


def _small_params(tmp_path: Path, frame: pd.DataFrame, suffix: str = ".csv"):
    path = tmp_path / f"cohort{suffix}"
    frame.to_parquet(path) if suffix == ".parquet" else frame.to_csv(path, index=False)
    return _params(tmp_path, {"path": str(path), "id_column": "pid", "outcome_column": "dead", "split_column": "part",
                              "time_column": None, "time_cutoff": None,
                              "sensitive": {"sex_column": "gender", "age_column": "age", "other_columns": ["ward"]},
                              "features": FEATURES},
                   drift={"feature": "vent"}, modeling={"cv_folds": 2}), path


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_describe_source_hashes_the_file(tmp_path, suffix):
    P, path = _small_params(tmp_path, small_table(), suffix)
    info = own_table.describe_source(P)
    assert info["sha256"] == {path.name: hashlib.sha256(path.read_bytes()).hexdigest()}
    assert info["n_rows"] == 12 and info["path"] == str(path) and "ward" in info["columns"]


def test_describe_source_missing_file(tmp_path):
    P = _params(tmp_path, {"path": str(tmp_path / "nope.csv"), "id_column": "a", "outcome_column": "b",
                           "split_column": "c", "features": [{"name": "x", "kind": "numeric"}]})
    with pytest.raises(CohortTableError, match="data.table.path: file not found"):
        own_table.describe_source(P)


def test_build_writes_only_valid_tables(tmp_path):
    P, path = _small_params(tmp_path, small_table())
    out = pipeline.build_task_table(P)
    assert out == tmp_path / "build" / "primary" / "task_table.parquet"
    table = pd.read_parquet(out)
    assert len(table) == 12 and table["label"].sum() == 4
    assert (tmp_path / "reports" / "cohort" / "sensitive_groups.md").is_file()
    before = out.read_bytes()
    bad = small_table()
    bad.loc[5, "pid"] = "P000"
    bad.to_csv(path, index=False)
    with pytest.raises(CohortTableError, match="pid: id repeats"):
        pipeline.build_task_table(P)
    assert out.read_bytes() == before                         # the old table is untouched
    # no temp file left: the table and the file naming its source hashes
    assert sorted(p.name for p in out.parent.iterdir()) == ["task_table.parquet", "task_table.sources.json"]
    assert table_main(["check", str(P.path)]) == 1


# ---------------------------------------------------------------------------------------------
# the whole chain on the example table, quick scale, no notebooks
# ---------------------------------------------------------------------------------------------
def test_whole_chain_on_the_example_table(tmp_path):
    from clinops.report import write_paper_comparison

    params_file = own_table_params(
        tmp_path, name="own-chain", policies=write_policies(tmp_path, fairness=EXAMPLE_FAIRNESS),
        data={"table": {"sensitive": {"age_edges": [18, 50, 70]}}},
        drift={"n_shifted": 200, "no_shift_days": 1, "eval_minutes": 15})
    # A temporary project root: the MLflow store goes to tmp_path/mlruns, not the project's.
    P = load_params(params_file, root=tmp_path)

    stamp = pipeline.ensure_data(P).stamp
    assert json.loads(stamp.read_text())["sha256"] == {
        EXAMPLE_CSV.name: hashlib.sha256(EXAMPLE_CSV.read_bytes()).hexdigest()}
    table = pd.read_parquet(pipeline.build_task_table(P))
    assert (len(table), int(table["split"].eq("test").sum())) == (3000, 1016)   # cut-off 2021-01-01

    model = pipeline.run_model_selection(P, "primary")
    auroc = float(model.test_metrics.set_index("metric").loc["auroc", "value"])
    assert 0.6 < auroc <= 1.0
    assert model.bundle.manifest["name"] == "own-chain"

    fair = pipeline.run_fairness(P, "primary")
    t2 = fair.table2
    assert set(t2.loc["age_group"].index) == {"18-49", "50-69", "70+"}          # the table's own edges
    burns = t2.loc[("care_unit", "burns unit")]
    assert not burns["estimable"] and np.isnan(burns["auroc"])
    assert "NOT ESTIMABLE: n=22 < min_group_size=30" in burns["note"]
    assert all("burns unit" not in (a.group_a, a.group_b) for a in fair.alerts)
    # The report names the group on its NOT ESTIMABLE row, before training and in Table 2.
    groups_md = (tmp_path / "reports" / "cohort" / "sensitive_groups.md").read_text()
    assert "| care_unit | burns unit | 22 | 2 | NOT ESTIMABLE: n=22 < min_group_size=30 |" in groups_md
    t2_md = (tmp_path / "reports" / "fairness" / "table2.md").read_text()
    assert any(line.startswith("| care_unit | burns unit | 22 |") and "NOT ESTIMABLE" in line
               for line in t2_md.splitlines())

    drift = pipeline.run_drift(P, "primary")
    scen = drift.scenario.iloc[0]
    assert scen["column"] == "ventilated" and scen["prevalence_after"] == pytest.approx(0.72, abs=0.01)
    assert {"adwin", "page_hinkley"} <= set(drift.detection["detector"])

    comparison = write_paper_comparison(P.build_dir, P.reports_dir, data_label=P.data_label, source=P.source)
    assert "Not produced" in comparison.read_text()
    for rel in ("model/test_metrics.md", "fairness/table2.md", "fairness/alerts.md", "drift/detection.md",
                "cohort/split_summary.md"):
        assert "user-provided cohort table" in (tmp_path / "reports" / rel).read_text(), rel
    # The manifest table describes the declaration, not data: it names every declared feature.
    manifest_md = (tmp_path / "reports" / "features" / "manifest.md").read_text()
    declared = [f["name"] for f in own_table.manifest_dict(P)["features"]]
    assert len(declared) == 12 and all(f"| {name} |" in manifest_md for name in declared)
    assert "as provided in the cohort table" in manifest_md
    assert (tmp_path / "mlruns" / "mlflow.db").is_file()


def test_lineage_names_the_bytes_trained_on_after_a_fix_in_place(tmp_path):
    """A broken table fails the run; fixed in place, the model's lineage (bundle and MLflow) names
    the fixed bytes, never a hash left over from the failed run."""
    from mlflow import MlflowClient

    from clinops.lineage import tracking_uri

    csv = tmp_path / "cohort.csv"
    frame = pd.read_csv(EXAMPLE_CSV)
    frame.to_csv(csv, index=False)
    params_file = own_table_params(tmp_path, name="own-lineage", data={"table": {"path": str(csv)}},
                                   modeling={"n_iter": 1, "n_boot": 10, "candidates": ["xgboost"]})
    P = load_params(params_file, root=tmp_path)
    pipeline.ensure_data(P)                                   # hashes the broken file below first
    broken = frame.copy()
    broken.loc[3, "age_years"] = 400
    broken.to_csv(csv, index=False)
    pipeline.ensure_data(P)
    with pytest.raises(CohortTableError, match="age_years"):
        pipeline.build_task_table(P)
    frame.iloc[:-1].to_csv(csv, index=False)                  # fixed in place: new bytes
    fixed = hashlib.sha256(csv.read_bytes()).hexdigest()
    pipeline.build_task_table(P)
    model = pipeline.run_model_selection(P, "primary")
    lineage = model.bundle.lineage["dataset_sha256"]
    assert lineage["cohort.csv"] == fixed
    table_bytes = (tmp_path / "build" / "primary" / "task_table.parquet").read_bytes()
    assert lineage["task_table.parquet"] == hashlib.sha256(table_bytes).hexdigest()
    uri = tracking_uri(tmp_path)
    tags = MlflowClient(tracking_uri=uri).get_run(model.run_id).data.tags
    assert tags["dataset_sha256.cohort.csv"] == fixed

"""The workflow's stages, called directly on a tiny synthetic MIMIC-IV (not only through nbval).

Every test reads a parameter file written here (tiny scale, small searches, policy files of
defaults), never the live ``params/`` files. Each stage is a module-scoped fixture depending on
the stages it reads, so the tests may run in any order and each stage runs once.
"""
from __future__ import annotations

import json

import pandas as pd
import pytest

from clinops import pipeline
from clinops.config import load_params
from clinops.pipeline import cli as pipeline_cli
from clinops.tasks import MORTALITY, REGISTRY

from tests.fixtures.params import tiny_params as write_params


def comparison(P, stage: str) -> dict:
    return json.loads((P.build_dir / "comparison" / f"{stage}.json").read_text())


@pytest.fixture(scope="module")
def P(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiny-run")
    # The project root is the temporary folder: the MLflow store goes there, not to the project's.
    return load_params(write_params(folder), root=folder)


@pytest.fixture(scope="module")
def cohort(P):
    return pipeline.run_cohort(P)


@pytest.fixture(scope="module")
def features(P, cohort):
    return pipeline.run_features(P)


@pytest.fixture(scope="module")
def model(P, features):
    return pipeline.run_model_selection(P, "primary")


@pytest.fixture(scope="module")
def fairness(P, model):
    return pipeline.run_fairness(P, "primary")


@pytest.fixture(scope="module")
def drift(P, model):
    return pipeline.run_drift(P, "primary")


@pytest.fixture(scope="module")
def readmission(P):
    data = pipeline.run_readmission_data(P)
    return data, pipeline.run_model_selection(P, "readmission")


# ---------------------------------------------------------------------------------------------
# the run context
# ---------------------------------------------------------------------------------------------
def test_readmission_settings_override_only_what_they_name(P):
    primary, readm = pipeline.task_config(P, "primary"), pipeline.task_config(P, "readmission")
    assert (primary.resolved.operating_threshold, readm.resolved.operating_threshold) == (0.4, 0.15)
    # what the readmission section does not name is inherited from the primary task ...
    assert readm.settings["modeling"]["cv_folds"] == primary.settings["modeling"]["cv_folds"] == 2
    # ... and what it names replaces the inherited value for that task only
    assert (readm.settings["modeling"]["n_iter"], primary.settings["modeling"]["n_iter"]) == (1, 2)
    assert readm.resolved.drift == primary.resolved.drift  # no task override in the drift policy
    assert readm.reports_dir == P.reports_dir / "readmission" and primary.reports_dir == P.reports_dir
    assert readm.seed != primary.seed and primary.seed == P.seed
    assert readm.extra["service"] == "MED"
    assert set(readm.manifest().names).isdisjoint({"heart_rate", "lactate"})
    assert "lactate" in primary.manifest().names


def test_the_registry_decides_which_task_fills_a_slot(P, monkeypatch):
    monkeypatch.setitem(REGISTRY, "mortality", MORTALITY.__class__(**{**MORTALITY.__dict__, "title": "renamed"}))
    assert pipeline.task_config(P, "primary").title == "renamed"
    monkeypatch.setitem(REGISTRY, "second", REGISTRY["mortality"])
    with pytest.raises(ValueError, match="2 registered tasks fill slot 'primary'"):
        pipeline.task_config(P, "primary")


def test_unknown_task_is_refused(P):
    with pytest.raises(ValueError, match="unknown task 'sepsis'"):
        pipeline.task_config(P, "sepsis")


def test_banner_says_when_data_is_synthetic(P, tmp_path):
    assert "not real patients" in pipeline.banner(P)
    real = load_params(write_params(tmp_path, name="real", data={"source": "mimic-iv", "mimic_dir": str(tmp_path)}),
                       root=tmp_path)
    assert "not real patients" not in pipeline.banner(real) and "MIMIC-IV" in pipeline.banner(real)


def test_missing_real_mimic_directory_is_named(tmp_path):
    path = write_params(tmp_path, name="real", data={"source": "mimic-iv", "mimic_dir": str(tmp_path / "nowhere")})
    P = load_params(path, root=tmp_path)
    with pytest.raises(FileNotFoundError, match=r"data\.mimic_dir: .*nowhere"):
        pipeline.ensure_data(P)
    assert not (tmp_path / "build" / "stamps").exists(), "nothing half-written"


def test_cli_names_the_registered_model_and_the_build_dir(P, capsys):
    assert pipeline_cli.main(["registered", str(P.path)]) == 0
    assert capsys.readouterr().out.strip() == "tiny-mortality"
    assert pipeline_cli.main(["build-dir", str(P.path)]) == 0
    assert capsys.readouterr().out.strip() == str(P.build_dir)
    with pytest.raises(SystemExit):
        pipeline_cli.main(["no-such-step", str(P.path)])


# ---------------------------------------------------------------------------------------------
# the stages
# ---------------------------------------------------------------------------------------------
def test_data_stage_hashes_every_source_file(P, cohort):
    stamp = json.loads((P.build_dir / "stamps" / "data.json").read_text())
    assert stamp["source"] == "synthetic" and stamp["sha256"]
    assert all(len(digest) == 64 for digest in stamp["sha256"].values())
    assert any(name.endswith("chartevents.csv.gz") for name in stamp["sha256"])


def test_cohort_stage_flow_only_shrinks_and_is_written(P, cohort):
    remaining = cohort.flow["n_remaining"].tolist()
    # the last step is the temporal split: ambiguous stays stay in the cohort, out of the analysis
    assert remaining == sorted(remaining, reverse=True) and remaining[-1] == int(cohort.cohort["in_analysis"].sum()) > 0
    assert {"train", "test"} <= set(cohort.cohort["split"]) <= {"train", "test", "ambiguous"}
    assert cohort.cohort["in_analysis"].equals(cohort.cohort["split"].isin(["train", "test"]))
    by_rule = cohort.split_by_real_year.set_index(["rule", "verdict"])
    assert by_rule.loc[("real_year", "ambiguous"), "n"] == (cohort.cohort["split"] == "ambiguous").sum()
    for stem in ("flow", "label_ambiguity", "split_by_real_year"):
        assert (P.reports_dir / "cohort" / f"{stem}.csv").is_file()
    assert "(`label.horizon_hours` = 48)" in cohort.label_note
    assert "synthetic generator is calibrated" in cohort.label_note  # said only on synthetic data


def test_features_stage_writes_the_task_table(P, cohort, features):
    table = features.table
    manifest = pipeline.task_config(P, "primary").manifest()
    assert list(table.columns[:1]) == ["id"] and table["id"].is_unique
    assert set(manifest.names) <= set(table.columns)
    assert {"label", "split", "sensitive_sex", "sensitive_age", "subject_id", "anchor_year", "real_year_min",
            "real_year_max", "split_anchor_group", "split_real_year", "in_analysis"} <= set(table.columns)
    assert set(table["label"].unique()) <= {0, 1} and set(table["sensitive_sex"].dropna()) <= {"M", "F"}
    # the missing-feature exclusion can only remove stays
    assert len(table) <= len(cohort.cohort)
    used = int(table["in_analysis"].sum())
    assert features.flow["n_remaining"].iloc[-1] == used
    values = comparison(P, "features")
    assert values["cohort_n"] == used and values["cohort_train_n"] + values["cohort_test_n"] == used
    assert 0 <= values["missing_lactate"] <= 1


def test_model_selection_stage_fits_evaluates_and_records(P, model):
    t = pipeline.task_config(P, "primary")
    assert (t.bundle_dir / "bundle.json").is_file() and t.predictions_path.is_file()
    metrics = model.test_metrics.set_index("metric")["value"]
    assert 0 <= metrics["auroc"] <= 1 and 0 <= metrics["ece (isotonic)"] <= 1
    preds = pd.read_parquet(t.predictions_path)
    assert preds["probability"].between(0, 1).all() and {"in_set_0", "in_set_1"} <= set(preds.columns)
    assert set(model.candidates["model"]) == {"logistic_regression", "xgboost"}
    lineage = model.lineage.set_index("item")["value"]
    assert len(lineage["feature hash: feature_sql"]) == 64 and "<project>" in lineage["tracking store"]
    values = comparison(P, "model_primary")  # the mortality task reproduces CV and test values
    assert values["test_auroc"] == pytest.approx(metrics["auroc"])
    assert {"cv_auroc_xgboost", "ece", "conformal_coverage"} <= set(values)


def test_fairness_stage_table2_gaps_and_governance(P, fairness):
    table = fairness.table2
    assert ("overall", "all") in table.index or "overall" in table.index.get_level_values(0)
    assert {"sex", "age_group"} <= set(table.index.get_level_values(0))
    assert (P.reports_dir / "fairness" / "alerts.md").is_file()
    events = json.loads((P.build_dir / "primary" / "governance" / "fairness.json").read_text())
    assert bool(events.get("history")) == bool(fairness.alerts)  # an alert and only an alert opens a review
    values = comparison(P, "fairness_primary")
    assert any(k.startswith("t2_auroc_") for k in values)


def test_drift_stage_shift_scenario_and_stream(P, drift):
    scenario = drift.scenario.iloc[0]
    assert scenario["column"] == "mech_vent" and scenario["prevalence_after"] == pytest.approx(0.72, abs=0.05)
    assert set(drift.detection["run"]) == {"shift at 48 h", "no shift, 1 days"}
    assert (P.reports_dir / "drift" / "evidently_psi.csv").is_file()
    values = comparison(P, "drift_primary")
    assert values["drift_auroc_before"] == pytest.approx(scenario["auroc_full"])


def test_governance_merge_joins_both_stages(P, fairness, drift):
    events = pipeline.merge_governance_events(P, "primary")
    assert set(events["stage"]) <= set(pipeline.GOVERNANCE_STAGES)
    assert (P.reports_dir / "governance" / "events.csv").is_file()


def test_readmission_task_is_the_same_stages_with_its_own_paper_ids(P, readmission):
    data, model = readmission
    assert data.table["id"].is_unique and set(data.table["split"]) <= {"train", "test", "ambiguous"}
    assert {"subject_id", "split_real_year", "split_anchor_group", "in_analysis"} <= set(data.table.columns)
    # rows the definition excludes stay in the table with their reason, outside the analysis
    assert "excluded_reason" in data.table.columns
    assert not data.table.loc[data.table["excluded_reason"].notna(), "in_analysis"].any()
    assert (P.reports_dir / "readmission" / "cohort" / "split_by_real_year.csv").is_file()
    assert comparison(P, "readmission_cohort")["readm_n_features"] == len(pipeline.task_config(P, "readmission")
                                                                        .manifest().names)
    values = comparison(P, "model_readmission")
    # declared by the readmission task: its own ids, no CV or hyperparameter values
    assert "readm_auroc" in values and not any(k.startswith(("cv_auroc", "hp_", "test_")) for k in values)
    assert model.bundle is not None
    assert (P.reports_dir / "readmission" / "model" / "test_metrics.csv").is_file()


def test_readmission_summary_lists_what_exists(P, readmission):
    text = pipeline.readmission_summary(P)
    assert "## Cohort flow" in text and "## Test metrics" in text
    assert "## Drift scenario" not in text  # the readmission drift stage has not run here
    assert (P.reports_dir / "readmission" / "summary.md").read_text() == text

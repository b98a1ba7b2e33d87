"""Stage 06, readmission data: cohort, label, the 14-feature manifest and the leakage check
(notebook 06; the later readmission stages are the shared model, fairness and drift stages)."""
from __future__ import annotations

from types import SimpleNamespace

import pandas as pd

from clinops.config import Params
from clinops.features import missingness_table
import clinops.pipeline.paper_mapping as paper_mapping
from clinops.pipeline.context import dataset_sha256, ensure_data, open_database, task_config
from clinops.pipeline.cohort import split_note
from clinops.pipeline.features import SPLIT_CONTRACT, manifest_table
from clinops.report import record_values, to_markdown, write_table
from clinops.task_table import write_task_table
from clinops.tasks.readmission.cohort import (DEFAULT_LAST_DATA_YEAR, DEFAULT_UNCOUNTED_ADMISSION_TYPES,
                                              build_readmission_cohort, outcome_summary)
from clinops.tasks.readmission.definitions import definitions_table
from clinops.tasks.readmission.extract import extract_readmission_features
from clinops.tasks.readmission.leakage import leakage_check
from clinops.tasks.temporal_split import analysis_masks, split_by_rule_table


def run_readmission_data(P: Params) -> SimpleNamespace:
    """Readmission cohort, label, 14-feature manifest and the leakage check (notebook 06)."""
    t = task_config(P, "readmission")
    ex = t.extra
    ensure_data(P)
    db = open_database(P, t.task)
    c = P["cohort"]
    cohort, flow = build_readmission_cohort(
        db.con, min_age=ex.get("min_age", 18), service=ex.get("service", "MED"),
        horizon_days=ex.get("horizon_days", 30), train_groups=c["train_groups"], test_groups=c["test_groups"],
        split_rule=c["split_rule"], ambiguous_split=c["ambiguous_split"],
        planned_rule=ex.get("planned_rule", "cms"), competing_deaths=ex.get("competing_deaths", "exclude"),
        censoring=ex.get("censoring", "report"), last_data_year=ex.get("last_data_year", DEFAULT_LAST_DATA_YEAR),
        uncounted_admission_types=ex.get("uncounted_admission_types", DEFAULT_UNCOUNTED_ADMISSION_TYPES))
    manifest = t.manifest()
    X = extract_readmission_features(db.con, cohort, manifest=manifest)
    # Fails the run (LeakageError naming the feature) if any source reads data after discharge.
    leakage_check(db.con, cohort)
    idx = cohort.set_index("hadm_id").loc[X.index]
    table = X.reset_index(drop=True)
    table.insert(0, "id", X.index.astype("int64"))
    table["label"] = idx["label"].astype(int).to_numpy()
    # every index admission stays in the table (ambiguous and excluded ones too, with the definition's
    # reason); in_analysis selects the main analysis
    for col in (*SPLIT_CONTRACT, "excluded_reason"):
        table[col] = idx[col].to_numpy()
    table["sensitive_sex"] = idx["gender"].astype("string").to_numpy()
    table["sensitive_age"] = idx["age"].astype(float).to_numpy()
    # the definition's columns (contract: a sensitivity step refits under the alternatives;
    # rows with an excluded_reason stay)
    for col in ("label_cms", "label_admission_type", "readmission_planned", "died_within_horizon",
                "died_without_readmission", "followup_censored"):
        table[col] = idx[col].astype("int64").to_numpy()
    table["excluded_reason"] = idx["excluded_reason"].astype(object).to_numpy()
    t.build_dir.mkdir(parents=True, exist_ok=True)
    write_task_table(table, t.table_path, sources=dataset_sha256(P))
    cohort.to_parquet(t.build_dir / "cohort.parquet")

    outcomes = outcome_summary(cohort)
    mt = manifest_table(manifest)
    is_train, is_test = analysis_masks(table)
    missing = missingness_table(table.set_index("id")[manifest.names], is_train)
    out = t.reports_dir / "cohort"
    write_table(flow, out / "flow", title="Readmission cohort flow", data_label=P.data_label)
    by_rule = split_by_rule_table(cohort)
    write_table(by_rule, out / "split_by_real_year", title="Temporal split of the index admissions: the paper's "
                "anchor-group rule vs the admission's real year", data_label=P.data_label, note=split_note(P, by_rule))
    write_table(outcomes, out / "outcomes", title="30-day outcomes of the index admissions", data_label=P.data_label)
    definitions = definitions_table(cohort)
    write_table(definitions, out / "definitions", title="Readmission definition: counts of each rule and option",
                data_label=P.data_label)
    write_table(mt, t.reports_dir / "features" / "manifest", title="Readmission feature manifest", data_label="manifest")
    write_table(missing, t.reports_dir / "features" / "missingness", title="Missing values (training years)",
                data_label=P.data_label)
    if t.comparison:
        record_values(P.build_dir, "readmission_cohort",
                      paper_mapping.readmission_cohort_values(table[is_train | is_test], len(manifest.names)))
    return SimpleNamespace(cohort=cohort, flow=flow, outcomes=outcomes, definitions=definitions, manifest_table=mt,
                           missingness=missing, table=table, split_by_real_year=by_rule)


def readmission_summary(P: Params) -> str:
    """The readmission task's headline numbers as Markdown, written to reports/readmission/summary.md."""
    t = task_config(P, "readmission")
    rd = t.reports_dir
    parts = [f"# 30-day readmission: summary\n\nData: **{P.data_label}**.\n"]
    for title, rel in (("Cohort flow", "cohort/flow.csv"), ("Outcomes", "cohort/outcomes.csv"),
                       ("Temporal split by real year", "cohort/split_by_real_year.csv"),
                       ("Definition counts", "cohort/definitions.csv"),
                       ("Test metrics", "model/test_metrics.csv"), ("Chosen configuration", "model/chosen_configuration.csv"),
                       ("Fairness gaps", "fairness/fairness_gaps.csv"), ("Drift scenario", "drift/scenario.csv")):
        path = rd / rel
        if path.is_file():
            parts.append(f"## {title}\n\n{to_markdown(pd.read_csv(path))}\n")
    alerts = rd / "fairness" / "alerts.md"
    if alerts.is_file():
        parts.append("## Fairness alerts\n\n" + alerts.read_text().split("\n", 3)[-1])
    text = "\n".join(parts)
    rd.mkdir(parents=True, exist_ok=True)
    (rd / "summary.md").write_text(text)
    return text

"""Stage 02, features: the window features, the >50 % missing exclusion, the task table (notebook 02)."""
from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pandas as pd

from clinops import features as feat
from clinops.config import Params
import clinops.pipeline.paper_mapping as paper_mapping
from clinops.pipeline.context import dataset_sha256, open_database, progress, task_config
from clinops.report import record_values, write_table
from clinops.task_table import write_task_table
from clinops.tasks.flow import append_flow_step
from clinops.tasks.mortality.proxies import admission_proxies
from clinops.tasks.temporal_split import SPLIT_COLUMNS, analysis_masks

#: Columns of the cohort every task table carries (the temporal split's contract).
SPLIT_CONTRACT = ("subject_id", *SPLIT_COLUMNS)


def manifest_table(manifest: feat.FeatureManifest) -> pd.DataFrame:
    """The manifest as a report table: one row per feature (kind, unit, aggregate, source, range, why)."""
    rows = []
    for s in manifest.specs:
        d = s.to_dict()
        rows.append({"feature": d.get("name"), "kind": d.get("kind"), "unit": d.get("unit"),
                     "aggregate": d.get("aggregate"), "source": json.dumps(d.get("source"), default=str)
                     if not isinstance(d.get("source"), str) else d.get("source"),
                     "plausible range": s.range_text() if hasattr(s, "range_text") else d.get("plausible_range"),
                     "justification": d.get("justification")})
    return pd.DataFrame(rows)


def _age_sex_frame(df: pd.DataFrame) -> pd.DataFrame:
    # The cohort's sensitive attributes as the task table stores them (sex text, age in years).
    out = pd.DataFrame(index=df.index)
    out["sex"] = df["gender"].astype("string") if "gender" in df else pd.Series(pd.NA, index=df.index, dtype="string")
    out["age"] = df["age"].astype(float) if "age" in df else np.nan
    return out


def run_features(P: Params) -> SimpleNamespace:
    """The 17 window features, the >50 % missing exclusion and the missingness table (notebook 02)."""
    task = task_config(P, "primary")
    cohort = pd.read_parquet(task.build_dir / "cohort.parquet")
    flow = pd.read_parquet(task.build_dir / "cohort_flow.parquet")
    manifest = task.manifest()
    db = open_database(P, task.task)
    fx = P.get("features") or {}
    lab_options = {"lab_prewindow_hours": float(fx.get("lab_prewindow_hours", 6)),
                   "lab_time": fx.get("lab_time", "charttime")}
    X, step = feat.extract_features(db, cohort, manifest=manifest, window_hours=P["cohort"]["window_hours"],
                                    max_missing_fraction=P["cohort"]["max_missing_fraction"],
                                    progress=progress("features"), **lab_options)
    # Features of every stay (a sensitivity step refits under the other split rules); the flow
    # counts the exclusion among the stays the temporal split kept in the analysis.
    analysis = set(cohort.loc[cohort["in_analysis"], "stay_id"])
    kept_in_analysis = int(X.index.isin(list(analysis)).sum())
    flow = append_flow_step(flow, {**step, "n_remaining": kept_in_analysis,
                                              "n_excluded": len(analysis) - kept_in_analysis})
    kept = cohort.set_index("stay_id").loc[X.index]
    table = X.copy()
    table.insert(0, "id", X.index.astype("int64"))
    table["label"] = kept["label"].astype(int).to_numpy()
    for col in SPLIT_CONTRACT:
        table[col] = kept[col].to_numpy()
    groups = _age_sex_frame(kept)
    table["sensitive_sex"] = groups["sex"].to_numpy()
    table["sensitive_age"] = groups["age"].to_numpy()
    # at-admission proxies of dx_chapter for the sensitivity model (not manifest features)
    proxies = admission_proxies(db, kept.reset_index()[["stay_id", "hadm_id"]])
    for column in proxies.columns:
        table[column] = proxies[column].to_numpy()
    table = table.reset_index(drop=True)
    write_task_table(table, task.table_path, sources=dataset_sha256(P))
    flow.to_parquet(task.build_dir / "cohort_flow_final.parquet")

    out = P.reports_dir / "features"
    is_train, is_test = analysis_masks(table)
    missing = feat.missingness_table(table.set_index("id")[manifest.names], is_train)
    write_table(missing, out / "missingness", title="Missing in the first 24 h (training years)",
                data_label=P.data_label)
    train_stays = kept.reset_index().loc[is_train, ["stay_id", "subject_id", "hadm_id", "intime"]]
    prewindow = feat.lab_missingness_by_prewindow(
        db, train_stays, manifest=manifest, window_hours=P["cohort"]["window_hours"],
        prewindow_hours=lab_options["lab_prewindow_hours"], lab_time=lab_options["lab_time"])
    write_table(prewindow, out / "missingness_prewindow",
                title=(f"Lab values missing without and with the {lab_options['lab_prewindow_hours']:g} h "
                       "pre-window before ICU intime (training years, kept stays)"),
                data_label=P.data_label)
    write_table(flow, P.reports_dir / "cohort" / "flow_final", title="ICU cohort flow (all criteria)",
                data_label=P.data_label)
    mt = manifest_table(manifest)
    write_table(mt, out / "manifest", title="Feature manifest (Layer 1: data minimisation)", data_label="manifest")
    used = table[is_train | is_test]
    summary = (used.groupby("split")
               .agg(n=("id", "size"), deaths=("label", "sum"), prevalence=("label", "mean"),
                    age_median=("sensitive_age", "median"),
                    male_share=("sensitive_sex", lambda s: float((s == "M").mean())))
               .reset_index())
    write_table(summary, out / "split_summary", title="Temporal split (stays in the analysis)", data_label=P.data_label)

    if task.comparison:
        record_values(P.build_dir, "features",
                      paper_mapping.features_values(used.reset_index(drop=True), missing, is_train[is_train | is_test]))
    return SimpleNamespace(table=table, flow=flow, missingness=missing, manifest_table=mt, summary=summary,
                           missingness_prewindow=prewindow)

"""Stage ``sensitivity``: the main model's recipe refitted under other design choices (issue 15).

``clinops pipeline sensitivity PARAMS --task primary|readmission`` reads the task table, the main
model's bundle (its chosen XGBoost configuration: no new search) and, for mortality, the cohort
parquet (``intime``, ``death_time``, ``hospital_expire_flag`` recompute the label per horizon with
the cohort's own label rule), refits every registered variant
(:mod:`clinops.modeling.sensitivity`) and writes ``<reports>/[<task>/]sensitivity/<task>.{csv,md}``.
"""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from clinops.config import Params
from clinops.modeling.sensitivity import (VariantContext, sensitivity_settings, sensitivity_table, variants_for,
                                          xgb_config_from_bundle)
from clinops.pipeline.context import TaskConfig, load_task_table, progress, task_config
from clinops.report import write_table

__all__ = ["COHORT_LABEL_COLUMNS", "sensitivity_path", "sensitivity_frame", "run_sensitivity"]

#: What the mortality label needs from the cohort parquet, joined on ``stay_id`` = the table's ``id``.
COHORT_LABEL_COLUMNS = ("intime", "death_time", "hospital_expire_flag")


def sensitivity_path(t: TaskConfig) -> Path:
    """Where a task's sensitivity table goes (stem: ``.csv`` and ``.md`` beside each other)."""
    return t.reports_dir / "sensitivity" / t.task.name


def sensitivity_frame(table: pd.DataFrame, cohort: pd.DataFrame | None) -> pd.DataFrame:
    """The task table, with the cohort's death columns joined on ``id`` = ``stay_id`` when given.

    Examples
    --------
    >>> table = pd.DataFrame({"id": [2, 1], "label": [1, 0]})
    >>> cohort = pd.DataFrame({"stay_id": [1, 2], "intime": ["a", "b"], "death_time": [None, "c"],
    ...                        "hospital_expire_flag": [0, 1], "label": [0, 1]})
    >>> sensitivity_frame(table, cohort)[["id", "intime", "hospital_expire_flag"]].values.tolist()
    [[2, 'b', 1], [1, 'a', 0]]
    """
    if cohort is None:
        return table
    missing = [c for c in ("stay_id", *COHORT_LABEL_COLUMNS) if c not in cohort.columns]
    if missing:
        raise ValueError(f"cohort: missing column(s) {missing} (the label horizon needs them)")
    deaths = cohort[["stay_id", *COHORT_LABEL_COLUMNS]].rename(columns={"stay_id": "id"})
    out = table.drop(columns=[c for c in COHORT_LABEL_COLUMNS if c in table.columns]).merge(
        deaths, on="id", how="left", validate="one_to_one")
    if out[list(COHORT_LABEL_COLUMNS[:1])].isna().any().any():
        raise ValueError("cohort: a task-table stay has no cohort row (intime missing)")
    return out


def run_sensitivity(P: Params, task: str = "primary") -> pd.DataFrame:
    """Refit every sensitivity variant of a task and write its table."""
    t = task_config(P, task)
    settings = sensitivity_settings(P)
    report = progress(f"sensitivity:{t.key}")
    bundle_json = t.bundle_dir / "bundle.json"
    if not bundle_json.is_file():
        raise FileNotFoundError(f"{bundle_json} is missing: run the model step of task {t.key} first")
    bundle_doc = json.loads(bundle_json.read_text())
    xgb_params, max_bin = xgb_config_from_bundle(bundle_doc)
    served = bundle_doc.get("lineage", {})
    cohort_path = t.build_dir / "cohort.parquet"
    cohort = pd.read_parquet(cohort_path) if t.task.name == "mortality" else None
    frame = sensitivity_frame(load_task_table(t), cohort)
    manifest = t.manifest()
    window = float((P.get("cohort") or {}).get("window_hours", 24))
    specs = variants_for(t.task.name, horizons=settings["horizons"], window_hours=window)
    table = sensitivity_table(frame, specs, VariantContext(features=tuple(manifest.names), window_hours=window),
                              manifest, xgb_params, seed=t.seed, n_boot=settings["n_boot"], max_bin=max_bin,
                              progress=lambda name: report(f"variant {name}"))
    config = ", ".join(f"{k} {v:g}" if isinstance(v, float) else f"{k} {v}" for k, v in xgb_params.items())
    note = ("Each row refits the final model's recipe (training-row imputation values, XGBoost with the main "
            f"model's chosen configuration: {config}; no new search, no calibration) on the variant's rows and "
            "scores the raw score once on its test rows; the `main` row is the main design refitted the same way, "
            "so `delta_auroc` compares like with like. The served model is calibrated "
            f"({served.get('calibration_scheme', 'split')} / {served.get('calibrator', 'isotonic')}; booster fitted on "
            f"{served.get('n_fit', 'part of the')} training rows), so its test AUROC (model/test_metrics) differs from "
            f"the `main` row's. AUROC CI: the one bootstrap ({settings['n_boot']} resamples). "
            "A variant whose columns this run's table lacks says so in `status`.")
    if t.task.name == "mortality":
        note += (" `dx_chapter` is the billing principal diagnosis, coded after discharge: the paper uses it, so the "
                 "main row keeps it; the next rows show the model without it and with what is known at admission.")
    write_table(table, sensitivity_path(t), title=f"Sensitivity models, {t.title}", data_label=P.data_label,
                note=note)
    return table

"""The workflow's stages: parameter file in, artifacts in build/ and tables in reports/ out.

Each notebook calls one or two of these functions and displays what they return, so the
notebooks stay thin and the logic stays testable. One module per stage; the run context
(parameters, data, the task in this run) is :mod:`.context`, the mapping of results to the
paper's values :mod:`.paper_mapping`. A *task* comes from the registry :mod:`clinops.tasks`;
nothing here branches on a task's name.

======================  ============================================================
module                  stage
======================  ============================================================
``calibration``         the synthetic generator's calibration targets (synthetic only)
``cohort``              01 ICU cohort, flow, label horizons
``features``            02 window features, task table, missingness
``own_table``           02 a hospital's own cohort table as the task table
``model_selection``     03 model selection, final fit, calibration, conformal, lineage
``fairness``            04 Table 2, gaps, alerts
``drift``               05 shift scenario, stream monitor, Evidently
``readmission``         06 readmission cohort, features, leakage check, summary
``governance``          the stages' governance events and their merge
``sensitivity``         the sensitivity models (issue 15: dx_chapter, label horizon, split, definitions)
``cli``                 ``clinops pipeline STEP PARAMS`` (the Snakefile's steps)
======================  ============================================================
"""
from __future__ import annotations

from clinops.pipeline.calibration import run_synthetic_calibration
from clinops.pipeline.cohort import label_note, run_cohort
from clinops.pipeline.context import (TaskConfig, banner, dataset_sha256, ensure_data, load, load_task_table,
                                      open_database, task_config)
from clinops.pipeline.drift import run_drift
from clinops.pipeline.fairness import run_fairness
from clinops.pipeline.features import manifest_table, run_features
from clinops.pipeline.governance import GOVERNANCE_STAGES, governance_events_path, merge_governance_events
from clinops.pipeline.model_selection import run_model_selection
from clinops.pipeline.own_table import build_task_table, sensitive_group_sizes
from clinops.pipeline.readmission import readmission_summary, run_readmission_data
from clinops.pipeline.sensitivity import run_sensitivity

__all__ = ["GOVERNANCE_STAGES", "TaskConfig", "banner", "build_task_table", "dataset_sha256", "ensure_data",
           "governance_events_path", "label_note", "load", "load_task_table", "manifest_table",
           "merge_governance_events", "open_database", "readmission_summary", "run_cohort", "run_drift",
           "run_fairness", "run_features", "run_model_selection", "run_readmission_data", "run_sensitivity",
           "run_synthetic_calibration", "sensitive_group_sizes", "task_config"]

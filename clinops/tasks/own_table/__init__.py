"""Bring your own cohort: a hospital's one-row-per-stay table as the primary task (issue #8).

The paper's first limitation is that everything was shown on one dataset from one institution.
This task makes the portability claim testable: any table with one row per stay, an id, a
binary outcome, feature columns and a split (or a time column with a cut-off) becomes the task
table the later stages read, so model selection, calibration, conformal sets, the fairness
tables and alerts, the drift scenario and monitor, lineage and the report run unchanged.

What a user declares lives in the parameter file under ``data.table`` (see
``params/example-own-cohort.yaml``): the column names, each feature's kind (numeric, binary,
categorical), optional unit, plausible range, categories and justification (the cohort's
feature manifest, :mod:`.declaration`), and the sensitive attributes (sex, age binned by given
edges, other group columns). Only the declared columns are ever read from the file
(:mod:`.source`). The rules, column by column, are in :mod:`.validation`; :mod:`.table` joins
declaration and file. Sensitive groups smaller than ``fairness.min_group_size`` in the test
split are not an error: the fairness stage reports them as NOT ESTIMABLE.

Command line::

    clinops table example OUT.csv [--n-stays 3000] [--seed 20260318]
    clinops table check PARAMS      # validate only, write nothing
    clinops table build PARAMS      # = clinops pipeline task-table PARAMS
"""
from __future__ import annotations

from clinops.tasks.own_table.declaration import manifest_dict, manifest_from_features
from clinops.tasks.own_table.rules import RESERVED, SPLITS, CohortTableError
from clinops.tasks.own_table.source import describe_source, read_cohort_table
from clinops.tasks.own_table.table import check_table, task_table_from_params
from clinops.tasks.own_table.validation import make_task_table
from clinops.tasks.task import Task

OWN_TABLE = Task(
    name="table", slot="primary", sources=("table",),
    title=lambda P: f"user cohort ({P['data']['table']['outcome_column']})",
    manifest=manifest_dict, policy_task=None, paper=None)

__all__ = ["OWN_TABLE", "CohortTableError", "RESERVED", "SPLITS", "check_table", "describe_source",
           "make_task_table", "manifest_dict", "manifest_from_features", "read_cohort_table",
           "task_table_from_params"]

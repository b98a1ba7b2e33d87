"""Stage 02 of a cohort-table run: a hospital's own table validated and written as the task table,
with its split summary, sensitive-group sizes, manifest and missingness tables."""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Sequence

import pandas as pd

from clinops.config import Params
from clinops.fairness import age_groups, sex_groups
from clinops.features import FeatureManifest, missingness_table
from clinops.pipeline.context import task_config
from clinops.pipeline.features import manifest_table
from clinops.report import write_table
from clinops.task_table import file_sha256, write_task_table
from clinops.tasks.own_table import SPLITS, CohortTableError, task_table_from_params
from clinops.tasks.own_table.rules import table_section
from clinops.tasks.own_table.source import source_key
from clinops.tasks.temporal_split import analysis_masks

log = logging.getLogger(__name__)

def build_task_table(P: Params) -> Path:
    """Validate the cohort table of a ``data.source: table`` run and write its task table.

    Everything is checked before anything is written; the parquet is written atomically to
    ``build/<run>/primary/task_table.parquet``. Also writes, under ``reports/<run>/``:
    ``cohort/split_summary`` (stays, outcomes, prevalence per split), ``cohort/sensitive_groups``
    (test-split group sizes, NOT ESTIMABLE below the fairness policy's ``min_group_size``),
    ``features/manifest`` and ``features/missingness`` (training split).

    Returns
    -------
    Path of the task table.

    Raises
    ------
    CohortTableError : naming the column and the rule (see
    :func:`clinops.tasks.own_table.make_task_table`).
    """
    source = P.resolve(table_section(P)["path"])
    before = file_sha256(source) if source.is_file() else None
    table, info = task_table_from_params(P)
    # The hash must name the bytes that were read: a file replaced while it was read is refused.
    if file_sha256(source) != before:
        raise CohortTableError("data.table.path", f"{source} changed while it was read; run again")
    manifest = FeatureManifest.from_dict(info["manifest"])
    # The encoder the model uses must accept every row (same rules, second line of defence).
    manifest.encode(table[manifest.names])
    task = task_config(P, "primary")
    path = task.table_path
    write_task_table(table, path, sources={source_key(P, source): before})

    dl, out = P.data_label, P.reports_dir
    min_group = task.resolved.fairness.min_group_size
    is_train = analysis_masks(table)[0]
    summary = (table.groupby("split", sort=False)
               .agg(n=("id", "size"), positives=("label", "sum"), prevalence=("label", "mean"))
               .reindex(list(SPLITS)).reset_index())
    t = P["data"]["table"]
    how = (f"split column `{t['split_column']}`" if t.get("split_column")
           else f"time column `{t['time_column']}`: test = at or after {t['time_cutoff']}")
    write_table(summary, out / "cohort" / "split_summary", title="Cohort table: stays per split", data_label=dl,
                note=f"Source `{Path(t['path']).name}`, outcome `{t['outcome_column']}`, {how}.")
    groups = sensitive_group_sizes(table, age_edges=info["age_edges"], min_group_size=min_group)
    small = groups[groups["status"].ne("estimable")]
    for _, row in small.iterrows():
        log.warning("fairness group %s=%s: %s (test split)", row["attribute"], row["group"], row["status"])
    write_table(groups, out / "cohort" / "sensitive_groups", title="Sensitive groups in the test split", data_label=dl,
                note=(f"Groups with fewer than {min_group} test stays (the fairness policy's `min_group_size`) or one outcome "
                      "class are reported as NOT ESTIMABLE in the fairness tables: no metric, no alert. "
                      + (f"{len(small)} group(s) are not estimable here." if len(small) else
                         "Every group is estimable.")))
    write_table(manifest_table(manifest), out / "features" / "manifest",
                title="Feature manifest of the cohort table (Layer 1: data minimisation)", data_label="manifest")
    write_table(missingness_table(table[manifest.names], is_train), out / "features" / "missingness",
                title="Missing values (train split)", data_label=dl)
    log.info("task table %s: %d stays, %d features", path, len(table), len(manifest))
    return path

def sensitive_group_sizes(task_table: pd.DataFrame, *, age_edges: Sequence[float], min_group_size: int) -> pd.DataFrame:
    """Stays per sensitive group in the test split, with whether fairness metrics are estimable.

    Parameters
    ----------
    task_table : the output of :func:`clinops.tasks.own_table.make_task_table`.
    age_edges : fairness age-group lower bounds (years).
    min_group_size : groups with fewer test stays are reported as not estimable.

    Returns
    -------
    DataFrame with columns ``attribute, group, n_test, events_test, status``.
    """

    test = task_table[analysis_masks(task_table)[1]]
    attrs: dict[str, pd.Series] = {}
    if test["sensitive_sex"].notna().any():
        attrs["sex"] = sex_groups(test["sensitive_sex"])
    if test["sensitive_age"].notna().any():
        attrs["age_group"] = age_groups(test["sensitive_age"], edges=age_edges).astype(str)
    for col in [c for c in test.columns if c.startswith("group_")]:
        attrs[col[len("group_"):]] = test[col].astype(str)
    rows = []
    for attr, labels in attrs.items():
        for group, idx in labels.groupby(labels).groups.items():
            n, ev = len(idx), int(test.loc[idx, "label"].sum())
            status = ("estimable" if n >= min_group_size and 0 < ev < n else
                      f"NOT ESTIMABLE: n={n} < min_group_size={min_group_size}" if n < min_group_size else
                      f"NOT ESTIMABLE: one outcome class only ({ev} events in {n})")
            rows.append({"attribute": attr, "group": group, "n_test": n, "events_test": ev, "status": status})
    return pd.DataFrame(rows, columns=["attribute", "group", "n_test", "events_test", "status"])


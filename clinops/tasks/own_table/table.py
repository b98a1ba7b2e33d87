"""The task table of a cohort-table run: the declaration and the file, validated together.

Everything is checked before anything is written; :func:`check_table` writes nothing.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import pandas as pd

from clinops.tasks.own_table.declaration import manifest_dict
from clinops.tasks.own_table.rules import category_text, raise_all, table_section
from clinops.tasks.own_table.source import read_cohort_table
from clinops.tasks.own_table.validation import make_task_table

if TYPE_CHECKING:  # pragma: no cover
    from clinops.config import Params


def check_table(P: "Params") -> pd.DataFrame:
    """Validate the whole cohort table a parameter file names and return its task table; write nothing.

    Raises
    ------
    CohortTableError : naming the column and the rule (see :func:`make_task_table`).
    """
    return task_table_from_params(P)[0]


def task_table_from_params(P: "Params") -> tuple[pd.DataFrame, dict]:
    """The validated task table of a run, with the manifest dict and the fairness age edges used.

    Returns
    -------
    (DataFrame, dict)
        The task table (:func:`~clinops.tasks.own_table.validation.make_task_table`) and
        ``{'manifest': dict, 'age_edges': list}``.
    """
    t = table_section(P)
    undeclared = [f["name"] for f in t["features"] if f.get("kind") == "categorical" and not f.get("categories")]
    if undeclared:
        # Say which values the table holds, so the user can declare them (in the order they choose).
        found = read_cohort_table(P.resolve(t["path"]), columns=undeclared)
        raise_all([(c, "a categorical feature needs 'categories' (the list of allowed values, which also fixes "
                        f"their codes); the table holds {sorted({category_text(v) for v in found[c].dropna()})}")
                    for c in undeclared])
    manifest = manifest_dict(P)
    sens = t.get("sensitive") or {}
    edges = sens.get("age_edges") or (P.get("fairness") or {}).get("age_edges") or [18, 45, 65, 80]
    others = list(sens.get("other_columns") or [])
    columns = [t["id_column"], t["outcome_column"], t.get("split_column") or t.get("time_column"),
               *[f["name"] for f in manifest["features"]], sens.get("sex_column"), sens.get("age_column"), *others,
               t.get("subject_column")]
    raw = read_cohort_table(P.resolve(t["path"]), columns=list(dict.fromkeys(c for c in columns if c)),
                            string_columns=[c for c in (t["id_column"], t.get("subject_column")) if c])
    cv_folds = int((P.get("modeling") or {}).get("cv_folds", 5))
    table = make_task_table(raw, id_column=t["id_column"], outcome_column=t["outcome_column"],
                            features=manifest["features"], split_column=t.get("split_column"),
                            time_column=t.get("time_column"), time_cutoff=t.get("time_cutoff"),
                            sex_column=sens.get("sex_column"), age_column=sens.get("age_column"), age_edges=edges,
                            other_columns=others, min_class_count=cv_folds, drift=P.get("drift"),
                            subject_column=t.get("subject_column"))
    return table, {"manifest": manifest, "age_edges": edges}

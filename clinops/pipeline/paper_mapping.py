"""The stages' results as values of the paper (ids of ``clinops/paper_values.yaml``).

Each function turns one stage's tables into ``{paper id: value}``; the stage records them with
:func:`clinops.report.record_values` and ``clinops pipeline compare`` sets them beside the
paper. Which ids a task reports is declared by the task (:class:`clinops.tasks.PaperIds`), so
nothing here branches on a task's name.

Examples
--------
>>> from clinops.tasks import PaperIds
>>> ids = PaperIds(model={"auroc": "test_auroc", "ece": "ece"})
>>> model_values(ids, candidates=None, best={}, metrics={"auroc": 0.8, "ppv": 0.3}, ece=0.02, coverage=None)
{'test_auroc': 0.8, 'ece': 0.02}
"""
from __future__ import annotations

from typing import Any, Mapping

import numpy as np
import pandas as pd

from clinops.fairness import GAP_DEFINITIONS, SUBGROUP_METRICS
from clinops.report import paper_values
from clinops.tasks import PaperIds

#: Features whose missing share the paper reports (``missing_<feature>``).
MISSING_SHARE_FEATURES = ("lactate", "albumin", "bilirubin", "gcs", "heart_rate", "resp_rate", "map", "spo2",
                          "mech_vent", "vasopressor")
#: Stage-1 candidates whose mean CV AUROC the paper reports (``cv_auroc_<name>``).
CV_CANDIDATES = ("logistic_regression", "random_forest", "xgboost")
#: Fairness gap metric -> the short name in paper ids (the fairness registry's); attribute -> its short name.
GAP_METRICS = {metric: gap.paper_key for metric, gap in GAP_DEFINITIONS.items()}
GAP_ATTRIBUTES = {"sex": "sex", "age_group": "age"}
#: Table 2 rows and columns the paper reports (``t2_<metric>_<group>``).
TABLE2_GROUPS = {("sex", "male"): "male", ("sex", "female"): "female", ("age_group", "18-44"): "18_44",
                 ("age_group", "45-64"): "45_64", ("age_group", "65-79"): "65_79", ("age_group", "80+"): "80plus"}
TABLE2_METRICS = tuple((metric, spec.paper_key) for metric, spec in SUBGROUP_METRICS.items())


def features_values(table: pd.DataFrame, missing: pd.DataFrame, is_train: np.ndarray) -> dict[str, Any]:
    """Cohort size, prevalence and missing shares of the ICU mortality task table."""
    values: dict[str, Any] = {"cohort_n": int(len(table)), "cohort_train_n": int(is_train.sum()),
                              "cohort_test_n": int((~is_train).sum()), "prevalence": float(table["label"].mean()),
                              "positives_n": int(table["label"].sum())}
    miss = missing.set_index("feature")
    for f in MISSING_SHARE_FEATURES:
        if f in miss.index:
            values[f"missing_{f}"] = float(miss.loc[f, "n_missing"] / miss.loc[f, "n"])
    test = table[~is_train]
    if "mech_vent" in test:
        values["vent_prevalence_test"] = float(test["mech_vent"].mean())
    return values


def readmission_cohort_values(table: pd.DataFrame, n_features: int) -> dict[str, Any]:
    """Size, positives and prevalence of the readmission task table, and its number of features."""
    return {"readm_cohort_n": int(len(table)), "readm_positives_n": int(table["label"].sum()),
            "readm_prevalence": float(table["label"].mean()), "readm_n_features": n_features}


def model_values(ids: PaperIds, *, candidates: pd.DataFrame | None, best: Mapping[str, Any],
                 metrics: Mapping[str, Any], ece: float, coverage: pd.DataFrame | None) -> dict[str, Any]:
    """Stage-1 CV AUROCs and chosen hyperparameters (if the task reports them), then test metrics."""
    values: dict[str, Any] = {}
    if ids.cv_and_hyperparameters:
        cv = candidates.set_index(candidates.columns[0])
        for name in CV_CANDIDATES:
            if name in cv.index:
                values[f"cv_auroc_{name}"] = float(cv.loc[name, "mean_auroc"])
        if "xgboost" in cv.index:
            values["cv_auroc_xgboost_ci_low"] = float(cv.loc["xgboost", "ci_low"])
            values["cv_auroc_xgboost_ci_high"] = float(cv.loc["xgboost", "ci_high"])
        for k, v in best.items():
            values[f"hp_{k}"] = v
    for metric, paper_id in ids.model.items():
        if metric == "ece":
            values[paper_id] = ece
        elif metric == "conformal_coverage":
            values[paper_id] = float(coverage.iloc[0]["coverage"])
        else:
            values[paper_id] = metrics[metric]
    return values


def fairness_values(ids: PaperIds, table2: pd.DataFrame, gaps: pd.DataFrame) -> dict[str, Any]:
    """Fairness gaps the paper reports for the task (with their 95% CIs where the paper gives
    them), and (if it reports them) Table 2 cells.

    Examples
    --------
    >>> from clinops.tasks import PaperIds
    >>> gaps = pd.DataFrame({"attribute": ["sex"], "metric": ["equalized_odds_difference"],
    ...                      "value": [0.05], "ci_lo": [0.01], "ci_hi": [0.09]})
    >>> fairness_values(PaperIds(), pd.DataFrame(), gaps)
    {'eod_sex': 0.05, 'eod_sex_ci_low': 0.01, 'eod_sex_ci_high': 0.09}
    """
    values: dict[str, Any] = {}
    known_ids = {r["id"] for r in paper_values()}
    if {"attribute", "metric"} <= set(gaps.columns):
        for (attr, metric), row in gaps.set_index(["attribute", "metric"]).iterrows():
            short, a = GAP_METRICS.get(metric), GAP_ATTRIBUTES.get(attr)
            if short and a:
                key = f"{ids.gap_prefix}{short}_{a}"
                if key in known_ids:  # the paper reports only some gaps for some tasks
                    values[key] = float(row["value"])
                for bound, column in (("ci_low", "ci_lo"), ("ci_high", "ci_hi")):
                    if f"{key}_{bound}" in known_ids and column in row:  # the paper's bootstrap CIs
                        values[f"{key}_{bound}"] = float(row[column])
    if ids.table2:
        tb = table2.reset_index() if "attribute" not in table2.columns else table2
        for _, row in tb.iterrows():
            suffix = TABLE2_GROUPS.get((row["attribute"], row["group"]))
            if suffix:
                for metric, short in TABLE2_METRICS:
                    key = f"t2_{short}_{suffix}"
                    if key in known_ids:  # a metric added to the registry has no paper value
                        values[key] = float(row[metric])
        au = tb[(tb["attribute"] != "overall") & tb["auroc"].notna()]
        if len(au):
            values["max_auroc_gap"] = float(au["auroc"].max() - au["auroc"].min())
    return values


def drift_values(scenario: Any, summary: pd.DataFrame) -> dict[str, Any]:
    """AUROC before and after the shift, its relative drop, and the first alarm's delay."""
    values = {"drift_auroc_before": scenario.auroc_full, "drift_auroc_after": scenario.auroc_after,
              "drift_relative_drop": scenario.relative_drop_vs_full}
    first = summary.loc["any", "delay_hours"] if "any" in summary.index else float("nan")
    if pd.notna(first):
        values["drift_detection_hours"] = float(first)  # first alarm of any detector after the change
    return values

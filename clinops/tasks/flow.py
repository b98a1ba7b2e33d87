"""A cohort's flow table: one row per exclusion step, numbered in one place.

Both tasks' cohorts (:mod:`clinops.tasks.mortality.cohort`, :mod:`clinops.tasks.readmission.cohort`)
start their flow from their own SQL criteria; the steps after those (the real-year split, the
missing-feature exclusion) come from producers that do not know where they land in a task's flow,
and :func:`append_flow_step` numbers them.
"""
from __future__ import annotations

import pandas as pd

__all__ = ["FLOW_COLUMNS", "append_flow_step"]

#: The columns of every flow table.
FLOW_COLUMNS = ["step", "criterion", "n_remaining", "n_excluded"]


def append_flow_step(flow: pd.DataFrame, flow_step: dict) -> pd.DataFrame:
    """Append a later exclusion step, numbered after the flow's last step.

    The one place flow steps after a cohort's own criteria get their number: the producers of a
    step (:func:`clinops.tasks.temporal_split.split_flow_step`,
    :func:`clinops.features.extract_features`) do not know where it lands in a task's flow.

    Parameters
    ----------
    flow : pandas.DataFrame
        Flow table, e.g. from :func:`clinops.tasks.mortality.cohort.build_icu_cohort` or the
        readmission cohort (columns :data:`FLOW_COLUMNS`).
    flow_step : dict
        ``{'criterion', 'n_remaining', 'n_excluded'}``; ``n_remaining + n_excluded`` must
        equal the last step's ``n_remaining``. No ``'step'``: the row is numbered here.

    Returns
    -------
    pandas.DataFrame
        A new flow table with one more row.

    Examples
    --------
    >>> flow = pd.DataFrame({"step": [1], "criterion": ["all"], "n_remaining": [5], "n_excluded": [0]})
    >>> append_flow_step(flow, {"criterion": "split", "n_remaining": 4, "n_excluded": 1})["step"].tolist()
    [1, 2]
    """
    missing = [c for c in FLOW_COLUMNS if c != "step" and c not in flow_step]
    if missing:
        raise ValueError(f"flow_step: missing key(s) {missing}")
    if "step" in flow_step:
        raise ValueError("flow_step.step: not given by the producer of a step (rule: the flow numbers its steps)")
    last = int(flow["n_remaining"].iloc[-1])
    last_step = int(flow["step"].iloc[-1])
    if flow_step["n_remaining"] + flow_step["n_excluded"] != last:
        raise ValueError(
            f"flow_step: n_remaining + n_excluded = "
            f"{flow_step['n_remaining'] + flow_step['n_excluded']} must equal the "
            f"{last} remaining after step {last_step}")
    row = pd.DataFrame([{**flow_step, "step": last_step + 1}], columns=FLOW_COLUMNS)
    return pd.concat([flow, row], ignore_index=True)

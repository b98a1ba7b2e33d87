"""ICU cohort, mortality label and temporal split (clinops/docs/architecture.md "ICU cohort").

The inclusion/exclusion logic is SQL (``clinops/sql/icu_cohort.sql``) over the MIMIC-IV views
of :mod:`clinops.data.mimic`; the same file runs on the synthetic data and on real MIMIC-IV.
Python only binds parameters and turns the per-stay result into the cohort and the
CONSORT-style flow table.
"""
from __future__ import annotations

import math
import numbers
import textwrap
from typing import Sequence

import pandas as pd

from clinops.data.mimic import MimicDatabase, install_macros, sql_text
from clinops.tasks.flow import FLOW_COLUMNS, append_flow_step
from clinops.tasks.temporal_split import assign_split, split_flow_step

__all__ = [
    "REQUIRED_COLUMNS",
    "TRAIN_GROUPS",
    "TEST_GROUPS",
    "build_icu_cohort",
    "label_prevalence_by_horizon",
    "plot_flow",
]

#: Tables and columns the cohort SQL reads.
REQUIRED_COLUMNS: dict[str, list[str]] = {
    "mimiciv_icu.icustays": ["subject_id", "hadm_id", "stay_id", "intime", "outtime"],
    "mimiciv_hosp.patients": ["subject_id", "gender", "anchor_age", "anchor_year",
                              "anchor_year_group"],
    "mimiciv_hosp.admissions": ["hadm_id", "dischtime", "deathtime", "hospital_expire_flag"],
}

#: The paper's temporal split over MIMIC-IV v2.2's anchor_year_group values.
TRAIN_GROUPS: tuple[str, ...] = ("2008 - 2010", "2011 - 2013", "2014 - 2016")
TEST_GROUPS: tuple[str, ...] = ("2017 - 2019",)

COHORT_COLUMNS = ["subject_id", "hadm_id", "stay_id", "intime", "outtime", "anchor_year_group",
                  "anchor_year", "real_year_min", "real_year_max", "split_anchor_group", "split_real_year",
                  "split", "in_analysis", "age", "gender", "label", "death_time", "hospital_expire_flag"]


def _positive(name: str, value, *, allow_zero: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        raise ValueError(f"{name}: must be a finite number, got {value!r}")
    if value < 0 or (value == 0 and not allow_zero):
        raise ValueError(f"{name}: must be {'>= 0' if allow_zero else '> 0'}, got {value!r}")
    return float(value)


def _groups(name: str, groups) -> list[str]:
    if isinstance(groups, str) or not isinstance(groups, Sequence) or not groups:
        raise ValueError(f"{name}: must be a non-empty list of anchor_year_group strings, "
                         f"got {groups!r}")
    if not all(isinstance(g, str) for g in groups):
        raise ValueError(f"{name}: every group must be a string like '2008 - 2010', got {groups!r}")
    return list(groups)


def build_icu_cohort(db: MimicDatabase, *, min_age: float = 18, min_icu_los_hours: float = 24,
                     window_hours: float = 24, horizon_hours: float | None = 48,
                     train_groups: Sequence[str] = TRAIN_GROUPS,
                     test_groups: Sequence[str] = TEST_GROUPS,
                     split_rule: str = "real_year", ambiguous_split: str = "exclude",
                     ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Select the ICU cohort, label it and split it in time.

    Parameters
    ----------
    db : MimicDatabase
        Opened with :func:`clinops.data.mimic.open_mimic`.
    min_age : float
        Minimum age at ICU admission in years (step 2).
    min_icu_los_hours : float
        Minimum ICU length of stay, ``outtime - intime``, in hours (step 6).
    window_hours : float
        Observation window after ``intime`` in hours; the label counts deaths after it.
    horizon_hours : float or None
        Label = death in ``(intime + window, intime + window + horizon]``; ``None`` = any
        in-hospital death (``hospital_expire_flag = 1``).
    train_groups, test_groups : sequence of str
        ``anchor_year_group`` values of each split; their union is the study period (step 5).
    split_rule : {'real_year', 'anchor_group'}
        The temporal split (:mod:`clinops.tasks.temporal_split`): by the stay's real-year
        interval (default) or by the patient's ``anchor_year_group`` (the paper's rule).
    ambiguous_split : {'exclude', 'train', 'test'}
        Where a stay whose real-year interval straddles the boundary goes.

    Returns
    -------
    cohort : pandas.DataFrame
        One row per ICU stay passing steps 1-7 (n_stays rows, ambiguous ones included), columns
        ``subject_id, hadm_id, stay_id, intime, outtime, anchor_year_group, anchor_year,
        real_year_min, real_year_max, split_anchor_group, split_real_year, split
        ('train'/'test'/'ambiguous'), in_analysis (bool), age (years), gender, label (0/1),
        death_time, hospital_expire_flag``, sorted by ``stay_id``.
    flow : pandas.DataFrame
        Eight rows ``step, criterion, n_remaining, n_excluded`` (ICU stays), in the order of
        clinops/docs/architecture.md; step 8 is the temporal split (ambiguous stays leave the
        analysis there when ``ambiguous_split`` is 'exclude').

    Raises
    ------
    clinops.data.mimic.MimicSchemaError
        A table or column the cohort SQL reads is missing.
    ValueError
        A bad argument (named in the message), or ``stay_id`` not unique in ``icustays``.
    """
    min_age = _positive("min_age", min_age, allow_zero=True)
    min_icu_los_hours = _positive("min_icu_los_hours", min_icu_los_hours, allow_zero=True)
    window_hours = _positive("window_hours", window_hours)
    if horizon_hours is not None:
        horizon_hours = _positive("horizon_hours", horizon_hours)
    train = _groups("train_groups", train_groups)
    test = _groups("test_groups", test_groups)
    overlap = sorted(set(train) & set(test))
    if overlap:
        raise ValueError(f"train_groups/test_groups: must be disjoint, both contain {overlap}")

    db.require(REQUIRED_COLUMNS)
    con = db.con
    dup = con.execute("SELECT count(*) - count(DISTINCT stay_id) FROM mimiciv_icu.icustays"
                      ).fetchone()[0]
    if dup:
        raise ValueError(f"mimiciv_icu.icustays.stay_id: must be unique, {dup} duplicate rows")
    install_macros(con)
    stays = con.execute(sql_text("icu_cohort.sql"), {
        "min_age": min_age, "min_icu_los_hours": min_icu_los_hours,
        "study_groups": train + test,
        "window_hours": window_hours, "horizon_hours": horizon_hours,
    }).df()

    criteria = [
        "all ICU stays in icustays",
        f"age at ICU admission >= {min_age:g} years",
        "index ICU stay of the hospitalisation (earliest intime per hadm_id)",
        "first ICU admission of the patient (earliest intime per subject_id)",
        "study period: anchor_year_group in " + ", ".join(f"'{g}'" for g in train + test),
        f"ICU length of stay >= {min_icu_los_hours:g} h",
        "outcome label available (dischtime and hospital_expire_flag not NULL)",
    ]
    remaining = [int((stays["last_step"] >= k).sum()) for k in range(1, 8)]
    flow = pd.DataFrame({
        "step": range(1, 8),
        "criterion": criteria,
        "n_remaining": remaining,
        "n_excluded": [0] + [a - b for a, b in zip(remaining, remaining[1:])],
    })
    cohort = assign_split(stays.loc[stays["last_step"] == 7], train_groups=train, test_groups=test,
                          rule=split_rule, ambiguous=ambiguous_split)
    flow = append_flow_step(flow, split_flow_step(cohort, rule=split_rule, ambiguous=ambiguous_split,
                                                  train_groups=train, test_groups=test))
    cohort = cohort[COHORT_COLUMNS].reset_index(drop=True)
    cohort = cohort.astype({"label": "int64", "hospital_expire_flag": "int64", "age": "int64"})
    return cohort, flow


def label_prevalence_by_horizon(db: MimicDatabase, cohort: pd.DataFrame,
                                horizons: Sequence[float | None] = (24, 48, 72, None), *,
                                window_hours: float = 24) -> pd.DataFrame:
    """Label prevalence under several horizons, using the cohort's label definition.

    Parameters
    ----------
    db : MimicDatabase
        Connection the label macro runs on.
    cohort : pandas.DataFrame
        From :func:`build_icu_cohort` (needs ``intime, death_time, hospital_expire_flag,
        split``).
    horizons : sequence of float or None
        Horizons in hours after the window; ``None`` = any in-hospital death.
    window_hours : float
        Observation window in hours (as used to build the cohort).

    Returns
    -------
    pandas.DataFrame
        Rows per (horizon, split in 'all'/'train'/'test'), columns ``horizon_hours``
        (NaN = any in-hospital death), ``horizon`` (text), ``split``, ``n``, ``n_positive``,
        ``prevalence`` (fraction).
    """
    need = ["intime", "death_time", "hospital_expire_flag", "split"]
    missing = [c for c in need if c not in cohort.columns]
    if missing:
        raise ValueError(f"cohort: missing column(s) {missing}")
    window_hours = _positive("window_hours", window_hours)
    if not len(horizons):
        raise ValueError("horizons: must list at least one horizon")
    hz = [None if h is None else _positive("horizons", h) for h in horizons]
    con = db.con
    install_macros(con)
    con.register("clinops_prevalence_cohort_df", cohort[need])
    con.register("clinops_prevalence_horizons_df",
                 pd.DataFrame({"horizon_hours": pd.array(hz, dtype="Float64")}))
    try:
        con.execute("CREATE OR REPLACE TEMP TABLE clinops_prevalence_cohort AS "
                    "SELECT * FROM clinops_prevalence_cohort_df")
        con.execute("CREATE OR REPLACE TEMP TABLE clinops_prevalence_horizons AS "
                    "SELECT CAST(horizon_hours AS DOUBLE) AS horizon_hours "
                    "FROM clinops_prevalence_horizons_df")
        out = con.execute(sql_text("label_prevalence.sql"), {"window_hours": window_hours}).df()
    finally:
        con.unregister("clinops_prevalence_cohort_df")
        con.unregister("clinops_prevalence_horizons_df")
        con.execute("DROP TABLE IF EXISTS clinops_prevalence_cohort")
        con.execute("DROP TABLE IF EXISTS clinops_prevalence_horizons")
    out["n_positive"] = out["n_positive"].fillna(0).astype("int64")
    out["n"] = out["n"].astype("int64")
    out["prevalence"] = out["n_positive"] / out["n"]
    out["horizon"] = [f"death in ({window_hours:g} h, {window_hours + h:g} h] after intime"
                      if pd.notna(h) else "any in-hospital death" for h in out["horizon_hours"]]
    # Present in the caller's horizon order, then all/train/test.
    order = {(None if h is None else float(h)): i for i, h in enumerate(hz)}
    out["_h"] = [order[None if pd.isna(h) else float(h)] for h in out["horizon_hours"]]
    out["_s"] = out["split"].map({"all": 0, "train": 1, "test": 2}).fillna(3)
    out = out.sort_values(["_h", "_s", "split"]).drop(columns=["_h", "_s"])
    return out[["horizon_hours", "horizon", "split", "n", "n_positive", "prevalence"]
               ].reset_index(drop=True)


def plot_flow(flow: pd.DataFrame):
    """Draw the flow table as CONSORT-style boxes.

    Parameters
    ----------
    flow : pandas.DataFrame
        Columns ``step, criterion, n_remaining, n_excluded`` (k rows).

    Returns
    -------
    matplotlib.figure.Figure
        One box per step (criterion and stays remaining) down the left, the stays excluded
        at each step to the right. Not attached to pyplot: save with ``fig.savefig``.
    """
    from matplotlib.figure import Figure  # deferred on purpose: matplotlib only for the figure

    missing = [c for c in FLOW_COLUMNS if c not in flow.columns]
    if missing:
        raise ValueError(f"flow: missing column(s) {missing}")
    k = len(flow)
    fig = Figure(figsize=(9, 1.15 * k + 0.4))
    ax = fig.add_axes((0, 0, 1, 1))
    ax.set_xlim(0, 10)
    ax.set_ylim(0, k)
    ax.axis("off")
    box = dict(boxstyle="round,pad=0.35", facecolor="white", edgecolor="black")
    for i, row in enumerate(flow.itertuples(index=False)):
        y = k - i - 0.5
        text = "\n".join(textwrap.wrap(f"{row.step}. {row.criterion}", 46))
        ax.text(3.2, y, f"{text}\nn = {row.n_remaining:,}", ha="center", va="center",
                fontsize=8.5, bbox=box)
        if i < k - 1:
            ax.annotate("", xy=(3.2, y - 0.62), xytext=(3.2, y - 0.38),
                        arrowprops=dict(arrowstyle="->"))
        if i > 0:
            ax.annotate("", xy=(7.0, y + 0.5), xytext=(3.2, y + 0.5),
                        arrowprops=dict(arrowstyle="->", color="grey"))
            ax.text(8.4, y + 0.5, f"excluded\nn = {row.n_excluded:,}", ha="center",
                    va="center", fontsize=8.5,
                    bbox=dict(boxstyle="round,pad=0.3", facecolor="#f2f2f2", edgecolor="grey"))
    return fig

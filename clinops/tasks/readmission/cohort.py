"""30-day readmission: index admissions, the outcome and the flow table.

Definitions (clinops/docs/architecture.md, "Readmission cohort"):

* **Index admissions**: adults (age at admission >= 18), discharged alive, whose discharging
  service (the last ``services.curr_service`` at or before ``dischtime``) is ``MED``, with no
  ICU stay, a valid discharge time, and a discharge_location other than ``HOSPICE``,
  ``AGAINST ADVICE``, ``ACUTE HOSPITAL`` or ``DIED``. Every eligible discharge is an index
  admission (CMS convention). Same temporal split as the mortality task
  (:mod:`clinops.tasks.temporal_split`: by the admission's real year by default); ambiguous
  admissions stay in the cohort with ``in_analysis`` False when they are excluded.
* **Outcome**: the patient has another admission with ``admittime`` in
  ``(dischtime, dischtime + 30 d]`` whose ``admission_type`` is unplanned, i.e. not
  ``ELECTIVE`` and not ``SURGICAL SAME DAY ADMISSION``. Unplanned are therefore ``EW EMER.``,
  ``DIRECT EMER.``, ``URGENT`` and the four observation types. Death within 30 days without
  readmission is outcome 0 and is flagged (``died_within_horizon``) as a competing risk.

The SQL is ``clinops/sql/readmission_cohort.sql``; parameters are bound, never formatted into
the text.
"""
from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Sequence
from typing import Any

import pandas as pd

from clinops.tasks.readmission.sql import bind, connection, read_sql
from clinops.tasks.temporal_split import assign_split, split_flow_step

log = logging.getLogger(__name__)

#: Dispositions after which a readmission is either impossible to attribute or not a failure
#: of discharge planning: hospice (expected death), against medical advice (unplanned
#: discharge), transfer to another acute hospital (care continues elsewhere), died.
DEFAULT_EXCLUDED_DISCHARGE_LOCATIONS: tuple[str, ...] = (
    "HOSPICE", "AGAINST ADVICE", "ACUTE HOSPITAL", "DIED",
)
#: admission_type values of a planned (scheduled) admission; every other type is unplanned.
DEFAULT_PLANNED_ADMISSION_TYPES: tuple[str, ...] = ("ELECTIVE", "SURGICAL SAME DAY ADMISSION")
DEFAULT_TRAIN_GROUPS: tuple[str, ...] = ("2008 - 2010", "2011 - 2013", "2014 - 2016")
DEFAULT_TEST_GROUPS: tuple[str, ...] = ("2017 - 2019",)

#: Inclusion flags of readmission_cohort.sql in flow-table order, with the criterion wording
#: (formatted with the call's arguments).
_FLOW_STEPS: tuple[tuple[str, str], ...] = (
    ("in_study_period", "anchor_year_group in the study period ({groups})"),
    ("is_adult", "age at admission >= {min_age}"),
    ("has_complete_record", "dischtime recorded and after admittime; hospital_expire_flag recorded"),
    ("discharged_alive", "discharged alive (hospital_expire_flag = 0, no deathtime)"),
    ("eligible_disposition", "discharge_location not in {excluded}"),
    ("no_icu_stay", "no ICU stay during the admission"),
    ("discharged_by_service", "discharging service {service} (last service change at or before dischtime)"),
)

#: Columns the cohort SQL is read with: ids, times, the year inputs of the temporal split, the label.
_SQL_COLUMNS: tuple[str, ...] = (
    "subject_id", "hadm_id", "admittime", "dischtime", "anchor_year_group", "anchor_year", "event_year",
    "age", "gender", "admission_type", "discharge_location", "discharge_service", "los_days", "dod",
    "label", "readmission_hadm_id", "readmission_admission_type", "days_to_readmission",
    "planned_readmission_within_horizon", "died_within_horizon",
)
#: Columns of the cohort frame (one row per index admission): the SQL's, with the split of
#: :func:`clinops.tasks.temporal_split.assign_split` in place of the event year.
COHORT_COLUMNS: tuple[str, ...] = (
    tuple(c for c in _SQL_COLUMNS if c != "event_year")
    + ("real_year_min", "real_year_max", "split_anchor_group", "split_real_year", "split", "in_analysis")
)


def _string_tuple(value: Iterable[str], name: str, *, allow_empty: bool = True) -> list[str]:
    if isinstance(value, str) or not isinstance(value, Iterable):
        raise TypeError(f"{name}: must be a list of strings, got {type(value).__name__}")
    out = list(value)
    if not all(isinstance(v, str) for v in out):
        raise TypeError(f"{name}: every entry must be a string, got {out!r}")
    if not allow_empty and not out:
        raise ValueError(f"{name}: must not be empty")
    return out


def build_readmission_cohort(
    con: Any,
    *,
    min_age: float = 18,
    service: str = "MED",
    horizon_days: int = 30,
    excluded_discharge_locations: Sequence[str] = DEFAULT_EXCLUDED_DISCHARGE_LOCATIONS,
    planned_admission_types: Sequence[str] = DEFAULT_PLANNED_ADMISSION_TYPES,
    train_groups: Sequence[str] = DEFAULT_TRAIN_GROUPS,
    test_groups: Sequence[str] = DEFAULT_TEST_GROUPS,
    split_rule: str = "real_year",
    ambiguous_split: str = "exclude",
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Index admissions for 30-day readmission, their outcome, and the flow table.

    Parameters
    ----------
    con : duckdb.DuckDBPyConnection or MimicDatabase
        Connection exposing ``mimiciv_hosp.{admissions, patients, services}`` and
        ``mimiciv_icu.icustays`` (v2.2 columns).
    min_age : float
        Minimum age at admission in years (mimic-code age: ``anchor_age + year(admittime) -
        anchor_year``).
    service : str
        Required discharging service, a ``services.curr_service`` code.
    horizon_days : int
        Outcome window after discharge in whole days; a readmission at exactly
        ``dischtime + horizon_days`` counts.
    excluded_discharge_locations : sequence of str
        ``discharge_location`` values that cannot be index discharges. A NULL
        discharge_location is kept (unknown is not evidence of an excluded disposition).
    planned_admission_types : sequence of str
        ``admission_type`` values of a planned readmission, which never counts as the outcome.
    train_groups, test_groups : sequence of str
        ``anchor_year_group`` values of the training and temporal test sets (disjoint).
    split_rule : {'real_year', 'anchor_group'}
        The temporal split (:func:`clinops.tasks.temporal_split.assign_split`).
    ambiguous_split : {'exclude', 'train', 'test'}
        Where an admission whose real-year interval straddles the boundary goes.

    Returns
    -------
    cohort : pandas.DataFrame
        One row per index admission (n_index rows, ambiguous ones included), sorted by
        ``hadm_id``, columns ``COHORT_COLUMNS`` plus the split columns of
        :func:`~clinops.tasks.temporal_split.assign_split` (``real_year_min/max``,
        ``split_anchor_group``, ``split_real_year``, ``split`` ('train'/'test'/'ambiguous'),
        ``in_analysis``): ids, times, ``age`` (years),
        ``gender``, ``los_days`` (days), ``label`` (0/1 unplanned readmission in the horizon),
        ``readmission_hadm_id`` / ``readmission_admission_type`` / ``days_to_readmission``
        of the first unplanned readmission (NaN/None without one),
        ``planned_readmission_within_horizon`` (0/1, reported, not the outcome),
        ``died_within_horizon`` (0/1: ``patients.dod`` within the horizon, day resolution).
    flow : pandas.DataFrame
        Columns ``step`` (1-based), ``criterion``, ``n_remaining``, ``n_excluded``: step 1 is
        every admission, each later step applies one criterion to what remains; the last step
        is the temporal split.

    Raises
    ------
    ValueError, TypeError
        An argument breaks its rule; the message names the argument.
    """
    if isinstance(min_age, bool) or not isinstance(min_age, (int, float)) or not math.isfinite(min_age) or min_age < 0:
        raise ValueError(f"min_age: must be a finite number >= 0 (years), got {min_age!r}")
    if not isinstance(service, str) or not service.strip():
        raise ValueError(f"service: must be a non-empty services.curr_service code such as 'MED', got {service!r}")
    if (isinstance(horizon_days, bool) or not isinstance(horizon_days, (int, float))
            or not float(horizon_days).is_integer() or horizon_days <= 0):
        raise ValueError(f"horizon_days: must be a whole number of days > 0, got {horizon_days!r}")
    excluded = _string_tuple(excluded_discharge_locations, "excluded_discharge_locations")
    planned = _string_tuple(planned_admission_types, "planned_admission_types")
    train = _string_tuple(train_groups, "train_groups", allow_empty=False)
    test = _string_tuple(test_groups, "test_groups", allow_empty=False)
    overlap = sorted(set(train) & set(test))
    if overlap:
        raise ValueError(f"train_groups / test_groups: must be disjoint, both contain {overlap}")

    db = connection(con)
    sql = read_sql("readmission_cohort")
    params = {
        "study_groups": train + test,
        "min_age": float(min_age), "service": service, "excluded_locations": excluded,
        "planned_types": planned, "horizon_days": int(horizon_days),
    }
    db.execute(f"CREATE OR REPLACE TEMP TABLE readmission_candidates AS {sql}", bind(sql, params))
    try:
        counts_sql = ["count(*)"]
        conjunction: list[str] = []
        for flag, _ in _FLOW_STEPS:
            conjunction.append(flag)
            counts_sql.append(f"count(*) FILTER (WHERE {' AND '.join(conjunction)})")
        counts = db.execute(f"SELECT {', '.join(counts_sql)} FROM readmission_candidates").fetchone()
        cohort = db.execute(
            f"SELECT {', '.join(_SQL_COLUMNS)} FROM readmission_candidates "
            f"WHERE {' AND '.join(conjunction)} ORDER BY hadm_id"
        ).df()
    finally:
        db.execute("DROP TABLE IF EXISTS readmission_candidates")

    wording = {
        "groups": ", ".join(train + test), "min_age": f"{min_age:g}", "service": service,
        "excluded": ", ".join(excluded) if excluded else "(none)",
    }
    criteria = ["all hospital admissions"] + [text.format(**wording) for _, text in _FLOW_STEPS]
    remaining = [int(c) for c in counts]
    flow = pd.DataFrame({
        "step": range(1, len(remaining) + 1),
        "criterion": criteria,
        "n_remaining": remaining,
        "n_excluded": [0] + [a - b for a, b in zip(remaining[:-1], remaining[1:])],
    })
    for col in ("label", "planned_readmission_within_horizon", "died_within_horizon"):
        cohort[col] = cohort[col].astype("int64")
    cohort = assign_split(cohort, train_groups=train, test_groups=test, rule=split_rule,
                          ambiguous=ambiguous_split)[list(COHORT_COLUMNS)]
    step = split_flow_step(cohort, step=len(flow) + 1, rule=split_rule, ambiguous=ambiguous_split,
                           train_groups=train, test_groups=test, unit="admission")
    flow = pd.concat([flow, pd.DataFrame([step])], ignore_index=True)
    log.info("readmission cohort: %d index admissions, %d readmitted", len(cohort), int(cohort["label"].sum()))
    return cohort, flow


def outcome_summary(cohort: pd.DataFrame) -> pd.DataFrame:
    """Outcome counts per split, with the competing risk of death reported beside the label.

    Parameters
    ----------
    cohort : pandas.DataFrame
        The cohort from :func:`build_readmission_cohort` (n_index rows).

    Returns
    -------
    pandas.DataFrame
        One row per split plus ``all``: ``n_index``, ``n_readmitted``, ``readmission_rate``
        (fraction), ``n_died_without_readmission`` (label 0 by definition),
        ``n_planned_readmission_only`` (planned readmission in the horizon, no unplanned one).
    """
    missing = [c for c in ("split", "label", "died_within_horizon", "planned_readmission_within_horizon") if c not in cohort]
    if missing:
        raise ValueError(f"cohort: missing column(s) {missing} (rule: pass the frame build_readmission_cohort returned)")
    rows = []
    for name, part in [*cohort.groupby("split", sort=True), ("all", cohort)]:
        n = len(part)
        readmitted = int(part["label"].sum())
        rows.append({
            "split": name, "n_index": n, "n_readmitted": readmitted,
            "readmission_rate": readmitted / n if n else float("nan"),
            "n_died_without_readmission": int(((part["died_within_horizon"] == 1) & (part["label"] == 0)).sum()),
            "n_planned_readmission_only": int(((part["planned_readmission_within_horizon"] == 1) & (part["label"] == 0)).sum()),
        })
    return pd.DataFrame(rows)


"""30-day readmission: index admissions, the outcome and the flow table.

Definitions (clinops/docs/architecture.md, "Readmission cohort"):

* **Index admissions**: adults (age at admission >= 18), discharged alive, whose discharging
  service (the last ``services.curr_service`` at or before ``dischtime``) is ``MED``, with no
  ICU stay, a valid discharge time, and a discharge_location other than ``HOSPICE``,
  ``AGAINST ADVICE``, ``ACUTE HOSPITAL`` or ``DIED``. Every eligible discharge is an index
  admission (CMS convention). Same temporal split as the mortality task
  (:mod:`clinops.tasks.temporal_split`: by the admission's real year by default); ambiguous
  admissions stay in the cohort with ``in_analysis`` False when they are excluded.
* **Outcome** (clinops/docs/readmission.md): only the FIRST readmission after an index counts
  (CMS): another admission with ``admittime`` in ``(dischtime, dischtime + 30 d]``, not of an
  uncounted type (default ``AMBULATORY OBSERVATION``). The outcome is 1 when that first
  readmission is unplanned: by the CMS Planned Readmission Algorithm v4.0 (``planned_rule='cms'``,
  default; code lists in ``cms_planned.csv``, a documented subset) or by ``admission_type``
  (``'admission_type'``: ``ELECTIVE`` and ``SURGICAL SAME DAY ADMISSION`` are planned). Both
  labels are always computed (``label_cms``, ``label_admission_type``); ``label`` is the
  configured one.
* **Competing deaths**: a death within the horizon without a readmission is excluded
  (``competing_deaths='exclude'``, default: ``excluded_reason='death_without_readmission'``),
  labelled 0 (``'label_zero'``) or an event (``'composite'``: unplanned readmission or death).
* **Censored follow-up**: a discharge whose real-year interval reaches the last year of the data
  and whose horizon crosses the end of its shifted year is flagged ``followup_censored``;
  reported (``censoring='report'``, default) or excluded (``'exclude'``).

Excluded rows stay in the frame with their ``excluded_reason`` (a sensitivity step refits under
the alternatives).

The SQL is ``clinops/sql/readmission_cohort.sql``; parameters are bound, never formatted into
the text.
"""
from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from clinops.data.cms_planned import CODE_LIST, code_list_parameters
from clinops.tasks.flow import append_flow_step
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
#: admission_type values never counted as a readmission: observation after ambulatory surgery or
#: a procedure is outpatient care (clinops/docs/readmission.md says why the other three
#: observation types count).
DEFAULT_UNCOUNTED_ADMISSION_TYPES: tuple[str, ...] = ("AMBULATORY OBSERVATION",)
PLANNED_RULES: tuple[str, ...] = ("cms", "admission_type")
COMPETING_DEATHS: tuple[str, ...] = ("exclude", "label_zero", "composite")
CENSORING: tuple[str, ...] = ("report", "exclude")
#: Last real year with admissions in MIMIC-IV v2.2.
DEFAULT_LAST_DATA_YEAR = 2019
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

#: Columns the cohort SQL is read with: ids, times, the year inputs of the temporal split, the
#: definition's inputs.
_SQL_COLUMNS: tuple[str, ...] = (
    "subject_id", "hadm_id", "admittime", "dischtime", "anchor_year_group", "anchor_year", "event_year", "age",
    "gender", "admission_type", "discharge_location", "discharge_service", "los_days", "dod",
    "label_cms", "label_admission_type", "readmission_hadm_id", "readmission_admission_type",
    "days_to_readmission", "readmission_planned_by_type", "readmission_cms_category",
    "readmission_pr3_acute_dx", "n_uncounted_returns", "died_within_horizon", "followup_at_risk", "followup_censored",
)
#: Columns added in Python from the SQL's (the configured definition).
DEFINITION_COLUMNS: tuple[str, ...] = (
    "readmission_planned", "died_without_readmission", "label", "excluded_reason",
)
#: Columns of the cohort frame (one row per index admission): the SQL's, the definition's, and the
#: split of :func:`clinops.tasks.temporal_split.assign_split` in place of the event year.
COHORT_COLUMNS: tuple[str, ...] = (
    tuple(c for c in _SQL_COLUMNS if c != "event_year") + DEFINITION_COLUMNS
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
    planned_rule: str = "cms",
    competing_deaths: str = "exclude",
    censoring: str = "report",
    uncounted_admission_types: Sequence[str] = DEFAULT_UNCOUNTED_ADMISSION_TYPES,
    last_data_year: int = DEFAULT_LAST_DATA_YEAR,
    code_list: str | Path = CODE_LIST,
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
        ``admission_type`` values of a planned readmission under the admission-type rule.
    train_groups, test_groups : sequence of str
        ``anchor_year_group`` values of the training and temporal test sets (disjoint).
    planned_rule : {'cms', 'admission_type'}
        Which rule makes ``label``: the CMS Planned Readmission Algorithm or the admission type.
    competing_deaths : {'exclude', 'label_zero', 'composite'}
        A death within the horizon without a readmission: excluded (``excluded_reason``),
        outcome 0, or outcome 1 (composite of unplanned readmission or death).
    censoring : {'report', 'exclude'}
        Whether ``followup_censored`` rows are only flagged or also excluded.
    uncounted_admission_types : sequence of str
        ``admission_type`` values never counted as a readmission (neither outcome nor first).
    last_data_year : int
        Last real year with admissions in the data (v2.2: 2019).
    code_list : str or Path
        The CMS code-list CSV (default the committed subset, ``cms_planned.csv``).
    split_rule : {'real_year', 'anchor_group'}
        The temporal split (:func:`clinops.tasks.temporal_split.assign_split`).
    ambiguous_split : {'exclude', 'train', 'test'}
        Where an admission whose real-year interval straddles the boundary goes.

    Returns
    -------
    cohort : pandas.DataFrame
        One row per index admission (n_index rows), sorted by ``hadm_id``, columns
        ``COHORT_COLUMNS``: ids, times, ``split`` ('train'/'test'/'ambiguous') with the other split columns of :func:`~clinops.tasks.temporal_split.assign_split` and ``in_analysis``, ``age`` (years),
        ``gender``, ``los_days`` (days), ``label`` (0/1, the configured definition),
        ``label_cms`` / ``label_admission_type`` (0/1: the first readmission in the horizon is
        unplanned by that rule), ``readmission_hadm_id`` / ``readmission_admission_type`` /
        ``days_to_readmission`` of the first readmission (NaN/None without one),
        ``readmission_planned`` (0/1: planned by the configured rule),
        ``readmission_cms_category`` ('PR1'/'PR2'/'PR3' or None), ``readmission_pr3_acute_dx``
        (PR3 procedure with an acute principal diagnosis, hence unplanned),
        ``n_uncounted_returns`` (returns of an uncounted admission type within the horizon),
        ``died_within_horizon`` (0/1: ``patients.dod`` within the horizon, day resolution),
        ``died_without_readmission`` (0/1), ``followup_at_risk`` / ``followup_censored`` (0/1),
        ``excluded_reason`` (None when the definition keeps the row).
    flow : pandas.DataFrame
        Columns ``step`` (1-based), ``criterion``, ``n_remaining``, ``n_excluded``: step 1 is
        every admission, each later step applies one criterion to what remains.

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
    uncounted = _string_tuple(uncounted_admission_types, "uncounted_admission_types")
    for name, value, allowed in (("planned_rule", planned_rule, PLANNED_RULES),
                                 ("competing_deaths", competing_deaths, COMPETING_DEATHS),
                                 ("censoring", censoring, CENSORING)):
        if value not in allowed:
            raise ValueError(f"{name}: must be one of {', '.join(allowed)}, got {value!r}")
    if isinstance(last_data_year, bool) or not isinstance(last_data_year, int):
        raise ValueError(f"last_data_year: must be a whole year such as 2019, got {last_data_year!r}")
    overlap = sorted(set(train) & set(test))
    if overlap:
        raise ValueError(f"train_groups / test_groups: must be disjoint, both contain {overlap}")

    db = connection(con)
    sql = read_sql("readmission_cohort")
    params = {
        "study_groups": train + test,
        "min_age": float(min_age), "service": service, "excluded_locations": excluded,
        "planned_types": planned, "horizon_days": int(horizon_days),
        # an empty list cannot be typed by every engine: a value no admission_type has
        "uncounted_types": uncounted or ["(none)"], "last_data_year": int(last_data_year),
        **code_list_parameters(code_list),
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
    cohort = apply_definition(cohort, planned_rule=planned_rule, competing_deaths=competing_deaths,
                              censoring=censoring)
    # in_analysis: split in train/test AND no excluded_reason (assign_split reads that column)
    cohort = assign_split(cohort, train_groups=train, test_groups=test, rule=split_rule,
                          ambiguous=ambiguous_split)[list(COHORT_COLUMNS)]
    flow = append_flow_step(flow, split_flow_step(cohort, rule=split_rule, ambiguous=ambiguous_split,
                                                  train_groups=train, test_groups=test, unit="admission"))
    log.info("readmission cohort: %d index admissions, %d readmitted, %d excluded by the definition",
             len(cohort), int(cohort["label"].sum()), int(cohort["excluded_reason"].notna().sum()))
    return cohort, flow


def apply_definition(cohort: pd.DataFrame, *, planned_rule: str = "cms", competing_deaths: str = "exclude",
                     censoring: str = "report") -> pd.DataFrame:
    """Add the configured definition's ``label``, ``readmission_planned``, ``died_without_readmission``
    and ``excluded_reason`` to the SQL's columns (a copy; rows are never dropped).

    Examples
    --------
    >>> import pandas as pd
    >>> c = pd.DataFrame({"label_cms": [1, 0, 0], "label_admission_type": [1, 1, 0],
    ...                   "readmission_hadm_id": [7, 8, None], "readmission_planned_by_type": [0, 0, None],
    ...                   "readmission_cms_category": [None, "PR3", None],
    ...                   "died_within_horizon": [0, 0, 1], "followup_censored": [0, 0, 0]})
    >>> out = apply_definition(c)
    >>> out["label"].tolist(), out["excluded_reason"].tolist()
    ([1, 0, 0], [None, None, 'death_without_readmission'])
    >>> apply_definition(c, competing_deaths="composite")["label"].tolist()
    [1, 0, 1]
    """
    out = cohort.copy()
    readmitted = out["readmission_hadm_id"].notna()
    for col in ("label_cms", "label_admission_type", "died_within_horizon", "followup_censored"):
        out[col] = out[col].fillna(0).astype("int64")
    base = out["label_cms"] if planned_rule == "cms" else out["label_admission_type"]
    out["readmission_planned"] = (readmitted & (base == 0)).astype("int64")
    out["died_without_readmission"] = ((out["died_within_horizon"] == 1) & ~readmitted).astype("int64")
    out["label"] = (base | out["died_within_horizon"]) if competing_deaths == "composite" else base
    out["label"] = out["label"].astype("int64")
    reason = pd.Series([None] * len(out), index=out.index, dtype=object)
    if censoring == "exclude":
        reason[out["followup_censored"] == 1] = "censored_followup"
    if competing_deaths == "exclude":
        # the death is observed even when the follow-up is censored: it names the row
        reason[out["died_without_readmission"] == 1] = "death_without_readmission"
    out["excluded_reason"] = reason
    return out


def outcome_summary(cohort: pd.DataFrame) -> pd.DataFrame:
    """Outcome counts per split, with the competing risk of death reported beside the label.

    Parameters
    ----------
    cohort : pandas.DataFrame
        The cohort from :func:`build_readmission_cohort` (n_index rows).

    Returns
    -------
    pandas.DataFrame
        One row per split plus ``all``: ``n_index``, ``n_readmitted`` (label 1, the configured
        definition), ``readmission_rate`` (fraction of the rows the definition keeps),
        ``n_died_without_readmission``, ``n_planned_first_readmission`` (the first readmission
        is planned: outcome 0), ``n_excluded`` (rows with an ``excluded_reason``).
    """
    need = ("split", "label", "died_without_readmission", "readmission_planned", "excluded_reason")
    missing = [c for c in need if c not in cohort]
    if missing:
        raise ValueError(f"cohort: missing column(s) {missing} (rule: pass the frame build_readmission_cohort returned)")
    rows = []
    for name, part in [*cohort.groupby("split", sort=True), ("all", cohort)]:
        kept = part[part["excluded_reason"].isna()]
        readmitted = int(kept["label"].sum())
        rows.append({
            "split": name, "n_index": len(part), "n_readmitted": readmitted,
            "readmission_rate": readmitted / len(kept) if len(kept) else float("nan"),
            "n_died_without_readmission": int(part["died_without_readmission"].sum()),
            "n_planned_first_readmission": int(part["readmission_planned"].sum()),
            "n_excluded": len(part) - len(kept),
        })
    return pd.DataFrame(rows)

"""Counts of the readmission definition's parts: what each rule, option and exclusion does.

``reports/readmission/cohort/definitions.csv`` (clinops/docs/readmission.md): index admissions,
first readmissions by each planned rule, planned ones by CMS category, observation stays,
deaths without readmission, censored follow-up and the rows the configured definition excludes.
"""
from __future__ import annotations

import pandas as pd

#: admission_type values of an observation stay in MIMIC-IV v2.2.
OBSERVATION_TYPES: tuple[str, ...] = ("EU OBSERVATION", "OBSERVATION ADMIT", "DIRECT OBSERVATION",
                                      "AMBULATORY OBSERVATION")
_NEEDED = ("admission_type", "label", "label_cms", "label_admission_type", "readmission_hadm_id",
           "readmission_admission_type", "readmission_planned_by_type", "readmission_cms_category",
           "readmission_pr3_acute_dx", "n_uncounted_returns", "died_within_horizon", "died_without_readmission",
           "followup_at_risk", "followup_censored", "excluded_reason")


def definitions_table(cohort: pd.DataFrame) -> pd.DataFrame:
    """One row per count of the definition, with what it counts.

    Parameters
    ----------
    cohort : pandas.DataFrame
        The frame :func:`clinops.tasks.readmission.cohort.build_readmission_cohort` returns.

    Returns
    -------
    pandas.DataFrame
        Columns ``measure``, ``n`` (index admissions), ``definition``.

    Examples
    --------
    >>> c = pd.DataFrame({"admission_type": ["EW EMER."], "label": [0], "label_cms": [0],
    ...     "label_admission_type": [1], "readmission_hadm_id": [9], "readmission_admission_type": ["URGENT"],
    ...     "readmission_planned_by_type": [0], "readmission_cms_category": ["PR1"],
    ...     "readmission_pr3_acute_dx": [0], "n_uncounted_returns": [0], "died_within_horizon": [0], "died_without_readmission": [0],
    ...     "followup_at_risk": [0], "followup_censored": [0], "excluded_reason": [None]})
    >>> t = definitions_table(c).set_index("measure")["n"]
    >>> int(t["first readmission planned: CMS PR1"]), int(t["outcome (unplanned first readmission): admission-type rule"])
    (1, 1)
    """
    missing = [c for c in _NEEDED if c not in cohort]
    if missing:
        raise ValueError(f"cohort: missing column(s) {missing} (rule: pass the frame build_readmission_cohort returned)")
    c = cohort
    readmitted = c["readmission_hadm_id"].notna()
    category = c["readmission_cms_category"]
    rows = [
        ("index admissions", len(c), "eligible discharges (every one is an index, CMS)"),
        ("first readmission within the horizon", int(readmitted.sum()),
         "first counted admission after discharge (AMBULATORY OBSERVATION not counted by default)"),
        ("outcome (unplanned first readmission): CMS rule", int(c["label_cms"].sum()),
         "label_cms: CMS Planned Readmission Algorithm v4.0, committed code-list subset"),
        ("outcome (unplanned first readmission): admission-type rule", int(c["label_admission_type"].sum()),
         "label_admission_type: ELECTIVE / SURGICAL SAME DAY ADMISSION are planned"),
        ("outcome differs between the two rules", int((c["label_cms"] != c["label_admission_type"]).sum()),
         "index admissions whose label depends on the planned rule"),
    ]
    for cat, what in (("PR1", "always-planned procedure"), ("PR2", "always-planned principal diagnosis"),
                      ("PR3", "potentially planned procedure, principal diagnosis not acute")):
        rows.append((f"first readmission planned: CMS {cat}", int((category == cat).sum()), what))
    rows.append(("first readmission with a PR3 procedure and an acute principal diagnosis",
                 int(c["readmission_pr3_acute_dx"].fillna(0).sum()), "PR4: unplanned under the CMS rule"))
    rows.append(("first readmission planned: admission type", int(c["readmission_planned_by_type"].fillna(0).sum()),
                 "ELECTIVE or SURGICAL SAME DAY ADMISSION"))
    for t in OBSERVATION_TYPES:
        rows.append((f"first readmission of type {t}", int((c["readmission_admission_type"] == t).sum()),
                     "observation stay as the first counted readmission"))
    rows.append(("index admissions with a return of an uncounted type", int((c["n_uncounted_returns"] > 0).sum()),
                 "readmission.uncounted_admission_types (default AMBULATORY OBSERVATION): not a readmission"))
    rows.append(("index admissions of an observation type", int(c["admission_type"].isin(OBSERVATION_TYPES).sum()),
                 "kept as index admissions (clinops/docs/readmission.md)"))
    rows += [
        ("died within the horizon", int(c["died_within_horizon"].sum()), "patients.dod within the horizon"),
        ("died within the horizon without a readmission", int(c["died_without_readmission"].sum()),
         "competing risk (readmission.competing_deaths)"),
        ("follow-up at risk of censoring", int(c["followup_at_risk"].sum()),
         "real-year interval reaches the last year of the data"),
        ("follow-up censored (flag)", int(c["followup_censored"].sum()),
         "at risk and the horizon crosses the end of the shifted year (readmission.censoring)"),
    ]
    for reason, n in c["excluded_reason"].value_counts().sort_index().items():
        rows.append((f"excluded: {reason}", int(n), "kept in the task table with excluded_reason"))
    kept = c["excluded_reason"].isna()
    rows.append(("outcome of the configured definition (rows kept)", int(c.loc[kept, "label"].sum()),
                 f"label = 1 among {int(kept.sum())} rows without an excluded_reason"))
    return pd.DataFrame(rows, columns=["measure", "n", "definition"])

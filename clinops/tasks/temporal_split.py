"""The temporal split of both MIMIC-IV tasks: by the stay's real year, or by the anchor group.

MIMIC-IV shifts every patient's dates into the future by one offset and tells the real time only
through ``patients.anchor_year_group``: the patient's ``anchor_year`` lies, in real time, in that
three-year group. A stay (or admission) in ``anchor_year + k`` therefore happened, in real time,
somewhere in ``[group_start + k, group_end + k]`` (MIMIC-IV documentation of
``anchor_year_group``; mimic-code issues #1129 and #1838). Splitting by the patient's group alone
labels a stay of a 2014 - 2016 patient in ``anchor_year + 2`` as training although it may have
happened in 2018.

Rules (``cohort.split_rule``):

* ``real_year`` (default): train when the interval's upper bound is at or before the last year of
  the training groups, test when its lower bound is at or after the first year of the test
  groups, ``ambiguous`` otherwise.
* ``anchor_group``: the paper's rule, the patient's ``anchor_year_group`` in the training or the
  test groups.

``cohort.ambiguous_split``: ``exclude`` (default: ambiguous rows stay in the tables but not in the
analysis), ``train`` or ``test``. The final verdict is the column ``split``; ``in_analysis`` says
which rows the main analysis uses (train and test rows, minus a task's own exclusions named in
``excluded_reason``). Consumers select ``in_analysis & split == 'train'`` / ``== 'test'``
(:func:`analysis_masks`), never "not train".

Examples
--------
>>> rows = pd.DataFrame({"anchor_year_group": ["2014 - 2016", "2014 - 2016", "2017 - 2019"],
...                      "anchor_year": [2150, 2150, 2160], "event_year": [2152, 2150, 2160]})
>>> out = assign_split(rows, train_groups=["2014 - 2016"], test_groups=["2017 - 2019"])
>>> out[["real_year_min", "real_year_max", "split_anchor_group", "split_real_year", "split"]]
   real_year_min  real_year_max split_anchor_group split_real_year      split
0           2016           2018              train       ambiguous  ambiguous
1           2014           2016              train           train      train
2           2017           2019               test            test       test
>>> out["in_analysis"].tolist()
[False, True, True]
"""
from __future__ import annotations

import re
from typing import Sequence

import numpy as np
import pandas as pd

__all__ = ["SPLIT_RULES", "AMBIGUOUS_OPTIONS", "SPLIT_COLUMNS", "parse_anchor_year_group",
           "assign_split", "analysis_rows", "analysis_masks", "split_flow_step", "split_by_rule_table"]

#: ``cohort.split_rule`` values: the stay's real-year interval, or the paper's patient group.
SPLIT_RULES: tuple[str, ...] = ("real_year", "anchor_group")
#: ``cohort.ambiguous_split`` values: where a stay of the real-year rule's ambiguous band goes.
AMBIGUOUS_OPTIONS: tuple[str, ...] = ("exclude", "train", "test")
#: Columns :func:`assign_split` adds (the contract of the cohort and task tables).
SPLIT_COLUMNS: tuple[str, ...] = ("anchor_year", "real_year_min", "real_year_max", "split_anchor_group",
                                  "split_real_year", "split", "in_analysis")

_GROUP = re.compile(r"^\s*(\d{4})\s*-\s*(\d{4})\s*$")


def parse_anchor_year_group(text: str) -> tuple[int, int]:
    """First and last real year of an ``anchor_year_group`` such as ``'2014 - 2016'``.

    Examples
    --------
    >>> parse_anchor_year_group("2014 - 2016")
    (2014, 2016)
    >>> parse_anchor_year_group("2016")
    Traceback (most recent call last):
    ...
    ValueError: anchor_year_group: must read 'YYYY - YYYY' with the first year <= the last, got '2016'
    """
    match = _GROUP.match(text) if isinstance(text, str) else None
    if match is None or int(match.group(1)) > int(match.group(2)):
        raise ValueError(f"anchor_year_group: must read 'YYYY - YYYY' with the first year <= the last, "
                         f"got {text!r}")
    return int(match.group(1)), int(match.group(2))


def _choice(name: str, value: str, allowed: Sequence[str]) -> str:
    if value not in allowed:
        raise ValueError(f"{name}: must be one of {list(allowed)}, got {value!r}")
    return value


def _bounds(groups: Sequence[str], name: str) -> list[tuple[int, int]]:
    if isinstance(groups, str) or not groups:
        raise ValueError(f"{name}: must be a non-empty list of anchor_year_group strings, got {groups!r}")
    try:
        return [parse_anchor_year_group(g) for g in groups]
    except ValueError as err:
        raise ValueError(f"{name}: {err}") from None


def assign_split(frame: pd.DataFrame, *, train_groups: Sequence[str], test_groups: Sequence[str],
                 rule: str = "real_year", ambiguous: str = "exclude",
                 event_year_column: str = "event_year") -> pd.DataFrame:
    """The real-year interval and the verdict of both rules for each row.

    Parameters
    ----------
    frame : pandas.DataFrame
        One row per stay or admission with ``anchor_year_group`` (text), ``anchor_year`` (int)
        and ``event_year_column`` (the shifted calendar year of ``intime`` / ``admittime``).
    train_groups, test_groups : sequence of str
        The training and test ``anchor_year_group`` values (disjoint). The real-year rule's train
        bound is the last year of the training groups, its test bound the first of the test groups.
    rule : {'real_year', 'anchor_group'}
        The rule whose verdict becomes ``split``.
    ambiguous : {'exclude', 'train', 'test'}
        Where the real-year rule's ambiguous rows go (``exclude``: ``split`` stays 'ambiguous').
    event_year_column : str
        Column of the shifted event year.

    Returns
    -------
    pandas.DataFrame
        A copy with :data:`SPLIT_COLUMNS`: ``real_year_min/max`` (int; k = event year -
        anchor_year), ``split_anchor_group`` ('train'/'test'/None), ``split_real_year``
        ('train'/'test'/'ambiguous'), ``split`` (the configured verdict) and ``in_analysis``
        (``split`` in train/test, AND ``excluded_reason`` missing when that column exists).

    Raises
    ------
    ValueError
        A bad rule, option or group (named), a missing column, or an unparseable
        ``anchor_year_group`` in the rows.
    """
    rule = _choice("cohort.split_rule", rule, SPLIT_RULES)
    ambiguous = _choice("cohort.ambiguous_split", ambiguous, AMBIGUOUS_OPTIONS)
    train_bounds, test_bounds = _bounds(train_groups, "train_groups"), _bounds(test_groups, "test_groups")
    overlap = sorted(set(train_groups) & set(test_groups))
    if overlap:
        raise ValueError(f"train_groups/test_groups: must be disjoint, both contain {overlap}")
    last_train = max(end for _, end in train_bounds)
    first_test = min(start for start, _ in test_bounds)
    if last_train >= first_test:
        raise ValueError(f"train_groups/test_groups: the last training year ({last_train}) must come before "
                         f"the first test year ({first_test})")
    missing = [c for c in ("anchor_year_group", "anchor_year", event_year_column) if c not in frame.columns]
    if missing:
        raise ValueError(f"frame: missing column(s) {missing} (rule: the cohort SQL returns them)")

    out = frame.copy()
    parsed = {g: parse_anchor_year_group(g) for g in out["anchor_year_group"].dropna().unique()}
    start = out["anchor_year_group"].map(lambda g: parsed[g][0] if g in parsed else np.nan)
    end = out["anchor_year_group"].map(lambda g: parsed[g][1] if g in parsed else np.nan)
    k = pd.to_numeric(out[event_year_column]) - pd.to_numeric(out["anchor_year"])
    if (start.isna() | k.isna()).any():
        raise ValueError(f"anchor_year_group/anchor_year/{event_year_column}: missing in "
                         f"{int((start.isna() | k.isna()).sum())} row(s) (rule: every cohort row has a group "
                         "and a year; the study-period step removes the others)")
    out["anchor_year"] = out["anchor_year"].astype("int64")
    out["real_year_min"] = (start + k).astype("int64")
    out["real_year_max"] = (end + k).astype("int64")
    by_group = out["anchor_year_group"]
    out["split_anchor_group"] = np.where(by_group.isin(list(train_groups)), "train",
                                         np.where(by_group.isin(list(test_groups)), "test", None))
    out["split_real_year"] = np.where(out["real_year_max"] <= last_train, "train",
                                      np.where(out["real_year_min"] >= first_test, "test", "ambiguous"))
    if rule == "anchor_group":
        final = out["split_anchor_group"]
    else:
        final = out["split_real_year"]
        if ambiguous != "exclude":
            final = final.where(final != "ambiguous", ambiguous)
    out["split"] = final.where(final.notna(), None)
    out["in_analysis"] = analysis_rows(out.drop(columns="in_analysis", errors="ignore"))
    return out


def analysis_rows(table: pd.DataFrame) -> pd.Series:
    """The rows of the main analysis: ``in_analysis`` when the table carries it, else the rule that
    sets it (a decided split, train or test, and no ``excluded_reason`` of the task's definition).

    Examples
    --------
    >>> analysis_rows(pd.DataFrame({"split": ["train", "ambiguous", "test"],
    ...                             "excluded_reason": [None, None, "death_without_readmission"]})).tolist()
    [True, False, False]
    """
    if "in_analysis" in table.columns:
        return table["in_analysis"].fillna(False).astype(bool)
    keep = table["split"].isin(["train", "test"])
    if "excluded_reason" in table.columns:
        keep &= table["excluded_reason"].isna()
    return keep


def analysis_masks(table: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Boolean ``(train, test)`` masks of the main analysis: ``in_analysis & split == ...``.

    A table without ``in_analysis`` (a hospital's own table) uses every row.

    Examples
    --------
    >>> t = pd.DataFrame({"split": ["train", "ambiguous", "test"], "in_analysis": [True, False, True]})
    >>> [m.tolist() for m in analysis_masks(t)]
    [[True, False, False], [False, False, True]]
    """
    if "split" not in table.columns:
        raise ValueError("table: missing column 'split' (rule: every task table has a split)")
    use = analysis_rows(table)
    return ((use & table["split"].eq("train")).to_numpy(), (use & table["split"].eq("test")).to_numpy())


def _rule_text(rule: str, ambiguous: str, last_train: int, first_test: int, unit: str) -> str:
    if rule == "anchor_group":
        return "temporal split by the patient's anchor_year_group (the paper's rule)"
    where = {"exclude": "excluded", "train": "kept as train", "test": "kept as test"}[ambiguous]
    return (f"temporal split by the real year of the {unit}: train if <= {last_train}, test if >= {first_test}; "
            f"ambiguous {where}")


def split_flow_step(frame: pd.DataFrame, *, rule: str, ambiguous: str,
                    train_groups: Sequence[str], test_groups: Sequence[str], unit: str = "stay") -> dict:
    """The flow-table row of the temporal split: rows left in the train or test split.

    Parameters
    ----------
    frame : pandas.DataFrame
        Rows remaining before the split (from :func:`assign_split`, with ``split``).
    rule, ambiguous, train_groups, test_groups
        As given to :func:`assign_split` (for the criterion's wording).
    unit : str
        What a row is ('stay', 'admission').

    Returns
    -------
    dict
        ``{'criterion', 'n_remaining', 'n_excluded'}``, without a step number:
        :func:`clinops.tasks.flow.append_flow_step` numbers it in the task's flow.
    """
    last_train = max(end for _, end in _bounds(train_groups, "train_groups"))
    first_test = min(start for start, _ in _bounds(test_groups, "test_groups"))
    kept = int(frame["split"].isin(["train", "test"]).sum())
    return {"criterion": _rule_text(rule, ambiguous, last_train, first_test, unit),
            "n_remaining": kept, "n_excluded": len(frame) - kept}


def split_by_rule_table(frame: pd.DataFrame, *, label_column: str = "label") -> pd.DataFrame:
    """Rows, subjects, outcomes and prevalence per rule and verdict (the sensitivity table).

    Parameters
    ----------
    frame : pandas.DataFrame
        From :func:`assign_split`, with ``subject_id`` and the label.

    Returns
    -------
    pandas.DataFrame
        Columns ``rule`` ('anchor_group' / 'real_year'), ``verdict``, ``n``, ``n_subjects``,
        ``n_positive``, ``prevalence``; then one row per k = event year - anchor_year
        (``rule = 'offset k'``) so the shift that drives the real-year rule is visible.

    Examples
    --------
    >>> rows = pd.DataFrame({"anchor_year_group": ["2014 - 2016"] * 2, "anchor_year": [2150, 2150],
    ...                      "event_year": [2152, 2150], "subject_id": [1, 1], "label": [1, 0]})
    >>> t = split_by_rule_table(assign_split(rows, train_groups=["2014 - 2016"], test_groups=["2017 - 2019"]))
    >>> t[["rule", "verdict", "n", "n_positive"]].head(5)
               rule    verdict  n  n_positive
    0  anchor_group      train  2           1
    1  anchor_group       test  0           0
    2     real_year      train  1           0
    3     real_year       test  0           0
    4     real_year  ambiguous  1           1
    """
    need = ["split_anchor_group", "split_real_year", "real_year_min", "anchor_year_group", "subject_id",
            label_column]
    missing = [c for c in need if c not in frame.columns]
    if missing:
        raise ValueError(f"frame: missing column(s) {missing} (rule: pass the frame assign_split returned)")
    rows = []
    for rule, column, verdicts in (("anchor_group", "split_anchor_group", ("train", "test")),
                                   ("real_year", "split_real_year", ("train", "test", "ambiguous"))):
        for verdict in verdicts:
            part = frame[frame[column].eq(verdict)]
            rows.append(_counts(rule, verdict, part, label_column))
    start = frame["anchor_year_group"].map(lambda g: parse_anchor_year_group(g)[0])
    offset = (frame["real_year_min"] - start).astype("int64")
    for k in sorted(offset.unique()):
        rows.append(_counts("offset k", f"k = {k}", frame[offset.eq(k)], label_column))
    return pd.DataFrame(rows)


def _counts(rule: str, verdict: str, part: pd.DataFrame, label_column: str) -> dict:
    n = len(part)
    positive = int(part[label_column].sum())
    return {"rule": rule, "verdict": verdict, "n": n, "n_subjects": int(part["subject_id"].nunique()),
            "n_positive": positive, "prevalence": positive / n if n else float("nan")}

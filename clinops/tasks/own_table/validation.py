"""The own cohort's rules, column by column: a user's table becomes the task table or is refused.

Every problem is a :class:`~clinops.tasks.own_table.rules.CohortTableError` naming the column
and the rule: a missing column (one error naming all of them), a repeated or missing id, a
non-binary or missing outcome, unknown split labels, an unparseable time column or cut-off, a
feature whose values are all missing, values outside a declared plausible range, unknown
categories, a split without both outcome classes. All problems of one pass are reported
together.

Examples
--------
>>> import pandas as pd
>>> raw = pd.DataFrame({"ref": ["a", "b", "c", "d"], "died": [0, 1, 0, 1], "lactate": [1.0, 2.5, None, 4.0],
...                     "part": ["train", "train", "TEST", "test"]})
>>> spec = [{"name": "lactate", "kind": "numeric", "unit": "mmol/L", "plausible_range": [0, 30]}]
>>> make_task_table(raw, id_column="ref", outcome_column="died", features=spec, split_column="part")
  id  lactate  label  split sensitive_sex  sensitive_age
0  a      1.0      0  train          <NA>            NaN
1  b      2.5      1  train          <NA>            NaN
2  c      NaN      0   test          <NA>            NaN
3  d      4.0      1   test          <NA>            NaN
"""
from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

from clinops.tasks.own_table.rules import SPLITS, CohortTableError, category_text, examples, raise_all

# Spellings of sex mapped to the task table's 'M' / 'F' (compared lower-case, stripped).
_SEX_CODES = {"m": "M", "male": "M", "man": "M", "f": "F", "female": "F", "woman": "F"}
# Ages above this are a coding artefact, not a person (MIMIC-III stores ages > 89 as ~300).
MAX_AGE_YEARS = 130.0


def _ids(col: pd.Series, name: str, problems: list) -> pd.Series:
    if col.isna().any():
        problems.append((name, f"id missing in {int(col.isna().sum())} row(s) (rule: every stay needs an id)"))
    if pd.api.types.is_integer_dtype(col):
        ids = col.astype("int64")
    elif pd.api.types.is_float_dtype(col) and col.dropna().apply(float.is_integer).all():
        ids = col.astype("Int64")
    else:
        ids = col.astype("string").str.strip()
    dup = ids[ids.notna() & ids.duplicated(keep=False)]
    if len(dup):
        problems.append((name, f"id repeats: {dup.nunique()} id(s) occur more than once ({len(dup)} rows), e.g. "
                               f"{examples(dup.tolist(), 3)} (rule: one row per stay)"))
    return ids


def _subjects(col: pd.Series, name: str, problems: list) -> pd.Series:
    # One patient may have several stays; the CV folds keep a patient's stays together.
    if col.isna().any():
        problems.append((name, f"subject id missing in {int(col.isna().sum())} row(s) (rule: every stay names "
                               "its patient when subject_column is given)"))
    return col.astype("string").str.strip()


def _outcome(col: pd.Series, name: str, problems: list) -> pd.Series | None:
    if pd.api.types.is_bool_dtype(col):
        return col.astype("int64")
    missing = col.isna()
    num = pd.to_numeric(col, errors="coerce")
    bad = col[~missing & (num.isna() | ~num.isin([0, 1]))]
    if len(bad):
        found = sorted(map(str, col.dropna().unique()))
        problems.append((name, f"outcome must be binary 0/1; found values {found[:10]}"
                               + (f" ({len(found)} distinct)" if len(found) > 10 else "")))
        return None
    if missing.any():
        problems.append((name, f"outcome missing in {int(missing.sum())} row(s) (rule: every stay needs a 0/1 "
                               "outcome; drop stays without one)"))
        return None
    if num.nunique() < 2:
        problems.append((name, f"outcome must take both values 0 and 1; every row is {int(num.iloc[0])}"))
        return None
    return num.astype("int64")


def _split_from_column(col: pd.Series, name: str, problems: list) -> pd.Series | None:
    missing = col.isna()
    labels = col.astype("string").str.strip().str.lower()
    unknown = labels[~missing & ~labels.isin(SPLITS)]
    if len(unknown):
        problems.append((name, f"unknown split label(s) {examples(col[unknown.index].tolist())}; allowed: "
                               "'train', 'test' (case-insensitive)"))
        return None
    if missing.any():
        problems.append((name, f"split missing in {int(missing.sum())} row(s) (rule: every stay is 'train' or 'test')"))
        return None
    return labels.astype(object)


def _split_from_time(col: pd.Series, name: str, cutoff: Any, problems: list) -> pd.Series | None:
    missing = col.isna()
    if missing.any():
        problems.append((name, f"time missing in {int(missing.sum())} row(s) (rule: every stay needs a time to be "
                               "placed before or after time_cutoff)"))
        return None
    if pd.api.types.is_numeric_dtype(col) and not pd.api.types.is_bool_dtype(col):
        try:
            cut = float(cutoff)
        except (TypeError, ValueError):
            problems.append(("data.table.time_cutoff", f"the time column {name!r} holds numbers, so the cut-off "
                                                       f"must be a number too, got {cutoff!r}"))
            return None
        return pd.Series(np.where(col.to_numpy(dtype=float) >= cut, "test", "train"), index=col.index, dtype=object)
    if isinstance(cutoff, (int, float)) and not isinstance(cutoff, bool):
        problems.append(("data.table.time_cutoff", f"the time column {name!r} holds dates, so the cut-off must be "
                                                   f"a date string such as '2021-01-01', got the number {cutoff!r}"))
        return None
    text = col.astype("string").str.strip()
    times = pd.to_datetime(text, errors="coerce", format="mixed")
    bad = text[times.isna()]
    if len(bad):
        problems.append((name, f"unparseable time value(s) in {len(bad)} row(s), e.g. {examples(bad.tolist(), 3)} "
                               "(rule: ISO dates such as 2021-03-04 or 2021-03-04 13:00)"))
        return None
    try:
        cut = pd.Timestamp(str(cutoff).strip())
    except (ValueError, TypeError):
        problems.append(("data.table.time_cutoff", f"unparseable cut-off {cutoff!r} (rule: an ISO date such as "
                                                   "'2021-01-01'; quote it in YAML)"))
        return None
    tz = getattr(times.dt, "tz", None)
    if tz is not None and cut.tzinfo is None:
        cut = cut.tz_localize(tz)
    elif tz is None and cut.tzinfo is not None:
        cut = cut.tz_convert(None)
    return pd.Series(np.where(times >= cut, "test", "train"), index=col.index, dtype=object)


def _numeric_feature(col: pd.Series, spec: Mapping, problems: list) -> pd.Series:
    name = spec["name"]
    if pd.api.types.is_bool_dtype(col):
        values = col.astype(float)
    else:
        values = pd.to_numeric(col, errors="coerce").astype(float)
        bad = col[col.notna() & values.isna()]
        if len(bad):
            problems.append((name, f"numeric feature holds non-numbers in {len(bad)} row(s), e.g. "
                                   f"{examples(bad.tolist(), 3)}"))
            return values
    inf = np.isinf(values.to_numpy())
    if inf.any():
        problems.append((name, f"infinite value(s) in {int(inf.sum())} row(s) (rule: finite numbers or missing)"))
    rng = spec.get("plausible_range")
    if rng is not None:
        lo, hi = rng
        outside = values.notna() & ((values < lo) | (values > hi))
        if outside.any():
            problems.append((name, f"{int(outside.sum())} value(s) outside the declared plausible range "
                                   f"[{lo:g}, {hi:g}] {spec['unit']} (found {values[outside].min():g} to "
                                   f"{values[outside].max():g}); correct or blank them, or widen the range "
                                   "with a justification"))
    return values


def _binary_feature(col: pd.Series, name: str, problems: list) -> pd.Series:
    if pd.api.types.is_bool_dtype(col):
        return col.astype(float)
    values = pd.to_numeric(col, errors="coerce").astype(float)
    bad = col[col.notna() & (values.isna() | ~values.isin([0.0, 1.0]))]
    if len(bad):
        problems.append((name, f"binary feature must be 0/1 (or missing); found {examples(bad.tolist())} in "
                               f"{len(bad)} row(s)"))
    return values


def _categorical_feature(col: pd.Series, spec: Mapping, problems: list) -> pd.Series:
    name = spec["name"]
    texts = col.map(lambda v: None if pd.isna(v) else category_text(v)).astype(object)
    allowed = spec.get("categories") or []
    unknown = texts[texts.notna() & ~texts.isin(allowed)]
    if len(unknown):
        counts = unknown.value_counts()
        problems.append((name, f"unknown categor{'y' if len(counts) == 1 else 'ies'} "
                               f"{', '.join(f'{k!r} ({v} rows)' for k, v in counts.head(8).items())}; declared: "
                               f"{allowed}"))
    return texts


def _sex(col: pd.Series) -> pd.Series:
    # A stay whose sex is missing or neither M nor F is kept, in its own group ('unknown' or
    # 'other'): dropping it would hide it from the audit. The fairness stage reports these
    # groups in Table 2 and leaves them out of the two-group (male/female) gaps.
    return col.map(lambda v: "unknown" if pd.isna(v) else _SEX_CODES.get(str(v).strip().lower(), "other")
                   ).astype("string")


def _age(col: pd.Series, name: str, edges: Sequence[float], problems: list) -> pd.Series:
    values = pd.to_numeric(col, errors="coerce").astype(float)
    bad = col[col.notna() & values.isna()]
    if len(bad):
        problems.append((name, f"age must be a number of years; found {examples(bad.tolist(), 3)}"))
        return values
    if values.isna().any():
        problems.append((name, f"age missing in {int(values.isna().sum())} row(s) (rule: the age groups of the "
                               "fairness audit need every stay's age)"))
    low = values < edges[0]
    if low.any():
        problems.append((name, f"{int(low.sum())} age(s) below the first age edge {edges[0]:g} (minimum "
                               f"{values.min():g}); lower data.table.sensitive.age_edges[0] or drop those stays"))
    high = values > MAX_AGE_YEARS
    if high.any():
        problems.append((name, f"{int(high.sum())} age(s) above {MAX_AGE_YEARS:g} years (maximum {values.max():g}): "
                               "a coded value, not an age"))
    return values


def _check_drift(features: Sequence[Mapping], drift: Mapping | None, problems: list) -> None:
    if not drift:
        return
    kinds = {f["name"]: f["kind"] for f in features}
    feature = drift.get("feature")
    if feature not in kinds:
        problems.append(("drift.feature", f"{feature!r} is not a declared feature; the drift scenario perturbs one "
                                          f"of {sorted(kinds)}"))
        return
    kind, shift, prevalence = kinds[feature], drift.get("shift"), drift.get("target_prevalence")
    if kind == "categorical":
        problems.append(("drift.feature", f"{feature!r} is categorical; the scenario resamples a binary feature "
                                          "(drift.target_prevalence) or moves a numeric one (drift.shift)"))
    elif kind == "numeric" and shift is None:
        problems.append(("drift.shift", f"required when drift.feature {feature!r} is numeric (units of the feature "
                                        "added to the chosen stays)"))
    elif kind == "binary" and shift is None and prevalence is None:
        problems.append(("drift.target_prevalence", f"required when drift.feature {feature!r} is binary"))
    elif kind == "binary" and shift is not None:
        problems.append(("drift.shift", f"drift.feature {feature!r} is binary: set drift.target_prevalence and "
                                        "drift.shift: null"))


def make_task_table(table: pd.DataFrame, *, id_column: str, outcome_column: str, features: Sequence[Mapping],
                    split_column: str | None = None, time_column: str | None = None, time_cutoff: Any = None,
                    sex_column: str | None = None, age_column: str | None = None,
                    age_edges: Sequence[float] = (18, 45, 65, 80), other_columns: Sequence[str] = (),
                    min_class_count: int = 1, drift: Mapping | None = None,
                    subject_column: str | None = None) -> pd.DataFrame:
    """Validate a one-row-per-stay table and turn it into the pipeline's task table.

    Parameters
    ----------
    table : DataFrame, shape (n_stays, ...)
        The user's table; columns not named here are ignored.
    id_column, outcome_column : str
        Stay id (unique) and binary outcome (0/1 or bool).
    features : sequence of dict
        The manifest's feature specs (:func:`manifest_dict` ``['features']``): name, kind,
        unit, plausible_range, categories.
    split_column : str, optional
        'train' / 'test' per stay (case-insensitive). Give this or ``time_column``.
    time_column, time_cutoff : str, str or number
        Stays at or after the cut-off are the test split (dates as ISO strings, or numbers).
    sex_column, age_column : str, optional
        Sensitive attributes; sex as M/F (male/female accepted; missing -> 'unknown', any other value -> 'other'), age in years.
    age_edges : increasing sequence of years
        Lower bounds of the fairness age groups; every age must be >= ``age_edges[0]``.
    other_columns : sequence of str
        Further group columns audited as given (missing values become the group 'unknown').
    min_class_count : int
        Each split must hold at least this many stays of each outcome class (the pipeline uses
        the number of CV folds).
    drift : mapping, optional
        The ``drift`` section: its feature must be declared, binary with a target prevalence
        or numeric with a shift.
    subject_column : str, optional
        The patient of each stay (several stays per patient allowed): becomes ``subject_id``
        and groups the CV folds by patient.

    Returns
    -------
    DataFrame, shape (n_stays, 5 + n_features + len(other_columns))
        ``id``, the features in raw units (NaN = missing; categories as strings), ``label``
        (int 0/1), ``split`` ('train'/'test'), ``sensitive_sex`` ('M', 'F', 'unknown' (missing),
        'other' (any other value); NA without a sex column),
        ``sensitive_age`` (years or NaN), ``group_<column>`` (str); ``subject_id`` (str) with
        ``subject_column``.

    Raises
    ------
    CohortTableError
        Naming the column and the rule; all problems of one pass are reported together.
    """
    problems: list[tuple[str, str]] = []
    if (split_column is None) == (time_column is None):
        raise CohortTableError("data.table.split_column", "give exactly one of split_column or time_column "
                               f"(+ time_cutoff); got split_column={split_column!r}, time_column={time_column!r} "
                               "(a parameter file that extends another inherits its split: set the other to null)")
    if time_column is not None and time_cutoff is None:
        raise CohortTableError("data.table.time_cutoff", "required with time_column")
    edges = [float(e) for e in age_edges]
    if len(edges) < 1 or any(b <= a for a, b in zip(edges, edges[1:])):
        raise CohortTableError("data.table.sensitive.age_edges", f"must be strictly increasing, got {list(age_edges)}")
    names = [f["name"] for f in features]
    if outcome_column in names:
        problems.append((outcome_column, "the outcome column cannot also be a feature (label leakage)"))
    if id_column in names:
        problems.append((id_column, "the id column cannot be a feature"))
    for col in other_columns:
        if col in ("sex", "age_group", "overall"):
            problems.append((col, "'sex', 'age_group' and 'overall' name built-in fairness attributes: rename "
                                  "the column"))
    if subject_column is not None and "subject_id" in names:
        problems.append(("subject_id", "the name 'subject_id' is the task table's patient column when "
                                       "subject_column is given: rename the feature"))
    _check_drift(features, drift, problems)
    raise_all(problems)

    required = [id_column, outcome_column, split_column or time_column, *names, sex_column, age_column,
                *other_columns, subject_column]
    missing = list(dict.fromkeys(c for c in required if c is not None and c not in table.columns))
    if missing:
        raise CohortTableError(", ".join(missing), f"column(s) missing from the cohort table: {missing}")

    out = pd.DataFrame(index=table.index)
    out["id"] = _ids(table[id_column], id_column, problems)
    for spec in features:
        col = table[spec["name"]]
        if spec["kind"] == "numeric":
            values = _numeric_feature(col, spec, problems)
        elif spec["kind"] == "binary":
            values = _binary_feature(col, spec["name"], problems)
        else:
            values = _categorical_feature(col, spec, problems)
        if values.isna().all():
            problems.append((spec["name"], f"every value is missing ({len(values)} rows): a feature with no data "
                                           "cannot be learned from; drop it from data.table.features"))
        out[spec["name"]] = values
    label = _outcome(table[outcome_column], outcome_column, problems)
    if split_column is not None:
        split = _split_from_column(table[split_column], split_column, problems)
    else:
        split = _split_from_time(table[time_column], time_column, time_cutoff, problems)
    out["label"] = label
    out["split"] = split
    out["sensitive_sex"] = (_sex(table[sex_column]) if sex_column
                            else pd.Series(pd.NA, index=table.index, dtype="string"))
    out["sensitive_age"] = _age(table[age_column], age_column, edges, problems) if age_column else np.nan
    for col in other_columns:
        out[f"group_{col}"] = table[col].map(lambda v: "unknown" if pd.isna(v) else category_text(v)).astype(str)
    if subject_column is not None:
        out["subject_id"] = _subjects(table[subject_column], subject_column, problems)
    raise_all(problems)

    # Cross-column rules, once every column is valid.
    where = split_column or time_column
    for part in SPLITS:
        rows = out["split"].eq(part)
        n, pos = int(rows.sum()), int(out.loc[rows, "label"].sum())
        if n == 0:
            problems.append((where, f"the {part} split is empty (rule: both a train and a test split)"))
        elif pos < min_class_count or n - pos < min_class_count:
            problems.append((outcome_column, f"the {part} split has {pos} positive and {n - pos} negative outcome(s) "
                                             f"among {n} stays (rule: at least {min_class_count} of each class)"))
    train = out["split"].eq("train")
    if train.any():
        for spec in features:
            if out.loc[train, spec["name"]].isna().all() and out[spec["name"]].notna().any():
                problems.append((spec["name"], f"every value is missing in the train split ({int(train.sum())} "
                                               "rows): the model cannot learn it and imputation has no median"))
    raise_all(problems)
    out["label"] = out["label"].astype("int64")
    return out.reset_index(drop=True)

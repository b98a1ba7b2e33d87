"""Bring your own cohort: a hospital's one-row-per-stay table as the primary task (issue #8).

The paper's first limitation is that everything was shown on one dataset from one institution.
This module makes the portability claim testable: any table with one row per stay, an id, a
binary outcome, feature columns and a split (or a time column with a cut-off) becomes the task
table the later stages read, so model selection, calibration, conformal sets, the fairness
tables and alerts, the drift scenario and monitor, lineage and the report run unchanged.

What a user declares lives in the parameter file under ``data.table`` (see
``params/example-own-cohort.yaml``): the column names, each feature's kind (numeric, binary,
categorical), optional unit, plausible range, categories and justification (the cohort's
feature manifest), and the sensitive attributes (sex, age binned by given edges, other group
columns). Only the declared columns are ever read from the file (data minimisation).

Everything is checked before anything is written, and every problem is a
:class:`CohortTableError` naming the column and the rule: a missing column (one error naming
all of them), a repeated or missing id, a non-binary or missing outcome, unknown split labels,
an unparseable time column or cut-off, a feature whose values are all missing, values outside a
declared plausible range, unknown categories, a split without both outcome classes. Sensitive
groups smaller than ``fairness.min_group_size`` in the test split are not an error: the fairness
stage reports them as NOT ESTIMABLE, and the summary written here lists them beforehand.

Command line::

    python -m clinops.cohort_table example OUT.csv [--n-stays 3000] [--seed 20260318]
    python -m clinops.cohort_table check PARAMS      # validate only, write nothing
    python -m clinops.cohort_table build PARAMS      # = python -m clinops.pipeline task-table PARAMS
"""
from __future__ import annotations

import hashlib
import logging
import math
import os
import re
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Sequence

import numpy as np
import pandas as pd

if TYPE_CHECKING:  # pragma: no cover
    from clinops.config import Params

__all__ = ["CohortTableError", "describe_source", "manifest_dict", "read_cohort_table", "make_task_table",
           "sensitive_group_sizes", "build_task_table", "example_cohort", "main"]

log = logging.getLogger("clinops.cohort_table")

# Columns of the task table that are not features (clinops.pipeline module docstring).
RESERVED = ("id", "label", "split", "sensitive_sex", "sensitive_age")
SPLITS = ("train", "test")
# Spellings of sex mapped to the task table's 'M' / 'F' (compared lower-case, stripped).
_SEX_CODES = {"m": "M", "male": "M", "man": "M", "f": "F", "female": "F", "woman": "F"}
# Ages above this are a coding artefact, not a person (MIMIC-III stores ages > 89 as ~300).
MAX_AGE_YEARS = 130.0
_SNAKE = re.compile(r"^[a-z][a-z0-9_]*$")


class CohortTableError(ValueError):
    """The cohort table or its declaration breaks a rule.

    Attributes
    ----------
    column : str
        The column (or parameter key) at fault; several are joined by ``', '``.
    rule : str
        What was required and what was found.
    problems : list of (column, rule)
        Every problem found in the same pass (one entry when there is one problem).
    """

    def __init__(self, column: str, rule: str, *, problems: Sequence[tuple[str, str]] | None = None):
        self.column = column
        self.rule = rule
        self.problems = list(problems) if problems else [(column, rule)]
        if len(self.problems) == 1:
            message = f"{column}: {rule}"
        else:
            message = (f"{len(self.problems)} problems in the cohort table:\n"
                       + "\n".join(f"  - {c}: {r}" for c, r in self.problems))
        super().__init__(message)


def _raise_all(problems: list[tuple[str, str]]) -> None:
    if len(problems) == 1:
        raise CohortTableError(*problems[0])
    if problems:
        raise CohortTableError(", ".join(dict.fromkeys(c for c, _ in problems)),
                               "; ".join(r for _, r in problems), problems=problems)


def _examples(values: Any, k: int = 5) -> str:
    uniq = list(dict.fromkeys(values))
    shown = ", ".join(repr(v.item() if hasattr(v, "item") else v) for v in uniq[:k])
    return shown + (f", ... ({len(uniq)} distinct)" if len(uniq) > k else "")


# ---------------------------------------------------------------------------------------------
# the declaration (data.table in the parameter file)
# ---------------------------------------------------------------------------------------------
def _table_section(P: "Params") -> dict:
    if P.source != "table":
        raise CohortTableError("data.source", f"must be 'table' for a cohort table run, got {P.source!r}")
    return dict(P["data"]["table"])


def _category_text(value: Any) -> str:
    """A category as the manifest's string: integral numbers lose their '.0' (1.0 -> '1')."""
    if isinstance(value, (bool, np.bool_)):
        return str(bool(value)).lower()
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)) and math.isfinite(value) and float(value).is_integer():
        return str(int(value))
    return str(value).strip()


def _manifest_from_features(features: Sequence[Mapping], *, name: str, description: str) -> dict:
    """The FeatureManifest dict of a declared feature list, with the defaults filled in."""
    problems: list[tuple[str, str]] = []
    out = []
    seen: set[str] = set()
    for i, f in enumerate(features):
        fname, kind = f.get("name"), f.get("kind")
        where = f"data.table.features[{i}]" + (f" ({fname})" if fname else "")
        if not isinstance(fname, str) or not _SNAKE.match(fname):
            problems.append((where, f"feature names must be lower snake case (a-z, 0-9, _; starting with a "
                                    f"letter), got {fname!r}: rename the column in your table"))
            continue
        if fname in RESERVED or fname.startswith("group_"):
            problems.append((fname, f"the names {list(RESERVED)} and 'group_*' are reserved for the task "
                                    "table: rename the column"))
        if fname in seen:
            problems.append((fname, "declared twice in data.table.features"))
        seen.add(fname)
        unit = f.get("unit") or {"numeric": "as recorded", "binary": "1 = yes, 0 = no",
                                 "categorical": "category"}[kind]
        just = (f.get("justification") or "").strip() or "not given in the parameter file"
        spec: dict[str, Any] = {"name": fname, "kind": kind, "unit": str(unit),
                                "aggregate": "as provided in the cohort table",
                                "source": {"method": "cohort_table", "column": fname},
                                "plausible_range": None, "justification": just}
        rng = f.get("plausible_range")
        if rng is not None:
            if kind != "numeric":
                problems.append((fname, f"plausible_range is only for numeric features (this one is {kind})"))
            elif not float(rng[0]) < float(rng[1]):
                problems.append((fname, f"plausible_range needs low < high, got {list(rng)}"))
            else:
                spec["plausible_range"] = [float(rng[0]), float(rng[1])]
        cats = f.get("categories")
        if kind == "categorical":
            if not cats:
                problems.append((fname, "a categorical feature needs 'categories' (the list of allowed values, "
                                        "which also fixes their codes)"))
            else:
                texts = [_category_text(c) for c in cats]
                if len(set(texts)) != len(texts) or not all(texts):
                    problems.append((fname, f"categories must be distinct and non-empty, got {list(cats)}"))
                spec["categories"] = texts
        elif cats:
            problems.append((fname, f"categories are only for categorical features (this one is {kind})"))
        out.append(spec)
    _raise_all(problems)
    return {"name": name, "version": 1, "description": description, "features": out}


def manifest_dict(P: "Params") -> dict:
    """The feature manifest of a cohort table run, from ``data.table.features``.

    Defaults where the parameter file gives none: unit 'as recorded' (numeric), '1 = yes,
    0 = no' (binary), 'category' (categorical); aggregate 'as provided in the cohort table';
    justification 'not given in the parameter file'; no plausible range.

    Parameters
    ----------
    P : Params with ``data.source: table``.

    Returns
    -------
    dict
        ``{'name', 'version', 'description', 'features': [...]}`` as
        :meth:`clinops.features.FeatureManifest.from_dict` takes it; ``name`` is the run name.

    Raises
    ------
    CohortTableError
        A feature name that is not lower snake case or is reserved, a categorical feature
        without categories, a range on a non-numeric feature.
    """
    t = _table_section(P)
    return _manifest_from_features(
        t["features"], name=P.name,
        description=f"Features of the user-provided cohort table {Path(t['path']).name} "
                    f"(outcome column {t['outcome_column']!r}), declared in {P.path.name}.")


# ---------------------------------------------------------------------------------------------
# the file
# ---------------------------------------------------------------------------------------------
def _file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _is_parquet(path: Path) -> bool:
    return path.suffix.lower() in (".parquet", ".pq")


def _is_csv(path: Path) -> bool:
    name = path.name.lower()
    return name.endswith((".csv", ".csv.gz", ".tsv", ".tsv.gz"))


def _check_path(path: Path) -> None:
    if not path.is_file():
        raise CohortTableError("data.table.path", f"file not found: {path}")
    if not (_is_parquet(path) or _is_csv(path)):
        raise CohortTableError("data.table.path", f"must be a .csv, .csv.gz, .tsv or .parquet file, got {path.name}")


def _file_columns(path: Path) -> list[str]:
    if _is_parquet(path):
        import pyarrow.parquet as pq
        return list(pq.read_schema(path).names)
    sep = "\t" if ".tsv" in path.name.lower() else ","
    return list(pd.read_csv(path, nrows=0, sep=sep).columns)


def read_cohort_table(path: str | Path, *, columns: Sequence[str] | None = None,
                      string_columns: Sequence[str] = ()) -> pd.DataFrame:
    """Read a cohort table (CSV/TSV, optionally gzipped, or parquet), only the given columns.

    Parameters
    ----------
    path : the file.
    columns : the columns to read (None: all). Missing ones raise one error naming all of them.
    string_columns : CSV columns read as text (ids keep leading zeros).

    Returns
    -------
    pandas.DataFrame, shape (n_rows, len(columns))

    Raises
    ------
    CohortTableError : file not found, unknown format, missing columns.
    """
    path = Path(path)
    _check_path(path)
    present = _file_columns(path)
    if columns is not None:
        wanted = list(dict.fromkeys(columns))
        missing = [c for c in wanted if c not in present]
        if missing:
            raise CohortTableError(", ".join(missing), f"column(s) missing from {path.name}: {missing} "
                                   f"(the file has: {present})")
    else:
        wanted = present
    if _is_parquet(path):
        return pd.read_parquet(path, columns=wanted)
    sep = "\t" if ".tsv" in path.name.lower() else ","
    return pd.read_csv(path, usecols=wanted, sep=sep, low_memory=False,
                       dtype={c: str for c in string_columns if c in wanted})[wanted]


def _source_key(P: "Params", path: Path) -> str:
    """How lineage names the table: its path relative to the project root, else its file name."""
    try:
        return str(path.resolve().relative_to(P.root.resolve()))
    except ValueError:
        return path.name


def describe_source(P: "Params") -> dict:
    """What the cohort table is, for lineage: path, SHA-256, rows and columns.

    Returns
    -------
    dict
        ``source``, ``data_label``, ``path`` (as given, resolved), ``sha256`` ({path relative to
        the project root, or the file name when outside it: hex digest}), ``n_rows``,
        ``columns`` (all of the file's column names; only declared ones are ever read).
    """
    t = _table_section(P)
    path = P.resolve(t["path"])
    _check_path(path)
    key = _source_key(P, path)
    if _is_parquet(path):
        import pyarrow.parquet as pq
        n_rows = int(pq.read_metadata(path).num_rows)
    else:
        sep = "\t" if ".tsv" in path.name.lower() else ","
        n_rows = int(sum(len(chunk) for chunk in pd.read_csv(path, usecols=[0], sep=sep, chunksize=200_000)))
    return {"source": "table", "data_label": P.data_label, "path": str(path), "sha256": {key: _file_sha256(path)},
            "n_rows": n_rows, "columns": _file_columns(path)}


# ---------------------------------------------------------------------------------------------
# validation and the task table
# ---------------------------------------------------------------------------------------------
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
                               f"{_examples(dup.tolist(), 3)} (rule: one row per stay)"))
    return ids


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
        problems.append((name, f"unknown split label(s) {_examples(col[unknown.index].tolist())}; allowed: "
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
        problems.append((name, f"unparseable time value(s) in {len(bad)} row(s), e.g. {_examples(bad.tolist(), 3)} "
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
                                   f"{_examples(bad.tolist(), 3)}"))
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
        problems.append((name, f"binary feature must be 0/1 (or missing); found {_examples(bad.tolist())} in "
                               f"{len(bad)} row(s)"))
    return values


def _categorical_feature(col: pd.Series, spec: Mapping, problems: list) -> pd.Series:
    name = spec["name"]
    texts = col.map(lambda v: None if pd.isna(v) else _category_text(v)).astype(object)
    allowed = spec.get("categories") or []
    unknown = texts[texts.notna() & ~texts.isin(allowed)]
    if len(unknown):
        counts = unknown.value_counts()
        problems.append((name, f"unknown categor{'y' if len(counts) == 1 else 'ies'} "
                               f"{', '.join(f'{k!r} ({v} rows)' for k, v in counts.head(8).items())}; declared: "
                               f"{allowed}"))
    return texts


def _sex(col: pd.Series, name: str, problems: list) -> pd.Series:
    codes = col.map(lambda v: None if pd.isna(v) else _SEX_CODES.get(str(v).strip().lower(), "?"))
    unknown = col[codes.eq("?")]
    if len(unknown):
        problems.append((name, f"sex must be M/F (also male/female, case-insensitive); found "
                               f"{_examples(unknown.tolist())}. Recode them, or audit this column as given by "
                               "listing it under sensitive.other_columns instead of sex_column"))
    if codes.isna().any():
        problems.append((name, f"sex missing in {int(codes.isna().sum())} row(s) (rule: fairness is audited on "
                               "every stay; recode missing values or use sensitive.other_columns)"))
    return codes.astype("string")


def _age(col: pd.Series, name: str, edges: Sequence[float], problems: list) -> pd.Series:
    values = pd.to_numeric(col, errors="coerce").astype(float)
    bad = col[col.notna() & values.isna()]
    if len(bad):
        problems.append((name, f"age must be a number of years; found {_examples(bad.tolist(), 3)}"))
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
                    min_class_count: int = 1, drift: Mapping | None = None) -> pd.DataFrame:
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
        Sensitive attributes; sex as M/F (male/female accepted), age in years.
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

    Returns
    -------
    DataFrame, shape (n_stays, 5 + n_features + len(other_columns))
        ``id``, the features in raw units (NaN = missing; categories as strings), ``label``
        (int 0/1), ``split`` ('train'/'test'), ``sensitive_sex`` ('M'/'F' or NA),
        ``sensitive_age`` (years or NaN), ``group_<column>`` (str).

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
    _check_drift(features, drift, problems)
    _raise_all(problems)

    required = [id_column, outcome_column, split_column or time_column, *names, sex_column, age_column,
                *other_columns]
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
    out["sensitive_sex"] = (_sex(table[sex_column], sex_column, problems) if sex_column
                            else pd.Series(pd.NA, index=table.index, dtype="string"))
    out["sensitive_age"] = _age(table[age_column], age_column, edges, problems) if age_column else np.nan
    for col in other_columns:
        out[f"group_{col}"] = table[col].map(lambda v: "unknown" if pd.isna(v) else _category_text(v)).astype(str)
    _raise_all(problems)

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
    _raise_all(problems)
    out["label"] = out["label"].astype("int64")
    return out.reset_index(drop=True)


def sensitive_group_sizes(task_table: pd.DataFrame, *, age_edges: Sequence[float], min_group_size: int) -> pd.DataFrame:
    """Stays per sensitive group in the test split, with whether fairness metrics are estimable.

    Parameters
    ----------
    task_table : the output of :func:`make_task_table`.
    age_edges : fairness age-group lower bounds (years).
    min_group_size : groups with fewer test stays are reported as not estimable.

    Returns
    -------
    DataFrame with columns ``attribute, group, n_test, events_test, status``.
    """
    from clinops.fairness import age_groups

    test = task_table[task_table["split"].eq("test")]
    attrs: dict[str, pd.Series] = {}
    if test["sensitive_sex"].notna().any():
        attrs["sex"] = test["sensitive_sex"].map({"M": "male", "F": "female"}).astype(str)
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


def check_table(P: "Params") -> pd.DataFrame:
    """Validate the whole cohort table a parameter file names and return its task table; write nothing.

    Raises
    ------
    CohortTableError : naming the column and the rule (see :func:`make_task_table`).
    """
    return _task_table_from_params(P)[0]


def _task_table_from_params(P: "Params") -> tuple[pd.DataFrame, dict]:
    t = _table_section(P)
    undeclared = [f["name"] for f in t["features"] if f.get("kind") == "categorical" and not f.get("categories")]
    if undeclared:
        # Say which values the table holds, so the user can declare them (in the order they choose).
        found = read_cohort_table(P.resolve(t["path"]), columns=undeclared)
        _raise_all([(c, "a categorical feature needs 'categories' (the list of allowed values, which also fixes "
                        f"their codes); the table holds {sorted({_category_text(v) for v in found[c].dropna()})}")
                    for c in undeclared])
    manifest = manifest_dict(P)
    sens = t.get("sensitive") or {}
    edges = sens.get("age_edges") or (P.get("fairness") or {}).get("age_edges") or [18, 45, 65, 80]
    others = list(sens.get("other_columns") or [])
    columns = [t["id_column"], t["outcome_column"], t.get("split_column") or t.get("time_column"),
               *[f["name"] for f in manifest["features"]], sens.get("sex_column"), sens.get("age_column"), *others]
    raw = read_cohort_table(P.resolve(t["path"]), columns=[c for c in columns if c],
                            string_columns=[t["id_column"]])
    cv_folds = int((P.get("modeling") or {}).get("cv_folds", 5))
    table = make_task_table(raw, id_column=t["id_column"], outcome_column=t["outcome_column"],
                            features=manifest["features"], split_column=t.get("split_column"),
                            time_column=t.get("time_column"), time_cutoff=t.get("time_cutoff"),
                            sex_column=sens.get("sex_column"), age_column=sens.get("age_column"), age_edges=edges,
                            other_columns=others, min_class_count=cv_folds, drift=P.get("drift"))
    return table, {"manifest": manifest, "age_edges": edges}


def build_task_table(P: "Params") -> Path:
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
    CohortTableError : naming the column and the rule (see :func:`make_task_table`).
    """
    from clinops.features import FeatureManifest, missingness_table
    from clinops.report import write_table

    from clinops.task_table import file_sha256, write_task_table

    source = P.resolve(_table_section(P)["path"])
    before = file_sha256(source) if source.is_file() else None
    table, info = _task_table_from_params(P)
    # The hash must name the bytes that were read: a file replaced while it was read is refused.
    if file_sha256(source) != before:
        raise CohortTableError("data.table.path", f"{source} changed while it was read; run again")
    manifest = FeatureManifest.from_dict(info["manifest"])
    # The encoder the model uses must accept every row (same rules, second line of defence).
    manifest.encode(table[manifest.names])
    path = P.build_dir / "primary" / "task_table.parquet"
    write_task_table(table, path, sources={_source_key(P, source): before})

    from clinops.pipeline import manifest_table

    from clinops.settings import resolve_task_settings

    dl, out = P.data_label, P.reports_dir
    min_group = resolve_task_settings(P, "primary").fairness.min_group_size
    is_train = table["split"].eq("train").to_numpy()
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


# ---------------------------------------------------------------------------------------------
# an example table
# ---------------------------------------------------------------------------------------------
def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def example_cohort(n_stays: int = 3000, *, seed: int, prevalence: float = 0.12) -> pd.DataFrame:
    """A plausible ICU cohort table of another hospital, from a documented simple model.

    Not real patients. Admissions are spread uniformly over 2019-2021. A latent severity
    ``z ~ N(0, 1)`` drives the first-day worst values: heart rate ``92 + 12 z + N(0, 14)`` bpm,
    systolic pressure ``100 - 10 z + N(0, 14)`` mmHg, respiratory rate ``22 + 3 z + N(0, 5)``
    /min, SpO2 ``100 - exp(N(0.8 + 0.4 z, 0.6))`` %, temperature ``37.4 + 0.2 z + N(0, 0.6)``
    degC, GCS ``15 - Binomial(12, sigmoid(-2.2 + 0.9 z))``, creatinine ``exp(N(0.25 z, 0.5))``
    mg/dL, lactate ``1.6 exp(N(0.3 z, 0.45))`` mmol/L (measured with probability
    ``sigmoid(-0.3 + 0.8 z)``: sicker patients are tested more), ventilation and vasopressors
    Bernoulli with logits ``-0.9 + 0.9 z + 0.8 [emergency surgery] + 1.2 [GCS < 9]`` and
    ``-1.4 + 0.9 z - 0.03 (SBP - 100)``. In-hospital death is Bernoulli with logit
    ``b0 + 0.03 (age - 63) + 0.6 z + 0.015 (HR - 92) - 0.012 (SBP - 100) + 0.04 (RR - 22)
    - 0.05 (SpO2 - 96) + 0.1 (15 - GCS) + 0.4 ln creatinine + 0.5 ln lactate + 0.5 vent
    + 0.5 vaso + 0.3 [emergency surgery] - 0.8 [elective surgery]``, ``b0`` set by bisection
    so the mean risk equals ``prevalence``. About 2 % of vitals and 3-5 % of GCS/creatinine
    are missing at random. Care units: medical 45 %, surgical 33.5 %, cardiac 20 %, burns 1.5 %
    (small on purpose: its fairness metrics are not estimable).

    Parameters
    ----------
    n_stays : number of rows.
    seed : seed of every random draw.
    prevalence : target mean risk of the outcome (0-1).

    Returns
    -------
    DataFrame, shape (n_stays, 17): ``stay_ref, admit_date, sex, age_years, care_unit,
    admission_type, heart_rate_max, sbp_min, resp_rate_max, spo2_min, temperature_max, gcs_min,
    creatinine_max, lactate_max, ventilated, vasopressors, died_in_hospital``.
    """
    if not isinstance(n_stays, (int, np.integer)) or n_stays < 10:
        raise ValueError(f"n_stays: must be an integer >= 10, got {n_stays!r}")
    if not 0 < prevalence < 1:
        raise ValueError(f"prevalence: must lie strictly between 0 and 1, got {prevalence}")
    rng = np.random.default_rng(seed)
    n = int(n_stays)
    days = np.sort(rng.integers(0, 1096, n))
    admit = pd.Timestamp("2019-01-01") + pd.to_timedelta(days, unit="D")
    age = np.clip(np.round(rng.normal(63, 17, n)), 18, 100)
    sex = np.where(rng.random(n) < 0.57, "male", "female")
    unit = rng.choice(["medical ICU", "surgical ICU", "cardiac ICU", "burns unit"], size=n,
                      p=[0.45, 0.335, 0.20, 0.015])
    adm = rng.choice(["medical", "emergency surgery", "elective surgery"], size=n, p=[0.55, 0.25, 0.20])
    z = rng.normal(0, 1, n)
    hr = np.clip(np.round(92 + 12 * z + rng.normal(0, 14, n)), 30, 220)
    sbp = np.clip(np.round(100 - 10 * z + rng.normal(0, 14, n)), 40, 220)
    rr = np.clip(np.round(22 + 3 * z + rng.normal(0, 5, n)), 6, 60)
    spo2 = np.clip(np.round(100 - np.exp(rng.normal(0.8 + 0.4 * z, 0.6))), 50, 100)
    temp = np.clip(np.round(37.4 + 0.2 * z + rng.normal(0, 0.6, n), 1), 34, 42)
    gcs = 15 - rng.binomial(12, _sigmoid(-2.2 + 0.9 * z))
    creat = np.clip(np.round(np.exp(rng.normal(0.25 * z, 0.5)), 2), 0.1, 15)
    lact = np.clip(np.round(1.6 * np.exp(rng.normal(0.3 * z, 0.45)), 1), 0.3, 25)
    emerg, elect = adm == "emergency surgery", adm == "elective surgery"
    vent = (rng.random(n) < _sigmoid(-0.9 + 0.9 * z + 0.8 * emerg + 1.2 * (gcs < 9))).astype(int)
    vaso = (rng.random(n) < _sigmoid(-1.4 + 0.9 * z - 0.03 * (sbp - 100))).astype(int)
    risk = (0.03 * (age - 63) + 0.6 * z + 0.015 * (hr - 92) - 0.012 * (sbp - 100) + 0.04 * (rr - 22)
            - 0.05 * (spo2 - 96) + 0.1 * (15 - gcs) + 0.4 * np.log(creat) + 0.5 * np.log(lact) + 0.5 * vent
            + 0.5 * vaso + 0.3 * emerg - 0.8 * elect)
    lo, hi = -20.0, 20.0
    for _ in range(60):  # bisection on the intercept: mean risk is increasing in b0
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if _sigmoid(mid + risk).mean() < prevalence else (lo, mid)
    died = (rng.random(n) < _sigmoid((lo + hi) / 2 + risk)).astype(int)

    def blank(values: np.ndarray, p: float | np.ndarray, whole: bool = False) -> pd.Series:
        out = pd.Series(values.astype(float))
        out[rng.random(n) < p] = np.nan
        return out.round().astype("Int64") if whole else out  # whole numbers print without '.0'

    return pd.DataFrame({
        "stay_ref": [f"ST{100000 + i}" for i in range(n)],
        "admit_date": admit.strftime("%Y-%m-%d"),
        "sex": sex, "age_years": age.astype(int), "care_unit": unit, "admission_type": adm,
        "heart_rate_max": blank(hr, 0.02, True), "sbp_min": blank(sbp, 0.02, True),
        "resp_rate_max": blank(rr, 0.02, True), "spo2_min": blank(spo2, 0.02, True),
        "temperature_max": blank(temp, 0.02), "gcs_min": blank(gcs, 0.05, True),
        "creatinine_max": blank(creat, 0.03), "lactate_max": blank(lact, 1 - _sigmoid(-0.3 + 0.8 * z)),
        "ventilated": vent, "vasopressors": vaso, "died_in_hospital": died,
    })


# ---------------------------------------------------------------------------------------------
# command line
# ---------------------------------------------------------------------------------------------
def main(argv: Sequence[str] | None = None) -> int:
    """``python -m clinops.cohort_table example|check|build ...`` (see the module docstring)."""
    import argparse

    ap = argparse.ArgumentParser(prog="python -m clinops.cohort_table",
                                 description="A hospital's own one-row-per-stay table as the primary task.")
    sub = ap.add_subparsers(dest="command", required=True)
    ex = sub.add_parser("example", help="write the example cohort table (CSV or parquet by suffix)")
    ex.add_argument("out", type=Path)
    ex.add_argument("--n-stays", type=int, default=3000)
    ex.add_argument("--seed", type=int, default=20260318)
    for name, text in (("check", "validate the table named by a parameter file; write nothing"),
                       ("build", "validate and write build/<run>/primary/task_table.parquet")):
        sub.add_parser(name, help=text).add_argument("params")
    args = ap.parse_args(argv)
    if args.command == "example":
        frame = example_cohort(args.n_stays, seed=args.seed)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        if _is_parquet(args.out):
            frame.to_parquet(args.out, index=False)
        else:
            frame.to_csv(args.out, index=False)
        print(f"wrote {args.out}: {len(frame)} stays, outcome prevalence {frame['died_in_hospital'].mean():.3f}")
        return 0
    from clinops.config import ParamsError, load_params

    try:
        P = load_params(args.params)
    except ParamsError as exc:
        print(f"INVALID {exc}", file=sys.stderr)
        return 1
    try:
        if args.command == "check":
            table = check_table(P)
            counts = table.groupby("split")["label"].agg(["size", "sum"])
            print(f"ok {P.resolve(P['data']['table']['path'])}: {len(table)} stays; "
                  + "; ".join(f"{s}: {int(r['size'])} stays, {int(r['sum'])} positive" for s, r in counts.iterrows()))
        else:
            print(f"wrote {build_task_table(P)}")
    except CohortTableError as exc:
        print(f"INVALID cohort table: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

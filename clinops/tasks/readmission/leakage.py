"""The readmission leakage check: no feature may use a row timed after the index discharge.

Each source query returns the rows its feature is built from with their ``event_time``; the
check joins them to the index admissions and asserts ``event_time <= dischtime`` for every
row. The extraction (:mod:`.extract`) runs the same check on exactly the rows it aggregates.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import pandas as pd

from clinops.tasks.readmission.sources import FeatureSource, feature_sources
from clinops.tasks.readmission.sql import bind, connection

#: Columns the feature extraction needs from the cohort.
_INDEX_COLUMNS: tuple[str, ...] = ("subject_id", "hadm_id", "admittime", "dischtime", "age")



class LeakageError(RuntimeError):
    """A feature's source rows include data timed after the index discharge.

    Attributes
    ----------
    feature : str
        The feature whose source leaks.
    n_rows : int
        Number of source rows with ``event_time`` after ``dischtime`` (or with no event time,
        which cannot be shown to precede discharge).
    n_admissions : int
        Number of index admissions those rows belong to.
    """

    def __init__(self, feature: str, n_rows: int, n_admissions: int):
        self.feature, self.n_rows, self.n_admissions = feature, int(n_rows), int(n_admissions)
        super().__init__(
            f"feature {feature!r} uses data timed after the index discharge: {self.n_rows} "
            f"source row(s) in {self.n_admissions} index admission(s) have event_time > dischtime "
            "(or no event_time); rule: every source row of a readmission feature must be known "
            "at discharge"
        )


def register_index(db: Any, cohort: pd.DataFrame) -> None:
    """Materialise the cohort's index columns as the temp table ``readmission_index``."""
    if not isinstance(cohort, pd.DataFrame):
        raise TypeError(f"cohort: must be a pandas DataFrame, got {type(cohort).__name__}")
    missing = [c for c in _INDEX_COLUMNS if c not in cohort.columns]
    if missing:
        raise ValueError(f"cohort: missing column(s) {missing} (rule: the cohort needs {list(_INDEX_COLUMNS)})")
    if cohort["hadm_id"].duplicated().any():
        dup = cohort.loc[cohort["hadm_id"].duplicated(), "hadm_id"].iloc[0]
        raise ValueError(f"cohort.hadm_id: must be unique (one row per index admission), {dup} repeats")
    for col in ("admittime", "dischtime"):
        if cohort[col].isna().any():
            raise ValueError(f"cohort.{col}: must not be missing (rule: every index admission has both times)")
    index = cohort.loc[:, list(_INDEX_COLUMNS)].copy()
    index["admittime"] = pd.to_datetime(index["admittime"])
    index["dischtime"] = pd.to_datetime(index["dischtime"])
    db.register("readmission_index_df", index)
    try:
        db.execute("CREATE OR REPLACE TEMP TABLE readmission_index AS SELECT * FROM readmission_index_df")
    finally:
        db.unregister("readmission_index_df")


def _as_sources(sources: Mapping[str, FeatureSource | str] | Iterable[FeatureSource] | None) -> list[FeatureSource]:
    if sources is None:
        return list(feature_sources().values())
    if isinstance(sources, Mapping):
        items = [s if isinstance(s, FeatureSource) else FeatureSource(feature=str(k), sql=s) for k, s in sources.items()]
    else:
        items = list(sources)
    for s in items:
        if not isinstance(s, FeatureSource) or not isinstance(s.sql, str):
            raise TypeError(f"sources: expected FeatureSource objects or feature -> SQL strings, got {s!r}")
    return items


def materialise_source(db: Any, source: FeatureSource) -> None:
    db.execute(f"CREATE OR REPLACE TEMP TABLE readmission_source AS {source.sql}",
               bind(source.sql, dict(source.params)))
    columns = {row[0] for row in db.execute("DESCRIBE readmission_source").fetchall()}
    missing = sorted({"hadm_id", "event_time"} - columns)
    if missing:
        raise ValueError(f"feature {source.feature!r}: source query must return {missing} "
                         "(rule: every source row exposes hadm_id and its event_time)")


def assert_no_leak(db: Any, feature: str) -> None:
    n_rows, n_adm = db.execute(
        """
        SELECT count(*), count(DISTINCT s.hadm_id)
        FROM readmission_source AS s
        JOIN readmission_index AS i ON i.hadm_id = s.hadm_id
        WHERE s.event_time IS NULL OR CAST(s.event_time AS TIMESTAMP) > i.dischtime
        """
    ).fetchone()
    if n_rows:
        raise LeakageError(feature, n_rows, n_adm)


def leakage_check(
    con: Any,
    cohort: pd.DataFrame,
    sources: Mapping[str, FeatureSource | str] | Iterable[FeatureSource] | None = None,
) -> None:
    """Fail if any feature source uses data timed after the index discharge.

    Each source query returns the rows its feature is built from with their ``event_time``;
    the check joins them to the index admissions and asserts ``event_time <= dischtime`` for
    every row (so ``max(event_time) <= dischtime`` per admission). A row without an
    event time fails too: it cannot be shown to precede discharge.

    Parameters
    ----------
    con : duckdb.DuckDBPyConnection or MimicDatabase
        Connection with the MIMIC-IV views.
    cohort : pandas.DataFrame
        Index admissions; needs ``subject_id, hadm_id, admittime, dischtime, age``.
    sources : mapping or iterable, optional
        ``{feature: FeatureSource}`` or ``{feature: SQL}`` (queries over ``readmission_index``
        returning ``hadm_id, event_time``), or FeatureSource objects. Default: the packaged
        manifest's sources, i.e. what :func:`extract_readmission_features` uses.

    Raises
    ------
    LeakageError
        Naming the first leaking feature (manifest order) and its offending row count.
    """
    db = connection(con)
    register_index(db, cohort)
    try:
        for source in _as_sources(sources):
            materialise_source(db, source)
            assert_no_leak(db, source.feature)
    finally:
        db.execute("DROP TABLE IF EXISTS readmission_source")
        db.execute("DROP TABLE IF EXISTS readmission_index")

"""Readmission features extracted from their sources, one row per index admission.

Every feature is computed from its source rows after the leakage check (:mod:`.leakage`) has
passed on exactly those rows, so a feature cannot use data timed after the index discharge.
"""
from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

from clinops.data.mimic import install_macros
from clinops.tasks.readmission.leakage import assert_no_leak, materialise_source, register_index
from clinops.tasks.readmission.sources import FeatureSource, feature_sources, load_readmission_manifest
from clinops.tasks.readmission.sql import connection, read_sql

log = logging.getLogger(__name__)


def _aggregate(db: Any, source: FeatureSource) -> pd.Series:
    """One value per hadm_id from the materialised ``readmission_source``."""
    col = source.column
    needed = {"last": {col, "ord"}, "value": {col}, "count": set(), "charlson": {"icd_code", "icd_version"},
              "principal_icd_chapter": {"icd_code", "icd_version", "ord"}}.get(source.method, set())
    columns = {row[0] for row in db.execute("DESCRIBE readmission_source").fetchall()}
    missing = sorted(needed - columns)
    if missing:
        raise ValueError(f"feature {source.feature!r}: source query lacks column(s) {missing} "
                         f"(rule: method {source.method!r} reads them)")
    if source.method == "last":
        # latest row wins; ord breaks ties within one event time (e.g. omr's day resolution)
        frame = db.execute(
            f'SELECT hadm_id, arg_max("{col}", (event_time, ord)) AS v FROM readmission_source GROUP BY hadm_id'
        ).df()
    elif source.method == "value":
        frame = db.execute(f'SELECT hadm_id, count(*) AS n, any_value("{col}") AS v FROM readmission_source GROUP BY hadm_id').df()
        if (frame["n"] > 1).any():
            raise ValueError(f"feature {source.feature!r}: method 'value' needs one source row per admission, "
                             f"hadm_id {int(frame.loc[frame['n'] > 1, 'hadm_id'].iloc[0])} has {int(frame['n'].max())}")
    elif source.method == "count":
        frame = db.execute("SELECT hadm_id, count(*) AS v FROM readmission_source GROUP BY hadm_id").df()
        counts = frame.set_index("hadm_id")["v"]
        index = db.execute("SELECT hadm_id FROM readmission_index").df()["hadm_id"]
        return counts.reindex(index, fill_value=0).astype("float64")
    elif source.method == "charlson":
        charlson_sql = read_sql("charlson")
        frame = db.execute(
            "WITH charlson_diagnoses AS (SELECT hadm_id, icd_code, icd_version FROM readmission_source), "
            "charlson_age AS (SELECT hadm_id, age FROM readmission_index) "
            f"SELECT hadm_id, charlson_comorbidity_index AS v FROM ({charlson_sql})"
        ).df()
    elif source.method == "principal_icd_chapter":
        # one ICD-9/ICD-10 -> ICD-10 chapter mapping for both tasks: the shared SQL macro

        install_macros(db)
        # lowest seq_num; should two rows share it, ICD-10 first, then the smallest code
        # (the tie rule of the mortality task's features_diagnosis.sql)
        frame = db.execute(
            "SELECT hadm_id, clinops_icd_chapter(icd_code, icd_version) AS v FROM readmission_source "
            "QUALIFY row_number() OVER (PARTITION BY hadm_id ORDER BY ord, icd_version DESC, icd_code) = 1"
        ).df()
    else:  # pragma: no cover - feature_sources validates the method
        raise ValueError(f"feature {source.feature!r}: unknown method {source.method!r}")
    return frame.set_index("hadm_id")["v"]


def extract_readmission_features(
    con: Any,
    cohort: pd.DataFrame,
    *,
    manifest: Any = None,
    progress: Callable[[str, int, int], None] | None = None,
) -> pd.DataFrame:
    """The readmission manifest's available features, one row per index admission.

    Every feature is computed from its source rows after the leakage check has passed on
    exactly those rows, so a feature cannot use data timed after the index discharge.

    Parameters
    ----------
    con : duckdb.DuckDBPyConnection or MimicDatabase
        Connection with the MIMIC-IV views (``mimiciv_hosp.{admissions, labevents, omr,
        diagnoses_icd}``).
    cohort : pandas.DataFrame
        Index admissions from :func:`build_readmission_cohort` (n_index rows); needs
        ``subject_id, hadm_id, admittime, dischtime, age``.
    manifest : FeatureManifest, mapping, path or None
        The readmission feature manifest; None means the packaged one.
    progress : callable, optional
        Called as ``progress(feature, i, n)`` after each feature.

    Returns
    -------
    pandas.DataFrame
        Shape (n_index, n_available_features), indexed by ``hadm_id`` in cohort order, columns
        in manifest order, raw units (see the manifest), NaN where a feature has no source row;
        categorical features hold their category strings.

    Raises
    ------
    LeakageError
        A feature's source has a row timed after the index discharge.
    """
    db = connection(con)
    manifest = load_readmission_manifest(manifest)
    sources = feature_sources(manifest)
    kinds = {spec.name: spec.kind for spec in manifest.specs}
    register_index(db, cohort)
    hadm_ids = pd.Index(cohort["hadm_id"].to_numpy(), name="hadm_id")
    columns: dict[str, pd.Series] = {}
    try:
        for i, (name, source) in enumerate(sources.items(), start=1):
            materialise_source(db, source)
            assert_no_leak(db, name)
            values = _aggregate(db, source).reindex(hadm_ids)
            columns[name] = values
            log.debug("readmission feature %s: %d of %d admissions have a value", name, int(values.notna().sum()), len(values))
            if progress is not None:
                progress(name, i, len(sources))
    finally:
        db.execute("DROP TABLE IF EXISTS readmission_source")
        db.execute("DROP TABLE IF EXISTS readmission_index")
    features = pd.DataFrame(columns, index=hadm_ids)
    for name in sources:
        if kinds[name] == "categorical":
            features[name] = features[name].astype(object).where(features[name].notna(), np.nan)
        else:
            features[name] = pd.to_numeric(features[name], errors="raise").astype("float64")
    return features

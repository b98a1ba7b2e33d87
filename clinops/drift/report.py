"""Evidently's data-drift report (HTML + JSON) with PSI chosen explicitly."""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

__all__ = ["evidently_report"]


def evidently_report(reference: pd.DataFrame, current: pd.DataFrame, path: str | Path, *,
                     method: str = "psi", threshold: float = 0.2,
                     numerical_columns: Sequence[str] | None = None,
                     categorical_columns: Sequence[str] | None = None) -> pd.DataFrame:
    """Evidently data-drift report (HTML) of ``current`` against ``reference``.

    The test method is chosen explicitly (default PSI, so Evidently's verdict uses the same
    statistic as ours; without ``method`` Evidently switches to Wasserstein / Jensen-Shannon
    above 1,000 rows). Evidently bins numeric columns with more than 20 distinct values into
    Sturges equal-width bins over both samples (ours: reference deciles), so numeric PSI values
    differ somewhat; categorical ones are the same statistic.

    Parameters
    ----------
    reference, current : DataFrames with the same columns
    path : HTML file to write (parent directories are created); a JSON snapshot is written
        next to it with the suffix ``.json``
    method : Evidently stat-test name
    threshold : drift threshold for ``method`` (PSI >= threshold means drift)
    numerical_columns, categorical_columns : column kinds; inferred by Evidently when omitted

    Returns
    -------
    DataFrame with one row per column: ``column``, ``value``, ``drifted``, ``method``,
    ``threshold``.
    """
    # evidently takes seconds to import and is needed only for this report: deferred on purpose
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset

    if list(reference.columns) != list(current.columns):
        raise ValueError("reference, current: must have the same columns in the same order")
    kwargs: dict[str, Any] = {}
    if numerical_columns is not None:
        kwargs["numerical_columns"] = list(numerical_columns)
    if categorical_columns is not None:
        kwargs["categorical_columns"] = list(categorical_columns)
    definition = DataDefinition(**kwargs)
    snapshot = Report([DataDriftPreset(method=method, threshold=threshold)], include_tests=True).run(
        current_data=Dataset.from_pandas(current, data_definition=definition),
        reference_data=Dataset.from_pandas(reference, data_definition=definition))
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    snapshot.save_html(str(out))
    snapshot.save_json(str(out.with_suffix(".json")))
    rows = []
    for m in snapshot.dict()["metrics"]:
        cfg = m.get("config", {})
        if cfg.get("type", "").endswith("ValueDrift"):
            v = float(m["value"])
            rows.append({"column": cfg["column"], "value": v, "drifted": bool(v >= threshold),
                         "method": cfg.get("method", method), "threshold": float(threshold)})
    return pd.DataFrame(rows)


"""The own cohort's file: reading only the declared columns, and describing it for lineage.

A cohort table is a CSV/TSV (optionally gzipped) or parquet file with one row per stay. Only
the declared columns are ever read (data minimisation).
"""
from __future__ import annotations

import hashlib
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import pandas as pd
import pyarrow.parquet as pq

from clinops.tasks.own_table.rules import CohortTableError, table_section

if TYPE_CHECKING:  # pragma: no cover
    from clinops.config import Params


def _file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def is_parquet(path: Path) -> bool:
    return path.suffix.lower() in (".parquet", ".pq")


def _is_csv(path: Path) -> bool:
    name = path.name.lower()
    return name.endswith((".csv", ".csv.gz", ".tsv", ".tsv.gz"))


def _check_path(path: Path) -> None:
    if not path.is_file():
        raise CohortTableError("data.table.path", f"file not found: {path}")
    if not (is_parquet(path) or _is_csv(path)):
        raise CohortTableError("data.table.path", f"must be a .csv, .csv.gz, .tsv or .parquet file, got {path.name}")


def _file_columns(path: Path) -> list[str]:
    if is_parquet(path):
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
    if is_parquet(path):
        return pd.read_parquet(path, columns=wanted)
    sep = "\t" if ".tsv" in path.name.lower() else ","
    return pd.read_csv(path, usecols=wanted, sep=sep, low_memory=False,
                       dtype={c: str for c in string_columns if c in wanted})[wanted]


def source_key(P: "Params", path: Path) -> str:
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
    t = table_section(P)
    path = P.resolve(t["path"])
    _check_path(path)
    key = source_key(P, path)
    if is_parquet(path):
        n_rows = int(pq.read_metadata(path).num_rows)
    else:
        sep = "\t" if ".tsv" in path.name.lower() else ","
        n_rows = int(sum(len(chunk) for chunk in pd.read_csv(path, usecols=[0], sep=sep, chunksize=200_000)))
    return {"source": "table", "data_label": P.data_label, "path": str(path), "sha256": {key: _file_sha256(path)},
            "n_rows": n_rows, "columns": _file_columns(path)}



"""A MIMIC-IV v2.2 directory opened as DuckDB views named like the real schemas.

``open_mimic(path)`` accepts PhysioNet's layout (``hosp/*.csv.gz``, ``icu/*.csv.gz``; plain
``.csv`` also works) or the parquet copy written by ``clinops convert`` (``hosp/*.parquet``,
``icu/*.parquet``) and creates one view per file: ``mimiciv_hosp.admissions``,
``mimiciv_icu.chartevents``, ... SQL written against those views is the SQL that runs on the
real, credentialed data.

CSV files are read with the v2.2 column types of the mimic-code postgres DDL
(:data:`MIMIC_IV_SCHEMA`) instead of DuckDB's type sniffing, so a column that happens to be all
NULL in a small file is still a TIMESTAMP or a DOUBLE, and the real files read the same way.
Columns are matched by the header's names (not by position), so a file with a column missing
is reported by :meth:`MimicDatabase.require` instead of being silently shifted.

Lineage: :meth:`MimicDatabase.file_sha256` returns the SHA-256 of every input file, streamed
and cached on disk by :mod:`clinops.data.hashing`. The parquet copy is made by
:mod:`clinops.data.convert`. The caller states which tables and columns it needs
(``required=``): the data layer knows no task.
"""
from __future__ import annotations

import csv
import gzip
import io
import logging
import os
from dataclasses import dataclass, field
from importlib.resources import files
from pathlib import Path
from typing import Iterable, Mapping

import duckdb

from clinops.data.hashing import default_hash_cache, sha256_file
from clinops.data.mimic_schema import MIMIC_IV_SCHEMA

__all__ = [
    "MIMIC_IV_SCHEMA",
    "MimicDatabase",
    "MimicSchemaError",
    "open_mimic",
    "MODULES",
    "sha256_file",
    "sql_text",
    "install_macros",
    "sql_identifier",
    "sql_string",
]

log = logging.getLogger(__name__)

MODULES = {"hosp": "mimiciv_hosp", "icu": "mimiciv_icu"}
_CSV_SUFFIXES = (".csv.gz", ".csv")
_PARQUET_SUFFIX = ".parquet"

class MimicSchemaError(ValueError):
    """A MIMIC-IV directory lacks tables or columns the pipeline needs (all listed at once)."""


def missing_requirements(columns: Mapping[str, Iterable[str]], spec: Mapping[str, Iterable[str]], *,
                         missing_table_hint: str = "expected file {file}") -> list[str]:
    """Every table and column of ``spec`` that ``columns`` lacks, one problem per line.

    The one requirement check of every source (a directory, PostgreSQL, Spark): each reports
    every problem at once, so a user fixes them in one go.

    Parameters
    ----------
    columns : mapping of str to iterable of str
        Qualified table name -> the columns the source has.
    spec : mapping of str to iterable of str
        Table (qualified or bare) -> required columns.
    missing_table_hint : str
        What to say about a missing table; ``{file}`` is its expected file.

    Examples
    --------
    >>> for problem in missing_requirements({"mimiciv_hosp.patients": ["subject_id"]},
    ...                                     {"patients": ["subject_id", "gender"], "admissions": ["hadm_id"]}):
    ...     print(problem)
    mimiciv_hosp.patients: missing column(s) gender
    missing table mimiciv_hosp.admissions (expected file hosp/admissions.csv.gz or hosp/admissions.parquet)
    """
    problems = []
    for table, cols in spec.items():
        name = _qualify(table)
        if name not in columns:
            problems.append(f"missing table {name} ({missing_table_hint.format(file=_expected_file(name))})")
            continue
        have = set(columns[name])
        missing = [c for c in cols if c not in have]
        if missing:
            problems.append(f"{name}: missing column(s) {', '.join(missing)}")
    return problems


@dataclass
class MimicDatabase:
    """A MIMIC-IV directory exposed as DuckDB views.

    Attributes
    ----------
    con : duckdb.DuckDBPyConnection
        In-memory connection holding the views ``mimiciv_hosp.*`` and ``mimiciv_icu.*``.
    root : pathlib.Path
        The directory that was opened.
    format : str
        ``'csv'`` or ``'parquet'``.
    files : dict[str, pathlib.Path]
        Qualified view name (``'mimiciv_icu.chartevents'``) -> the file behind it.
    columns : dict[str, list[str]]
        Qualified view name -> its column names, in file order.
    """

    con: duckdb.DuckDBPyConnection
    root: Path
    format: str
    files: dict[str, Path]
    columns: dict[str, list[str]]
    hash_cache: Path | None = None
    _sha_memo: dict[str, str] = field(default_factory=dict, repr=False)

    @property
    def tables(self) -> list[str]:
        """Qualified names of the views, sorted."""
        return sorted(self.files)

    def require(self, spec: Mapping[str, Iterable[str]]) -> None:
        """Check that every table and column in ``spec`` exists.

        Parameters
        ----------
        spec : mapping of str to iterable of str
            Table -> required columns. Tables are qualified (``'mimiciv_hosp.admissions'``) or
            bare (``'admissions'``, resolved through :data:`MIMIC_IV_SCHEMA`).

        Raises
        ------
        MimicSchemaError
            One error listing every missing table and every missing column.
        """
        problems = missing_requirements(self.columns, spec)
        if problems:
            raise MimicSchemaError(
                f"MIMIC-IV directory {self.root} lacks what the pipeline needs:\n  - "
                + "\n  - ".join(problems)
            )

    def file_sha256(self) -> dict[str, str]:
        """SHA-256 of every input file behind a view, for lineage.

        Returns
        -------
        dict[str, str]
            Path relative to :attr:`root` (POSIX separators) -> lowercase hex digest, sorted by
            path. Unchanged files (same size and mtime) are read from the on-disk cache.
        """
        out = {}
        for path in sorted(self.files.values()):
            rel = path.relative_to(self.root).as_posix()
            if rel not in self._sha_memo:
                self._sha_memo[rel] = sha256_file(path, cache=self.hash_cache)
            out[rel] = self._sha_memo[rel]
        return out

    def close(self) -> None:
        """Close the DuckDB connection."""
        self.con.close()

    def __enter__(self) -> "MimicDatabase":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _qualify(table: str) -> str:
    if "." in table:
        return table
    for name in MIMIC_IV_SCHEMA:
        if name.split(".", 1)[1] == table:
            return name
    raise KeyError(f"unknown MIMIC-IV table {table!r}: qualify it as 'mimiciv_hosp.{table}' "
                   f"or 'mimiciv_icu.{table}'")


def _expected_file(qualified: str) -> str:
    schema, table = qualified.split(".", 1)
    module = {v: k for k, v in MODULES.items()}.get(schema, schema)
    return f"{module}/{table}.csv.gz or {module}/{table}.parquet"


def _table_files(root: Path) -> tuple[str, dict[str, Path]]:
    """Find the table files under ``root``; return (format, {qualified name: path})."""
    found: dict[str, dict[str, Path]] = {"csv": {}, "parquet": {}}
    for module, schema in MODULES.items():
        d = root / module
        if not d.is_dir():
            continue
        for p in sorted(d.iterdir()):
            if not p.is_file() or p.name.startswith("."):
                continue
            if p.name.endswith(_PARQUET_SUFFIX):
                found["parquet"][f"{schema}.{p.name[: -len(_PARQUET_SUFFIX)]}"] = p
                continue
            for suffix in _CSV_SUFFIXES:
                if p.name.endswith(suffix):
                    name = f"{schema}.{p.name[: -len(suffix)]}"
                    if name in found["csv"]:
                        raise MimicSchemaError(
                            f"{root}: table {name} has two files ({found['csv'][name].name}, "
                            f"{p.name}); keep one")
                    found["csv"][name] = p
                    break
    if found["csv"] and found["parquet"]:
        raise MimicSchemaError(
            f"{root} mixes csv and parquet table files; point at one layout "
            "(the csv.gz download or the `clinops convert` output)")
    if not found["csv"] and not found["parquet"]:
        raise MimicSchemaError(
            f"{root} holds no MIMIC-IV tables: expected hosp/*.csv.gz and icu/*.csv.gz "
            "(PhysioNet layout) or hosp/*.parquet and icu/*.parquet (clinops convert)")
    fmt = "parquet" if found["parquet"] else "csv"
    return fmt, found[fmt]


def _csv_header(path: Path) -> list[str]:
    opener = gzip.open if path.name.endswith(".gz") else open
    with opener(path, "rt", newline="", encoding="utf-8") as fh:
        try:
            return next(csv.reader(io.StringIO(fh.readline())))
        except StopIteration:
            raise MimicSchemaError(f"{path}: empty file, no CSV header") from None


def sql_string(value: str) -> str:
    """Quote a string literal for DuckDB (file paths and type names only, never data)."""
    return "'" + value.replace("'", "''") + "'"


def sql_identifier(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _csv_view_sql(name: str, path: Path) -> tuple[str, list[str]]:
    header = _csv_header(path)
    types = MIMIC_IV_SCHEMA.get(name, {})
    # Unknown tables or extra columns are read as VARCHAR: typed, never sniffed.
    cols = ", ".join(f"{sql_string(c)}: {sql_string(types.get(c, 'VARCHAR'))}" for c in header)
    sql = (f"CREATE VIEW {name} AS SELECT * FROM read_csv({sql_string(str(path))}, "
           f"header = true, auto_detect = false, delim = ',', quote = '\"', escape = '\"', "
           f"nullstr = '', columns = {{{cols}}})")
    return sql, header


def _parquet_view_sql(con: duckdb.DuckDBPyConnection, name: str, path: Path
                      ) -> tuple[str, list[str]]:
    described = con.execute(
        f"DESCRIBE SELECT * FROM read_parquet({sql_string(str(path))})").fetchall()
    types = MIMIC_IV_SCHEMA.get(name, {})
    select = []
    for col, typ, *_ in described:
        want = types.get(col)
        # Cast only where the file disagrees with the DDL, so filter pushdown stays intact.
        if want is not None and typ.upper() != want:
            select.append(f"CAST({sql_identifier(col)} AS {want}) AS {sql_identifier(col)}")
        else:
            select.append(sql_identifier(col))
    sql = (f"CREATE VIEW {name} AS SELECT {', '.join(select)} "
           f"FROM read_parquet({sql_string(str(path))})")
    return sql, [row[0] for row in described]


def open_mimic(path: str | os.PathLike, *, required: Mapping[str, Iterable[str]] | None = None,
               memory_limit: str | None = None, threads: int | None = None,
               hash_cache: str | os.PathLike | None = None) -> MimicDatabase:
    """Open a MIMIC-IV directory as DuckDB views.

    Parameters
    ----------
    path : path-like
        Directory with ``hosp/`` and ``icu/`` sub-directories holding ``<table>.csv.gz``
        (PhysioNet) or ``<table>.parquet`` (``clinops convert``) files.
    required : mapping of str to iterable of str, optional
        Tables and columns that must exist; checked before returning (see
        :meth:`MimicDatabase.require`).
    memory_limit : str, optional
        DuckDB ``memory_limit`` (e.g. ``'2GB'``); DuckDB spills to disk beyond it.
    threads : int, optional
        DuckDB worker threads (default: all cores).
    hash_cache : path-like, optional
        JSON file caching SHA-256 digests; default ``$CLINOPS_CACHE_DIR/sha256-cache.json``.

    Returns
    -------
    MimicDatabase

    Raises
    ------
    MimicSchemaError
        No table files, mixed csv/parquet layouts, an empty CSV, or ``required`` not met.
    """
    root = Path(path).expanduser().resolve()
    if not root.is_dir():
        raise MimicSchemaError(f"MIMIC-IV directory {root} does not exist or is not a directory")
    fmt, files = _table_files(root)
    # Library code must stay quiet: DuckDB would otherwise draw a progress bar on stdout for
    # long queries.
    con = duckdb.connect()
    try:
        con.execute("SET enable_progress_bar = false")
    except duckdb.InvalidInputException:
        pass  # inside Jupyter without ipywidgets DuckDB refuses the setting and draws no bar anyway
    if memory_limit:
        con.execute(f"SET memory_limit = {sql_string(memory_limit)}")
    if threads:
        con.execute(f"SET threads = {int(threads)}")
    for schema in MODULES.values():
        con.execute(f"CREATE SCHEMA IF NOT EXISTS {schema}")
    columns = {}
    for name, p in files.items():
        sql, cols = (_parquet_view_sql(con, name, p) if fmt == "parquet"
                     else _csv_view_sql(name, p))
        con.execute(sql)
        columns[name] = cols
    db = MimicDatabase(con=con, root=root, format=fmt, files=files, columns=columns,
                       hash_cache=Path(hash_cache) if hash_cache else default_hash_cache())
    if required:
        try:
            db.require(required)
        except MimicSchemaError:
            con.close()
            raise
    return db


def sql_text(name: str) -> str:
    """Text of a packaged SQL file ``clinops/sql/<name>``.

    Parameters
    ----------
    name : str
        File name, e.g. ``'icu_cohort.sql'``.
    """
    return files("clinops").joinpath("sql", name).read_text(encoding="utf-8")


def install_macros(con: duckdb.DuckDBPyConnection) -> None:
    """Create the shared SQL macros (``clinops/sql/macros.sql``) on a connection."""
    con.execute(sql_text("macros.sql"))



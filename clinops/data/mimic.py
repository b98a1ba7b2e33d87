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

Lineage: :meth:`MimicDatabase.file_sha256` returns the SHA-256 of every input file. Hashing
streams the file in 1 MiB blocks and the result is cached on disk keyed by
(absolute path, size, mtime_ns), so an unchanged 10 GB ``chartevents.csv.gz`` is hashed once,
not at every run. The cache lives in ``$CLINOPS_CACHE_DIR`` (default
``$XDG_CACHE_HOME/clinops`` or ``~/.cache/clinops``), file ``sha256-cache.json``.
"""
from __future__ import annotations

import argparse
import csv
import gzip
import hashlib
import io
import json
import logging
import os
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field
from importlib.resources import files
from pathlib import Path
from typing import Callable, Iterable, Mapping

import duckdb

__all__ = [
    "MIMIC_IV_SCHEMA",
    "MimicDatabase",
    "MimicSchemaError",
    "open_mimic",
    "convert_to_parquet",
    "convert_main",
    "sha256_file",
    "sql_text",
    "install_macros",
]

log = logging.getLogger(__name__)

# v2.2 DDL (mimic-code buildmimic/postgres/create.sql, commit db74e5d4), in file order.
# Postgres -> DuckDB: CHAR(n)/VARCHAR(n)/TEXT -> VARCHAR, TIMESTAMP(n) -> TIMESTAMP,
# FLOAT and DOUBLE PRECISION -> DOUBLE (postgres FLOAT is double precision).
MIMIC_IV_SCHEMA: dict[str, dict[str, str]] = {
    "mimiciv_hosp.patients": {
        "subject_id": "INTEGER", "gender": "VARCHAR", "anchor_age": "SMALLINT",
        "anchor_year": "SMALLINT", "anchor_year_group": "VARCHAR", "dod": "DATE",
    },
    "mimiciv_hosp.admissions": {
        "subject_id": "INTEGER", "hadm_id": "INTEGER", "admittime": "TIMESTAMP",
        "dischtime": "TIMESTAMP", "deathtime": "TIMESTAMP", "admission_type": "VARCHAR",
        "admit_provider_id": "VARCHAR", "admission_location": "VARCHAR",
        "discharge_location": "VARCHAR", "insurance": "VARCHAR", "language": "VARCHAR",
        "marital_status": "VARCHAR", "race": "VARCHAR", "edregtime": "TIMESTAMP",
        "edouttime": "TIMESTAMP", "hospital_expire_flag": "SMALLINT",
    },
    "mimiciv_hosp.diagnoses_icd": {
        "subject_id": "INTEGER", "hadm_id": "INTEGER", "seq_num": "INTEGER",
        "icd_code": "VARCHAR", "icd_version": "SMALLINT",
    },
    "mimiciv_hosp.d_icd_diagnoses": {
        "icd_code": "VARCHAR", "icd_version": "SMALLINT", "long_title": "VARCHAR",
    },
    "mimiciv_hosp.d_icd_procedures": {
        "icd_code": "VARCHAR", "icd_version": "SMALLINT", "long_title": "VARCHAR",
    },
    "mimiciv_hosp.procedures_icd": {
        "subject_id": "INTEGER", "hadm_id": "INTEGER", "seq_num": "INTEGER",
        "chartdate": "DATE", "icd_code": "VARCHAR", "icd_version": "SMALLINT",
    },
    "mimiciv_hosp.labevents": {
        "labevent_id": "INTEGER", "subject_id": "INTEGER", "hadm_id": "INTEGER",
        "specimen_id": "INTEGER", "itemid": "INTEGER", "order_provider_id": "VARCHAR",
        "charttime": "TIMESTAMP", "storetime": "TIMESTAMP", "value": "VARCHAR",
        "valuenum": "DOUBLE", "valueuom": "VARCHAR", "ref_range_lower": "DOUBLE",
        "ref_range_upper": "DOUBLE", "flag": "VARCHAR", "priority": "VARCHAR",
        "comments": "VARCHAR",
    },
    "mimiciv_hosp.d_labitems": {
        "itemid": "INTEGER", "label": "VARCHAR", "fluid": "VARCHAR", "category": "VARCHAR",
    },
    "mimiciv_hosp.services": {
        "subject_id": "INTEGER", "hadm_id": "INTEGER", "transfertime": "TIMESTAMP",
        "prev_service": "VARCHAR", "curr_service": "VARCHAR",
    },
    "mimiciv_hosp.transfers": {
        "subject_id": "INTEGER", "hadm_id": "INTEGER", "transfer_id": "INTEGER",
        "eventtype": "VARCHAR", "careunit": "VARCHAR", "intime": "TIMESTAMP",
        "outtime": "TIMESTAMP",
    },
    "mimiciv_hosp.omr": {
        "subject_id": "INTEGER", "chartdate": "DATE", "seq_num": "INTEGER",
        "result_name": "VARCHAR", "result_value": "VARCHAR",
    },
    "mimiciv_hosp.provider": {"provider_id": "VARCHAR"},
    "mimiciv_icu.icustays": {
        "subject_id": "INTEGER", "hadm_id": "INTEGER", "stay_id": "INTEGER",
        "first_careunit": "VARCHAR", "last_careunit": "VARCHAR", "intime": "TIMESTAMP",
        "outtime": "TIMESTAMP", "los": "DOUBLE",
    },
    "mimiciv_icu.chartevents": {
        "subject_id": "INTEGER", "hadm_id": "INTEGER", "stay_id": "INTEGER",
        "caregiver_id": "INTEGER", "charttime": "TIMESTAMP", "storetime": "TIMESTAMP",
        "itemid": "INTEGER", "value": "VARCHAR", "valuenum": "DOUBLE", "valueuom": "VARCHAR",
        "warning": "SMALLINT",
    },
    "mimiciv_icu.d_items": {
        "itemid": "INTEGER", "label": "VARCHAR", "abbreviation": "VARCHAR",
        "linksto": "VARCHAR", "category": "VARCHAR", "unitname": "VARCHAR",
        "param_type": "VARCHAR", "lownormalvalue": "DOUBLE", "highnormalvalue": "DOUBLE",
    },
    "mimiciv_icu.inputevents": {
        "subject_id": "INTEGER", "hadm_id": "INTEGER", "stay_id": "INTEGER",
        "caregiver_id": "INTEGER", "starttime": "TIMESTAMP", "endtime": "TIMESTAMP",
        "storetime": "TIMESTAMP", "itemid": "INTEGER", "amount": "DOUBLE",
        "amountuom": "VARCHAR", "rate": "DOUBLE", "rateuom": "VARCHAR", "orderid": "INTEGER",
        "linkorderid": "INTEGER", "ordercategoryname": "VARCHAR",
        "secondaryordercategoryname": "VARCHAR", "ordercomponenttypedescription": "VARCHAR",
        "ordercategorydescription": "VARCHAR", "patientweight": "DOUBLE",
        "totalamount": "DOUBLE", "totalamountuom": "VARCHAR", "isopenbag": "SMALLINT",
        "continueinnextdept": "SMALLINT", "statusdescription": "VARCHAR",
        "originalamount": "DOUBLE", "originalrate": "DOUBLE",
    },
    "mimiciv_icu.procedureevents": {
        "subject_id": "INTEGER", "hadm_id": "INTEGER", "stay_id": "INTEGER",
        "caregiver_id": "INTEGER", "starttime": "TIMESTAMP", "endtime": "TIMESTAMP",
        "storetime": "TIMESTAMP", "itemid": "INTEGER", "value": "DOUBLE",
        "valueuom": "VARCHAR", "location": "VARCHAR", "locationcategory": "VARCHAR",
        "orderid": "INTEGER", "linkorderid": "INTEGER", "ordercategoryname": "VARCHAR",
        "ordercategorydescription": "VARCHAR", "patientweight": "DOUBLE",
        "isopenbag": "SMALLINT", "continueinnextdept": "SMALLINT",
        "statusdescription": "VARCHAR", "originalamount": "DOUBLE", "originalrate": "DOUBLE",
    },
    "mimiciv_icu.outputevents": {
        "subject_id": "INTEGER", "hadm_id": "INTEGER", "stay_id": "INTEGER",
        "caregiver_id": "INTEGER", "charttime": "TIMESTAMP", "storetime": "TIMESTAMP",
        "itemid": "INTEGER", "value": "DOUBLE", "valueuom": "VARCHAR",
    },
    "mimiciv_icu.caregiver": {"caregiver_id": "INTEGER"},
}

_MODULES = {"hosp": "mimiciv_hosp", "icu": "mimiciv_icu"}
_CSV_SUFFIXES = (".csv.gz", ".csv")
_PARQUET_SUFFIX = ".parquet"
_HASH_BLOCK = 1 << 20  # 1 MiB: streaming, constant memory

#: Leading sort keys of the event tables in a parquet copy made with ``sort_events=True``
#: (``clinops convert --sort-events``). Every query of the pipeline
#: filters these tables by itemid; clustered by itemid, parquet's per-row-group min/max
#: statistics let DuckDB skip the row groups of other items. The remaining columns follow as
#: tie-breakers so the row order, and hence the files' SHA-256, is reproducible.
EVENT_SORT_KEYS: dict[str, list[str]] = {
    "mimiciv_icu.chartevents": ["itemid", "stay_id", "charttime"],
    "mimiciv_hosp.labevents": ["itemid", "subject_id", "charttime"],
}


class MimicSchemaError(ValueError):
    """A MIMIC-IV directory lacks tables or columns the pipeline needs (all listed at once)."""


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
        problems = []
        for table, cols in spec.items():
            name = _qualify(table)
            if name not in self.columns:
                problems.append(f"missing table {name} (expected file {_expected_file(name)})")
                continue
            have = set(self.columns[name])
            missing = [c for c in cols if c not in have]
            if missing:
                problems.append(f"{name}: missing column(s) {', '.join(missing)}")
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
    module = {v: k for k, v in _MODULES.items()}.get(schema, schema)
    return f"{module}/{table}.csv.gz or {module}/{table}.parquet"


def _table_files(root: Path) -> tuple[str, dict[str, Path]]:
    """Find the table files under ``root``; return (format, {qualified name: path})."""
    found: dict[str, dict[str, Path]] = {"csv": {}, "parquet": {}}
    for module, schema in _MODULES.items():
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


def _sql_str(value: str) -> str:
    """Quote a string literal for DuckDB (file paths and type names only, never data)."""
    return "'" + value.replace("'", "''") + "'"


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _csv_view_sql(name: str, path: Path) -> tuple[str, list[str]]:
    header = _csv_header(path)
    types = MIMIC_IV_SCHEMA.get(name, {})
    # Unknown tables or extra columns are read as VARCHAR: typed, never sniffed.
    cols = ", ".join(f"{_sql_str(c)}: {_sql_str(types.get(c, 'VARCHAR'))}" for c in header)
    sql = (f"CREATE VIEW {name} AS SELECT * FROM read_csv({_sql_str(str(path))}, "
           f"header = true, auto_detect = false, delim = ',', quote = '\"', escape = '\"', "
           f"nullstr = '', columns = {{{cols}}})")
    return sql, header


def _parquet_view_sql(con: duckdb.DuckDBPyConnection, name: str, path: Path
                      ) -> tuple[str, list[str]]:
    described = con.execute(
        f"DESCRIBE SELECT * FROM read_parquet({_sql_str(str(path))})").fetchall()
    types = MIMIC_IV_SCHEMA.get(name, {})
    select = []
    for col, typ, *_ in described:
        want = types.get(col)
        # Cast only where the file disagrees with the DDL, so filter pushdown stays intact.
        if want is not None and typ.upper() != want:
            select.append(f"CAST({_ident(col)} AS {want}) AS {_ident(col)}")
        else:
            select.append(_ident(col))
    sql = (f"CREATE VIEW {name} AS SELECT {', '.join(select)} "
           f"FROM read_parquet({_sql_str(str(path))})")
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
        con.execute(f"SET memory_limit = {_sql_str(memory_limit)}")
    if threads:
        con.execute(f"SET threads = {int(threads)}")
    for schema in _MODULES.values():
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


# ---------------------------------------------------------------------------- hashing

def default_hash_cache() -> Path:
    base = os.environ.get("CLINOPS_CACHE_DIR")
    if base:
        return Path(base) / "sha256-cache.json"
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(xdg) / "clinops" / "sha256-cache.json"


def _read_cache(cache: Path) -> dict:
    try:
        return json.loads(cache.read_text())
    except (OSError, ValueError):
        return {}


def sha256_file(path: str | os.PathLike, *, cache: str | os.PathLike | None = None) -> str:
    """Streaming SHA-256 of a file, cached by (absolute path, size, mtime_ns).

    Parameters
    ----------
    path : path-like
        File to hash.
    cache : path-like, optional
        JSON cache file. ``None`` disables the cache.

    Returns
    -------
    str
        Lowercase hex digest (64 characters).
    """
    p = Path(path).resolve()
    st = p.stat()
    key = f"{p}|{st.st_size}|{st.st_mtime_ns}"
    cache_path = Path(cache) if cache else None
    if cache_path is not None:
        hit = _read_cache(cache_path).get(key)
        if hit:
            return hit
    h = hashlib.sha256()
    with open(p, "rb") as fh:
        while block := fh.read(_HASH_BLOCK):
            h.update(block)
    digest = h.hexdigest()
    if cache_path is not None:
        try:
            cache_path.parent.mkdir(parents=True, exist_ok=True)
            entries = _read_cache(cache_path)  # re-read: another process may have added keys
            entries[key] = digest
            fd, tmp = tempfile.mkstemp(dir=cache_path.parent, prefix=".sha256-")
            with os.fdopen(fd, "w") as fh:
                json.dump(entries, fh, indent=0, sort_keys=True)
            os.replace(tmp, cache_path)
        except OSError as exc:  # a read-only home must not stop the pipeline
            log.warning("could not write SHA-256 cache %s: %s", cache_path, exc)
    return digest


# ---------------------------------------------------------------------------- convert

def convert_to_parquet(src: str | os.PathLike, dst: str | os.PathLike, *,
                       progress: Callable[[str, int, int], None] | None = None,
                       memory_limit: str = "2GB", threads: int | None = None,
                       overwrite: bool = False, sort_events: bool = False,
                       hash_cache: str | os.PathLike | None = None) -> dict[str, int]:
    """Copy a MIMIC-IV csv.gz directory to parquet, one file per table.

    Each table is copied by DuckDB (``COPY (SELECT ...) TO ... (FORMAT parquet)``) under a
    memory limit, into a temporary directory beside ``dst`` that is renamed to ``dst`` only
    when every table is written, so ``dst`` is either complete or absent. Tables stream
    straight through in file order. With ``sort_events=True``, chartevents and labevents are
    instead ordered by :data:`EVENT_SORT_KEYS` (itemid first): DuckDB sorts them out of core
    (spilling to disk beyond ``memory_limit``, so no longer a pure stream), and every later
    item-filtered query reads only its items' row groups (measured on the paper-scale
    synthetic data: conversion about 30 % slower, feature extraction about 20 % faster).

    Parameters
    ----------
    src : path-like
        PhysioNet layout (``hosp/*.csv.gz``, ``icu/*.csv.gz``).
    dst : path-like
        Output directory (``hosp/*.parquet``, ``icu/*.parquet``); must not exist unless
        ``overwrite``.
    progress : callable(table, index, total), optional
        Called before each table is copied; ``index`` counts from 1.
    memory_limit : str
        DuckDB memory limit, e.g. ``'2GB'``; DuckDB spills to ``dst``'s temp directory beyond it.
    threads : int, optional
        DuckDB worker threads.
    overwrite : bool
        Replace an existing ``dst``.
    hash_cache : path-like, optional
        SHA-256 cache file (see :func:`open_mimic`); the source files' digests are written to
        ``dst/clinops_convert.json`` for lineage.
    sort_events : bool
        Cluster chartevents and labevents by item id (see above).

    Returns
    -------
    dict[str, int]
        Qualified table name -> rows written.
    """
    dst = Path(dst).expanduser().resolve()
    if dst.exists() and not overwrite:
        raise FileExistsError(f"{dst} exists; pass overwrite=True (--overwrite) to replace it")
    db = open_mimic(src, memory_limit=memory_limit, threads=threads, hash_cache=hash_cache)
    if db.format != "csv":
        db.close()
        raise MimicSchemaError(f"{db.root} is already parquet; nothing to convert")
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=dst.parent, prefix=f".{dst.name}.tmp-"))
    counts: dict[str, int] = {}
    try:
        db.con.execute(f"SET temp_directory = {_sql_str(str(tmp / '.spill'))}")
        names = db.tables
        for i, name in enumerate(names, 1):
            if progress is not None:
                progress(name, i, len(names))
            schema, table = name.split(".", 1)
            module = {v: k for k, v in _MODULES.items()}[schema]
            (tmp / module).mkdir(exist_ok=True)
            out = tmp / module / f"{table}.parquet"
            t0 = time.perf_counter()
            select = f"SELECT * FROM {name}"
            keys = EVENT_SORT_KEYS.get(name) if sort_events else None
            if keys and all(k in db.columns[name] for k in keys):
                order = keys + [c for c in db.columns[name] if c not in keys]
                select += " ORDER BY " + ", ".join(_ident(c) for c in order)
            # COPY returns the number of rows written.
            n = db.con.execute(
                f"COPY ({select}) TO {_sql_str(str(out))} "
                "(FORMAT parquet, COMPRESSION zstd, ROW_GROUP_SIZE 122880)").fetchone()[0]
            counts[name] = int(n)
            log.info("converted %s: %d rows in %.1f s", name, n, time.perf_counter() - t0)
        shutil.rmtree(tmp / ".spill", ignore_errors=True)
        # Lineage of the copy: which source files (by SHA-256, cached) it was made from.
        (tmp / "clinops_convert.json").write_text(json.dumps(
            {"source": str(db.root), "source_sha256": db.file_sha256(),
             "duckdb": duckdb.__version__, "rows": counts,
             "sorted_by": {k: v for k, v in EVENT_SORT_KEYS.items() if sort_events}},
            indent=2, sort_keys=True) + "\n")
    except BaseException:
        db.close()
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    db.close()
    if dst.exists():
        shutil.rmtree(dst)
    os.replace(tmp, dst)
    return counts


def convert_main(argv: list[str] | None = None) -> int:
    """``clinops convert SRC --to parquet --out DST``."""
    ap = argparse.ArgumentParser(prog="clinops convert",
                                 description="Copy a MIMIC-IV csv.gz directory to parquet.")
    ap.add_argument("src", help="MIMIC-IV directory (hosp/*.csv.gz, icu/*.csv.gz)")
    ap.add_argument("--to", choices=["parquet"], default="parquet")
    ap.add_argument("--out", required=True, help="output directory")
    ap.add_argument("--memory-limit", default="2GB", help="DuckDB memory limit (default 2GB)")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--overwrite", action="store_true")
    ap.add_argument("--sort-events", action="store_true",
                    help="order chartevents/labevents by itemid (out-of-core sort; faster "
                         "item-filtered queries later)")
    args = ap.parse_args(argv)

    def report(table: str, i: int, n: int) -> None:
        print(f"[{i}/{n}] {table}", file=sys.stderr, flush=True)

    try:
        counts = convert_to_parquet(args.src, args.out, progress=report,
                                    memory_limit=args.memory_limit, threads=args.threads,
                                    overwrite=args.overwrite, sort_events=args.sort_events)
    except (MimicSchemaError, FileExistsError) as exc:
        print(f"clinops convert: {exc}", file=sys.stderr)
        return 1
    print(f"wrote {len(counts)} tables, {sum(counts.values()):,} rows to {args.out}")
    return 0

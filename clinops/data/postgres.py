"""MIMIC-IV v2.2 in PostgreSQL: ``clinops load-postgres`` and the database as a query source.

The layout is mimic-code's (``buildmimic/postgres``): schemas ``mimiciv_hosp`` and
``mimiciv_icu``, one table per file, the v2.2 column types of :data:`MIMIC_IV_SCHEMA`, primary
keys on the id columns and indexes on ids, ``itemid`` and event times. A database a user built
with mimic-code's own scripts is read the same way.

Loading (:func:`load_directory`) streams every ``csv.gz`` file through ``COPY ... FROM STDIN``
(constant memory) inside one transaction per table. It is idempotent by content: each table
carries a comment with the SHA-256 of the file it was loaded from; a second run with the same
file is a no-op for that table, a changed file replaces the table cleanly (drop, create, copy,
keys, indexes, comment, commit: a failure leaves the previous table in place).

Querying (:class:`PostgresDatabase`) runs the packaged DuckDB SQL transpiled by
:mod:`clinops.data.engines` inside the server; only the result rows come back.

The DSN never lives in a parameter file: it comes from ``--dsn`` or the environment variable
:data:`DSN_ENV` (libpq syntax, e.g. ``host=127.0.0.1 port=5432 dbname=mimiciv user=me``).
"""
from __future__ import annotations

import argparse
import gzip
import logging
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

import pandas as pd

try:  # the byte progress bar of load-postgres when tqdm is installed (it is, with the workflow extra)
    from tqdm import tqdm
except ImportError:  # pragma: no cover - plain progress lines instead
    tqdm = None

from clinops.data import engines
from clinops.data.hashing import sha256_file
from clinops.data.mimic import MODULES, MimicSchemaError, _csv_header, _expected_file, _qualify, _table_files
from clinops.data.mimic_schema import MIMIC_IV_SCHEMA

__all__ = ["DSN_ENV", "PostgresDatabase", "PostgresError", "connect", "dsn_from", "load_directory",
           "open_postgres", "postgres_type", "PRIMARY_KEYS", "main"]

log = logging.getLogger(__name__)

#: Environment variable holding the libpq connection string.
DSN_ENV = "CLINOPS_PG_DSN"

#: DuckDB type of :data:`MIMIC_IV_SCHEMA` -> PostgreSQL type (mimic-code's DDL uses the same).
_PG_TYPES = {"INTEGER": "INTEGER", "SMALLINT": "SMALLINT", "BIGINT": "BIGINT", "DOUBLE": "DOUBLE PRECISION",
             "VARCHAR": "TEXT", "TIMESTAMP": "TIMESTAMP(0)", "DATE": "DATE", "BOOLEAN": "BOOLEAN"}

#: Primary keys of mimic-code's constraint.sql that hold on every v2.2 release file.
PRIMARY_KEYS: dict[str, tuple[str, ...]] = {
    "mimiciv_hosp.patients": ("subject_id",),
    "mimiciv_hosp.admissions": ("hadm_id",),
    "mimiciv_hosp.d_labitems": ("itemid",),
    "mimiciv_hosp.d_icd_diagnoses": ("icd_code", "icd_version"),
    "mimiciv_hosp.d_icd_procedures": ("icd_code", "icd_version"),
    "mimiciv_hosp.labevents": ("labevent_id",),
    "mimiciv_hosp.transfers": ("transfer_id",),
    "mimiciv_icu.icustays": ("stay_id",),
    "mimiciv_icu.d_items": ("itemid",),
}

# mimic-code's index.sql indexes the id columns together, itemid, and the event times.
_INDEX_GROUPS = (("subject_id", "hadm_id", "stay_id"), ("itemid",), ("charttime",),
                 ("starttime", "endtime"), ("intime", "outtime"), ("chartdate",))

_COMMENT_PREFIX = "clinops load-postgres sha256="
_COPY_BLOCK = 1 << 20  # 1 MiB: streaming, constant memory


class PostgresError(RuntimeError):
    """The database cannot serve the pipeline: unreachable, missing objects or wrong types."""


def dsn_from(dsn: str | None = None) -> str:
    """The connection string: ``dsn`` if given, else ``$CLINOPS_PG_DSN``.

    Examples
    --------
    >>> dsn_from("host=127.0.0.1 port=5432 dbname=x")
    'host=127.0.0.1 port=5432 dbname=x'
    """
    value = dsn or os.environ.get(DSN_ENV)
    if not value:
        raise PostgresError(f"postgres: no connection string (rule: pass --dsn or set {DSN_ENV}; "
                            "it never goes into a parameter file)")
    return value


def connect(dsn: str | None = None) -> Any:
    """An autocommit psycopg 3 connection; one error naming the engine and the rule when unreachable."""
    import psycopg  # optional dependency (extra `engines`): imported only when PostgreSQL is used

    try:
        return psycopg.connect(dsn_from(dsn), autocommit=True, connect_timeout=10)
    except psycopg.OperationalError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise PostgresError(f"postgres: cannot connect ({first}) (rule: the DSN must reach a running server)") from None


def postgres_type(duckdb_type: str) -> str:
    """PostgreSQL column type for a type of :data:`MIMIC_IV_SCHEMA`.

    Examples
    --------
    >>> postgres_type("DOUBLE"), postgres_type("VARCHAR")
    ('DOUBLE PRECISION', 'TEXT')
    """
    return _PG_TYPES[duckdb_type.upper()]


def _ident(name: str) -> str:
    return ".".join('"' + part.replace('"', '""') + '"' for part in name.split("."))


def _table_comment(conn: Any, name: str) -> str | None:
    row = conn.execute("SELECT obj_description(to_regclass(%s), 'pg_class')", (name,)).fetchone()
    return row[0] if row else None


def _ddl(name: str, header: list[str]) -> list[str]:
    types = MIMIC_IV_SCHEMA.get(name, {})
    cols = ", ".join(f"{_ident(c)} {postgres_type(types.get(c, 'VARCHAR'))}" for c in header)
    out = [f"CREATE TABLE {_ident(name)} ({cols})"]
    return out


def _key_and_indexes(name: str, header: list[str]) -> list[str]:
    table = name.split(".", 1)[1]
    out = []
    pk = PRIMARY_KEYS.get(name)
    if pk and all(c in header for c in pk):
        out.append(f"ALTER TABLE {_ident(name)} ADD CONSTRAINT {_ident(table + '_pk')} "
                   f"PRIMARY KEY ({', '.join(_ident(c) for c in pk)})")
    k = 0
    for group in _INDEX_GROUPS:
        cols = [c for c in group if c in header]
        if not cols or (pk and tuple(cols) == pk):
            continue
        k += 1
        out.append(f"CREATE INDEX {_ident(f'{table}_idx{k:02d}')} ON {_ident(name)} "
                   f"({', '.join(_ident(c) for c in cols)})")
    return out


def _bar(total: int, desc: str) -> Any:
    if tqdm is None:  # pragma: no cover - tqdm comes with the workflow extra
        return None
    return tqdm(total=total, desc=desc, unit="B", unit_scale=True, file=sys.stderr, leave=False)


def load_directory(src: str | os.PathLike, dsn: str | None = None, *,
                   progress: Callable[[str, int, int, str], None] | None = None,
                   show_bar: bool = False) -> dict[str, str]:
    """Load a MIMIC-IV csv(.gz) directory into PostgreSQL (mimic-code layout), idempotently.

    Parameters
    ----------
    src : path-like
        PhysioNet layout (``hosp/*.csv.gz``, ``icu/*.csv.gz``), e.g. ``clinops synth`` output.
    dsn : str, optional
        libpq connection string; default ``$CLINOPS_PG_DSN``.
    progress : callable(table, index, total, action), optional
        Called per table with ``action`` ``'loaded'`` or ``'unchanged'``.
    show_bar : bool
        Draw a tqdm byte progress bar per table on stderr.

    Returns
    -------
    dict[str, str]
        Qualified table -> ``'loaded'`` (created or cleanly replaced) or ``'unchanged'`` (the
        table's recorded SHA-256 equals the file's: a no-op).

    Raises
    ------
    PostgresError
        Unreachable server, or a table that cannot take its keys (names the table and the rule).
    clinops.data.mimic.MimicSchemaError
        No csv tables in ``src`` (parquet copies are not loaded: load the csv.gz originals).
    """
    root = Path(src).expanduser().resolve()
    if not root.is_dir():
        raise MimicSchemaError(f"MIMIC-IV directory {root} does not exist or is not a directory")
    fmt, files = _table_files(root)
    if fmt != "csv":
        raise MimicSchemaError(f"{root}: load-postgres reads csv(.gz) files (rule: point at the PhysioNet "
                               "download or `clinops synth` output, not a parquet copy)")
    conn = connect(dsn)
    actions: dict[str, str] = {}
    try:
        for schema in MODULES.values():
            conn.execute(f"CREATE SCHEMA IF NOT EXISTS {_ident(schema)}")
        for i, (name, path) in enumerate(sorted(files.items()), start=1):
            digest = sha256_file(path)
            if _table_comment(conn, name) == _COMMENT_PREFIX + digest:
                actions[name] = "unchanged"
            else:
                _load_table(conn, name, path, digest, show_bar=show_bar)
                actions[name] = "loaded"
            if progress is not None:
                progress(name, i, len(files), actions[name])
    finally:
        conn.close()
    return actions


def _load_table(conn: Any, name: str, path: Path, digest: str, *, show_bar: bool) -> None:
    import psycopg  # optional dependency, see connect()

    header = _csv_header(path)
    cols = ", ".join(_ident(c) for c in header)
    bar = _bar(path.stat().st_size, name) if show_bar else None
    try:
        with conn.transaction():
            conn.execute(f"DROP TABLE IF EXISTS {_ident(name)}")
            for stmt in _ddl(name, header):
                conn.execute(stmt)
            with conn.cursor() as cur:
                with cur.copy(f"COPY {_ident(name)} ({cols}) FROM STDIN "
                              "WITH (FORMAT csv, HEADER true, NULL '')") as copy:
                    with open(path, "rb") as raw:
                        fh = gzip.GzipFile(fileobj=raw) if path.name.endswith(".gz") else raw
                        while block := fh.read(_COPY_BLOCK):
                            copy.write(block)
                            if bar is not None:  # compressed bytes read: the file size is the total
                                bar.n = raw.tell()
                                bar.refresh()
            for stmt in _key_and_indexes(name, header):
                conn.execute(stmt)
            conn.execute(f"COMMENT ON TABLE {_ident(name)} IS {_literal(_COMMENT_PREFIX + digest)}")
            conn.execute(f"ANALYZE {_ident(name)}")
    except psycopg.Error as exc:
        raise PostgresError(f"postgres: loading {name} from {path.name} failed: "
                            f"{str(exc).strip().splitlines()[0]}") from None
    finally:
        if bar is not None:
            bar.close()


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


# ---------------------------------------------------------------------------------------------
# the database as a query source
# ---------------------------------------------------------------------------------------------
class _Result:
    """What a DuckDB ``execute`` returns, as far as the pipeline uses it."""

    def __init__(self, columns: list[str], rows: list[tuple]):
        self.columns, self.rows = columns, rows

    def df(self) -> pd.DataFrame:
        return engines.result_frame(self.columns, self.rows)

    def fetchone(self) -> tuple | None:
        return self.rows[0] if self.rows else None

    def fetchall(self) -> list[tuple]:
        return list(self.rows)


class PostgresConnection:
    """A DuckDB-like connection over psycopg: the DuckDB SQL it is given runs transpiled.

    Only the subset the pipeline calls: ``execute(sql, params)`` (``.df()``, ``.fetchone()``,
    ``.fetchall()``), ``register(name, frame)`` / ``unregister(name)`` (a temporary table).
    """

    engine = "postgres"

    def __init__(self, conn: Any):
        self.conn = conn
        self.received: list[str] = []  # the DuckDB text asked for, for tests and debugging
        self.statements: list[str] = []  # every statement sent

    def execute(self, sql: str, params: Mapping[str, Any] | None = None) -> _Result:
        result = _Result([], [])
        self.received.append(sql)
        for stmt in engines.statements(sql, "postgres", params):
            if stmt.action == "describe":
                result = self._describe(stmt.table)
                continue
            if stmt.action == "create":
                self._send(f"DROP TABLE IF EXISTS {stmt.table}")
                sent = self._send(f"CREATE TEMP TABLE {stmt.table} AS {stmt.sql}")
            elif stmt.action == "insert":
                sent = self._send(f"INSERT INTO {stmt.table} {stmt.sql}")
            elif stmt.action == "drop":
                sent = self._send(f"DROP TABLE IF EXISTS {stmt.table}")
            else:
                sent = self._send(stmt.sql)
            if sent.description is not None:
                result = _Result([d.name for d in sent.description], sent.fetchall())
        return result

    def _send(self, sql: str) -> Any:
        self.statements.append(sql)
        return self.conn.execute(sql)

    def _describe(self, table: str) -> _Result:
        rows = self.conn.execute(
            "SELECT column_name, data_type FROM information_schema.columns WHERE table_name = %s "
            "ORDER BY ordinal_position", (table.strip().strip('"'),)).fetchall()
        return _Result(["column_name", "column_type"], rows)

    def register(self, name: str, frame: pd.DataFrame) -> None:
        """Copy a DataFrame into a temporary table ``name`` (what DuckDB's register reads)."""
        cols = []
        for col, dtype in frame.dtypes.items():
            cols.append(f"{_ident(str(col))} {engines.postgres_column_type(dtype)}")
        self.conn.execute(f"DROP TABLE IF EXISTS {_ident(name)}")
        self.conn.execute(f"CREATE TEMP TABLE {_ident(name)} ({', '.join(cols)})")
        with self.conn.cursor() as cur:
            with cur.copy(f"COPY {_ident(name)} FROM STDIN") as copy:
                for row in frame.itertuples(index=False, name=None):
                    copy.write_row([engines.python_value(v) for v in row])

    def unregister(self, name: str) -> None:
        self.conn.execute(f"DROP TABLE IF EXISTS {_ident(name)}")

    def close(self) -> None:
        self.conn.close()


@dataclass
class PostgresDatabase:
    """A MIMIC-IV database in PostgreSQL, with the interface of :class:`clinops.data.mimic.MimicDatabase`."""

    con: PostgresConnection
    columns: dict[str, list[str]]
    types: dict[str, dict[str, str]]
    dsn_label: str
    format: str = "postgres"
    _closed: bool = field(default=False, repr=False)

    @property
    def tables(self) -> list[str]:
        return sorted(self.columns)

    def require(self, spec: Mapping[str, Iterable[str]]) -> None:
        """Every table and column in ``spec`` exists with a type compatible with the v2.2 DDL."""
        problems = []
        for table, cols in spec.items():
            name = _qualify(table)
            if name not in self.columns:
                problems.append(f"missing table {name} (load it: clinops load-postgres DIR; "
                                f"file {_expected_file(name)})")
                continue
            have = set(self.columns[name])
            missing = [c for c in cols if c not in have]
            if missing:
                problems.append(f"{name}: missing column(s) {', '.join(missing)}")
            for c in cols:
                want = MIMIC_IV_SCHEMA.get(name, {}).get(c)
                got = self.types[name].get(c)
                if want and got and not engines.postgres_type_matches(want, got):
                    problems.append(f"{name}.{c}: type {got}, expected {postgres_type(want)} (v2.2 DDL)")
        if problems:
            raise MimicSchemaError(f"postgres database {self.dsn_label} lacks what the pipeline needs:\n  - "
                                   + "\n  - ".join(problems))

    def file_sha256(self) -> dict[str, str]:
        """Tables loaded by ``clinops load-postgres`` -> the SHA-256 of their source file."""
        out = {}
        for name in self.tables:
            comment = _table_comment(self.con.conn, name) or ""
            if comment.startswith(_COMMENT_PREFIX):
                out[name] = comment[len(_COMMENT_PREFIX):]
        return out

    def close(self) -> None:
        if not self._closed:
            self.con.close()
            self._closed = True

    def __enter__(self) -> "PostgresDatabase":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _safe_label(dsn: str) -> str:
    # Name the server without leaking a password.
    parts = [p for p in dsn.split() if not p.lower().startswith("password")]
    return " ".join(parts) if "=" in dsn else dsn.split("@")[-1]


def open_postgres(dsn: str | None = None, *, required: Mapping[str, Iterable[str]] | None = None
                  ) -> PostgresDatabase:
    """Connect and check the required tables, columns and types before any work.

    Raises
    ------
    PostgresError
        Unreachable server.
    clinops.data.mimic.MimicSchemaError
        A required schema, table or column is missing or has a wrong type (all listed at once).
    """
    value = dsn_from(dsn)
    conn = connect(value)
    rows = conn.execute(
        "SELECT table_schema, table_name, column_name, data_type FROM information_schema.columns "
        "WHERE table_schema = ANY(%s) ORDER BY table_schema, table_name, ordinal_position",
        (list(MODULES.values()),)).fetchall()
    columns: dict[str, list[str]] = {}
    types: dict[str, dict[str, str]] = {}
    for schema, table, col, typ in rows:
        columns.setdefault(f"{schema}.{table}", []).append(col)
        types.setdefault(f"{schema}.{table}", {})[col] = typ
    db = PostgresDatabase(con=PostgresConnection(conn), columns=columns, types=types,
                          dsn_label=_safe_label(value))
    if required:
        try:
            db.require(required)
        except MimicSchemaError:
            db.close()
            raise
    return db


def main(argv: list[str] | None = None) -> int:
    """``clinops load-postgres DIR [--dsn DSN]``."""
    ap = argparse.ArgumentParser(prog="clinops load-postgres", description=(
        "Load a MIMIC-IV v2.2 csv(.gz) directory into PostgreSQL (schemas mimiciv_hosp, mimiciv_icu, "
        "mimic-code layout). Idempotent: a table whose source file is unchanged (SHA-256) is left as "
        "it is; a changed one is replaced in one transaction."))
    ap.add_argument("dir", help="MIMIC-IV directory with hosp/ and icu/ (csv.gz)")
    ap.add_argument("--dsn", help=f"libpq connection string (default: ${DSN_ENV})")
    args = ap.parse_args(argv)
    try:
        actions = load_directory(args.dir, args.dsn, show_bar=sys.stderr.isatty(),
                                 progress=lambda t, i, n, a: print(f"[{i}/{n}] {t}: {a}", file=sys.stderr))
    except (PostgresError, MimicSchemaError) as exc:
        print(f"clinops load-postgres: {exc}", file=sys.stderr)
        return 1
    n_loaded = sum(a == "loaded" for a in actions.values())
    print(f"{len(actions)} tables: {n_loaded} loaded, {len(actions) - n_loaded} unchanged")
    return 0

"""The database as a query source: the packaged SQL transpiled for PostgreSQL runs inside the server and only result rows come back; the schema check before any work."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping

import pandas as pd

from clinops.data import engines
from clinops.data.mimic import MODULES, MimicSchemaError, _qualify, missing_requirements
from clinops.data.mimic_schema import MIMIC_IV_SCHEMA

from .connection import PostgresError, connect, dsn_from
from .load import _COMMENT_PREFIX, PROVENANCE_TABLE, _ident, _table_comment, postgres_type


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
        problems = missing_requirements(self.columns, spec, missing_table_hint=(
            "load it: clinops load-postgres DIR; file {file}"))
        for table, cols in spec.items():
            name = _qualify(table)
            for c in cols if name in self.columns else ():
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

    def provenance(self) -> dict[str, Any] | None:
        """What ``clinops load-postgres`` recorded at its last complete load, or None.

        Keys ``source_dir``, ``loaded_at``, ``sha256`` (table -> SHA-256 of its file) and
        ``synthetic`` (the directory's ``SYNTHETIC.json``, or None for other data).
        """
        conn = self.con.conn
        if conn.execute("SELECT to_regclass(%s)", (PROVENANCE_TABLE,)).fetchone()[0] is None:
            return None
        row = conn.execute(f"SELECT source_dir, loaded_at, sha256, synthetic FROM {PROVENANCE_TABLE}").fetchone()
        if row is None:
            return None
        return dict(zip(("source_dir", "loaded_at", "sha256", "synthetic"), row))

    def synthetic_manifest(self) -> dict[str, Any] | None:
        """The generator's manifest (scale, seed, rows) when the tables hold ``clinops synth`` data.

        None unless the last complete load came from a synthetic directory AND every table still
        carries the SHA-256 that load recorded (a table replaced since, by hand or by a load of
        other files, makes the database's provenance unknown).
        """
        prov = self.provenance()
        if prov is None or prov["synthetic"] is None or prov["sha256"] != self.file_sha256():
            return None
        return prov["synthetic"]

    def close(self) -> None:
        if not self._closed:
            self.con.close()
            self._closed = True

    def __enter__(self) -> "PostgresDatabase":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def check_loaded_from(declared: str | None, manifest: Mapping[str, Any] | None, label: str) -> None:
    """The params' ``data.postgres.loaded_from`` must say what the database's provenance says.

    Examples
    --------
    >>> check_loaded_from("synthetic", {"scale": 1.0, "seed": 1}, "db")
    >>> check_loaded_from(None, None, "db")
    >>> check_loaded_from("synthetic", None, "db")
    Traceback (most recent call last):
    ...
    clinops.data.postgres.connection.PostgresError: postgres: database db: data.postgres.loaded_from is 'synthetic' but the tables carry no synthetic provenance (rule: load them with clinops load-postgres from a clinops synth directory, or declare loaded_from: mimic-iv)
    """
    if declared == "synthetic" and manifest is None:
        raise PostgresError(f"postgres: database {label}: data.postgres.loaded_from is 'synthetic' but the tables "
                            "carry no synthetic provenance (rule: load them with clinops load-postgres from a "
                            "clinops synth directory, or declare loaded_from: mimic-iv)")
    if declared != "synthetic" and manifest is not None:
        raise PostgresError(f"postgres: database {label}: the tables were loaded from synthetic data (scale "
                            f"{manifest.get('scale')}, seed {manifest.get('seed')}) but data.postgres.loaded_from is "
                            f"{declared!r} (rule: declare loaded_from: synthetic, so that no report calls them real)")


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

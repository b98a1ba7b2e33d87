"""MIMIC-IV's parquet copy in Spark: the packaged DuckDB SQL runs transpiled in Spark SQL.

``open_spark(parquet_dir, master=...)`` starts (or reuses) a SparkSession, registers every
``hosp/*.parquet`` and ``icu/*.parquet`` file as a table ``mimiciv_hosp.<table>`` /
``mimiciv_icu.<table>`` in Spark's in-memory catalog, and returns a :class:`SparkDatabase`
with the interface of :class:`clinops.data.mimic.MimicDatabase`. Queries are translated by
:mod:`clinops.data.engines`; temporary tables are materialised with ``localCheckpoint`` (on
the executors: in ``local-cluster`` or a real cluster the staging tables are distributed).

Timestamps are Spark's ``TIMESTAMP_NTZ`` (``spark.sql.timestampType``) and the session time
zone is UTC, so times mean what they mean in DuckDB and PostgreSQL (wall-clock, no zone).
"""
from __future__ import annotations

import logging
import os
import socket
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

import pandas as pd

from clinops.data import engines
from clinops.data.mimic import MimicSchemaError, _table_files, missing_requirements

__all__ = ["SparkDatabase", "SparkError", "open_spark", "spark_session", "DEFAULT_MASTER"]

log = logging.getLogger(__name__)

DEFAULT_MASTER = "local[*]"


class SparkError(RuntimeError):
    """Spark cannot serve the pipeline: no pyspark or Java, or the master cannot be reached."""


def spark_session(master: str = DEFAULT_MASTER, *, app_name: str = "clinops",
                  config: Mapping[str, str] | None = None) -> Any:
    """A SparkSession for ``master`` with the settings the translated SQL relies on.

    Raises
    ------
    SparkError
        pyspark is not installed, Java is missing, or the master does not answer.
    """
    _check_reachable(master)
    try:
        from pyspark.sql import SparkSession  # optional dependency (extra `engines`), Spark runs only
    except ImportError:
        raise SparkError("spark: pyspark is not installed (rule: install the `engines` extra, "
                         "pip install -e '.[engines]')") from None
    warehouse = Path(tempfile.gettempdir()) / f"clinops-spark-warehouse-{os.getuid()}"
    builder = (SparkSession.builder.master(master).appName(app_name)
               .config("spark.ui.enabled", "false")
               .config("spark.ui.showConsoleProgress", "false")
               .config("spark.sql.session.timeZone", "UTC")
               .config("spark.sql.timestampType", "TIMESTAMP_NTZ")
               .config("spark.sql.shuffle.partitions", "4")
               .config("spark.sql.execution.arrow.pyspark.enabled", "true")
               .config("spark.sql.warehouse.dir", str(warehouse))
               .config("spark.sql.catalogImplementation", "in-memory"))
    if master.startswith("local"):
        builder = builder.config("spark.driver.host", "127.0.0.1").config("spark.driver.bindAddress", "127.0.0.1")
    for key, value in (config or {}).items():
        builder = builder.config(key, value)
    try:
        return builder.getOrCreate()
    except Exception as exc:  # py4j / Java errors have no common base class worth naming
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise SparkError(f"spark: cannot start a session on master {master!r} ({first}) "
                         "(rule: Java 17+ on PATH and a reachable spark.master)") from None


def _check_reachable(master: str) -> None:
    """A ``spark://host:port[,host:port]`` master must answer before a session waits on it.

    Spark's client would otherwise retry a dead standalone master for about a minute before
    giving up; one TCP connection tells at once.

    Examples
    --------
    >>> _check_reachable("local[2]")  # local masters start in this process: nothing to reach
    """
    if not master.startswith("spark://"):
        return
    for hostport in master[len("spark://"):].split(","):
        host, _, port = hostport.rpartition(":")
        try:
            with socket.create_connection((host, int(port)), timeout=5):
                return
        except (OSError, ValueError):
            continue
    raise SparkError(f"spark: master {master!r} does not answer (rule: spark.master must be a reachable "
                     "spark://host:port, or local[*] / local-cluster[...])")


class _Result:
    def __init__(self, frame: pd.DataFrame):
        self.frame = frame

    def df(self) -> pd.DataFrame:
        return self.frame

    def fetchone(self) -> tuple | None:
        return tuple(self.frame.iloc[0]) if len(self.frame) else None

    def fetchall(self) -> list[tuple]:
        return list(self.frame.itertuples(index=False, name=None))


class SparkConnection:
    """A DuckDB-like connection over a SparkSession: the DuckDB SQL it is given runs transpiled."""

    engine = "spark"

    def __init__(self, spark: Any):
        self.spark = spark
        self.received: list[str] = []  # the DuckDB text asked for, for tests and debugging
        self.statements: list[str] = []  # every translated statement

    def execute(self, sql: str, params: Mapping[str, Any] | None = None) -> _Result:
        result = _Result(pd.DataFrame())
        self.received.append(sql)
        for stmt in engines.statements(sql, "spark", params):
            self.statements.append(f"{stmt.action} {stmt.table or ''}: {stmt.sql}")
            if stmt.action == "create":
                self._materialise(stmt.table, self.spark.sql(stmt.sql))
            elif stmt.action == "insert":
                # INSERT into a temporary view does not exist: the view becomes old rows + new rows.
                self._materialise(stmt.table, self.spark.table(stmt.table).union(self.spark.sql(stmt.sql)))
            elif stmt.action == "drop":
                self.spark.catalog.dropTempView(stmt.table)
            elif stmt.action == "describe":
                fields = self.spark.table(stmt.table).schema.fields
                result = _Result(pd.DataFrame({"column_name": [f.name for f in fields],
                                               "column_type": [f.dataType.simpleString() for f in fields]}))
            else:
                result = _Result(self.spark.sql(stmt.sql).toPandas())
        return result

    def _materialise(self, name: str, frame: Any) -> None:
        frame.localCheckpoint(eager=True).createOrReplaceTempView(name)

    def register(self, name: str, frame: pd.DataFrame) -> None:
        """A pandas DataFrame as temporary view ``name`` (what DuckDB's register reads)."""
        self.spark.createDataFrame(frame).createOrReplaceTempView(name)

    def unregister(self, name: str) -> None:
        self.spark.catalog.dropTempView(name)

    def close(self) -> None:
        # The session is shared by the process (getOrCreate): the caller stops it.
        pass


@dataclass
class SparkDatabase:
    """A MIMIC-IV parquet copy in Spark, with the interface of :class:`clinops.data.mimic.MimicDatabase`."""

    con: SparkConnection
    root: Path
    files: dict[str, Path]
    columns: dict[str, list[str]]
    format: str = "spark"
    _closed: bool = field(default=False, repr=False)

    @property
    def tables(self) -> list[str]:
        return sorted(self.columns)

    def require(self, spec: Mapping[str, Iterable[str]]) -> None:
        """Every table and column in ``spec`` exists (all problems in one error)."""
        problems = missing_requirements(self.columns, spec)
        if problems:
            raise MimicSchemaError(f"spark: parquet directory {self.root} lacks what the pipeline needs:\n  - "
                                   + "\n  - ".join(problems))

    def close(self) -> None:
        self._closed = True

    def __enter__(self) -> "SparkDatabase":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def open_spark(path: str | os.PathLike, *, master: str = DEFAULT_MASTER,
               required: Mapping[str, Iterable[str]] | None = None, spark: Any = None) -> SparkDatabase:
    """Register a parquet copy (``clinops convert``) in Spark and check the required columns.

    Parameters
    ----------
    path : path-like
        Directory with ``hosp/*.parquet`` and ``icu/*.parquet``.
    master : str
        ``spark.master``: ``local[*]``, ``local-cluster[2,1,1024]``, ``spark://host:7077``, ...
    required : mapping, optional
        Tables and columns that must exist; checked before returning.
    spark : SparkSession, optional
        An existing session (tests share one); default: :func:`spark_session` for ``master``.
    """
    root = Path(path).expanduser().resolve()
    if not root.is_dir():
        raise MimicSchemaError(f"spark: parquet directory {root} does not exist (rule: make it with clinops convert)")
    fmt, files = _table_files(root)
    if fmt != "parquet":
        raise MimicSchemaError(f"spark: {root} holds csv files (rule: data.engine spark reads the parquet copy; "
                               "set data.parquet: true or run clinops convert)")
    session = spark if spark is not None else spark_session(master)
    columns = {}
    for name, file in files.items():
        schema = name.split(".", 1)[0]
        session.sql(f"CREATE DATABASE IF NOT EXISTS {schema}")
        session.sql(f"DROP TABLE IF EXISTS {name}")
        session.catalog.createTable(name, path=str(file), source="parquet")
        columns[name] = [f.name for f in session.table(name).schema.fields]
    db = SparkDatabase(con=SparkConnection(session), root=root, files=files, columns=columns)
    if required:
        db.require(required)
    return db

"""Where the database is: the DSN (never in a parameter file), the connection, the error every PostgreSQL failure becomes."""
from __future__ import annotations

import os
from typing import Any



#: Environment variable holding the libpq connection string.
DSN_ENV = "CLINOPS_PG_DSN"

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

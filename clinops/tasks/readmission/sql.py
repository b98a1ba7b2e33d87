"""SQL helpers of the readmission task: packaged queries, bound parameters, the connection."""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Mapping

#: The packaged SQL (clinops/sql), shared with the mortality task's macros.
SQL_DIR = Path(__file__).resolve().parents[2] / "sql"


def connection(con: Any) -> Any:
    """Accept a DuckDB connection or anything holding one as ``.con`` (MimicDatabase)."""
    inner = getattr(con, "con", None)
    return inner if inner is not None and hasattr(inner, "execute") else con


def read_sql(name: str) -> str:
    """Text of ``clinops/sql/<name>.sql``, or of ``name`` itself when it is a path to a .sql file."""
    path = Path(name) if str(name).endswith(".sql") else SQL_DIR / f"{name}.sql"
    if not path.is_file():
        raise ValueError(f"source.query: no SQL file {path} (rule: query names a clinops/sql/*.sql file "
                         "without its suffix, or a path to a .sql file)")
    return path.read_text()


def bind(sql: str, params: Mapping[str, Any]) -> dict[str, Any]:
    """Keep the parameters the query uses; fail naming any it needs but was not given.

    Examples
    --------
    >>> bind("SELECT $a -- $b is documentation", {"a": 1, "c": 3})
    {'a': 1}
    """
    code = re.sub(r"--[^\n]*", "", sql)  # $names in comments are documentation, not parameters
    used = set(re.findall(r"\$([A-Za-z_][A-Za-z0-9_]*)", code))
    missing = sorted(used - set(params))
    if missing:
        raise ValueError(f"query parameter(s) {', '.join(missing)} not given (rule: every $name in the SQL must be bound)")
    return {k: params[k] for k in used}

"""One query source, three engines: the packaged DuckDB SQL as PostgreSQL and Spark SQL.

Every query of the pipeline is written once, for DuckDB (``clinops/sql/*.sql`` and the few
statements in the task modules). DuckDB receives that text unchanged, so the embedded default
computes exactly what it always did. PostgreSQL and Spark receive a translation made here:
SQLGlot parses the DuckDB text and writes the target dialect, after the rewrites below, which
are *every* engine-specific piece of the project in one place:

============================  =====================================  ======================================
DuckDB                        PostgreSQL                             Spark SQL
============================  =====================================  ======================================
``$name`` parameters          inlined as typed literals              inlined as typed literals
``clinops_*`` macros          expanded inline from macros.sql        expanded inline from macros.sql
``to_seconds(x)``             ``make_interval(secs => x)``           ``make_dt_interval(0, 0, 0, x)``
``to_days(n)``                ``make_interval(days => n)``           ``make_dt_interval(n, 0, 0, 0)``
``epoch(t)``                  SQLGlot (``date_part('epoch', t)``)    ``unix_micros(t) / 1e6`` (interval:
                                                                     difference of the two)
``QUALIFY``                   sub-select filtered on ``_qualify_k``  sub-select filtered on ``_qualify_k``
``list_contains(list, x)``    SQLGlot (``x = ANY(list)``)            SQLGlot (``array_contains``)
``TRY_CAST(s AS INTEGER)``    regex-guarded ``CAST``                 SQLGlot (``TRY_CAST``)
``any_value(x)``              ``min(x)`` (PostgreSQL 15 has none)    SQLGlot
``round(double, n)``          ``round(CAST(x AS NUMERIC), n)``       ``round(x * 10^n) / 10^n`` (DuckDB's
                                                                     formula; Spark needs a constant n)
``arg_max(x, (a, b))``        ``(array_agg(x ORDER BY a DESC, b      ``max_by(x, struct(a, b))``
                              DESC))[1]``                            (rows with NULL x filtered)
sub-select without alias      aliased ``_sub_k`` (PostgreSQL 15)     as is
``CREATE OR REPLACE TEMP      :class:`Statement` ``create``: the     :class:`Statement` ``create``: the
TABLE``, ``INSERT``, ``DROP`` engine's connection runs it            engine's connection materialises it
============================  =====================================  ======================================

Examples
--------
>>> [s.sql for s in statements("SELECT list_contains($g, x) FROM t", "postgres", {"g": ["a", "b"]})]
["SELECT CASE WHEN x IS NULL THEN NULL ELSE COALESCE(x = ANY(ARRAY['a', 'b']), FALSE) END FROM t"]
>>> [s.sql for s in statements("SELECT clinops_age(a, y, t) AS age FROM p", "spark")]
['SELECT ((a) + YEAR((t)) - (y)) AS age FROM p']
>>> statements("SELECT 1", "duckdb")[0].sql
'SELECT 1'
"""
from __future__ import annotations

import decimal
import functools
import math
from dataclasses import dataclass
from importlib.resources import files
from typing import Any, Mapping

import numpy as np
import pandas as pd

__all__ = ["ENGINES", "Statement", "statements", "transpile_file", "expand_macros", "macros",
           "result_frame", "python_value", "postgres_column_type", "postgres_type_matches",
           "DUCKDB_ONLY_FUNCTIONS"]

#: The engines and the SQLGlot dialect each one is written in.
ENGINES = {"duckdb": "duckdb", "postgres": "postgres", "spark": "spark"}

#: Function names that exist in DuckDB only; none may survive a translation (tested).
DUCKDB_ONLY_FUNCTIONS = ("to_seconds", "to_days", "epoch", "list_contains", "arg_max",
                         "clinops_age", "clinops_death_time", "clinops_mortality_label",
                         "clinops_icd_chapter")

_PG_INT_PATTERN = r"^\s*[-+]?[0-9]+\s*$"
_PG_FLOAT_PATTERN = r"^\s*[-+]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][-+]?[0-9]+)?\s*$"


@dataclass(frozen=True)
class Statement:
    """One statement for an engine.

    ``action`` is ``'query'`` (run ``sql``), ``'create'`` (a temporary table ``table`` holding
    the rows of the query ``sql``), ``'insert'`` (append the rows of ``sql`` to ``table``),
    ``'drop'`` (drop ``table`` if it exists) or ``'describe'`` (columns of ``table``). For DuckDB
    every statement is ``'query'`` with the original text.
    """

    action: str
    sql: str
    table: str | None = None


def _sqlglot():
    import sqlglot  # optional dependency (extra `engines`): DuckDB alone never imports it
    from sqlglot import exp  # (the same optional dependency)
    return sqlglot, exp


@functools.lru_cache(maxsize=1)
def macros() -> dict[str, tuple[list[str], Any]]:
    """The macros of ``clinops/sql/macros.sql``: name -> (parameters, body expression).

    A body of the form ``(WITH c AS (SELECT e1 AS n1, ...) SELECT expr FROM c)`` is returned
    with ``n1, ...`` replaced by ``e1, ...``: a plain expression every engine can inline.
    """
    sqlglot, exp = _sqlglot()
    text = files("clinops").joinpath("sql", "macros.sql").read_text(encoding="utf-8")
    out = {}
    for stmt in sqlglot.parse(text, read="duckdb"):
        if not isinstance(stmt, exp.Create) or not isinstance(stmt.this, exp.UserDefinedFunction):
            continue
        name = stmt.this.this.name.lower()
        params = [p.name for p in stmt.this.expressions]
        body = stmt.expression
        if isinstance(body, exp.Subquery):
            body = _inline_single_row_cte(body.this, exp)
        out[name] = (params, body)
    return out


def _inline_single_row_cte(select: Any, exp: Any) -> Any:
    ctes = select.args.get("with_") or select.args.get("with")
    if ctes is None or len(ctes.expressions) != 1 or len(select.expressions) != 1:
        raise ValueError("macros.sql: a subquery macro must be WITH c AS (SELECT ...) SELECT expr FROM c")
    defs = {proj.alias_or_name: proj.this if isinstance(proj, exp.Alias) else proj
            for proj in ctes.expressions[0].this.expressions}
    body = select.expressions[0].copy()

    def swap(node):
        if isinstance(node, exp.Column) and not node.table and node.name in defs:
            return exp.Paren(this=defs[node.name].copy())
        return node
    return body.transform(swap)


def expand_macros(tree: Any) -> Any:
    """Replace every ``clinops_*`` macro call by its body with the call's arguments."""
    _, exp = _sqlglot()
    defs = macros()

    def expand(node):
        if isinstance(node, exp.Anonymous) and node.name.lower() in defs:
            params, body = defs[node.name.lower()]
            args = node.expressions
            if len(args) != len(params):
                raise ValueError(f"macro {node.name}: {len(args)} arguments, expected {len(params)}")
            binding = dict(zip(params, args))

            def bind(inner):
                if isinstance(inner, exp.Column) and not inner.table and inner.name in binding:
                    return exp.Paren(this=binding[inner.name].copy())
                return inner
            return exp.Paren(this=expand_macros(body.copy().transform(bind)))
        return node
    return tree.transform(expand)


def _literal(value: Any, exp: Any) -> Any:
    if value is None:
        return exp.Null()
    if isinstance(value, (bool, np.bool_)):
        return exp.Boolean(this=bool(value))
    if isinstance(value, (int, np.integer)):
        return exp.Literal.number(int(value))
    if isinstance(value, (float, np.floating)):
        if not math.isfinite(value):
            raise ValueError(f"query parameter: {value!r} is not a finite number")
        return exp.Cast(this=exp.Literal.number(repr(float(value))), to=exp.DataType.build("DOUBLE"))
    if isinstance(value, str):
        return exp.Literal.string(value)
    if isinstance(value, (list, tuple)):
        items = [_literal(v, exp) for v in value]
        if items:
            return exp.Array(expressions=items)
        return exp.Cast(this=exp.Array(expressions=[]), to=exp.DataType.build("ARRAY<VARCHAR>"))
    raise TypeError(f"query parameter: unsupported type {type(value).__name__}")


def _bind(tree: Any, params: Mapping[str, Any], exp: Any) -> Any:
    def sub(node):
        if isinstance(node, exp.Placeholder) and node.name:
            if node.name not in params:
                raise ValueError(f"query parameter ${node.name} not given (rule: every $name in the SQL must be bound)")
            return _literal(params[node.name], exp)
        return node
    return tree.transform(sub)


def _func(name: str, *args: Any) -> Any:
    _, exp = _sqlglot()
    return exp.Anonymous(this=name, expressions=list(args))


def _common_rewrites(tree: Any, engine: str, exp: Any) -> Any:
    sqlglot, _ = _sqlglot()
    counter = iter(range(1, 10_000))

    def rewrite(node):
        if isinstance(node, exp.Func):
            # SQLGlot knows some DuckDB functions by class (ToDays), others only by name.
            name = node.name.lower() if isinstance(node, exp.Anonymous) else node.sql_name().lower()
            x = node.expressions[0] if isinstance(node, exp.Anonymous) and node.expressions else node.this
            if name == "to_seconds":
                if engine == "postgres":
                    return exp.Anonymous(this="make_interval", expressions=[
                        exp.Kwarg(this=exp.var("secs"), expression=x)])
                return _func("make_dt_interval", exp.Literal.number(0), exp.Literal.number(0),
                             exp.Literal.number(0), exp.Cast(this=x, to=exp.DataType.build("DECIMAL(18, 6)")))
            if name == "to_days":
                if engine == "postgres":
                    return exp.Anonymous(this="make_interval", expressions=[
                        exp.Kwarg(this=exp.var("days"), expression=x)])
                return _func("make_dt_interval", x, exp.Literal.number(0), exp.Literal.number(0),
                             exp.Literal.number(0))
        if isinstance(node, exp.TimeToUnix) and engine == "spark":
            arg = node.this
            micros = (lambda t: _func("unix_micros", t))
            if isinstance(arg, exp.Sub):
                return exp.Paren(this=exp.Div(this=exp.Paren(this=exp.Sub(
                    this=micros(arg.this), expression=micros(arg.expression))),
                    expression=exp.Literal.number("1e6")))
            return exp.Paren(this=exp.Div(this=micros(arg), expression=exp.Literal.number("1e6")))
        if isinstance(node, exp.ArgMax):
            # DuckDB's arg_max skips rows whose value is NULL and orders a NULL key field last
            # (greatest); both translations do the same.
            value, key = node.this, node.expression
            keys = key.expressions if isinstance(key, exp.Tuple) else [key]
            not_null = exp.Where(this=exp.Not(this=exp.Is(this=value.copy(), expression=exp.Null())))
            if engine == "spark":
                fields = []
                for k in keys:
                    fields += [exp.Is(this=k.copy(), expression=exp.Null()), k.copy()]
                return exp.Filter(this=exp.Anonymous(this="max_by", expressions=[value, _func("struct", *fields)]),
                                  expression=not_null)
            agg = exp.ArrayAgg(this=exp.Order(this=value, expressions=[
                exp.Ordered(this=k.copy(), desc=True, nulls_first=True) for k in keys]))
            first = sqlglot.parse_one("(x)[1]", read="postgres")  # PostgreSQL arrays count from 1
            first.this.set("this", exp.Filter(this=agg, expression=not_null))
            return first
        if (engine == "spark" and isinstance(node, exp.Round) and node.args.get("decimals") is not None
                and not isinstance(node.args["decimals"], exp.Literal)):
            # Spark wants a constant scale; this is DuckDB's own formula for round(double, n).
            scale = _func("power", exp.Literal.number(10), node.args["decimals"])
            return exp.Paren(this=exp.Div(this=exp.Round(this=exp.Mul(this=node.this, expression=scale)),
                                          expression=scale.copy()))
        if engine == "postgres":
            if isinstance(node, exp.TryCast):
                pattern = _PG_INT_PATTERN if node.to.is_type(*exp.DataType.INTEGER_TYPES) else _PG_FLOAT_PATTERN
                text = exp.Cast(this=node.this.copy(), to=exp.DataType.build("TEXT"))
                return exp.Case(ifs=[exp.If(this=exp.RegexpLike(this=text, expression=exp.Literal.string(pattern)),
                                            true=exp.Cast(this=node.this.copy(), to=node.to.copy()))])
            if isinstance(node, exp.IgnoreNulls) and isinstance(node.this, exp.AnyValue):
                return exp.Min(this=node.this.this)
            if isinstance(node, exp.AnyValue):
                return exp.Min(this=node.this)
            if isinstance(node, exp.Round) and node.args.get("decimals") is not None:
                return exp.Round(this=exp.Cast(this=node.this, to=exp.DataType.build("DECIMAL")),
                                 decimals=exp.Cast(this=node.args["decimals"], to=exp.DataType.build("INT")))
            if isinstance(node, exp.Subquery) and not node.alias and isinstance(node.parent, (exp.From, exp.Join)):
                return exp.alias_(node, f"_sub_{next(counter)}", table=True)
        return node
    return tree.transform(rewrite)


def _eliminate_qualify(tree: Any, exp: Any) -> Any:
    """``SELECT ... QUALIFY cond`` -> ``SELECT <outputs> FROM (SELECT ..., w AS _qualify_k) WHERE cond'``."""
    counter = iter(range(1, 10_000))

    def rewrite(node):
        if not isinstance(node, exp.Select) or node.args.get("qualify") is None:
            return node
        cond = node.args["qualify"].this
        node = node.copy()
        node.set("qualify", None)
        windows = {}

        def pull(inner):
            if isinstance(inner, exp.Window):
                alias = f"_qualify_{next(counter)}"
                windows[alias] = inner.copy()
                return exp.column(alias)
            return inner
        cond = cond.copy().transform(pull)
        star = any(isinstance(e, exp.Star) for e in node.expressions)
        outputs = [exp.Star()] if star else [exp.column(e.alias_or_name) for e in node.expressions]
        for alias, window in windows.items():
            node.select(exp.alias_(window, alias), copy=False)
        return exp.select(*outputs).from_(exp.alias_(exp.Subquery(this=node), f"_q{next(counter)}", table=True)).where(cond)
    return tree.transform(rewrite)


def _table_name(table: Any) -> str:
    return ".".join(p for p in (table.args.get("db") and table.db, table.name) if p)


def statements(sql: str, engine: str, params: Mapping[str, Any] | None = None) -> list[Statement]:
    """The DuckDB ``sql`` (one or more statements) as statements for ``engine``.

    Parameters
    ----------
    sql : str
        DuckDB SQL, ``$name`` parameters allowed.
    engine : {'duckdb', 'postgres', 'spark'}
    params : mapping, optional
        Values of the ``$name`` parameters (inlined as literals for PostgreSQL and Spark; for
        DuckDB they stay parameters, passed by the caller).

    Returns
    -------
    list[Statement]
        For DuckDB one ``'query'`` statement holding ``sql`` byte for byte.
    """
    if engine not in ENGINES:
        raise ValueError(f"data.engine: {engine!r} is not one of {', '.join(ENGINES)}")
    if engine == "duckdb":
        return [Statement("query", sql)]
    sqlglot, exp = _sqlglot()
    out = []
    for tree in sqlglot.parse(sql, read="duckdb"):
        if tree is None:
            continue
        if isinstance(tree, exp.Create) and isinstance(tree.this, exp.UserDefinedFunction):
            continue  # a macro definition (install_macros): other engines get macros expanded inline
        tree = _bind(tree, params or {}, exp)
        tree = expand_macros(tree)
        tree = _eliminate_qualify(tree, exp)
        tree = _common_rewrites(tree, engine, exp)
        dialect = ENGINES[engine]
        if isinstance(tree, exp.Create) and tree.kind == "TABLE" and tree.expression is not None:
            out.append(Statement("create", tree.expression.sql(dialect), _table_name(tree.this)))
        elif isinstance(tree, exp.Insert):
            out.append(Statement("insert", tree.expression.sql(dialect), _table_name(tree.this)))
        elif isinstance(tree, exp.Drop) and tree.kind == "TABLE":
            out.extend(Statement("drop", "", _table_name(t)) for t in (tree.args.get("tables") or [tree.this]))
        elif isinstance(tree, exp.Describe):
            out.append(Statement("describe", "", _table_name(tree.this)))
        else:
            out.append(Statement("query", tree.sql(dialect)))
    return out


def transpile_file(name: str, engine: str, params: Mapping[str, Any] | None = None) -> list[Statement]:
    """A packaged SQL file (``clinops/sql/<name>``) as statements for ``engine``."""
    text = files("clinops").joinpath("sql", name).read_text(encoding="utf-8")
    return statements(text, engine, params)


# ---------------------------------------------------------------------------------------------
# values crossing the engine boundary
# ---------------------------------------------------------------------------------------------
def result_frame(columns: list[str], rows: list[tuple]) -> pd.DataFrame:
    """Rows from a DB-API cursor as the DataFrame DuckDB's ``.df()`` would give.

    PostgreSQL's NUMERIC comes back as :class:`decimal.Decimal`; DuckDB gives floats.

    Examples
    --------
    >>> import decimal
    >>> result_frame(["a"], [(decimal.Decimal("1.5"),)])["a"].dtype
    dtype('float64')
    """
    frame = pd.DataFrame.from_records(rows, columns=columns)
    for col in frame.columns:
        if frame[col].dtype == object and frame[col].map(lambda v: isinstance(v, decimal.Decimal)).any():
            frame[col] = frame[col].map(lambda v: None if v is None else float(v)).astype("float64")
    return frame


def python_value(value: Any) -> Any:
    """A pandas/numpy cell as a plain Python value for a database driver (NaN/NaT -> None)."""
    if value is None or (not isinstance(value, (str, bytes, list, tuple)) and pd.isna(value)):
        return None
    if isinstance(value, pd.Timestamp):
        return value.to_pydatetime()
    if isinstance(value, np.generic):
        return value.item()
    return value


def postgres_column_type(dtype: Any) -> str:
    """PostgreSQL type of a pandas column (for a registered DataFrame).

    Examples
    --------
    >>> postgres_column_type(pd.Series([1]).dtype), postgres_column_type(pd.Series([1.0]).dtype)
    ('BIGINT', 'DOUBLE PRECISION')
    """
    if pd.api.types.is_bool_dtype(dtype):
        return "BOOLEAN"
    if pd.api.types.is_integer_dtype(dtype):
        return "BIGINT"
    if pd.api.types.is_float_dtype(dtype):
        return "DOUBLE PRECISION"
    if pd.api.types.is_datetime64_any_dtype(dtype):
        return "TIMESTAMP"
    return "TEXT"


_PG_TYPE_FAMILY = {"INTEGER": {"integer", "smallint", "bigint"}, "SMALLINT": {"smallint", "integer", "bigint"},
                   "BIGINT": {"bigint", "integer"}, "DOUBLE": {"double precision", "real", "numeric"},
                   "VARCHAR": {"text", "character varying", "character"},
                   "TIMESTAMP": {"timestamp without time zone"}, "DATE": {"date"}, "BOOLEAN": {"boolean"}}


def postgres_type_matches(duckdb_type: str, pg_type: str) -> bool:
    """Whether a PostgreSQL column type (``information_schema`` name) serves a v2.2 DDL type.

    Examples
    --------
    >>> postgres_type_matches("TIMESTAMP", "timestamp without time zone"), postgres_type_matches("DOUBLE", "text")
    (True, False)
    """
    return pg_type.lower() in _PG_TYPE_FAMILY.get(duckdb_type.upper(), {pg_type.lower()})

"""The engine dialects (clinops.data.engines): every packaged SQL file translates for every engine.

No server here: the translations are parsed back by SQLGlot in the target dialect and checked for
DuckDB-only functions; the real servers run them in test_engine_postgres.py / test_engine_spark.py.
"""
from __future__ import annotations

from importlib.resources import files

import pytest

sqlglot = pytest.importorskip("sqlglot", reason="sqlglot is not installed (the `engines` extra)")

from clinops.data import engines  # noqa: E402

SQL_FILES = sorted(p.name for p in files("clinops").joinpath("sql").iterdir()
                   if p.name.endswith(".sql") and p.name != "macros.sql")

#: One value for every $parameter any packaged file uses (types as the pipeline binds them).
PARAMS = dict(
    min_age=18.0, min_icu_los_hours=24.0, study_groups=["2008 - 2010", "2017 - 2019"],
    train_groups=["2008 - 2010"], test_groups=["2017 - 2019"], window_hours=24.0, horizon_hours=48.0,
    lookback_hours=6.0, age_feature="age", sex_feature="sex_male", feature="f", eye_itemid=220739,
    verbal_itemid=223900, motor_itemid=223901, carry_forward_hours=6.0, mode_itemid=223849,
    mode_hamilton_itemid=229314, o2_device_itemid=226732, procedure_itemids=[225792], itemids=[221906],
    seq_num=1, service="MED", excluded_locations=[], planned_types=["ELECTIVE"], horizon_days=30,
    uncounted_types=["AMBULATORY OBSERVATION"], last_data_year=2019, pr1_procedures=["9:556"],
    pr2_diagnoses=["10:Z5111"], pr3_procedures=["10:0FT4"], pr4_diagnoses=["10:K800"],
    principal_only=False, itemid=50912, range_lo=0.0, range_hi=10.0, range_lo_closed=True,
    range_hi_closed=True, part=1, scale=1.0, lookback_days=365, result_name="Blood Pressure")
PARAMS.update(lab_prewindow_hours=6.0, lab_time="charttime")  # features_window / features_lab_aggregate


def test_every_file_is_covered_by_the_parameter_table():
    assert len(SQL_FILES) >= 18


@pytest.mark.parametrize("engine", ["postgres", "spark"])
@pytest.mark.parametrize("name", SQL_FILES)
def test_packaged_sql_translates(name, engine):
    out = engines.transpile_file(name, engine, PARAMS)
    assert out, f"{name}: no statement"
    for stmt in out:
        if stmt.action in ("drop", "describe"):
            continue
        # parses back in the target dialect ...
        tree = sqlglot.parse_one(stmt.sql, read=engines.ENGINES[engine])
        # ... with no DuckDB-only function, macro, parameter or QUALIFY left
        names = {f.name.lower() if isinstance(f, sqlglot.exp.Anonymous) else f.sql_name().lower()
                 for f in tree.find_all(sqlglot.exp.Func)}
        assert not names & set(engines.DUCKDB_ONLY_FUNCTIONS), f"{name} on {engine}: {names & set(engines.DUCKDB_ONLY_FUNCTIONS)}"
        assert tree.find(sqlglot.exp.Placeholder) is None, f"{name} on {engine}: unbound parameter"
        assert "QUALIFY" not in stmt.sql.upper().replace("_QUALIFY_", "")


@pytest.mark.parametrize("name", SQL_FILES + ["macros.sql"])
def test_duckdb_gets_the_text_byte_for_byte(name):
    text = files("clinops").joinpath("sql", name).read_text(encoding="utf-8")
    assert engines.statements(text, "duckdb", PARAMS) == [engines.Statement("query", text)]


def test_staging_statements_are_named_for_the_engine_connection():
    out = engines.transpile_file("features_chart_stage.sql", "postgres", PARAMS)
    assert [(s.action, s.table) for s in out] == [("create", "clinops_fx_chart"), ("insert", "clinops_fx_chart")]
    assert [(s.action, s.table) for s in engines.statements("DROP TABLE IF EXISTS t; DESCRIBE t", "spark")] == [
        ("drop", "t"), ("describe", "t")]


def test_macros_expand_from_the_one_definition():
    # the subquery macro (clinops_icd_chapter) becomes a plain expression every engine can inline
    params, body = engines.macros()["clinops_icd_chapter"]
    assert params == ["icd_code", "icd_version"] and body.find(sqlglot.exp.Select) is None
    pg = engines.statements("SELECT clinops_icd_chapter(code, v) FROM d", "postgres")[0].sql
    assert "UPPER(TRIM((code)))" in pg and "~" in pg  # TRY_CAST -> a regex-guarded CAST on PostgreSQL


def test_a_missing_parameter_is_named():
    with pytest.raises(ValueError, match=r"query parameter \$\w+ not given"):
        engines.transpile_file("icu_cohort.sql", "postgres", {})


def test_an_unknown_engine_is_named():
    with pytest.raises(ValueError, match="data.engine: 'oracle'"):
        engines.statements("SELECT 1", "oracle")

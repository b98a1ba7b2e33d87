"""Spark over the parquet copy, distributed: ``local-cluster[2,1,1024]`` (two executor JVMs).

One SparkSession for the module. The task tables built by Spark SQL (the packaged DuckDB SQL,
transpiled) equal the DuckDB ones on the same tiny synthetic data; the staging tables live on the
two executors (localCheckpoint), so the plan really runs distributed.
"""
from __future__ import annotations

import shutil

import pytest

pytest.importorskip("pyspark", reason="pyspark is not installed (the `engines` extra)")
pytest.importorskip("sqlglot", reason="sqlglot is not installed (the `engines` extra)")
if shutil.which("java") is None:
    pytest.skip("Java is not installed (Spark needs a JRE 17+; .ci/run installs default-jre-headless)",
                allow_module_level=True)

from clinops.data import mimic, spark as spark_engine, synthetic  # noqa: E402
from clinops.data.convert import convert_to_parquet  # noqa: E402
from clinops.data.mimic import MimicSchemaError  # noqa: E402
from clinops.tasks import required_columns  # noqa: E402

from tests.fixtures.engines import (TINY_SCALE, TINY_SEED, assert_same_table, packaged_sql_files,  # noqa: E402
                                    sql_file_ran, task_tables)

MASTER = "local-cluster[2,1,1024]"
TABLES = ["cohort", "flow", "prevalence", "features", "readmission_cohort", "readmission_flow",
          "readmission_features", "admission_proxies"]


@pytest.fixture(scope="module")
def parquet_dir(tmp_path_factory):
    base = tmp_path_factory.mktemp("mimic")
    synthetic.generate(base / "tiny", scale=TINY_SCALE, seed=TINY_SEED, workers=1)
    convert_to_parquet(base / "tiny", base / "parquet")
    return base / "parquet"


@pytest.fixture(scope="module")
def session():
    s = spark_engine.spark_session(MASTER, config={"spark.sql.shuffle.partitions": "2"})
    s.sparkContext.setLogLevel("ERROR")
    yield s
    s.stop()


@pytest.fixture(scope="module")
def spark_run(session, parquet_dir):
    db = spark_engine.open_spark(parquet_dir, required=required_columns(), spark=session)
    return task_tables(db), list(db.con.received)


@pytest.fixture(scope="module")
def duckdb_tables(parquet_dir):
    with mimic.open_mimic(parquet_dir) as db:
        return task_tables(db)


def test_two_executors_ran_the_plan(session, spark_run):
    assert session.sparkContext.master == MASTER
    # block managers: the driver's and one per executor JVM
    assert session.sparkContext._jsc.sc().getExecutorMemoryStatus().size() == 3


@pytest.mark.parametrize("table", TABLES)
def test_task_table_equals_duckdb(spark_run, duckdb_tables, table):
    tables, _ = spark_run
    assert_same_table(table, duckdb_tables[table], tables[table])


@pytest.mark.parametrize("name", packaged_sql_files())
def test_packaged_sql_ran_on_spark(spark_run, name):
    _, received = spark_run
    assert sql_file_ran(name, received), f"{name} never reached Spark"


def test_csv_directory_is_refused(session, parquet_dir):
    with pytest.raises(MimicSchemaError, match=r"spark: .*csv files \(rule: data.engine spark reads the parquet copy"):
        spark_engine.open_spark(parquet_dir.parent / "tiny", spark=session)


def test_unreachable_master_is_named_before_any_work():
    with pytest.raises(spark_engine.SparkError, match=r"spark: master 'spark://127.0.0.1:1' does not answer"):
        spark_engine.spark_session("spark://127.0.0.1:1")

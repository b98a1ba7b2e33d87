"""PostgreSQL as a source, on a real server: load, schema check, and the same task tables as DuckDB.

The module starts its own server (initdb + pg_ctl in a temporary directory, a free port, stopped
at the end), loads the tiny synthetic MIMIC-IV with ``clinops load-postgres``, builds every task
table inside PostgreSQL and compares it with the DuckDB build of the same files.
"""
from __future__ import annotations

import gzip
import json
import shutil
from pathlib import Path

import pandas as pd
import pytest

pytest.importorskip("psycopg", reason="psycopg is not installed (the `engines` extra)")
pytest.importorskip("sqlglot", reason="sqlglot is not installed (the `engines` extra)")

from clinops.cli import main as clinops_main  # noqa: E402
from clinops.config import load_params  # noqa: E402
from clinops.data import mimic, postgres, synthetic  # noqa: E402
from clinops.data.mimic import MimicSchemaError  # noqa: E402
from clinops.pipeline.context import ensure_data, synthetic_scale  # noqa: E402
from clinops.report import paper_comparison, paper_values  # noqa: E402
from clinops.tasks import required_columns  # noqa: E402

from tests.fixtures.engines import (TINY_SCALE, TINY_SEED, assert_same_table, packaged_sql_files,  # noqa: E402
                                    postgres_server, sql_file_ran, task_tables)
from tests.fixtures.params import tiny_raw, write_params  # noqa: E402

TABLES = ["cohort", "flow", "prevalence", "features", "readmission_cohort", "readmission_flow",
          "readmission_features", "admission_proxies"]


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("mimic") / "tiny"
    synthetic.generate(out, scale=TINY_SCALE, seed=TINY_SEED, workers=1)
    return out


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with postgres_server(tmp_path_factory.mktemp("pg")) as dsn:
        yield dsn


@pytest.fixture(scope="module")
def loaded(server, tiny_dir):
    first = postgres.load_directory(tiny_dir, server)
    second = postgres.load_directory(tiny_dir, server)
    return first, second


@pytest.fixture(scope="module")
def duckdb_tables(tiny_dir):
    with mimic.open_mimic(tiny_dir) as db:
        return task_tables(db)


@pytest.fixture(scope="module")
def postgres_run(server, loaded):
    with postgres.open_postgres(server, required=required_columns()) as db:
        return task_tables(db), list(db.con.received)


def test_load_is_idempotent_by_content(loaded):
    first, second = loaded
    assert set(first.values()) == {"loaded"} and "mimiciv_icu.chartevents" in first
    assert set(second.values()) == {"unchanged"} and second.keys() == first.keys()


def test_load_builds_mimic_code_layout(server, loaded):
    conn = postgres.connect(server)
    try:
        keys = dict(conn.execute(
            "SELECT tc.table_schema || '.' || tc.table_name, string_agg(kcu.column_name, ',') "
            "FROM information_schema.table_constraints tc JOIN information_schema.key_column_usage kcu "
            "ON kcu.constraint_name = tc.constraint_name AND kcu.table_schema = tc.table_schema "
            "WHERE tc.constraint_type = 'PRIMARY KEY' GROUP BY 1").fetchall())
        indexes = {r[0] for r in conn.execute(
            "SELECT indexname FROM pg_indexes WHERE schemaname = 'mimiciv_icu'").fetchall()}
        intime = conn.execute("SELECT data_type FROM information_schema.columns WHERE table_schema = 'mimiciv_icu' "
                              "AND table_name = 'icustays' AND column_name = 'intime'").fetchone()[0]
    finally:
        conn.close()
    assert keys["mimiciv_icu.icustays"] == "stay_id" and keys["mimiciv_hosp.admissions"] == "hadm_id"
    assert {"chartevents_idx01", "chartevents_idx02", "chartevents_idx03"} <= indexes
    assert intime == "timestamp without time zone"


def test_a_changed_file_replaces_its_table(server, tiny_dir, loaded, tmp_path):  # loaded: the tiny data are in
    import shutil
    copy = tmp_path / "copy"
    shutil.copytree(tiny_dir, copy)
    (copy / "hosp" / "provider.csv.gz").unlink()
    synthetic_provider = tiny_dir / "hosp" / "provider.csv.gz"
    import gzip
    rows = gzip.open(synthetic_provider, "rt").read().splitlines()
    with gzip.open(copy / "hosp" / "provider.csv.gz", "wt") as fh:
        fh.write("\n".join(rows[:2]) + "\n")
    actions = postgres.load_directory(copy, server)
    assert actions["mimiciv_hosp.provider"] == "loaded"
    assert {a for t, a in actions.items() if t != "mimiciv_hosp.provider"} == {"unchanged"}
    conn = postgres.connect(server)
    try:
        assert conn.execute("SELECT count(*) FROM mimiciv_hosp.provider").fetchone()[0] == 1
    finally:
        conn.close()
    postgres.load_directory(tiny_dir, server)  # back to the tiny data for the other tests


@pytest.mark.parametrize("table", TABLES)
def test_task_table_equals_duckdb(postgres_run, duckdb_tables, table):
    tables, _ = postgres_run
    assert_same_table(table, duckdb_tables[table], tables[table])


@pytest.mark.parametrize("name", packaged_sql_files())
def test_packaged_sql_ran_inside_postgres(postgres_run, name):
    _, received = postgres_run
    assert sql_file_ran(name, received), f"{name} never reached PostgreSQL"


def test_cli_load_postgres_is_one_command(server, tiny_dir, loaded, capsys):
    assert clinops_main(["load-postgres", str(tiny_dir), "--dsn", server]) == 0
    assert "0 loaded" in capsys.readouterr().out


# --- bad input: one message naming the engine, the object and the rule, before any work --------
def test_unreachable_server_is_named():
    with pytest.raises(postgres.PostgresError, match=r"postgres: cannot connect .*rule: the DSN must reach"):
        postgres.open_postgres("host=127.0.0.1 port=1 user=nobody dbname=none connect_timeout=2")


def test_a_broken_synthetic_manifest_is_refused_before_any_connection_or_load(tmp_path):
    src = tmp_path / "mimic"
    (src / "hosp").mkdir(parents=True)
    (src / "hosp" / "patients.csv").write_text("subject_id,gender,anchor_age,anchor_year,anchor_year_group,dod\n")
    (src / "SYNTHETIC.json").write_text('{"generator": "clinops synth", ')
    # the DSN reaches nothing: the manifest must be refused before a connection is even tried
    with pytest.raises(MimicSchemaError, match=r"SYNTHETIC.json: not valid JSON \(rule: SYNTHETIC.json is written"):
        postgres.load_directory(src, "host=127.0.0.1 port=1 user=nobody dbname=none connect_timeout=2")


def test_missing_dsn_names_the_environment_variable(monkeypatch):
    monkeypatch.delenv(postgres.DSN_ENV, raising=False)
    with pytest.raises(postgres.PostgresError, match=postgres.DSN_ENV):
        postgres.open_postgres(None)


def test_missing_table_and_wrong_type_are_listed(server, loaded):
    conn = postgres.connect(server)
    try:
        conn.execute("CREATE SCHEMA broken_copy")
        conn.execute("ALTER TABLE mimiciv_hosp.omr SET SCHEMA broken_copy")
        conn.execute("ALTER TABLE mimiciv_icu.icustays ALTER COLUMN intime TYPE text")
        with pytest.raises(MimicSchemaError) as err:
            postgres.open_postgres(server, required=required_columns())
        text = str(err.value)
        assert "missing table mimiciv_hosp.omr" in text
        assert "mimiciv_icu.icustays.intime: type text, expected TIMESTAMP(0)" in text
    finally:
        conn.execute("ALTER TABLE mimiciv_icu.icustays ALTER COLUMN intime TYPE timestamp(0) USING intime::timestamp")
        conn.execute("ALTER TABLE broken_copy.omr SET SCHEMA mimiciv_hosp")
        conn.execute("DROP SCHEMA broken_copy")
        conn.close()


# --- the workflow's stages with data.source postgres -------------------------------------------
def _stage_tables(P):
    from clinops import pipeline
    pipeline.run_cohort(P)
    pipeline.run_features(P)
    pipeline.run_readmission_data(P)
    return {slot: pd.read_parquet(P.build_dir / slot / "task_table.parquet") for slot in ("primary", "readmission")}


def test_workflow_stages_on_postgres_equal_duckdb(server, loaded, tiny_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("CLINOPS_TEST_PG_DSN", server)
    monkeypatch.setenv("CLINOPS_CACHE_DIR", str(tmp_path / "cache"))
    duck_raw = tiny_raw(tmp_path / "duck", name="tinyduck")
    duck_raw["data"]["synthetic"]["out_dir"] = str(tiny_dir)  # the files PostgreSQL was loaded from
    pg_raw = tiny_raw(tmp_path / "pg", name="tinypg")
    pg_raw["data"] = {"source": "postgres", "postgres": {"dsn_env": "CLINOPS_TEST_PG_DSN", "loaded_from": "synthetic"}}
    for raw in (duck_raw, pg_raw):
        Path(raw["build_dir"]).parent.mkdir(parents=True, exist_ok=True)
    duck = load_params(write_params(tmp_path / "duck", duck_raw), root=tmp_path / "duck")
    pg = load_params(write_params(tmp_path / "pg", pg_raw), root=tmp_path / "pg")
    assert pg.engine == "postgres" and "PostgreSQL" in pg.data_label and "not real patients" in pg.data_label
    expected, got = _stage_tables(duck), _stage_tables(pg)
    for slot in expected:
        assert_same_table(slot, expected[slot], got[slot])


def test_unset_dsn_variable_stops_before_any_work(tmp_path, monkeypatch):
    from clinops import pipeline
    monkeypatch.delenv("CLINOPS_TEST_PG_DSN", raising=False)
    raw = tiny_raw(tmp_path, name="nodsn")
    raw["data"] = {"source": "postgres", "postgres": {"dsn_env": "CLINOPS_TEST_PG_DSN"}}
    P = load_params(write_params(tmp_path, raw), root=tmp_path)
    with pytest.raises(postgres.PostgresError, match="environment variable CLINOPS_TEST_PG_DSN is not set"):
        pipeline.run_cohort(P)
    assert not any((tmp_path / "build").rglob("*.parquet")) and not (tmp_path / "reports").exists()


# --- provenance: a database loaded from synthetic files is marked as the files are -------------
def _manifest_of(folder: Path) -> dict:
    return json.loads((folder / "SYNTHETIC.json").read_text())


def test_load_records_the_generators_manifest(server, loaded, tiny_dir):
    with postgres.open_postgres(server) as db:
        prov, manifest = db.provenance(), db.synthetic_manifest()
    assert prov["source_dir"] == str(tiny_dir.resolve())
    assert manifest == _manifest_of(tiny_dir)
    assert (manifest["scale"], manifest["seed"]) == (TINY_SCALE, TINY_SEED)
    assert manifest["rows"]["icu/chartevents"] > 0


def test_files_without_a_manifest_record_no_synthetic_provenance(server, loaded, tiny_dir, tmp_path):
    plain = tmp_path / "plain"
    shutil.copytree(tiny_dir, plain)
    (plain / "SYNTHETIC.json").unlink()  # the same files, but nothing says a generator made them
    try:
        assert set(postgres.load_directory(plain, server).values()) == {"unchanged"}
        with postgres.open_postgres(server) as db:
            assert db.provenance()["synthetic"] is None and db.synthetic_manifest() is None
    finally:
        postgres.load_directory(tiny_dir, server)
    with postgres.open_postgres(server) as db:
        assert db.synthetic_manifest() == _manifest_of(tiny_dir)


def test_a_table_changed_since_the_load_voids_the_provenance(server, loaded, tiny_dir):
    conn = postgres.connect(server)
    try:
        comment = conn.execute("SELECT obj_description('mimiciv_hosp.provider'::regclass, 'pg_class')").fetchone()[0]
        conn.execute("COMMENT ON TABLE mimiciv_hosp.provider IS 'replaced by hand'")
        with postgres.open_postgres(server) as db:
            assert db.provenance()["synthetic"] is not None and db.synthetic_manifest() is None
    finally:
        conn.execute(f"COMMENT ON TABLE mimiciv_hosp.provider IS '{comment}'")
        conn.close()


def test_an_interrupted_load_leaves_no_provenance(server, loaded, tiny_dir, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(tiny_dir, broken)
    labitems = broken / "hosp" / "d_labitems.csv.gz"
    header = gzip.open(labitems, "rt").readline()
    with gzip.open(labitems, "wt") as fh:  # 'abc' is no INTEGER itemid: COPY fails halfway through the load
        fh.write(header + ",".join(["abc"] * header.count(",")) + ",abc\n")
    try:
        with pytest.raises(postgres.PostgresError, match="loading mimiciv_hosp.d_labitems"):
            postgres.load_directory(broken, server)
        with postgres.open_postgres(server) as db:
            assert db.provenance() is None and db.synthetic_manifest() is None
    finally:
        postgres.load_directory(tiny_dir, server)


def _pg_params(tmp_path: Path, name: str, loaded_from: str | None):
    raw = tiny_raw(tmp_path / name, name=name)
    raw["data"] = {"source": "postgres", "postgres": {"dsn_env": "CLINOPS_TEST_PG_DSN"}}
    if loaded_from:
        raw["data"]["postgres"]["loaded_from"] = loaded_from
    Path(raw["build_dir"]).parent.mkdir(parents=True, exist_ok=True)
    return load_params(write_params(tmp_path / name, raw), root=tmp_path / name)


def test_paper_comparison_marks_postgres_rows_as_duckdb(server, loaded, tiny_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("CLINOPS_TEST_PG_DSN", server)
    duck_raw = tiny_raw(tmp_path / "duck", name="tinyduck")
    duck_raw["data"]["synthetic"]["out_dir"] = str(tiny_dir)  # the files PostgreSQL was loaded from
    Path(duck_raw["build_dir"]).parent.mkdir(parents=True, exist_ok=True)
    duck = load_params(write_params(tmp_path / "duck", duck_raw), root=tmp_path / "duck")
    pg = _pg_params(tmp_path, "tinypg", "synthetic")
    ensure_data(duck)
    stamp = json.loads(ensure_data(pg).stamp.read_text())
    assert stamp["synthetic"] == _manifest_of(tiny_dir)
    assert synthetic_scale(pg) == synthetic_scale(duck) == TINY_SCALE
    marks = {}
    for P in (duck, pg):
        table = paper_comparison(P.build_dir, data_label=P.data_label, synthetic_scale=synthetic_scale(P))
        marks[P.name] = table["holds by construction"].tolist()
    # at scale 0.02 the calibrated proportions hold by construction, the counts do not
    expected = ["yes" if v.get("calibrated") and v.get("kind") != "count" else "" for v in paper_values()]
    assert "yes" in expected and marks["tinyduck"] == marks["tinypg"] == expected


@pytest.mark.parametrize("declared, rule", [("mimic-iv", "loaded from synthetic data .* but data.postgres.loaded_from is 'mimic-iv'"),
                                            (None, "loaded from synthetic data .* but data.postgres.loaded_from is None")])
def test_synthetic_database_declared_real_stops_the_data_step(server, loaded, tmp_path, monkeypatch, declared, rule):
    monkeypatch.setenv("CLINOPS_TEST_PG_DSN", server)
    P = _pg_params(tmp_path, "mislabelled", declared)
    with pytest.raises(postgres.PostgresError, match=rule):
        ensure_data(P)
    assert not (P.build_dir / "stamps" / "data.json").exists()


def test_database_without_provenance_declared_synthetic_stops_the_data_step(server, loaded, tmp_path, monkeypatch):
    monkeypatch.setenv("CLINOPS_TEST_PG_DSN", server)
    P = _pg_params(tmp_path, "unproven", "synthetic")
    conn = postgres.connect(server)
    saved = conn.execute(f"SELECT source_dir, sha256::text, synthetic::text FROM {postgres.PROVENANCE_TABLE}").fetchone()
    conn.execute(f"DELETE FROM {postgres.PROVENANCE_TABLE}")
    try:
        with pytest.raises(postgres.PostgresError, match="loaded_from is 'synthetic' but the tables carry no synthetic provenance"):
            ensure_data(P)
        assert not (P.build_dir / "stamps" / "data.json").exists()
        assert synthetic_scale(P) is None  # no stamp, not synthetic params: nothing holds by construction
    finally:
        conn.execute(f"INSERT INTO {postgres.PROVENANCE_TABLE} (source_dir, sha256, synthetic) VALUES (%s, %s::jsonb, %s::jsonb)",
                     saved)
        conn.close()

"""The MIMIC-IV data layer: typed views, schema check, SHA-256 lineage, parquet conversion, CLI."""
from __future__ import annotations

import gzip
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest

from clinops.data.mimic import (
    MIMIC_IV_SCHEMA,
    MimicSchemaError,
    open_mimic,
    sha256_file,
)
from clinops.data.convert import convert_to_parquet
from clinops.data.convert import main as convert_main

from clinops.tasks.check import main as check_main

from tests.fixtures import mimic_tables  # noqa: E402

ADMISSIONS = [
    {"subject_id": 1, "hadm_id": 10, "admittime": "2150-01-01 00:00:00",
     "dischtime": "2150-01-05 12:30:00", "admission_type": "EW EMER.",
     "hospital_expire_flag": 0, "race": "WHITE, \"quoted\", comma"},
    {"subject_id": 2, "hadm_id": 20, "admittime": "2151-02-01 08:00:00",
     "dischtime": None, "admission_type": "URGENT", "hospital_expire_flag": None},
]


@pytest.fixture()
def mimic_dir(tmp_path):
    return mimic_tables.write_mimic(tmp_path / "mimic", {"mimiciv_hosp.admissions": ADMISSIONS})


def test_views_are_named_like_the_real_schemas_and_typed(mimic_dir, tmp_path):
    with open_mimic(mimic_dir, hash_cache=tmp_path / "c.json") as db:
        assert db.format == "csv"
        assert "mimiciv_hosp.admissions" in db.tables and "mimiciv_icu.chartevents" in db.tables
        types = dict(db.con.execute("SELECT column_name, column_type FROM (DESCRIBE "
                                    "mimiciv_hosp.admissions)").fetchall())
        # deathtime and edregtime are empty in every row: still TIMESTAMP, not VARCHAR
        assert types["deathtime"] == "TIMESTAMP" and types["edregtime"] == "TIMESTAMP"
        assert types["hospital_expire_flag"] == "SMALLINT"
        # an empty chartevents file still has DOUBLE valuenum and INTEGER itemid
        ce = dict(db.con.execute("SELECT column_name, column_type FROM (DESCRIBE "
                                 "mimiciv_icu.chartevents)").fetchall())
        assert ce["valuenum"] == "DOUBLE" and ce["itemid"] == "INTEGER"
        assert list(ce) == list(MIMIC_IV_SCHEMA["mimiciv_icu.chartevents"])
        rows = db.con.execute("SELECT hadm_id, dischtime, race, hospital_expire_flag "
                              "FROM mimiciv_hosp.admissions ORDER BY hadm_id").fetchall()
        assert str(rows[0][1]) == "2150-01-05 12:30:00"
        assert rows[0][2] == 'WHITE, "quoted", comma'
        assert rows[1][1] is None and rows[1][3] is None


def test_columns_are_matched_by_header_name(tmp_path):
    root = mimic_tables.write_mimic(tmp_path / "m", {})
    cols = ["anchor_year_group", "subject_id", "dod", "anchor_year", "gender", "anchor_age"]
    mimic_tables.write_table(root, "mimiciv_hosp.patients", [
        {"subject_id": 7, "gender": "F", "anchor_age": 44, "anchor_year": 2160,
         "anchor_year_group": "2011 - 2013", "dod": "2161-03-04"}], columns=cols)
    with open_mimic(root, hash_cache=tmp_path / "c.json") as db:
        row = db.con.execute("SELECT subject_id, anchor_age, dod, anchor_year_group "
                             "FROM mimiciv_hosp.patients").fetchone()
        assert row[0] == 7 and row[1] == 44 and str(row[2]) == "2161-03-04"
        assert row[3] == "2011 - 2013"


def test_require_lists_every_missing_table_and_column(tmp_path):
    root = mimic_tables.write_mimic(tmp_path / "m", {})
    mimic_tables.write_table(root, "mimiciv_hosp.admissions", [],
                             columns=["subject_id", "hadm_id", "admittime"])
    (root / "icu" / "inputevents.csv.gz").unlink()
    spec = {"mimiciv_hosp.admissions": ["hadm_id", "dischtime", "deathtime"],
            "mimiciv_icu.inputevents": ["stay_id"], "mimiciv_hosp.services": ["hadm_id"],
            "patients": ["subject_id", "gender"]}
    with pytest.raises(MimicSchemaError) as e:
        open_mimic(root, required=spec, hash_cache=tmp_path / "c.json")
    msg = str(e.value)
    assert "mimiciv_hosp.admissions: missing column(s) dischtime, deathtime" in msg
    assert "missing table mimiciv_icu.inputevents" in msg
    assert "missing table mimiciv_hosp.services" in msg
    assert "patients" not in msg.split("lacks")[1]  # present table with its columns: fine
    assert msg.count("\n  - ") == 3


def test_layout_errors(tmp_path):
    with pytest.raises(MimicSchemaError, match="does not exist"):
        open_mimic(tmp_path / "nope")
    (tmp_path / "empty" / "hosp").mkdir(parents=True)
    with pytest.raises(MimicSchemaError, match="holds no MIMIC-IV tables"):
        open_mimic(tmp_path / "empty")
    root = mimic_tables.write_mimic(tmp_path / "mixed", {})
    duckdb.connect().execute(f"COPY (SELECT 1 AS subject_id) TO '{root}/hosp/omr.parquet' "
                             "(FORMAT parquet)")
    with pytest.raises(MimicSchemaError, match="mixes csv and parquet"):
        open_mimic(root)


def test_sha256_streams_and_caches_by_size_and_mtime(mimic_dir, tmp_path):
    cache = tmp_path / "cache.json"
    with open_mimic(mimic_dir, hash_cache=cache) as db:
        digests = db.file_sha256()
    adm = mimic_dir / "hosp" / "admissions.csv.gz"
    assert digests["hosp/admissions.csv.gz"] == hashlib.sha256(adm.read_bytes()).hexdigest()
    assert set(digests) == {p.relative_to(mimic_dir).as_posix()
                            for p in mimic_dir.rglob("*.csv.gz")}
    # the cache is what answers for an unchanged file: plant a marker value in it
    entries = json.loads(cache.read_text())
    key = next(k for k in entries if k.startswith(str(adm.resolve()) + "|"))
    entries[key] = "cached-marker"
    cache.write_text(json.dumps(entries))
    assert sha256_file(adm, cache=cache) == "cached-marker"
    # a changed mtime invalidates the entry: the real digest is computed again
    st = adm.stat()
    os.utime(adm, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    assert sha256_file(adm, cache=cache) == digests["hosp/admissions.csv.gz"]
    assert sha256_file(adm, cache=None) == digests["hosp/admissions.csv.gz"]


def test_convert_to_parquet_round_trip(mimic_dir, tmp_path):
    out = tmp_path / "pq"
    seen = []
    counts = convert_to_parquet(mimic_dir, out, progress=lambda t, i, n: seen.append((t, i, n)),
                                hash_cache=tmp_path / "c.json")
    meta = json.loads((out / "clinops_convert.json").read_text())
    adm = mimic_dir / "hosp" / "admissions.csv.gz"
    assert meta["source_sha256"]["hosp/admissions.csv.gz"] == hashlib.sha256(
        adm.read_bytes()).hexdigest()
    assert counts["mimiciv_hosp.admissions"] == 2 and counts["mimiciv_icu.chartevents"] == 0
    assert [s[1] for s in seen] == list(range(1, len(seen) + 1)) and seen[0][2] == len(seen)
    assert (out / "hosp" / "admissions.parquet").is_file()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".pq.tmp")]
    with open_mimic(out, hash_cache=tmp_path / "c.json") as pq, \
            open_mimic(mimic_dir, hash_cache=tmp_path / "c.json") as csv:
        assert pq.format == "parquet"
        q = "SELECT * FROM mimiciv_hosp.admissions ORDER BY hadm_id"
        assert pq.con.execute(q).fetchall() == csv.con.execute(q).fetchall()
        d = "SELECT column_name, column_type FROM (DESCRIBE mimiciv_icu.chartevents)"
        assert pq.con.execute(d).fetchall() == csv.con.execute(d).fetchall()
        assert set(pq.file_sha256()) == {f"{m}/{t}.parquet" for m, t in
                                         [p.relative_to(mimic_dir).as_posix()
                                          .removesuffix(".csv.gz").split("/")
                                          for p in mimic_dir.rglob("*.csv.gz")]}
    with pytest.raises(FileExistsError):
        convert_to_parquet(mimic_dir, out, hash_cache=tmp_path / "c.json")


def test_convert_clusters_events_by_itemid_reproducibly(tmp_path):
    chart = [{"subject_id": 1, "hadm_id": 10, "stay_id": 100 + i % 3, "itemid": item,
              "charttime": f"2150-01-01 {i % 24:02d}:00:00", "valuenum": i}
             for i, item in enumerate([220277, 220045, 223762, 220045, 220277, 220045] * 3)]
    src = mimic_tables.write_mimic(tmp_path / "m", {"mimiciv_icu.chartevents": chart})
    convert_to_parquet(src, tmp_path / "a", hash_cache=tmp_path / "c.json", sort_events=True)
    convert_to_parquet(src, tmp_path / "b", hash_cache=tmp_path / "c.json", sort_events=True)
    with open_mimic(tmp_path / "a", hash_cache=tmp_path / "c.json") as a, \
            open_mimic(tmp_path / "b", hash_cache=tmp_path / "c.json") as b:
        assert a.file_sha256() == b.file_sha256()  # same bytes: lineage hashes are stable
        items = [r[0] for r in a.con.execute(
            "SELECT itemid FROM read_parquet(?)", [str(a.files["mimiciv_icu.chartevents"])]
        ).fetchall()]
        assert items == sorted(items) and len(items) == 18
    convert_to_parquet(src, tmp_path / "c", hash_cache=tmp_path / "c.json")  # default: stream
    with open_mimic(tmp_path / "c", hash_cache=tmp_path / "c.json") as c:
        items = [r[0] for r in c.con.execute(
            "SELECT itemid FROM read_parquet(?)", [str(c.files["mimiciv_icu.chartevents"])]
        ).fetchall()]
        assert items == [r["itemid"] for r in chart]  # file order kept


def test_convert_is_atomic_on_failure(mimic_dir, tmp_path):
    # a timestamp that cannot be parsed makes DuckDB fail on that table
    bad = mimic_dir / "icu" / "icustays.csv.gz"
    with gzip.open(bad, "wt") as fh:
        fh.write(",".join(MIMIC_IV_SCHEMA["mimiciv_icu.icustays"]) + "\n")
        fh.write("1,10,100,MICU,MICU,not-a-time,2150-01-02 00:00:00,1.0\n")
    out = tmp_path / "pq"
    with pytest.raises(duckdb.Error):
        convert_to_parquet(mimic_dir, out, hash_cache=tmp_path / "c.json")
    assert not out.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".pq.tmp")]


def test_parquet_with_other_integer_width_is_cast_to_the_ddl_type(tmp_path):
    root = tmp_path / "pq"
    (root / "hosp").mkdir(parents=True)
    duckdb.connect().execute(
        f"COPY (SELECT 5::BIGINT AS subject_id, 'F' AS gender, 30::BIGINT AS anchor_age, "
        f"2150::BIGINT AS anchor_year, '2008 - 2010' AS anchor_year_group, NULL::DATE AS dod) "
        f"TO '{root}/hosp/patients.parquet' (FORMAT parquet)")
    with open_mimic(root, hash_cache=tmp_path / "c.json") as db:
        types = dict(db.con.execute("SELECT column_name, column_type FROM (DESCRIBE "
                                    "mimiciv_hosp.patients)").fetchall())
        assert types["subject_id"] == "INTEGER" and types["anchor_age"] == "SMALLINT"


def test_cli_check_and_convert(mimic_dir, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("CLINOPS_CACHE_DIR", str(tmp_path / "cache"))
    assert check_main([str(mimic_dir)]) == 0
    assert "all 8 tables" in capsys.readouterr().out
    (mimic_dir / "hosp" / "diagnoses_icd.csv.gz").unlink()
    assert check_main([str(mimic_dir)]) == 1
    err = capsys.readouterr().err
    assert "FAILED" in err and "missing table mimiciv_hosp.diagnoses_icd" in err
    out = tmp_path / "pq"
    assert convert_main([str(mimic_dir), "--to", "parquet", "--out", str(out)]) == 0
    assert (out / "icu" / "chartevents.parquet").is_file()
    assert convert_main([str(mimic_dir), "--to", "parquet", "--out", str(out)]) == 1


def test_clinops_entry_point_runs_check(mimic_dir, tmp_path):
    exe = Path(sys.executable).with_name("clinops")
    env = {**os.environ, "CLINOPS_CACHE_DIR": str(tmp_path / "cache")}
    r = subprocess.run([str(exe), "check", str(mimic_dir), "--sha256"], capture_output=True,
                       text=True, env=env, timeout=60)
    assert r.returncode == 0, r.stderr
    digest = hashlib.sha256((mimic_dir / "hosp" / "admissions.csv.gz").read_bytes()).hexdigest()
    assert f"{digest}  hosp/admissions.csv.gz" in r.stdout

"""Synthetic MIMIC-IV v2.2 generator: layout, types, conventions, determinism, atomic output.

Runs on tiny data (scale 0.02: ~680 ICU stays, ~1,800 admissions) generated once per module.
Calibration targets are checked in test_synthetic_calibration.py.
"""
from __future__ import annotations

import gzip
import hashlib
import json
import re
from pathlib import Path

import numpy as np
import pytest

from clinops.data import synthetic
from clinops.data.synth import events, population, schema
from clinops.data.synth.calibration import connect
from clinops.data.synth.reference import ANCHOR_YEAR_GROUPS, ICD10_START
from clinops.data.mimic import open_mimic
from clinops.tasks.readmission.cohort import build_readmission_cohort
from clinops.tasks.readmission.definitions import definitions_table

SCALE = 0.02
SEED = 11
REQUIRED = ["hosp/patients", "hosp/admissions", "hosp/diagnoses_icd", "hosp/d_icd_diagnoses",
            "hosp/procedures_icd", "hosp/labevents", "hosp/d_labitems", "hosp/services",
            "hosp/transfers", "hosp/omr", "icu/icustays", "icu/chartevents", "icu/d_items",
            "icu/inputevents", "icu/procedureevents"]


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("synth") / "mimic"
    synthetic.generate(out, scale=SCALE, seed=SEED, workers=1)
    return out


@pytest.fixture(scope="module")
def con(data_dir):
    c = connect(data_dir)
    yield c
    c.close()


def _hashes(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def _header(path: Path) -> list[str]:
    with gzip.open(path, "rt") as fh:
        return fh.readline().rstrip("\n").split(",")


def _one(con, sql: str):
    return con.execute(sql).fetchone()[0]


# ---------------------------------------------------------------------------------------------
# layout and columns
# ---------------------------------------------------------------------------------------------
def test_layout_has_every_required_table_and_a_manifest(data_dir):
    for table in REQUIRED:
        assert (data_dir / f"{table}.csv.gz").is_file(), table
    manifest = json.loads((data_dir / "SYNTHETIC.json").read_text())
    assert manifest["seed"] == SEED and manifest["scale"] == SCALE
    assert "SYNTHETIC" in manifest["note"]
    assert manifest["generator_version"] == synthetic.GENERATOR_VERSION
    # row counts in the manifest are the real line counts
    for table, n in manifest["rows"].items():
        with gzip.open(data_dir / f"{table}.csv.gz", "rt") as fh:
            assert sum(1 for _ in fh) - 1 == n, table


def test_columns_follow_the_v22_ddl_order(data_dir):
    # an independent transcription of the v2.2 DDL (clinops.data.mimic) must agree with the files
    from clinops.data.mimic import MIMIC_IV_SCHEMA
    for table in schema.TABLES:
        qualified = "mimiciv_" + table.replace("/", ".")
        expected = MIMIC_IV_SCHEMA.get(qualified, {"icd_code": 0, "icd_version": 0, "long_title": 0})
        assert _header(data_dir / f"{table}.csv.gz") == list(expected), table
    # and a hand-copied known answer from the DDL
    assert _header(data_dir / "hosp/admissions.csv.gz") == [
        "subject_id", "hadm_id", "admittime", "dischtime", "deathtime", "admission_type",
        "admit_provider_id", "admission_location", "discharge_location", "insurance", "language",
        "marital_status", "race", "edregtime", "edouttime", "hospital_expire_flag"]


def test_csv_conventions_timestamps_nulls_quotes(data_dir):
    with gzip.open(data_dir / "hosp/admissions.csv.gz", "rt") as fh:
        next(fh)
        rows = [line.rstrip("\n").split(",") for line in fh]
    ts = re.compile(r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}$")
    assert all(ts.match(r[2]) and ts.match(r[3]) for r in rows)
    assert all(r[2].endswith(":00") for r in rows)                  # minute resolution
    survivors = [r for r in rows if r[15] == "0"]
    assert survivors and all(r[4] == "" for r in survivors)         # empty field = NULL deathtime
    with gzip.open(data_dir / "hosp/d_icd_diagnoses.csv.gz", "rt") as fh:
        text = fh.read()
    # quotes only where a value needs them (a comma in the title), as in PhysioNet's files
    assert '"Malignant neoplasm of liver, secondary"' in text
    assert '"Atrial fibrillation"' not in text and "Atrial fibrillation" in text


def test_types_read_back_with_the_ddl_types(con):
    # the typed views fail on any value that does not parse as its DDL type
    for table in schema.TABLES:
        con.execute(f"SELECT * FROM {table.replace('/', '_')}").fetchall()


# ---------------------------------------------------------------------------------------------
# de-identification and value conventions
# ---------------------------------------------------------------------------------------------
def test_dates_are_shifted_into_2100_2200(con):
    lo, hi = con.execute("""
        SELECT min(y), max(y) FROM (
            SELECT year(admittime) AS y FROM hosp_admissions UNION ALL
            SELECT year(dischtime) FROM hosp_admissions UNION ALL
            SELECT year(charttime) FROM icu_chartevents UNION ALL
            SELECT year(charttime) FROM hosp_labevents UNION ALL
            SELECT year(chartdate) FROM hosp_omr UNION ALL
            SELECT year(dod) FROM hosp_patients WHERE dod IS NOT NULL)""").fetchone()
    assert 2100 <= lo and hi <= 2200


def test_anchor_age_year_and_groups(con):
    groups = {g for (g,) in con.execute("SELECT DISTINCT anchor_year_group FROM hosp_patients").fetchall()}
    assert groups == set(ANCHOR_YEAR_GROUPS)                         # the four v2.2 groups
    ages = [a for (a,) in con.execute("SELECT DISTINCT anchor_age FROM hosp_patients").fetchall()]
    assert min(ages) >= 18 and max(ages) == 91                      # over 89 recorded as 91
    assert not any(89 < a < 91 or a > 91 for a in ages)
    # anchor_year is the shifted year of the patient's first admission
    bad = _one(con, """
        SELECT count(*) FROM hosp_patients p JOIN (
            SELECT subject_id, min(admittime) AS first FROM hosp_admissions GROUP BY 1) a
        USING (subject_id) WHERE year(a.first) <> p.anchor_year""")
    assert bad == 0


def test_icd9_in_early_years_icd10_in_late_years(con):
    by_group = dict(con.execute("""
        SELECT p.anchor_year_group, list(DISTINCT d.icd_version ORDER BY d.icd_version)
        FROM hosp_diagnoses_icd d JOIN hosp_admissions a USING (hadm_id)
        JOIN hosp_patients p ON p.subject_id = a.subject_id
        WHERE year(a.admittime) = p.anchor_year
        GROUP BY 1""").fetchall())
    assert by_group["2008 - 2010"] == [9] and by_group["2011 - 2013"] == [9]
    assert by_group["2017 - 2019"] == [10]
    assert by_group["2014 - 2016"] == [9, 10]                       # ICD-10 from October 2015
    assert ICD10_START == (2015, 10, 1)
    assert _one(con, "SELECT count(*) FROM hosp_diagnoses_icd WHERE icd_code LIKE '%.%'") == 0
    assert _one(con, "SELECT count(*) FROM hosp_procedures_icd WHERE icd_code LIKE '%.%'") == 0


def test_id_shapes_and_stay_ids_are_transfer_ids(con):
    assert _one(con, "SELECT count(*) FROM hosp_patients WHERE subject_id NOT BETWEEN 10000000 AND 19999999") == 0
    assert _one(con, "SELECT count(*) FROM hosp_admissions WHERE hadm_id NOT BETWEEN 20000000 AND 29999999") == 0
    assert _one(con, "SELECT count(*) FROM icu_icustays WHERE stay_id NOT BETWEEN 30000000 AND 39999999") == 0
    assert _one(con, """SELECT count(*) FROM icu_icustays i LEFT JOIN hosp_transfers t
                        ON t.transfer_id = i.stay_id AND t.intime = i.intime
                        WHERE t.transfer_id IS NULL""") == 0
    assert _one(con, "SELECT count(*) - count(DISTINCT labevent_id) FROM hosp_labevents") == 0
    assert _one(con, "SELECT count(*) - count(DISTINCT orderid) FROM icu_inputevents") == 0
    assert _one(con, "SELECT count(*) FROM hosp_admissions WHERE length(language) > 10") == 0


def test_dictionaries_cover_every_item_and_code(con):
    for table, link in (("icu_chartevents", "chartevents"), ("icu_inputevents", "inputevents"),
                        ("icu_procedureevents", "procedureevents")):
        assert _one(con, f"""SELECT count(DISTINCT e.itemid) FROM {table} e LEFT JOIN icu_d_items d
                             ON d.itemid = e.itemid AND d.linksto = '{link}'
                             WHERE d.itemid IS NULL""") == 0, table
    assert _one(con, """SELECT count(*) FROM hosp_labevents l LEFT JOIN hosp_d_labitems d
                        USING (itemid) WHERE d.itemid IS NULL""") == 0
    for table, dct in (("hosp_diagnoses_icd", "hosp_d_icd_diagnoses"),
                       ("hosp_procedures_icd", "hosp_d_icd_procedures")):
        assert _one(con, f"""SELECT count(*) FROM {table} x LEFT JOIN {dct} d
                             USING (icd_code, icd_version) WHERE d.icd_code IS NULL""") == 0
    # units of the vital signs as in d_items (reference section 3a)
    units = dict(con.execute("SELECT itemid, any_value(valueuom) FROM icu_chartevents "
                             "WHERE itemid IN (220045, 220210, 223761, 223762) GROUP BY 1").fetchall())
    assert units == {220045: "bpm", 220210: "insp/min", 223761: "°F", 223762: "°C"}


def test_event_level_vitals_gcs_ventilation_and_vasopressors(con):
    items = {i for (i,) in con.execute("SELECT DISTINCT itemid FROM icu_chartevents").fetchall()}
    # both temperatures, invasive and non-invasive MAP, both respiratory-rate items, GCS texts
    assert {223761, 223762, 220052, 220181, 220210, 224690, 220739, 223900, 223901,
            223849, 226732} <= items
    # vitals are charted about hourly: median gap between heart-rate rows of a stay is 1 h
    gap = _one(con, """
        SELECT median(g) FROM (
            SELECT epoch(charttime) - epoch(lag(charttime) OVER (PARTITION BY stay_id ORDER BY charttime)) AS g
            FROM icu_chartevents WHERE itemid = 220045) WHERE g IS NOT NULL""")
    assert gap == 3600
    verbal = {v for (v,) in con.execute("SELECT DISTINCT value FROM icu_chartevents WHERE itemid = 223900").fetchall()}
    assert "No Response-ETT" in verbal and "Oriented" in verbal
    # GCS rows carry the text in value and the score in valuenum
    assert _one(con, "SELECT count(*) FROM icu_chartevents WHERE itemid = 223901 AND valuenum IS NULL") == 0
    assert _one(con, "SELECT count(*) FROM icu_procedureevents WHERE itemid = 225792") > 0
    assert _one(con, """SELECT count(*) FROM icu_inputevents WHERE itemid = 221906
                        AND (rateuom <> 'mcg/kg/min' OR amountuom <> 'mg' OR rate IS NULL)""") == 0
    assert _one(con, "SELECT count(*) FROM icu_inputevents WHERE itemid = 221906") > 0


def test_selective_lab_ordering_in_the_first_day(con):
    # lactate is absent from the first 24 h of far more stays than creatinine
    lac, cr = con.execute("""
        WITH s AS (SELECT subject_id, stay_id, intime FROM icu_icustays)
        SELECT avg(CAST(NOT has_lac AS INTEGER)), avg(CAST(NOT has_cr AS INTEGER)) FROM (
            SELECT s.stay_id,
                   bool_or(l.itemid = 50813) IS TRUE AS has_lac,
                   bool_or(l.itemid = 50912) IS TRUE AS has_cr
            FROM s LEFT JOIN hosp_labevents l ON l.subject_id = s.subject_id
             AND l.charttime BETWEEN s.intime AND s.intime + INTERVAL 24 HOUR
            GROUP BY s.stay_id)""").fetchone()
    assert lac > 0.25 and cr < 0.1


def test_implausible_values_sit_next_to_valid_ones(con):
    bad = con.execute("""
        SELECT stay_id, itemid FROM icu_chartevents
        WHERE (itemid = 220045 AND valuenum IN (0, 999))
           OR (itemid = 223761 AND valuenum < 70) OR (itemid = 223762 AND valuenum > 50)""").fetchall()
    kinds = {i for _, i in bad}
    assert 220045 in kinds and (223761 in kinds or 223762 in kinds)
    # every stay with an implausible value also has valid values of that feature in its window,
    # so the feature step's range filter changes values, never missingness
    orphans = _one(con, """
        WITH bad AS (
            SELECT DISTINCT c.stay_id, CASE WHEN c.itemid = 220045 THEN 'hr' ELSE 'temp' END AS f
            FROM icu_chartevents c
            WHERE (c.itemid = 220045 AND c.valuenum IN (0, 999))
               OR (c.itemid = 223761 AND c.valuenum < 70) OR (c.itemid = 223762 AND c.valuenum > 50))
        SELECT count(*) FROM bad b JOIN icu_icustays i USING (stay_id)
        WHERE NOT EXISTS (
            SELECT 1 FROM icu_chartevents c WHERE c.stay_id = b.stay_id
              AND c.charttime BETWEEN i.intime AND i.intime + INTERVAL 24 HOUR
              AND ((b.f = 'hr' AND c.itemid = 220045 AND c.valuenum > 0 AND c.valuenum < 300)
                OR (b.f = 'temp' AND ((c.itemid = 223761 AND c.valuenum > 70 AND c.valuenum < 120)
                                   OR (c.itemid = 223762 AND c.valuenum > 10 AND c.valuenum < 50)))))""")
    assert orphans == 0


def test_ward_admissions_services_and_readmissions(con):
    services = {s for (s,) in con.execute("SELECT DISTINCT curr_service FROM hosp_services").fetchall()}
    assert {"MED", "CMED", "SURG"} <= services
    no_icu = _one(con, "SELECT count(*) FROM hosp_admissions WHERE hadm_id NOT IN (SELECT hadm_id FROM icu_icustays)")
    assert no_icu > _one(con, "SELECT count(*) FROM icu_icustays")
    types = {t for (t,) in con.execute("SELECT DISTINCT admission_type FROM hosp_admissions").fetchall()}
    assert {"EW EMER.", "ELECTIVE", "URGENT", "SURGICAL SAME DAY ADMISSION"} <= types
    # some patients come back within 30 days
    assert _one(con, """SELECT count(*) FROM hosp_admissions a JOIN hosp_admissions b
                        ON a.subject_id = b.subject_id AND b.admittime > a.dischtime
                        AND b.admittime <= a.dischtime + INTERVAL 30 DAY""") > 0
    # in-hospital deaths: deathtime is dischtime (or NULL), discharge_location DIED
    assert _one(con, """SELECT count(*) FROM hosp_admissions WHERE hospital_expire_flag = 1
                        AND (discharge_location <> 'DIED' OR deathtime <> dischtime)""") == 0


def test_readmission_definition_cases_are_generated(data_dir, con):
    """Each case the readmission definition handles occurs in the generated data (issue #15)."""
    with open_mimic(data_dir) as db:
        cohort, _ = build_readmission_cohort(db)
    t = definitions_table(cohort).set_index("measure")["n"]
    # planned by procedure / diagnosis code, and a PR3 procedure with an acute principal dx
    assert t["first readmission planned: CMS PR2"] > 0 and t["first readmission planned: CMS PR3"] > 0
    assert t["first readmission with a PR3 procedure and an acute principal diagnosis"] > 0
    assert t["outcome differs between the two rules"] > 0
    # observation stays of every type, the ambulatory one not counted
    for kind in ("EU OBSERVATION", "OBSERVATION ADMIT", "DIRECT OBSERVATION"):
        assert t[f"first readmission of type {kind}"] > 0, kind
    assert t["index admissions with a return of an uncounted type"] > 0
    # deaths within the horizon with and without a readmission, and censored follow-up
    assert t["died within the horizon without a readmission"] > 0
    assert ((cohort["died_within_horizon"] == 1) & cohort["readmission_hadm_id"].notna()).any()
    assert t["follow-up censored (flag)"] > 0
    # a planned return followed by an unplanned one within 30 days of the first discharge
    assert _one(con, """SELECT count(*) FROM hosp_admissions a
                        JOIN hosp_admissions b ON b.subject_id = a.subject_id AND b.admittime > a.dischtime
                         AND b.admittime <= a.dischtime + INTERVAL 30 DAY
                         AND b.admission_type IN ('ELECTIVE', 'SURGICAL SAME DAY ADMISSION')
                        JOIN hosp_admissions c ON c.subject_id = a.subject_id AND c.admittime > b.dischtime
                         AND c.admittime <= a.dischtime + INTERVAL 30 DAY
                         AND c.admission_type NOT IN ('ELECTIVE', 'SURGICAL SAME DAY ADMISSION')
                        WHERE a.hospital_expire_flag = 0""") > 0


# ---------------------------------------------------------------------------------------------
# determinism and atomic output
# ---------------------------------------------------------------------------------------------
def test_same_seed_same_bytes_any_worker_count(tmp_path, monkeypatch):
    # several chunks, so the two worker processes really share the event tables
    monkeypatch.setattr(events.chunks, "CHUNK_WEIGHT", 4_000)
    a, b = tmp_path / "a", tmp_path / "b"
    synthetic.generate(a, scale=0.005, seed=3, workers=1)
    synthetic.generate(b, scale=0.005, seed=3, workers=2)
    ha, hb = _hashes(a), _hashes(b)
    assert len(ha) == len(schema.TABLES) + 1 and ha == hb
    # the event files are several gzip members (one per chunk) that read as one stream
    raw = (a / "icu/chartevents.csv.gz").read_bytes()
    assert raw.count(b"\x1f\x8b\x08\x00\x00\x00\x00\x00") > 2
    with gzip.open(a / "icu/chartevents.csv.gz", "rt") as fh:
        assert fh.readline().startswith("subject_id,hadm_id,stay_id")


def test_different_seed_different_data(tmp_path, data_dir):
    other = tmp_path / "other"
    synthetic.generate(other, scale=SCALE, seed=SEED + 1, workers=1)
    ha, hb = _hashes(data_dir), _hashes(other)
    differ = [k for k in ha if k.endswith(".csv.gz") and not k.split("/")[-1].startswith("d_") and ha[k] != hb[k]]
    assert "icu/chartevents.csv.gz" in differ and "hosp/patients.csv.gz" in differ
    # the dictionaries do not depend on the seed
    assert ha["icu/d_items.csv.gz"] == hb["icu/d_items.csv.gz"]


def test_failed_run_leaves_nothing_behind(tmp_path):
    out = tmp_path / "out"

    def interrupt(msg: str, frac: float) -> None:
        if frac > 0.5:
            raise KeyboardInterrupt("stopped by the user")

    with pytest.raises(KeyboardInterrupt):
        synthetic.generate(out, scale=0.005, seed=1, workers=1, progress=interrupt)
    assert list(tmp_path.iterdir()) == []


def test_existing_output_is_refused_then_replaced(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("x")
    with pytest.raises(FileExistsError, match="out_dir"):
        synthetic.generate(out, scale=0.005, seed=1, workers=1)
    assert (out / "keep.txt").exists()
    synthetic.generate(out, scale=0.005, seed=1, workers=1, overwrite=True)
    assert not (out / "keep.txt").exists() and (out / "icu/chartevents.csv.gz").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


@pytest.mark.parametrize("kwargs, field", [
    ({"scale": 0.0}, "scale"), ({"scale": -1.0}, "scale"), ({"scale": float("nan")}, "scale"),
    ({"scale": 11.0}, "scale"), ({"scale": "1"}, "scale"), ({"seed": -1}, "seed"),
    ({"seed": 1.5}, "seed"), ({"workers": 0}, "workers"),
])
def test_bad_arguments_name_the_field(tmp_path, kwargs, field):
    args = {"scale": 0.005, "seed": 1, "workers": 1} | kwargs
    with pytest.raises(ValueError, match=rf"^{field}:"):
        synthetic.generate(tmp_path / "x", **args)
    assert not (tmp_path / "x").exists()


def test_cli_writes_and_reports_bad_input(tmp_path, capsys):
    out = tmp_path / "cli"
    assert synthetic.main(["--out", str(out), "--scale", "0.005", "--seed", "4", "--workers", "1"]) == 0
    err = capsys.readouterr().err
    assert "%]" in err and "wrote" in err                          # progress on stderr
    assert (out / "SYNTHETIC.json").exists()
    assert synthetic.main(["--out", str(out), "--scale", "0.005", "--seed", "4"]) == 2
    assert "already exists" in capsys.readouterr().err
    assert synthetic.main(["--out", str(tmp_path / "y"), "--scale", "0", "--seed", "4"]) == 2
    assert "scale:" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------
# building blocks with known answers
# ---------------------------------------------------------------------------------------------
def test_solve_intercept_known_answers():
    lp = np.zeros(1000)
    assert population.solve_intercept(lp, 0.5) == pytest.approx(0.0, abs=1e-9)
    assert population.solve_intercept(lp, 1 / (1 + np.exp(-1.5))) == pytest.approx(1.5, abs=1e-9)
    # rows outside `allowed` count as probability 0: half the rows must then average 0.5
    allowed = np.arange(1000) < 500
    assert population.solve_intercept(lp, 0.25, allowed=allowed) == pytest.approx(0.0, abs=1e-9)
    with pytest.raises(ValueError, match="not reachable"):
        population.solve_intercept(lp, 0.6, allowed=allowed)


def test_exact_assign_counts_and_order():
    rng = np.random.default_rng(0)
    cat = population.exact_assign(rng, 23841, np.array([0.2, 0.3, 0.5]))
    assert np.bincount(cat).tolist() == [4768, 7152, 11921]
    assert not np.all(np.diff(cat) >= 0)                              # shuffled


def test_scrambled_ids_are_distinct():
    ids = events.scramble(np.arange(200_000), salt=1)
    assert len(np.unique(ids)) == 200_000 and ids.min() >= 1 and ids.max() <= events.ID_SPACE


def test_encode_member_quotes_only_when_needed_and_writes_nulls_empty():
    cols = {"icd_code": np.array(["4280", "1977"], dtype=object), "icd_version": np.array([9, 9]),
            "long_title": np.array(["Congestive heart failure, unspecified", None], dtype=object)}
    text = gzip.decompress(schema.encode_member("hosp/d_icd_diagnoses", cols, include_header=True)).decode()
    assert text == ('icd_code,icd_version,long_title\n'
                    '4280,9,"Congestive heart failure, unspecified"\n1977,9,\n')
    with pytest.raises(ValueError, match="missing columns"):
        schema.encode_member("hosp/d_icd_diagnoses", {"icd_code": cols["icd_code"]})
    with pytest.raises(ValueError, match="does not fit i2"):
        schema.encode_member("hosp/d_icd_diagnoses", cols | {"icd_version": np.array([9, 40_000])})


def test_generated_files_open_with_open_mimic(data_dir):
    from clinops.data.mimic import open_mimic
    db = open_mimic(data_dir)
    try:
        n = db.con.execute("SELECT count(*) FROM mimiciv_icu.chartevents").fetchone()[0]
    finally:
        db.close()
    manifest = json.loads((data_dir / "SYNTHETIC.json").read_text())
    assert n == manifest["rows"]["icu/chartevents"]

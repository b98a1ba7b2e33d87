"""The synthetic MIMIC-IV carries the real data's traps of issue 15, and the feature SQL meets them.

One small generated data set (scale 0.02); each test counts a trap in the raw tables and, where
it matters, shows the feature extraction treating it as documented (clinops/manifests/mortality.yaml).
"""
from __future__ import annotations

from pathlib import Path

import pytest

from clinops.data import synthetic
from clinops.data.mimic import open_mimic
from clinops.data.synth.calibration import connect
from clinops.features import FeatureManifest, extract_features

SCALE, SEED = 0.02, 20260318


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("traps") / "mimic"
    synthetic.generate(out, scale=SCALE, seed=SEED, workers=1)
    return out


@pytest.fixture(scope="module")
def con(data_dir):
    c = connect(data_dir)
    # first ICU stay of each admission, the stays whose window the traps are about
    c.execute("""CREATE TEMP TABLE firsts AS SELECT * FROM icu_icustays
                 QUALIFY row_number() OVER (PARTITION BY hadm_id ORDER BY intime) = 1""")
    yield c
    c.close()


def one(con, sql: str):
    return con.execute(sql).fetchone()[0]


def test_ed_labs_fall_in_the_six_hours_before_intime(con):
    n = one(con, """SELECT count(DISTINCT f.stay_id) FROM firsts f JOIN hosp_labevents l
                    ON l.subject_id = f.subject_id AND l.itemid = 50813
                    AND l.charttime >= f.intime - INTERVAL 6 HOUR AND l.charttime < f.intime""")
    assert n >= 20


def test_rows_exactly_at_both_window_edges(con):
    at_in = one(con, """SELECT count(*) FROM firsts f JOIN icu_chartevents c USING (stay_id)
                        WHERE c.itemid = 220045 AND c.charttime = f.intime""")
    at_end = one(con, """SELECT count(*) FROM firsts f JOIN icu_chartevents c USING (stay_id)
                         WHERE c.itemid = 220045 AND c.charttime = f.intime + INTERVAL 24 HOUR""")
    lab_end = one(con, """SELECT count(*) FROM firsts f JOIN hosp_labevents l USING (subject_id)
                          WHERE l.itemid = 50912 AND l.charttime = f.intime + INTERVAL 24 HOUR""")
    assert at_in >= 5 and at_end >= 5 and lab_end >= 2


def test_labs_resulted_after_the_window(con):
    n = one(con, """SELECT count(*) FROM firsts f JOIN hosp_labevents l USING (subject_id)
                    WHERE l.charttime BETWEEN f.intime AND f.intime + INTERVAL 24 HOUR
                      AND l.storetime > f.intime + INTERVAL 24 HOUR""")
    assert n >= 20


def test_tracheostomy_with_and_without_the_ventilator(con):
    vented = one(con, """SELECT count(DISTINCT d.stay_id) FROM icu_chartevents d JOIN icu_chartevents m
                         ON m.stay_id = d.stay_id AND m.charttime = d.charttime
                         AND m.itemid IN (223849, 229314)
                         WHERE d.itemid = 226732 AND d.value = 'Tracheostomy tube'""")
    mask = one(con, "SELECT count(DISTINCT stay_id) FROM icu_chartevents WHERE value = 'Trach mask '")
    assert vented >= 3 and mask >= 3


def test_duplicate_rows_and_text_in_numeric_items(con):
    dup = one(con, """SELECT count(*) FROM (SELECT stay_id, charttime, itemid FROM icu_chartevents
                      WHERE itemid IN (220045, 220277) GROUP BY ALL HAVING count(*) > 1)""")
    text = one(con, """SELECT count(*) FROM icu_chartevents WHERE itemid IN (220045, 220277, 220181, 220052)
                       AND valuenum IS NULL AND value IN ('UNABLE TO ASSESS', 'Pt refused')""")
    assert dup >= 20 and text >= 10


def test_extraction_counts_ed_lactate_and_ventilated_trach(data_dir, con, tmp_path):
    stays = con.execute("""SELECT stay_id, subject_id, hadm_id, intime FROM firsts
                           WHERE outtime - intime >= INTERVAL 24 HOUR ORDER BY stay_id""").df()
    manifest = FeatureManifest.load("mortality")
    with open_mimic(data_dir, hash_cache=tmp_path / "cache.json") as db:
        with_pre, _ = extract_features(db, stays, manifest=manifest, max_missing_fraction=1.0)
        without, _ = extract_features(db, stays, manifest=manifest, max_missing_fraction=1.0,
                                      lab_prewindow_hours=0)
    # the ED lactate fills some stays the paper's window leaves empty, and never empties one
    gained = with_pre["lactate"].notna() & without["lactate"].isna()
    assert gained.sum() >= 10
    assert not (without["lactate"].notna() & with_pre["lactate"].isna()).any()
    trach = set(con.execute("""SELECT DISTINCT d.stay_id FROM icu_chartevents d JOIN icu_chartevents m
                               ON m.stay_id = d.stay_id AND m.charttime = d.charttime
                               AND m.itemid IN (223849, 229314)
                               JOIN firsts f ON f.stay_id = d.stay_id
                               WHERE d.itemid = 226732 AND d.value = 'Tracheostomy tube'
                                 AND d.charttime BETWEEN f.intime AND f.intime + INTERVAL 24 HOUR"""
                            ).df()["stay_id"]) & set(stays["stay_id"])
    assert trach and (with_pre.loc[sorted(trach), "mech_vent"] == 1).all()


def test_some_icu_intimes_fall_on_the_hour(con):
    # minute-resolution intimes: about 1 in 60 on the hour (the generator no longer moves them off it)
    n, total = con.execute("""SELECT count(*) FILTER (WHERE minute(intime) = 0 AND second(intime) = 0), count(*)
                              FROM firsts""").fetchone()
    assert 0 < n < total * 0.05

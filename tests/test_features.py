"""Feature SQL, manifest and frozen imputation on tiny hand-made MIMIC-IV tables.

Every expected value below is worked out by hand from the rows written in the test.
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from clinops.data.mimic import open_mimic
from clinops.features import (
    FeatureManifest,
    FeatureValidationError,
    ManifestError,
    extract_features,
    feature_sql_sha256,
    freeze_medians,
    freeze_training_medians,
    icd_chapter,
    impute,
    missingness_table,
)

from tests.fixtures import mimic_tables  # noqa: E402

MANIFEST = FeatureManifest.load("mortality")
T0 = pd.Timestamp("2150-01-01 10:00:00")  # intime of every stay below unless said otherwise


def ts(hours: float, base: pd.Timestamp = T0) -> str:
    return str(base + pd.Timedelta(hours=hours))


# Stay ids encode the subject and admission: stay 3xx -> subject xx, hadm 2xx.
def ids(stay: int) -> dict:
    return {"subject_id": stay - 300, "hadm_id": stay - 100, "stay_id": stay}


def ce(stay, hours, itemid, valuenum=None, value=None, storetime_hours=None):
    row = {**ids(stay), "charttime": ts(hours), "itemid": itemid, "valuenum": valuenum,
           "value": value if value is not None else (None if valuenum is None else valuenum)}
    if storetime_hours is not None:
        row["storetime"] = ts(storetime_hours)
    return row


def lab(subject, hours, itemid, valuenum, hadm_id=None, labevent_id=[0]):
    labevent_id[0] += 1
    return {"labevent_id": labevent_id[0], "subject_id": subject, "hadm_id": hadm_id,
            "specimen_id": labevent_id[0], "itemid": itemid, "charttime": ts(hours),
            "valuenum": valuenum}


def inp(stay, start_h, end_h, itemid):
    return {**ids(stay), "starttime": ts(start_h), "endtime": ts(end_h), "itemid": itemid,
            "orderid": 1}


def patient(subject, gender="M", anchor_age=60):
    return {"subject_id": subject, "gender": gender, "anchor_age": anchor_age,
            "anchor_year": 2150, "anchor_year_group": "2008 - 2010"}


def run(tmp_path, stays, *, max_missing_fraction=1.0, manifest=MANIFEST, **tables):
    tables = {f"mimiciv_{k.split('_', 1)[0]}.{k.split('_', 1)[1]}": v for k, v in tables.items()}
    root = mimic_tables.write_mimic(tmp_path / "mimic", tables)
    cohort = pd.DataFrame([{**ids(s), "intime": T0} for s in stays])
    with open_mimic(root, hash_cache=tmp_path / "cache.json") as db:
        return extract_features(db, cohort, manifest=manifest,
                                max_missing_fraction=max_missing_fraction)


# ------------------------------------------------------------------------------ vital signs

def test_vitals_outliers_window_units_and_worst_value(tmp_path):
    chart = [
        # heart rate: 999 dropped (mimic-code 0 < x < 300); 140 before intime and 150 after
        # intime + 24 h are outside the window; worst = max = 110
        ce(301, 1, 220045, 80), ce(301, 2, 220045, 999), ce(301, 3, 220045, 110),
        ce(301, -1, 220045, 140), ce(301, 24.5, 220045, 150), ce(301, 24, 220045, 105),
        # MAP: invasive 70 and non-invasive 60 charted together average to 65; 0 is dropped
        # (strict lower bound); worst = min = 65
        ce(301, 2, 220052, 70), ce(301, 2, 220181, 60), ce(301, 4, 220181, 75),
        ce(301, 5, 220181, 0),
        # respiratory rate from both items, 80 dropped (< 70); max = 30
        ce(301, 2, 220210, 18), ce(301, 5, 224690, 30), ce(301, 6, 220210, 80),
        # temperature: 102.2 F -> (102.2 - 32) / 1.8 = 39.0 C; 38.5 C kept; a Fahrenheit
        # value charted under the Celsius item (98.6) and a Celsius value under the
        # Fahrenheit item (37.0) are both outside their item's range and dropped; max = 39.0
        ce(301, 2, 223761, 102.2), ce(301, 3, 223762, 38.5), ce(301, 4, 223762, 98.6),
        ce(301, 5, 223761, 37.0),
        # SpO2: 101 dropped, 100 kept (0 < x <= 100); min = 88
        ce(301, 1, 220277, 100), ce(301, 2, 220277, 88), ce(301, 3, 220277, 101),
        # second stay: only out-of-range values -> missing, not 0
        ce(302, 1, 220045, 300), ce(302, 1, 223762, 9.5), ce(302, 1, 220277, 100),
    ]
    f, _ = run(tmp_path, [301, 302], icu_chartevents=chart,
               hosp_patients=[patient(1), patient(2)])
    assert f.loc[301, "heart_rate"] == 110
    assert f.loc[301, "map"] == 65
    assert f.loc[301, "resp_rate"] == 30
    assert f.loc[301, "temperature"] == pytest.approx(39.0)
    assert f.loc[301, "spo2"] == 88
    assert math.isnan(f.loc[302, "heart_rate"]) and math.isnan(f.loc[302, "temperature"])
    assert f.loc[302, "spo2"] == 100  # the closed upper end is kept


def test_fahrenheit_conversion_rounds_like_mimic_code(tmp_path):
    # 100.0 F -> 37.777... -> rounded to 37.78 (mimic-code rounds temperature to 2 dp)
    f, _ = run(tmp_path, [301], icu_chartevents=[ce(301, 1, 223761, 100.0)],
               hosp_patients=[patient(1)])
    assert f.loc[301, "temperature"] == 37.78


# ------------------------------------------------------------------------------ GCS

def test_gcs_intubated_verbal_gives_15_and_carry_forward(tmp_path):
    chart = [
        # stay 301: intubated (verbal 'No Response-ETT' -> 0) -> 15; 2 h later only eyes 2,
        # previous verbal 0 within 6 h -> still 15
        ce(301, 1, 223900, 1, "No Response-ETT"), ce(301, 1, 223901, 1, "No response"),
        ce(301, 1, 220739, 1, "None"),
        ce(301, 3, 220739, 2, "To Pain"),
        # stay 302: motor 5 + verbal 4 + eyes 3 = 12; 2 h later only motor 4: verbal 4 and
        # eyes 3 carried forward -> 11; 10 h later (> 6 h gap) only verbal 2: motor 6 and
        # eyes 4 defaults -> 12; min = 11
        ce(302, 1, 223901, 5, "Localizes Pain"), ce(302, 1, 223900, 4, "Confused"),
        ce(302, 1, 220739, 3, "To Speech"),
        ce(302, 3, 223901, 4, "Flex-withdraws"),
        ce(302, 13, 223900, 2, "Incomprehensible sounds"),
        # stay 303: a row 2 h before intime is only a "previous" row: at +1 h eyes 1 alone
        # takes motor 3 and verbal 2 from it -> 6 (the -2 h row itself, 3+2+1, is not used)
        ce(303, -2, 223901, 3, "Abnormal Flexion"), ce(303, -2, 223900, 2, "Incomprehensible sounds"),
        ce(303, -2, 220739, 1, "None"),
        ce(303, 1, 220739, 1, "None"),
        # stay 304: after extubation (previous verbal 0), current values only + defaults:
        # motor 6 + verbal 3 + eyes default 4 = 13; the intubated row first -> min(15, 13)
        ce(304, 1, 223900, 1, "No Response-ETT"),
        ce(304, 2, 223901, 6, "Obeys Commands"), ce(304, 2, 223900, 3, "Inappropriate Words"),
    ]
    f, _ = run(tmp_path, [301, 302, 303, 304], icu_chartevents=chart,
               hosp_patients=[patient(s) for s in (1, 2, 3, 4)])
    assert f.loc[301, "gcs"] == 15
    assert f.loc[302, "gcs"] == 11
    assert f.loc[303, "gcs"] == 6
    assert f.loc[304, "gcs"] == 13


# ------------------------------------------------------------------------------ labs

def test_labs_join_on_subject_and_window_and_drop_outliers(tmp_path):
    labs = [
        # subject 1: creatinine 1.2 (in window, hadm NULL - outpatient-style row), 2.5 at
        # +23 h, 4.0 at +25 h outside -> max 2.5
        lab(1, 2, 50912, 1.2), lab(1, 23, 50912, 2.5, hadm_id=201), lab(1, 25, 50912, 4.0),
        # albumin 12 is above mimic-code's cap (<= 10) -> dropped; min = 3.0
        lab(1, 2, 50862, 3.0), lab(1, 3, 50862, 12.0),
        # platelets 0 dropped (> 0 only) -> min 150; INR, lactate, bilirubin single values
        lab(1, 2, 51265, 150.0), lab(1, 3, 51265, 0.0), lab(1, 2, 51237, 1.4),
        lab(1, 2, 50813, 3.1), lab(1, 2, 50885, 0.8),
        # creatinine 150 kept (closed cap), and subject 2's values never reach subject 1
        lab(2, 2, 50912, 150.0), lab(2, 2, 50813, 9.0),
        # subject 1 lactate 6.5 h before intime: before the 6 h lab pre-window, not counted
        lab(1, -6.5, 50813, 8.0),
    ]
    f, _ = run(tmp_path, [301, 302], hosp_labevents=labs,
               hosp_patients=[patient(1), patient(2)])
    assert f.loc[301, "creatinine"] == 2.5
    assert f.loc[301, "albumin"] == 3.0
    assert f.loc[301, "platelets"] == 150
    assert f.loc[301, "inr"] == 1.4
    assert f.loc[301, "lactate"] == 3.1
    assert f.loc[301, "bilirubin"] == 0.8
    assert f.loc[302, "creatinine"] == 150
    assert f.loc[302, "lactate"] == 9.0
    assert math.isnan(f.loc[302, "albumin"])


# ------------------------------------------------------------------------------ flags

def test_vasopressor_flag_overlap_zero_and_null(tmp_path):
    inputs = [
        inp(301, -3, 1, 221906),      # norepinephrine started before intime, overlaps -> 1
        inp(302, 2, 5, 225158),       # only saline in the window -> 0
        inp(302, 25, 30, 221906),     # ... norepinephrine after the window does not count
        inp(304, 1, 2, 222315),       # vasopressin -> 1
        inp(303, 30, 31, 221906),     # stay 303 has rows, but none in the window -> NULL
    ]
    f, _ = run(tmp_path, [301, 302, 303, 304], icu_inputevents=inputs,
               hosp_patients=[patient(s) for s in (1, 2, 3, 4)])
    assert f.loc[301, "vasopressor"] == 1
    assert f.loc[302, "vasopressor"] == 0
    assert math.isnan(f.loc[303, "vasopressor"])
    assert f.loc[304, "vasopressor"] == 1


def test_ventilation_flag_mimic_code_rules(tmp_path):
    chart = [
        ce(301, 2, 223849, None, "CMV/ASSIST"),                  # invasive mode -> 1
        ce(302, 2, 226732, None, "Nasal cannula"),               # oxygen only -> 0
        ce(302, 30, 226732, None, "Endotracheal tube"),          # ... after the window
        ce(303, 2, 226732, None, "Endotracheal tube"),           # ETT device -> 1
        # trach has priority over the invasive mode at the same charttime -> Tracheostomy, but
        # with an invasive mode it is a ventilated tracheostomy -> 1
        ce(304, 2, 226732, None, "Tracheostomy tube"), ce(304, 2, 223849, None, "CMV"),
        ce(305, 2, 229314, None, "ASV"),                         # Hamilton invasive -> 1
        ce(306, 2, 226732, None, "Bipap mask "),                 # NIV (trailing space) -> 0
        # without the trailing space 'Trach mask' is not Tracheostomy, so the invasive mode
        # at the same time wins -> 1
        ce(308, 2, 226732, None, "Trach mask"), ce(308, 2, 223849, None, "SIMV"),
        # 'Trach mask ' (exact string) alone: Tracheostomy without a ventilator mode -> 0
        ce(309, 2, 226732, None, "Trach mask "),
    ]
    procedures = [  # stay 307: no charted row, invasive ventilation procedure overlapping
        {**ids(307), "starttime": ts(-10), "endtime": ts(0.5), "storetime": ts(1),
         "itemid": 225792},
        # stay 310: a 225792 procedure that ends before intime does not count -> NULL
        {**ids(310), "starttime": ts(-10), "endtime": ts(-1), "storetime": ts(1),
         "itemid": 225792},
    ]
    stays = list(range(301, 311))
    f, _ = run(tmp_path, stays, icu_chartevents=chart, icu_procedureevents=procedures,
               hosp_patients=[patient(s - 300) for s in stays])
    got = f["mech_vent"].to_dict()
    assert got[301] == 1 and got[303] == 1 and got[305] == 1 and got[307] == 1
    assert got[302] == 0 and got[304] == 1 and got[306] == 0
    assert got[308] == 1 and got[309] == 0
    assert math.isnan(got[310])


# ------------------------------------------------------------------------------ static

def test_age_sex_and_dx_chapter(tmp_path):
    diagnoses = [
        {"subject_id": 1, "hadm_id": 201, "seq_num": 1, "icd_code": "4280", "icd_version": 9},
        {"subject_id": 1, "hadm_id": 201, "seq_num": 2, "icd_code": "A419", "icd_version": 10},
        {"subject_id": 2, "hadm_id": 202, "seq_num": 1, "icd_code": "J189", "icd_version": 10},
        {"subject_id": 3, "hadm_id": 203, "seq_num": 2, "icd_code": "J189", "icd_version": 10},
    ]
    pts = [patient(1, "M", 60), {**patient(2, "F", 70), "anchor_year": 2148},
           patient(3, "F", 50)]
    f, _ = run(tmp_path, [301, 302, 303], hosp_diagnoses_icd=diagnoses, hosp_patients=pts)
    assert f.loc[301, "age"] == 60 and f.loc[301, "sex_male"] == 1
    assert f.loc[302, "age"] == 72 and f.loc[302, "sex_male"] == 0  # 70 + 2150 - 2148
    assert f.loc[301, "dx_chapter"] == "circulatory"   # ICD-9 428.0 heart failure
    assert f.loc[302, "dx_chapter"] == "respiratory"
    assert pd.isna(f.loc[303, "dx_chapter"])            # no seq_num = 1 diagnosis
    assert list(f["dx_chapter"].cat.categories) == list(MANIFEST["dx_chapter"].categories)


@pytest.mark.parametrize("code, version, chapter", [
    ("I5023", 10, "circulatory"), ("4280", 9, "circulatory"),
    ("0389", 9, "infectious"), ("A419", 10, "infectious"),
    ("1629", 9, "neoplasms"), ("D0500", 10, "neoplasms"), ("D649", 10, "blood"),
    ("2859", 9, "blood"), ("2790", 9, "blood"), ("25000", 9, "endocrine"),
    ("3314", 9, "nervous"), ("36500", 9, "eye"), ("H5710", 10, "eye"),
    ("3829", 9, "ear"), ("H6690", 10, "ear"), ("486", 9, "respiratory"),
    ("5849", 9, "genitourinary"), ("64893", 9, "pregnancy"), ("7802", 9, "symptoms"),
    ("85220", 9, "injury"), ("S065X0A", 10, "injury"), ("E8889", 9, "external"),
    ("V5861", 9, "factors"), ("Z87891", 10, "factors"), ("U071", 10, "special"),
    ("XYZ", 9, None), (None, 10, None),
])
def test_icd_chapter_mapping(code, version, chapter):
    assert icd_chapter(code, version) == chapter
    if chapter is not None:
        assert chapter in MANIFEST["dx_chapter"].categories


# ------------------------------------------------------------------------------ exclusion

def _full_stay(stay: int) -> tuple[list, list, list]:
    """Rows giving stay ``stay`` every feature except the labs, vasopressor and ventilation."""
    chart = [ce(stay, 1, 220045, 90), ce(stay, 1, 220181, 70), ce(stay, 1, 220210, 20),
             ce(stay, 1, 223762, 37.0), ce(stay, 1, 220277, 95), ce(stay, 1, 223901, 6)]
    dx = [{"subject_id": stay - 300, "hadm_id": stay - 100, "seq_num": 1, "icd_code": "I10",
           "icd_version": 10}]
    return chart, dx, [patient(stay - 300)]


def test_more_than_half_missing_is_excluded(tmp_path):
    chart, dx, pts = [], [], []
    for stay in (301, 302, 303):
        c, d, p = _full_stay(stay)
        chart, dx, pts = chart + c, dx + d, pts + p
    # 301: 9 present (age, sex, dx, gcs, map, hr, rr, temp, spo2), 8 missing -> kept
    # 302: no SpO2 -> 9 of 17 missing (> 50 %) -> excluded
    # 303: no SpO2 but a creatinine -> 8 missing -> kept
    chart = [r for r in chart if not (r["stay_id"] in (302, 303) and r["itemid"] == 220277)]
    labs = [lab(3, 2, 50912, 1.0)]
    f, step = run(tmp_path, [301, 302, 303], max_missing_fraction=0.5, icu_chartevents=chart,
                  hosp_diagnoses_icd=dx, hosp_patients=pts, hosp_labevents=labs)
    assert list(f.index) == [301, 303]
    # no step number: the caller's append_flow_step numbers the step in its flow
    assert step == {"n_remaining": 2, "n_excluded": 1,
                    "criterion": "at most 50% of the 17 features missing in the first 24 h "
                                 "(at most 8 missing)"}
    assert list(f.columns) == MANIFEST.names
    assert f.index.name == "stay_id"


def test_extract_checks_its_arguments(tmp_path):
    root = mimic_tables.write_mimic(tmp_path / "m", {})
    with open_mimic(root, hash_cache=tmp_path / "c.json") as db:
        with pytest.raises(ValueError, match="cohort: missing column"):
            extract_features(db, pd.DataFrame({"stay_id": [1]}), manifest=MANIFEST)
        dup = pd.DataFrame({**{k: [v, v] for k, v in ids(301).items()}, "intime": [T0, T0]})
        with pytest.raises(ValueError, match="stay_id: must be unique"):
            extract_features(db, dup, manifest=MANIFEST)
        one = pd.DataFrame([{**ids(301), "intime": T0}])
        with pytest.raises(ValueError, match="max_missing_fraction"):
            extract_features(db, one, manifest=MANIFEST, max_missing_fraction=2)


# ------------------------------------------------------------------------------ manifest

def test_manifest_is_the_architecture_list():
    assert MANIFEST.names == ["age", "sex_male", "dx_chapter", "gcs", "map", "heart_rate",
                              "resp_rate", "temperature", "spo2", "creatinine", "lactate",
                              "albumin", "bilirubin", "platelets", "inr", "vasopressor",
                              "mech_vent"]
    worst_min = {"gcs", "map", "spo2", "albumin", "platelets"}
    worst_max = {"resp_rate", "creatinine", "lactate", "bilirubin", "inr"}
    farthest = {"heart_rate": [70, 109], "temperature": [36.0, 38.4]}  # APACHE II zero points
    for s in MANIFEST.specs:
        assert s.justification and s.unit and s.source.get("method")
        if s.name in worst_min:
            assert s.aggregate == "min"
        if s.name in worst_max:
            assert s.aggregate == "max"
        if s.name in farthest:
            assert s.aggregate == "farthest_from_normal"
            assert s.source["normal_range"] == farthest[s.name]
    # vasopressors only: no dobutamine (221653) or milrinone (221986)
    assert MANIFEST["vasopressor"].source["itemids"] == [221906, 221289, 221662, 221749, 222315]
    assert "after discharge" in MANIFEST["dx_chapter"].source["note"]


def test_validate_record():
    ok = MANIFEST.validate_record({"heart_rate": 120, "dx_chapter": "circulatory",
                                   "vasopressor": True, "map": float("nan")})
    assert list(ok) == MANIFEST.names
    assert ok["heart_rate"] == 120.0 and ok["vasopressor"] == 1 and ok["map"] is None
    assert ok["gcs"] is None
    with pytest.raises(FeatureValidationError) as e:
        MANIFEST.validate_record({"heart_rate": 300})
    assert e.value.field == "heart_rate" and "(0, 300) bpm" in e.value.rule
    with pytest.raises(FeatureValidationError, match=r"spo2: .*\(0, 100\] %"):
        MANIFEST.validate_record({"spo2": 0})
    assert MANIFEST.validate_record({"spo2": 100})["spo2"] == 100.0
    with pytest.raises(FeatureValidationError) as e:
        MANIFEST.validate_record({"name": "Alice"})
    assert e.value.field == "name" and "unknown feature" in e.value.rule
    with pytest.raises(FeatureValidationError, match="heart_rate: expected a number"):
        MANIFEST.validate_record({"heart_rate": "120"})
    with pytest.raises(FeatureValidationError, match="heart_rate: expected a number"):
        MANIFEST.validate_record({"heart_rate": True})
    with pytest.raises(FeatureValidationError, match="mech_vent: expected 0 or 1"):
        MANIFEST.validate_record({"mech_vent": 2})
    with pytest.raises(FeatureValidationError, match="dx_chapter: unknown category 'cardiac'"):
        MANIFEST.validate_record({"dx_chapter": "cardiac"})
    with pytest.raises(FeatureValidationError, match="bilirubin"):
        MANIFEST.validate_record({"bilirubin": float("inf")})


def test_scalar_range_check_agrees_with_the_vectorised_one():
    """validate_record (one value) and in_range / encode (arrays) apply the same rule, ends included."""
    for spec in MANIFEST.specs:
        if spec.kind != "numeric" or spec.plausible_range is None:
            continue
        lo, hi = spec.plausible_range
        probes = [v for v in (lo, hi, np.nextafter(lo, -np.inf), np.nextafter(lo, np.inf),
                              np.nextafter(hi, -np.inf), np.nextafter(hi, np.inf), (lo + hi) / 2 if
                              np.isfinite(lo + hi) else 0.0) if np.isfinite(v)]
        vectorised = spec.in_range(np.array(probes))
        assert [spec.accepts(float(v)) for v in probes] == vectorised.tolist(), spec.name


def test_records_round_trip_through_validation_and_encoding():
    df = pd.DataFrame({n: [np.nan, np.nan, np.nan] for n in MANIFEST.names})
    df["heart_rate"] = [80.0, np.nan, 121.5]
    df["dx_chapter"] = pd.Categorical(["infectious", None, "circulatory"])
    df["mech_vent"] = [1.0, 0.0, np.nan]
    records = MANIFEST.records(df)
    assert records[1] == {"mech_vent": 0}
    assert records[0] == {"heart_rate": 80.0, "dx_chapter": "infectious", "mech_vent": 1}
    assert isinstance(records[0]["mech_vent"], int)
    again = pd.DataFrame([MANIFEST.validate_record(r) for r in records])
    pd.testing.assert_frame_equal(MANIFEST.encode(again), MANIFEST.encode(df))
    with pytest.raises(FeatureValidationError, match="missing column"):
        MANIFEST.records(df.drop(columns=["gcs"]))


def test_encode_and_check_frame():
    df = pd.DataFrame({n: [np.nan, np.nan] for n in MANIFEST.names}, index=[11, 12])
    df["dx_chapter"] = ["infectious", None]
    df["heart_rate"] = [80, np.nan]
    df["mech_vent"] = [1, 0]
    df["extra_identifier"] = ["a", "b"]
    X = MANIFEST.encode(df)
    assert list(X.columns) == MANIFEST.names and list(X.index) == [11, 12]
    assert (X.dtypes == "float64").all()
    assert X.loc[11, "dx_chapter"] == 0.0 and math.isnan(X.loc[12, "dx_chapter"])
    df2 = df.assign(dx_chapter=["respiratory", "special"])
    assert MANIFEST.encode(df2)["dx_chapter"].tolist() == [9.0, 21.0]
    back = MANIFEST.decode(MANIFEST.encode(df2))
    assert back["dx_chapter"].tolist() == ["respiratory", "special"]
    with pytest.raises(FeatureValidationError, match="dx_chapter: unknown category 'x'"):
        MANIFEST.encode(df.assign(dx_chapter=["x", None]))
    with pytest.raises(FeatureValidationError, match=r"heart_rate: value 999 .*\(0, 300\)"):
        MANIFEST.encode(df.assign(heart_rate=[999, 1]))
    with pytest.raises(FeatureValidationError, match="mech_vent: expected 0 or 1"):
        MANIFEST.encode(df.assign(mech_vent=[0.5, 1]))
    with pytest.raises(FeatureValidationError, match="heart_rate: expected numbers"):
        MANIFEST.encode(df.assign(heart_rate=["fast", 1]))
    with pytest.raises(FeatureValidationError) as e:
        MANIFEST.check_frame(df.drop(columns=["gcs", "inr"]))
    assert e.value.field == "gcs, inr"


def test_manifest_sha256_is_canonical_and_sensitive(tmp_path):
    d = MANIFEST.to_dict()
    assert FeatureManifest.from_dict(d).sha256 == MANIFEST.sha256
    reordered = {k: d[k] for k in reversed(list(d))}
    assert FeatureManifest.from_dict(reordered).sha256 == MANIFEST.sha256
    changed = FeatureManifest.from_dict({**d, "features": [
        {**f, "plausible_range": [0, 250]} if f["name"] == "heart_rate" else f
        for f in d["features"]]})
    assert changed.sha256 != MANIFEST.sha256
    assert feature_sql_sha256(changed) != feature_sql_sha256(MANIFEST)
    assert feature_sql_sha256() == feature_sql_sha256(MANIFEST)
    p = tmp_path / "m.yaml"
    import yaml
    p.write_text(yaml.safe_dump(d))
    assert FeatureManifest.load(p).sha256 == MANIFEST.sha256


@pytest.mark.parametrize("mutate, message", [
    (lambda f: f.update(kind="text"), "'kind' must be one of"),
    (lambda f: f.update(plausible_range=[5, 1]), "'plausible_range' needs lo < hi"),
    (lambda f: f.pop("justification"), "'justification' must be a non-empty string"),
    (lambda f: f.update(colour="red"), "unknown key"),
])
def test_manifest_rejects_malformed_entries(mutate, message):
    d = MANIFEST.to_dict()
    hr = next(f for f in d["features"] if f["name"] == "heart_rate")
    mutate(hr)
    with pytest.raises(ManifestError, match=f"feature 'heart_rate': {message}"):
        FeatureManifest.from_dict(d)


def test_manifest_rejects_duplicates_and_missing_categories():
    d = MANIFEST.to_dict()
    with pytest.raises(ManifestError, match="duplicate feature name"):
        FeatureManifest.from_dict({**d, "features": d["features"] + [d["features"][0]]})
    dx = {**next(f for f in d["features"] if f["name"] == "dx_chapter")}
    dx.pop("categories")
    with pytest.raises(ManifestError, match="need 'categories'"):
        FeatureManifest.from_dict({"name": "x", "features": [dx]})


# ------------------------------------------------------------------------------ imputation

def _encoded_frame(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    df = pd.DataFrame({s.name: rng.uniform(1, 2, n) for s in MANIFEST.specs})
    df["dx_chapter"] = rng.integers(0, 22, n).astype(float)
    for b in ("sex_male", "vasopressor", "mech_vent"):
        df[b] = rng.integers(0, 2, n).astype(float)
    df = df.mask(rng.random(df.shape) < 0.2)
    return df.set_axis(pd.RangeIndex(1000, 1000 + n, name="stay_id"))


def test_freeze_medians_known_values():
    X = pd.DataFrame({n: [1.0, 2.0, 3.0, np.nan] for n in MANIFEST.names})
    X["heart_rate"] = [80.0, 100.0, np.nan, 90.0]        # median of 80, 90, 100 = 90
    X["albumin"] = [1.0, 2.0, 3.0, 4.0]                   # median 2.5
    X["dx_chapter"] = [8.0, 8.0, 3.0, np.nan]              # mode code 8
    X["mech_vent"] = [1.0, 0.0, 1.0, 0.0]                  # tie -> smallest, 0
    m = freeze_medians(X, manifest=MANIFEST)
    assert list(m) == MANIFEST.names
    assert m["heart_rate"] == 90.0 and m["albumin"] == 2.5
    assert m["dx_chapter"] == 8.0 and m["mech_vent"] == 0.0
    assert freeze_medians(X) == m  # manifest found from the columns
    Xi, mask = impute(X, m)
    assert Xi.loc[2, "heart_rate"] == 90.0 and mask.loc[2, "heart_rate"]
    assert not mask.loc[0, "heart_rate"] and Xi.loc[0, "heart_rate"] == 80.0
    assert not Xi.isna().any().any()
    assert list(Xi.columns) == list(X.columns) and (mask == X.isna()).all().all()


def test_test_rows_cannot_change_frozen_medians():
    X = _encoded_frame(40, seed=3)
    is_train = pd.Series(np.arange(40) < 25, index=X.index)
    frozen = freeze_training_medians(X, is_train, manifest=MANIFEST)
    # perturb every test row wildly (and blank some): the medians must not move
    X2 = X.copy()
    test_rows = X2.index[~is_train.to_numpy()]
    numeric = [s.name for s in MANIFEST.specs if s.kind == "numeric"]
    X2.loc[test_rows, numeric] = 1e6
    X2.loc[test_rows, "dx_chapter"] = 21.0
    X2.loc[test_rows[:5], :] = np.nan
    assert freeze_training_medians(X2, is_train, manifest=MANIFEST) == frozen
    # and the same medians come from the training rows alone
    assert freeze_medians(X.loc[is_train.to_numpy()], manifest=MANIFEST) == frozen
    # while perturbing a training row does move a median (the test can fail)
    X3 = X.copy()
    X3.loc[X3.index[:25], "heart_rate"] = 5.0
    assert freeze_training_medians(X3, is_train, manifest=MANIFEST)["heart_rate"] == 5.0


def test_freeze_and_impute_errors():
    X = _encoded_frame(5, seed=1)
    with pytest.raises(FeatureValidationError, match="no observed value"):
        freeze_medians(X.assign(gcs=np.nan), manifest=MANIFEST)
    with pytest.raises(FeatureValidationError, match="missing column"):
        freeze_medians(X.drop(columns="gcs"), manifest=MANIFEST)
    with pytest.raises(FeatureValidationError, match="pass manifest="):
        freeze_medians(X.drop(columns="gcs"))
    with pytest.raises(FeatureValidationError, match="missing column"):
        impute(X.drop(columns="inr"), {n: 1.0 for n in MANIFEST.names})
    with pytest.raises(FeatureValidationError, match="selects no training row"):
        freeze_training_medians(X, np.zeros(5, dtype=bool), manifest=MANIFEST)


def test_missingness_table_uses_only_selected_rows():
    f = pd.DataFrame({"a": [1.0, np.nan, np.nan, 4.0], "b": [np.nan, 2.0, 3.0, 4.0]},
                     index=[10, 11, 12, 13])
    train = pd.Series([True, True, False, False], index=[10, 11, 12, 13])
    t = missingness_table(f, train)
    assert t.to_dict("list") == {"feature": ["a", "b"], "n": [2, 2], "n_missing": [1, 1],
                                 "pct_missing": [50.0, 50.0]}
    t_test = missingness_table(f, ~train)
    assert t_test["n_missing"].tolist() == [1, 0]


def test_encode_records_is_encode_for_request_records():
    """The one encoder: records encode exactly as the same rows in a frame, NaN for missing."""
    records = [{"heart_rate": 80, "dx_chapter": "respiratory", "mech_vent": True},
               {"mech_vent": 0, "heart_rate": None},
               {}]
    X = MANIFEST.encode_records(records)
    assert X.shape == (3, len(MANIFEST)) and X.dtype == np.float64
    frame = pd.DataFrame([MANIFEST.validate_record(r) for r in records])
    np.testing.assert_array_equal(X, MANIFEST.encode(frame).to_numpy())
    assert np.isnan(X[2]).all()
    assert MANIFEST.encode_records([]).shape == (0, len(MANIFEST))
    with pytest.raises(FeatureValidationError, match="dx_chapter: unknown category 'x'"):
        MANIFEST.encode_records([{"dx_chapter": "x"}])
    with pytest.raises(FeatureValidationError, match="pulse: unknown feature"):
        MANIFEST.encode_records([{"pulse": 80}])

"""The calibration targets measured on a MIMIC-IV directory with plain SQL over the raw tables.

This is deliberately an independent implementation of clinops/docs/architecture.md (cohort steps 1-8,
the default label, the temporal split, the missing-feature definitions, the readmission
cohort), written as counts over the raw ``.csv.gz`` files in DuckDB. It checks the generator
(tests/test_synthetic_calibration.py) and gives the feature step a number to reproduce: the
share of cohort stays with no valid measurement of each feature in [intime, intime + 24 h].
Validity uses the outlier bounds of mimic-code (the mortality manifest's plausible ranges).

Usage::

    from clinops.data.synth.calibration import measure
    m = measure("data/synthetic/scale1.0-seed20260318")
    m["cohort"], m["label_prevalence"], m["missing_train"]["lactate"]
"""
from __future__ import annotations

import math
import os
from pathlib import Path
from types import MappingProxyType

import duckdb
import pandas as pd

from . import reference as ref
from . import targets as T
from .schema import TABLES

#: The generator's calibration tolerances, the one definition: :func:`target_table` checks the
#: generated data against them, and ``clinops.report`` marks with them whether a run reproduces a
#: calibrated paper figure. ``count`` is relative (0.02: within 2 % of the target); the others are
#: absolute, in proportion units (0.02: within 2 points): ``proportion`` for the missing shares and
#: the ventilation prevalence, tighter ones for the mortality prevalence and the readmission rate.
#: Kept here rather than in targets.py: this module reads the data and never shapes it, so an edit
#: here leaves the generator's code hash (and the generated data) as they are.
TOLERANCE = MappingProxyType({"count": 0.02, "proportion": 0.02, "mortality_prevalence": 0.005,
                              "readmission_rate": 0.01})

_DUCK = {"i4": "INTEGER", "i2": "SMALLINT", "s": "VARCHAR", "ts": "TIMESTAMP", "date": "DATE",
         "f": "DOUBLE"}

# Valid values per feature (mimic-code bounds, as in clinops/manifests/mortality.yaml).
CHART_VALID = {
    "heart_rate": "itemid = 220045 AND valuenum > 0 AND valuenum < 300",
    "resp_rate": "itemid IN (220210, 224690) AND valuenum > 0 AND valuenum < 70",
    "map": "itemid IN (220052, 220181, 225312) AND valuenum > 0 AND valuenum < 300",
    "spo2": "itemid = 220277 AND valuenum > 0 AND valuenum <= 100",
    "temperature": "((itemid = 223762 AND valuenum > 10 AND valuenum < 50) OR "
                   "(itemid = 223761 AND valuenum > 70 AND valuenum < 120))",
    "gcs": "itemid IN (220739, 223900, 223901)",
}
LAB_VALID = {
    "creatinine": "itemid = 50912 AND valuenum > 0 AND valuenum <= 150",
    "lactate": "itemid = 50813 AND valuenum > 0",
    "albumin": "itemid = 50862 AND valuenum > 0 AND valuenum <= 10",
    "bilirubin": "itemid = 50885 AND valuenum > 0",
    "platelets": "itemid = 51265 AND valuenum > 0",
    "inr": "itemid = 51237 AND valuenum > 0",
}
VASOACTIVE = ", ".join(str(i) for i in ref.VASOACTIVE_ITEMS)
FEATURES_MISSABLE = (*CHART_VALID, *LAB_VALID, "vasopressor", "mech_vent")
# mimic-code ventilation.sql: modes that make a charttime InvasiveVent (reference section 3d).
INVASIVE_MODES = (
    "(S) CMV", "APRV", "APRV/Biphasic+ApnPress", "APRV/Biphasic+ApnVol", "APV (cmv)", "Ambient",
    "Apnea Ventilation", "CMV", "CMV/ASSIST", "CMV/ASSIST/AutoFlow", "CMV/AutoFlow", "CPAP/PPS",
    "CPAP/PSV", "CPAP/PSV+Apn TCPL", "CPAP/PSV+ApnPres", "CPAP/PSV+ApnVol", "MMV", "MMV/AutoFlow",
    "MMV/PSV", "MMV/PSV/AutoFlow", "P-CMV", "PCV+", "PCV+/PSV", "PCV+Assist", "PRES/AC",
    "PRVC/AC", "PRVC/SIMV", "PSV/SBT", "SIMV", "SIMV/AutoFlow", "SIMV/PRES", "SIMV/PSV",
    "SIMV/PSV/AutoFlow", "SIMV/VOL", "SYNCHRON MASTER", "SYNCHRON SLAVE", "VOL/AC")
INVASIVE_MODES_HAMILTON = ("APRV", "APV (cmv)", "Ambient", "(S) CMV", "P-CMV", "SIMV",
                           "APV (simv)", "P-SIMV", "VS", "ASV")
TRAIN_GROUPS = ref.ANCHOR_YEAR_GROUPS[:3]
TEST_GROUPS = ref.ANCHOR_YEAR_GROUPS[3:]
EXCLUDED_DISCHARGE = ref.READMISSION_EXCLUDED_LOCATIONS
PLANNED_TYPES = ref.PLANNED_ADMISSION_TYPES


def connect(path: str | os.PathLike) -> duckdb.DuckDBPyConnection:
    """DuckDB views ``hosp_<table>`` / ``icu_<table>`` over the ``.csv.gz`` files, typed by the DDL."""
    root = Path(path)
    con = duckdb.connect()
    try:
        con.execute("SET enable_progress_bar = false")   # a library does not draw on stderr
    except duckdb.InvalidInputException:
        pass  # inside Jupyter without ipywidgets DuckDB refuses the setting and draws no bar anyway
    for table, spec in TABLES.items():
        f = root / f"{table}.csv.gz"
        if not f.exists():
            continue
        cols = ", ".join(f"'{c}': '{_DUCK[k]}'" for c, k in spec)
        con.execute(f"CREATE VIEW {table.replace('/', '_')} AS SELECT * FROM read_csv('{f}', "
                    f"header = true, auto_detect = false, columns = {{{cols}}})")
    return con


def _sql_list(values) -> str:
    return ", ".join("'" + v.replace("'", "''") + "'" for v in values)


def measure(path: str | os.PathLike, *, window_hours: float = 24.0, horizon_hours: float = 48.0
            ) -> dict:
    """Cohort flow, split, label prevalence, missing shares, ventilation and readmission figures.

    Returns
    -------
    dict with keys
        ``flow`` (stays left after steps 1-8), ``cohort``, ``train``, ``test``,
        ``label_prevalence`` (default label), ``any_death_prevalence``,
        ``missing_train`` / ``missing_all`` (feature -> share of cohort stays with no valid
        value in the window), ``mech_vent_test`` (share of test stays with the flag 1),
        ``vasopressor_all``, ``readmission_cohort``, ``readmission_rate``,
        ``implausible_rows`` (item -> rows outside the valid range).
    """
    con = connect(path)
    w = f"INTERVAL {int(window_hours * 60)} MINUTE"
    h = f"INTERVAL {int((window_hours + horizon_hours) * 60)} MINUTE"
    con.execute(f"""
        CREATE TEMP TABLE s1 AS
        SELECT i.subject_id, i.hadm_id, i.stay_id, i.intime, i.outtime, p.anchor_year_group,
               p.anchor_age + year(i.intime) - p.anchor_year AS age,
               a.dischtime, a.hospital_expire_flag,
               COALESCE(a.deathtime, CASE WHEN a.hospital_expire_flag = 1 THEN a.dischtime END)
                   AS death_time
        FROM icu_icustays i
        JOIN hosp_patients p USING (subject_id)
        JOIN hosp_admissions a USING (hadm_id)""")
    con.execute("CREATE TEMP TABLE s2 AS SELECT * FROM s1 WHERE age >= 18")
    con.execute("CREATE TEMP TABLE s3 AS SELECT * FROM s2 QUALIFY row_number() OVER "
                "(PARTITION BY hadm_id ORDER BY intime, stay_id) = 1")
    con.execute("CREATE TEMP TABLE s4 AS SELECT * FROM s3 QUALIFY row_number() OVER "
                "(PARTITION BY subject_id ORDER BY intime, stay_id) = 1")
    con.execute(f"CREATE TEMP TABLE s5 AS SELECT * FROM s4 WHERE anchor_year_group IN "
                f"({_sql_list(TRAIN_GROUPS + TEST_GROUPS)})")
    con.execute("CREATE TEMP TABLE s6 AS SELECT * FROM s5 "
                "WHERE epoch(outtime) - epoch(intime) >= 24 * 3600")
    con.execute("CREATE TEMP TABLE s7 AS SELECT *, intime + " + w + " AS wend FROM s6 "
                "WHERE dischtime IS NOT NULL AND hospital_expire_flag IS NOT NULL")
    # presence of each feature in the window (1 = measured)
    chart_cols = ",\n".join(
        f"bool_or({cond}) AS {name}" for name, cond in CHART_VALID.items())
    con.execute(f"""
        CREATE TEMP TABLE chart_present AS
        SELECT s.stay_id, {chart_cols}
        FROM s7 s JOIN icu_chartevents c ON c.stay_id = s.stay_id
        WHERE c.charttime BETWEEN s.intime AND s.wend
        GROUP BY s.stay_id""")
    lab_cols = ",\n".join(f"bool_or({cond}) AS {name}" for name, cond in LAB_VALID.items())
    con.execute(f"""
        CREATE TEMP TABLE lab_present AS
        SELECT s.stay_id, {lab_cols}
        FROM s7 s JOIN hosp_labevents l ON l.subject_id = s.subject_id
        WHERE l.charttime BETWEEN s.intime AND s.wend
        GROUP BY s.stay_id""")
    con.execute(f"""
        CREATE TEMP TABLE input_flag AS
        SELECT s.stay_id, bool_or(i.itemid IN ({VASOACTIVE})) AS vaso
        FROM s7 s JOIN icu_inputevents i ON i.stay_id = s.stay_id
        WHERE i.starttime <= s.wend AND i.endtime >= s.intime
        GROUP BY s.stay_id""")
    con.execute(f"""
        CREATE TEMP TABLE vent_rows AS
        SELECT s.stay_id,
               bool_or((c.itemid = 226732 AND c.value = 'Endotracheal tube')
                       OR (c.itemid = 223849 AND c.value IN ({_sql_list(INVASIVE_MODES)}))
                       OR (c.itemid = 229314 AND c.value IN ({_sql_list(INVASIVE_MODES_HAMILTON)})))
                   AS invasive
        FROM s7 s JOIN icu_chartevents c ON c.stay_id = s.stay_id
        WHERE c.itemid IN (223849, 229314, 226732) AND c.value IS NOT NULL
          AND c.charttime BETWEEN s.intime AND s.wend
        GROUP BY s.stay_id""")
    con.execute("""
        CREATE TEMP TABLE vent_proc AS
        SELECT DISTINCT s.stay_id
        FROM s7 s JOIN icu_procedureevents p ON p.stay_id = s.stay_id
        WHERE p.itemid = 225792 AND p.starttime <= s.wend AND p.endtime >= s.intime""")
    miss_exprs = [f"({name} IS NULL OR NOT {name})" for name in (*CHART_VALID, *LAB_VALID)]
    con.execute(f"""
        CREATE TEMP TABLE features AS
        SELECT s.*,
               {", ".join(f"{e} AS miss_{n}" for e, n in zip(miss_exprs, (*CHART_VALID, *LAB_VALID)))},
               f.stay_id IS NULL AS miss_vasopressor,
               COALESCE(f.vaso, false) AS vasopressor,
               v.stay_id IS NULL AND vp.stay_id IS NULL AS miss_mech_vent,
               COALESCE(v.invasive, false) OR vp.stay_id IS NOT NULL AS mech_vent,
               CASE WHEN s.anchor_year_group IN ({_sql_list(TEST_GROUPS)}) THEN 'test'
                    ELSE 'train' END AS split,
               CAST(COALESCE(s.death_time > s.intime + {w} AND s.death_time <= s.intime + {h},
                             false) AS INTEGER) AS label
        FROM s7 s
        LEFT JOIN chart_present c USING (stay_id)
        LEFT JOIN lab_present l USING (stay_id)
        LEFT JOIN input_flag f USING (stay_id)
        LEFT JOIN vent_rows v USING (stay_id)
        LEFT JOIN vent_proc vp USING (stay_id)""")
    n_missing = " + ".join(f"CAST(miss_{f} AS INTEGER)" for f in FEATURES_MISSABLE)
    con.execute(f"CREATE TEMP TABLE cohort AS SELECT * FROM features WHERE {n_missing} <= 8")

    flow = [con.execute(f"SELECT count(*) FROM {t}").fetchone()[0]
            for t in ("s1", "s2", "s3", "s4", "s5", "s6", "s7", "cohort")]
    n, n_train, n_test, label, any_death = con.execute("""
        SELECT count(*), count(*) FILTER (split = 'train'), count(*) FILTER (split = 'test'),
               avg(label), avg(CAST(hospital_expire_flag = 1 AS INTEGER)) FROM cohort""").fetchone()

    def shares(where: str) -> dict[str, float]:
        cols = ", ".join(f"avg(CAST(miss_{f} AS INTEGER))" for f in FEATURES_MISSABLE)
        row = con.execute(f"SELECT {cols} FROM cohort WHERE {where}").fetchone()
        return dict(zip(FEATURES_MISSABLE, row))

    vent_test, vaso_all = con.execute("""
        SELECT avg(CAST(mech_vent AS INTEGER)) FILTER (split = 'test'),
               avg(CAST(vasopressor AS INTEGER)) FROM cohort""").fetchone()
    readm = _readmission(con)
    implausible = dict(con.execute("""
        SELECT CAST(itemid AS VARCHAR) || ':' || CAST(valuenum AS VARCHAR), count(*)
        FROM icu_chartevents
        WHERE (itemid = 220045 AND (valuenum <= 0 OR valuenum >= 300))
           OR (itemid = 223761 AND (valuenum <= 70 OR valuenum >= 120))
           OR (itemid = 223762 AND (valuenum <= 10 OR valuenum >= 50))
           OR (itemid IN (220052, 220181, 225312) AND (valuenum <= 0 OR valuenum >= 300))
           OR (itemid = 220277 AND (valuenum <= 0 OR valuenum > 100))
        GROUP BY 1""").fetchall())
    missing_train, missing_all = shares("split = 'train'"), shares("true")
    con.close()
    return {"flow": flow, "cohort": n, "train": n_train, "test": n_test,
            "label_prevalence": label, "any_death_prevalence": any_death,
            "missing_train": missing_train, "missing_all": missing_all,
            "mech_vent_test": vent_test, "vasopressor_all": vaso_all,
            "readmission_cohort": readm[0], "readmission_rate": readm[1],
            "implausible_rows": implausible}


def _readmission(con: duckdb.DuckDBPyConnection) -> tuple[int, float]:
    """Index MED discharges and their 30-day unplanned readmission rate (clinops/docs/architecture.md)."""
    row = con.execute(f"""
        WITH adm AS (
            SELECT a.*, p.anchor_age + year(a.admittime) - p.anchor_year AS age,
                   p.anchor_year_group
            FROM hosp_admissions a JOIN hosp_patients p USING (subject_id)
        ),
        svc AS (
            SELECT s.hadm_id, s.curr_service FROM hosp_services s JOIN adm USING (hadm_id)
            WHERE s.transfertime <= adm.dischtime
            QUALIFY row_number() OVER (PARTITION BY s.hadm_id
                                       ORDER BY s.transfertime DESC, s.curr_service DESC) = 1
        ),
        idx AS (
            SELECT adm.* FROM adm JOIN svc USING (hadm_id)
            WHERE adm.age >= 18 AND adm.hospital_expire_flag = 0 AND adm.deathtime IS NULL
              AND svc.curr_service = 'MED'
              AND adm.hadm_id NOT IN (SELECT hadm_id FROM icu_icustays)
              AND adm.dischtime > adm.admittime
              AND (adm.discharge_location IS NULL
                   OR adm.discharge_location NOT IN ({_sql_list(EXCLUDED_DISCHARGE)}))
              AND adm.anchor_year_group IN ({_sql_list(TRAIN_GROUPS + TEST_GROUPS)})
        ),
        outcome AS (
            SELECT DISTINCT i.hadm_id FROM idx i JOIN hosp_admissions r
              ON r.subject_id = i.subject_id AND r.hadm_id <> i.hadm_id
             AND r.admittime > i.dischtime AND r.admittime <= i.dischtime + INTERVAL 30 DAY
             AND r.admission_type NOT IN ({_sql_list(PLANNED_TYPES)})
             AND (r.dischtime IS NULL OR r.dischtime > r.admittime)
        )
        SELECT count(*), avg(CAST(o.hadm_id IS NOT NULL AS INTEGER))
        FROM idx LEFT JOIN outcome o USING (hadm_id)""").fetchone()
    return int(row[0]), float(row[1]) if row[1] is not None else float("nan")


def _binomial_sd(p: float, n: int) -> float:
    return math.sqrt(p * (1 - p) / max(n, 1))


def target_table(m: dict, *, scale: float, noise_sd: float = 0.0) -> pd.DataFrame:
    """Every calibration target beside its measured value, tolerance and verdict.

    Tolerances are the issue's, held in :data:`TOLERANCE` (cohort and split within 2 %, mortality
    within 0.5 points, missing shares and ventilation within 2 points, readmission cohort within
    2 % and rate within 1 point), widened by ``noise_sd`` binomial standard errors for small
    (quick-scale) data.

    Parameters
    ----------
    m : the dict returned by :func:`measure`
    scale : the generator scale the counts are compared at (targets are for scale 1)
    """
    rows = []

    def add(name, target, measured, tol):
        rows.append({"target": name, "paper (scaled)": target, "measured": measured, "tolerance": tol,
                     "within": bool(abs(measured - target) <= tol)})

    tol = TOLERANCE
    for key, target in (("cohort", T.COHORT_SIZE), ("train", T.TRAIN_SIZE), ("test", T.TEST_SIZE)):
        add(f"{key} stays", target * scale, m[key], tol["count"] * target * scale)
    n, n_train, n_test = m["cohort"], m["train"], m["test"]
    p = T.MORTALITY_PREVALENCE
    add("mortality prevalence (default label)", p, m["label_prevalence"],
        tol["mortality_prevalence"] + noise_sd * _binomial_sd(p, n))
    for feature, p in T.MISSING_SHARE.items():
        add(f"missing in first 24 h: {feature} (train)", p, m["missing_train"][feature],
            tol["proportion"] + noise_sd * _binomial_sd(p, n_train))
    p = T.VENTILATION_TEST
    add("ventilation flag prevalence (test years)", p, m["mech_vent_test"],
        tol["proportion"] + noise_sd * _binomial_sd(p, n_test))
    add("readmission cohort", T.READMISSION_COHORT * scale, m["readmission_cohort"],
        tol["count"] * T.READMISSION_COHORT * scale)
    p = T.READMISSION_RATE
    add("30-day readmission rate", p, m["readmission_rate"],
        tol["readmission_rate"] + noise_sd * _binomial_sd(p, m["readmission_cohort"]))
    return pd.DataFrame(rows)

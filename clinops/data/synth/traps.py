"""Counts of the real data's traps in a MIMIC-IV v2.2 directory (issue #15, "a synthetic world
with the real traps").

Each trap is one function over the v2.2 tables, registered in :data:`TRAPS`. The counters read
only MIMIC-IV columns (views ``hosp_<table>`` / ``icu_<table>`` as made by
:func:`clinops.data.synth.calibration.connect`), never generator internals, so they count
whatever a directory holds: the synthetic data of any generator version, or a real copy. A trap
counted as 0 is a trap the pipeline's tests on this data cannot exercise.

Each counter returns ``{row label: count}`` (most return one row). :func:`trap_table` runs
them all into the ``reports/synthetic/traps`` table.

Examples
--------
>>> import duckdb, pandas as pd
>>> con = duckdb.connect()
>>> stays = pd.DataFrame({"subject_id": [1, 2], "hadm_id": [10, 20], "stay_id": [100, 200],
...                       "intime": pd.to_datetime(["2150-01-01 08:00", "2150-01-01 08:17"])})
>>> _ = con.register("icu_icustays", stays)
>>> intime_on_the_hour(con)
{'ICU stays with intime on the hour (hh:00:00)': 1}
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import duckdb
import pandas as pd

from clinops.data.cms_planned import read_code_list

from .calibration import INVASIVE_MODES, INVASIVE_MODES_HAMILTON

Counter = Callable[[duckdb.DuckDBPyConnection], dict[str, float]]

#: mimic-code ventilation.sql: O2 delivery devices that make a charttime "Tracheostomy"
#: (``'Trach mask '`` has a trailing space in the data; compared trimmed here).
TRACH_DEVICES = ("Tracheostomy tube", "Trach mask")
#: The feature window of the pipeline (hours after ICU intime) and mimic-code's lab pre-window.
WINDOW_HOURS = 24
PRE_WINDOW_HOURS = 6
#: Hours after ICU intime bounding the death-horizon rows, as (low, high]; the default label is
#: death in (24 h, 72 h].
DEATH_HORIZONS = ((None, 24), (24, 48), (48, 72), (72, 96), (96, 168), (168, None))


@dataclass(frozen=True)
class Trap:
    """One trap: its counter, the unit it counts and the issue #15 item it tests."""

    name: str
    count: Counter
    unit: str
    issue_item: str


TRAPS: dict[str, Trap] = {}


def _register(unit: str, issue_item: str) -> Callable[[Counter], Counter]:
    def add(fn: Counter) -> Counter:
        TRAPS[fn.__name__] = Trap(fn.__name__, fn, unit, issue_item)
        return fn
    return add


def _one(con: duckdb.DuckDBPyConnection, sql: str) -> int:
    value = con.execute(sql).fetchone()[0]
    return int(value or 0)


def _split_interval_sql(time_col: str) -> str:
    """SQL for the real-year interval of an event: the anchor group's window shifted by
    ``year(event) - anchor_year`` (MIMIC-IV's documentation of ``anchor_year_group``)."""
    shift = f"(year({time_col}) - p.anchor_year)"
    return (f"CAST(left(p.anchor_year_group, 4) AS INTEGER) + {shift} AS real_lo, "
            f"CAST(right(p.anchor_year_group, 4) AS INTEGER) + {shift} AS real_hi")


@_register("ICU stays", "1 temporal split")
def real_year_differs(con: duckdb.DuckDBPyConnection) -> dict[str, float]:
    """ICU stays in a later year than the patient's ``anchor_year`` (their real year is the
    anchor group's window shifted), and those of a 2008-2016 group certainly in 2017 or later.

    Examples
    --------
    >>> import duckdb, pandas as pd
    >>> con = duckdb.connect()
    >>> _ = con.register("hosp_patients", pd.DataFrame({"subject_id": [1, 2], "anchor_year": [2150, 2150],
    ...     "anchor_year_group": ["2014 - 2016", "2014 - 2016"]}))
    >>> _ = con.register("icu_icustays", pd.DataFrame({"subject_id": [1, 2], "stay_id": [10, 20],
    ...     "intime": pd.to_datetime(["2150-05-01", "2153-05-01"])}))
    >>> real_year_differs(con)["ICU stays of a 2008-2016 anchor group certainly in 2017 or later"]
    1
    """
    con.execute(f"""CREATE OR REPLACE TEMP TABLE _stay_years AS
        SELECT i.stay_id, year(i.intime) - p.anchor_year AS k, {_split_interval_sql('i.intime')}
        FROM icu_icustays i JOIN hosp_patients p USING (subject_id)""")
    return {"ICU stays with year(intime) > anchor_year": _one(con, "SELECT count(*) FROM _stay_years WHERE k >= 1"),
            "ICU stays of a 2008-2016 anchor group certainly in 2017 or later":
                _one(con, "SELECT count(*) FROM _stay_years WHERE real_hi - k <= 2016 AND real_lo >= 2017")}


@_register("ICU stays", "window edges")
def intime_on_the_hour(con: duckdb.DuckDBPyConnection) -> dict[str, float]:
    """ICU stays whose ``intime`` is exactly on the hour (rows charted at intime then sit on the
    window's left edge)."""
    return {"ICU stays with intime on the hour (hh:00:00)": _one(
        con, "SELECT count(*) FROM icu_icustays WHERE minute(intime) = 0 AND second(intime) = 0")}


@_register("rows", "window edges")
def rows_at_window_edges(con: duckdb.DuckDBPyConnection) -> dict[str, float]:
    """Chart rows of a stay and lab rows of its subject timed exactly at ``intime`` or
    ``intime + 24 h`` (an inclusive or exclusive bound changes the features).

    Examples
    --------
    >>> import duckdb, pandas as pd
    >>> con = duckdb.connect()
    >>> _ = con.register("icu_icustays", pd.DataFrame({"subject_id": [1], "stay_id": [10],
    ...     "intime": pd.to_datetime(["2150-01-01 08:00"])}))
    >>> _ = con.register("icu_chartevents", pd.DataFrame({"stay_id": [10, 10, 10],
    ...     "charttime": pd.to_datetime(["2150-01-01 08:00", "2150-01-01 09:00", "2150-01-02 08:00"])}))
    >>> _ = con.register("hosp_labevents", pd.DataFrame({"subject_id": [1],
    ...     "charttime": pd.to_datetime(["2150-01-01 07:59"])}))
    >>> rows_at_window_edges(con)
    {'chart rows at intime or intime + 24 h': 2, 'lab rows at intime or intime + 24 h': 0}
    """
    edge = f"(t.charttime = i.intime OR t.charttime = i.intime + INTERVAL {WINDOW_HOURS} HOUR)"
    return {"chart rows at intime or intime + 24 h": _one(
                con, f"SELECT count(*) FROM icu_icustays i JOIN icu_chartevents t USING (stay_id) WHERE {edge}"),
            "lab rows at intime or intime + 24 h": _one(
                con, f"SELECT count(*) FROM icu_icustays i JOIN hosp_labevents t USING (subject_id) WHERE {edge}")}


@_register("ICU stays", "6 tracheostomy")
def tracheostomy(con: duckdb.DuckDBPyConnection) -> dict[str, float]:
    """Stays with a tracheostomy device (226732), and those also on an invasive ventilator mode
    (223849 / 229314, mimic-code's lists) at the same charttime: mimic-code calls both
    Tracheostomy, the invasive-ventilation flag must decide what a ventilated trach is.

    Examples
    --------
    >>> import duckdb, pandas as pd
    >>> con = duckdb.connect()
    >>> t = pd.to_datetime(["2150-01-01 08:00"] * 3 + ["2150-01-01 09:00"])
    >>> _ = con.register("icu_chartevents", pd.DataFrame({"stay_id": [1, 1, 2, 2], "charttime": t,
    ...     "itemid": [226732, 223849, 226732, 223849],
    ...     "value": ["Trach mask ", "CMV/ASSIST", "Tracheostomy tube", "CMV/ASSIST"]}))
    >>> tracheostomy(con)
    {'ICU stays with a tracheostomy device row': 2, 'ICU stays with trach and an invasive ventilator mode at the same charttime': 1}
    """
    devices = ", ".join(f"'{d}'" for d in TRACH_DEVICES)
    modes = ", ".join("'" + m.replace("'", "''") + "'" for m in INVASIVE_MODES)
    hamilton = ", ".join("'" + m.replace("'", "''") + "'" for m in INVASIVE_MODES_HAMILTON)
    con.execute(f"""CREATE OR REPLACE TEMP TABLE _trach AS
        SELECT DISTINCT stay_id, charttime FROM icu_chartevents
        WHERE itemid = 226732 AND trim(value) IN ({devices})""")
    both = _one(con, f"""SELECT count(DISTINCT t.stay_id) FROM _trach t JOIN icu_chartevents c
        ON c.stay_id = t.stay_id AND c.charttime = t.charttime
        WHERE (c.itemid = 223849 AND c.value IN ({modes})) OR (c.itemid = 229314 AND c.value IN ({hamilton}))""")
    return {"ICU stays with a tracheostomy device row": _one(con, "SELECT count(DISTINCT stay_id) FROM _trach"),
            "ICU stays with trach and an invasive ventilator mode at the same charttime": both}


@_register("ICU stays", "5 pre-window labs")
def ed_labs_before_intime(con: duckdb.DuckDBPyConnection) -> dict[str, float]:
    """ICU stays whose subject has a lab drawn in the 6 h before ``intime`` (mimic-code's
    first-day window starts there; a window from intime misses them)."""
    return {"ICU stays with a lab in [intime - 6 h, intime)": _one(con, f"""
        SELECT count(DISTINCT i.stay_id) FROM icu_icustays i JOIN hosp_labevents l USING (subject_id)
        WHERE l.charttime >= i.intime - INTERVAL {PRE_WINDOW_HOURS} HOUR AND l.charttime < i.intime""")}


@_register("rows", "duplicates / corrections")
def duplicate_and_corrected_chart_rows(con: duckdb.DuckDBPyConnection) -> dict[str, float]:
    """Chart rows repeating an earlier row's (stay, item, charttime), and rows flagged
    ``warning = 1`` (values the nurse marked or corrected).

    Examples
    --------
    >>> import duckdb, pandas as pd
    >>> con = duckdb.connect()
    >>> _ = con.register("icu_chartevents", pd.DataFrame({"stay_id": [1, 1, 1, 2], "itemid": [5, 5, 5, 5],
    ...     "charttime": pd.to_datetime(["2150-01-01 08:00"] * 4), "warning": [0, 1, 0, 0]}))
    >>> duplicate_and_corrected_chart_rows(con)
    {'chart rows repeating (stay_id, itemid, charttime)': 2, 'chart rows with warning = 1': 1}
    """
    return {"chart rows repeating (stay_id, itemid, charttime)": _one(con, """
                SELECT sum(n - 1) FROM (SELECT count(*) AS n FROM icu_chartevents
                GROUP BY stay_id, itemid, charttime HAVING count(*) > 1)"""),
            "chart rows with warning = 1": _one(con, "SELECT count(*) FROM icu_chartevents WHERE warning = 1")}


@_register("rows", "text in numeric items")
def text_in_numeric_items(con: duckdb.DuckDBPyConnection) -> dict[str, float]:
    """Rows with a ``value`` but no ``valuenum`` in a numeric item: chart items whose
    ``d_items.param_type`` is Numeric, lab items that have numeric results elsewhere."""
    return {"chart rows of Numeric items with text and NULL valuenum": _one(con, """
                SELECT count(*) FROM icu_chartevents c JOIN icu_d_items d USING (itemid)
                WHERE d.param_type = 'Numeric' AND c.value IS NOT NULL AND c.valuenum IS NULL"""),
            "lab rows of numeric lab items with text and NULL valuenum": _one(con, """
                SELECT count(*) FROM hosp_labevents
                WHERE value IS NOT NULL AND valuenum IS NULL
                  AND itemid IN (SELECT DISTINCT itemid FROM hosp_labevents WHERE valuenum IS NOT NULL)""")}


@_register("rows", "8 storetime")
def labs_resulted_after_window(con: duckdb.DuckDBPyConnection) -> dict[str, float]:
    """Lab rows drawn inside [intime, intime + 24 h] but resulted (``storetime``) after it:
    known at charttime to the pipeline, not yet known to a clinician at 24 h."""
    end = f"i.intime + INTERVAL {WINDOW_HOURS} HOUR"
    return {"lab rows drawn in the 24 h window, resulted after it": _one(con, f"""
        SELECT count(*) FROM icu_icustays i JOIN hosp_labevents l USING (subject_id)
        WHERE l.charttime BETWEEN i.intime AND {end} AND l.storetime > {end}""")}


@_register("admissions", "deaths at every horizon")
def deaths_by_horizon(con: duckdb.DuckDBPyConnection) -> dict[str, float]:
    """In-hospital deaths by hours after the admission's first ICU ``intime`` (death time =
    ``deathtime``, else ``dischtime``), and deaths within 30 days after a live discharge
    (``patients.dod``, the readmission task's competing risk).

    Examples
    --------
    >>> import duckdb, pandas as pd
    >>> con = duckdb.connect()
    >>> _ = con.register("icu_icustays", pd.DataFrame({"subject_id": [1, 2], "hadm_id": [10, 20],
    ...     "intime": pd.to_datetime(["2150-01-01 00:00", "2150-01-01 00:00"])}))
    >>> _ = con.register("hosp_admissions", pd.DataFrame({"subject_id": [1, 2], "hadm_id": [10, 20],
    ...     "dischtime": pd.to_datetime(["2150-01-04 12:00", "2150-01-05 00:00"]), "deathtime": pd.to_datetime(["2150-01-04 12:00", None]),
    ...     "hospital_expire_flag": [1, 0]}))
    >>> _ = con.register("hosp_patients", pd.DataFrame({"subject_id": [1, 2],
    ...     "dod": pd.to_datetime(["2150-01-04", "2150-01-20"]).date}))
    >>> counts = deaths_by_horizon(con)
    >>> counts["in-hospital deaths (72, 96] h after ICU intime"], counts["deaths within 30 d of a live discharge"]
    (1, 1)
    """
    con.execute("""CREATE OR REPLACE TEMP TABLE _death_hours AS
        SELECT (epoch(COALESCE(a.deathtime, a.dischtime)) - epoch(min(i.intime))) / 3600.0 AS h
        FROM hosp_admissions a JOIN icu_icustays i USING (hadm_id)
        WHERE a.hospital_expire_flag = 1 GROUP BY a.hadm_id, a.deathtime, a.dischtime""")
    out: dict[str, float] = {}
    for lo, hi in DEATH_HORIZONS:
        cond = " AND ".join(c for c in (f"h > {lo}" if lo is not None else "", f"h <= {hi}" if hi is not None else "") if c)
        label = f"in-hospital deaths ({lo if lo is not None else '-inf'}, {hi if hi is not None else 'inf'}] h after ICU intime"
        out[label] = _one(con, f"SELECT count(*) FROM _death_hours WHERE {cond}")
    out["deaths within 30 d of a live discharge"] = _one(con, """
        SELECT count(*) FROM hosp_admissions a JOIN hosp_patients p USING (subject_id)
        WHERE a.hospital_expire_flag = 0 AND p.dod > CAST(a.dischtime AS DATE)
          AND p.dod <= CAST(a.dischtime AS DATE) + INTERVAL 30 DAY""")
    return out


def _planned_code_sql() -> str:
    """The readmission task's planned procedures (CMS PR1 always planned, PR3 potentially
    planned; :mod:`clinops.data.cms_planned`) as a condition on ``pr`` (codes trimmed, as the
    task's SQL compares them)."""
    prefixes: dict[str, set[str]] = {}
    for row in read_code_list():
        if row["category"] in ("PR1", "PR3"):
            prefixes.setdefault(row["icd_version"], set()).add(row["code_prefix"])
    if not prefixes:
        return "FALSE"  # a code list without PR1 / PR3 procedures: nothing is planned by procedure
    parts = [f"(pr.icd_version = {int(version)} AND ("
             + " OR ".join(f"starts_with(trim(pr.icd_code), '{p}')" for p in sorted(codes)) + "))"
             for version, codes in sorted(prefixes.items())]
    return " OR ".join(parts)


@_register("admissions", "4 planned readmissions")
def planned_readmissions_by_procedure(con: duckdb.DuckDBPyConnection) -> dict[str, float]:
    """Admissions within 30 days after a discharge of the same subject that carry a procedure
    code the readmission task calls planned (CMS PR1 or PR3 in :mod:`clinops.data.cms_planned`,
    whatever the diagnosis), and how many of those are not of a planned ``admission_type``
    (missed by the admission-type rule).

    Examples
    --------
    >>> import duckdb, pandas as pd
    >>> con = duckdb.connect()
    >>> _ = con.register("hosp_admissions", pd.DataFrame({"subject_id": [1, 1, 1], "hadm_id": [10, 11, 12],
    ...     "admittime": pd.to_datetime(["2150-01-01", "2150-01-20", "2150-06-01"]),
    ...     "dischtime": pd.to_datetime(["2150-01-05", "2150-01-25", "2150-06-05"]),
    ...     "admission_type": ["EW EMER.", "URGENT", "ELECTIVE"]}))
    >>> _ = con.register("hosp_procedures_icd", pd.DataFrame({"hadm_id": [11, 12], "icd_code": ["0SRC0JZ", "0SRC0JZ"],
    ...     "icd_version": [10, 10]}))
    >>> planned_readmissions_by_procedure(con)["30-day readmissions with a planned procedure code"]
    1
    """
    con.execute(f"""CREATE OR REPLACE TEMP TABLE _planned_readm AS
        SELECT DISTINCT r.hadm_id, r.admission_type
        FROM hosp_admissions r JOIN hosp_admissions x
          ON x.subject_id = r.subject_id AND x.hadm_id <> r.hadm_id
         AND r.admittime > x.dischtime AND r.admittime <= x.dischtime + INTERVAL 30 DAY
        JOIN hosp_procedures_icd pr ON pr.hadm_id = r.hadm_id
        WHERE {_planned_code_sql()}""")
    return {"30-day readmissions with a planned procedure code": _one(con, "SELECT count(*) FROM _planned_readm"),
            "of which not ELECTIVE / SURGICAL SAME DAY ADMISSION": _one(
                con, "SELECT count(*) FROM _planned_readm WHERE admission_type NOT IN "
                     "('ELECTIVE', 'SURGICAL SAME DAY ADMISSION')")}


@_register("subjects", "3 grouped splits")
def subjects_across_the_split(con: duckdb.DuckDBPyConnection) -> dict[str, float]:
    """Subjects with repeated admissions, and subjects with an admission certainly in 2008-2016
    and another certainly in 2017-2019 by the real-year interval (one patient on both sides of a
    split by real year).

    Examples
    --------
    >>> import duckdb, pandas as pd
    >>> con = duckdb.connect()
    >>> _ = con.register("hosp_patients", pd.DataFrame({"subject_id": [1, 2], "anchor_year": [2150, 2150],
    ...     "anchor_year_group": ["2014 - 2016", "2008 - 2010"]}))
    >>> _ = con.register("hosp_admissions", pd.DataFrame({"subject_id": [1, 1, 2, 2], "hadm_id": [10, 11, 20, 21],
    ...     "admittime": pd.to_datetime(["2150-01-01", "2153-01-01", "2150-01-01", "2151-01-01"])}))
    >>> subjects_across_the_split(con)
    {'subjects with more than one admission': 2, 'subjects with admissions certainly in 2008-2016 and in 2017-2019': 1}
    """
    con.execute(f"""CREATE OR REPLACE TEMP TABLE _adm_years AS
        SELECT a.subject_id, {_split_interval_sql('a.admittime')}
        FROM hosp_admissions a JOIN hosp_patients p USING (subject_id)""")
    return {"subjects with more than one admission": _one(con, """
                SELECT count(*) FROM (SELECT subject_id FROM hosp_admissions GROUP BY subject_id HAVING count(*) > 1)"""),
            "subjects with admissions certainly in 2008-2016 and in 2017-2019": _one(con, """
                SELECT count(*) FROM (SELECT subject_id FROM _adm_years GROUP BY subject_id
                HAVING bool_or(real_hi <= 2016) AND bool_or(real_lo >= 2017))""")}


@_register("rows per ICU stay", "chart density")
def chart_rows_per_stay(con: duckdb.DuckDBPyConnection) -> dict[str, float]:
    """Chart rows per ICU stay (about 4,300 in MIMIC-IV v2.2: 313,645,063 / 73,181)."""
    n_rows = _one(con, "SELECT count(*) FROM icu_chartevents")
    n_stays = _one(con, "SELECT count(*) FROM icu_icustays")
    return {"chartevents rows per ICU stay": round(n_rows / n_stays, 1) if n_stays else 0.0}


def trap_table(con: duckdb.DuckDBPyConnection) -> pd.DataFrame:
    """Every registered trap counted on the tables behind ``con``: one row per count.

    Examples
    --------
    >>> sorted(TRAPS)[:3]
    ['chart_rows_per_stay', 'deaths_by_horizon', 'duplicate_and_corrected_chart_rows']
    """
    rows = []
    for trap in TRAPS.values():
        for label, value in trap.count(con).items():
            rows.append({"trap": trap.name, "count": value, "unit": trap.unit, "what is counted": label,
                         "issue #15 item": trap.issue_item})
    # object dtype keeps counts as integers (only the density is a float)
    return pd.DataFrame(rows, columns=["trap", "what is counted", "count", "unit", "issue #15 item"], dtype=object)

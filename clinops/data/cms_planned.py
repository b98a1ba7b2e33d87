"""The code lists of the CMS Planned Readmission Algorithm (v4.0), as bound SQL parameters.

The algorithm (CMS, Planned Readmission Algorithm v4.0, 2019) calls a readmission planned when

* it has an always-planned procedure (PR1: transplants, cesarean section, ...), or
* its principal diagnosis is always planned (PR2: maintenance chemotherapy, rehabilitation,
  delivery), or
* it has a potentially planned procedure (PR3: joint replacement, CABG, cholecystectomy, ...)
  and its principal diagnosis is not acute (PR4: sepsis, AMI, heart failure, acute
  cholecystitis, ...).

The full lists map AHRQ CCS categories to thousands of ICD-9-CM / ICD-10 codes; the committed
``cms_planned.csv`` is a documented SUBSET (clinops/docs/readmission.md lists its categories):
one row per ``category, ccs, description, icd_version, code_prefix, source``. A code matches a
row when its version is ``icd_version`` and it starts with ``code_prefix`` (codes without dots,
as in MIMIC-IV). To add the rest of a category, add rows; nothing else changes.
"""
from __future__ import annotations

import csv
import re
from pathlib import Path

#: The committed code list (a subset of the CMS lists; see the module docstring).
CODE_LIST = Path(__file__).resolve().with_name("cms_planned.csv")
CATEGORIES = ("PR1", "PR2", "PR3", "PR4")
COLUMNS = ("category", "ccs", "description", "icd_version", "code_prefix", "source")
#: Prefix lengths the SQL compares (readmission_cohort.sql: left(icd_code, 3..7)).
MIN_PREFIX, MAX_PREFIX = 3, 7
_PREFIX = re.compile(r"^[A-Z0-9]+$")


def read_code_list(path: str | Path = CODE_LIST) -> list[dict[str, str]]:
    """Rows of a code-list CSV, validated.

    Parameters
    ----------
    path : str or Path
        CSV with the header ``category,ccs,description,icd_version,code_prefix,source``.

    Returns
    -------
    list of dict
        One dict per row (strings; ``icd_version`` '9' or '10').

    Raises
    ------
    ValueError
        A row breaks a rule; the message names the file, the line and the field.

    Examples
    --------
    >>> rows = read_code_list()
    >>> sorted({r["category"] for r in rows})
    ['PR1', 'PR2', 'PR3', 'PR4']
    """
    path = Path(path)
    with path.open(newline="") as fh:
        reader = csv.DictReader(fh)
        if tuple(reader.fieldnames or ()) != COLUMNS:
            raise ValueError(f"{path}: header must be {','.join(COLUMNS)}, got {reader.fieldnames}")
        rows = list(reader)
    for line, row in enumerate(rows, start=2):
        where = f"{path}:{line}"
        if row["category"] not in CATEGORIES:
            raise ValueError(f"{where}: category must be one of {CATEGORIES}, got {row['category']!r}")
        if row["icd_version"] not in ("9", "10"):
            raise ValueError(f"{where}: icd_version must be 9 or 10, got {row['icd_version']!r}")
        prefix = row["code_prefix"]
        if not (_PREFIX.match(prefix or "") and MIN_PREFIX <= len(prefix) <= MAX_PREFIX):
            raise ValueError(f"{where}: code_prefix must be {MIN_PREFIX}-{MAX_PREFIX} upper-case letters or "
                             f"digits without dots, got {prefix!r}")
        if not (row["source"] or "").strip():
            raise ValueError(f"{where}: source must name where the code comes from")
    return rows


def code_list_parameters(path: str | Path = CODE_LIST) -> dict[str, list[str]]:
    """The SQL parameters ``$pr1_procedures``, ``$pr2_diagnoses``, ``$pr3_procedures``, ``$pr4_diagnoses``.

    Each is a list of ``'<icd_version>:<code_prefix>'`` keys, which readmission_cohort.sql
    compares with ``icd_version || ':' || left(icd_code, n)`` for n = 3..7.

    Examples
    --------
    >>> p = code_list_parameters()
    >>> sorted(p)
    ['pr1_procedures', 'pr2_diagnoses', 'pr3_procedures', 'pr4_diagnoses']
    >>> '10:Z5111' in p['pr2_diagnoses'], '9:8154' in p['pr3_procedures']
    (True, True)
    """
    names = {"PR1": "pr1_procedures", "PR2": "pr2_diagnoses", "PR3": "pr3_procedures", "PR4": "pr4_diagnoses"}
    out: dict[str, list[str]] = {name: [] for name in names.values()}
    for row in read_code_list(path):
        out[names[row["category"]]].append(f"{row['icd_version']}:{row['code_prefix']}")
    return {k: sorted(set(v)) for k, v in out.items()}

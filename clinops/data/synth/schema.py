"""MIMIC-IV v2.2 column order and types, and the gzip CSV writer of the synthetic tables.

Column order and types are those of the v2.2 postgres DDL (mimic-code ``create.sql``, commit
db74e5d4; reference section 1), because mimic-code's ``COPY`` maps columns by position.

Columns are handed to the writer as numpy arrays:

- integers and ``ts`` / ``date`` columns as int64 (seconds or days since 1970-01-01), with
  :data:`NULL_INT` for NULL;
- floats as float64, NaN for NULL;
- strings as :class:`Text` (integer codes into a vocabulary, -1 for NULL) or as an object
  array of ``str`` / ``None``.

The CSV convention is PhysioNet's: a header line, comma delimiter, an empty field for NULL,
timestamps ``YYYY-MM-DD HH:MM:SS``, and quotes only around values that need them. Every call of
:func:`encode_member` returns one complete gzip member; a ``.csv.gz`` file is the header member
followed by any number of data members (RFC 1952 allows concatenated members, and gzip, pandas
and DuckDB read them as one stream). That is what lets two processes compress chunks of the
same table independently while the output bytes stay identical for any number of processes.
"""
from __future__ import annotations

import csv
import io
import zlib
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

NULL_INT = np.iinfo(np.int64).min
GZIP_LEVEL = 1  # fast; the files are still ~5x smaller than plain CSV
_BATCH_ROWS = 200_000

# (column, type) in DDL order; types: i4 INTEGER, i2 SMALLINT, s VARCHAR/TEXT/CHAR,
# ts TIMESTAMP, date DATE, f DOUBLE PRECISION / FLOAT.
TABLES: dict[str, tuple[tuple[str, str], ...]] = {
    "hosp/patients": (("subject_id", "i4"), ("gender", "s"), ("anchor_age", "i2"),
                      ("anchor_year", "i2"), ("anchor_year_group", "s"), ("dod", "date")),
    "hosp/admissions": (("subject_id", "i4"), ("hadm_id", "i4"), ("admittime", "ts"),
                        ("dischtime", "ts"), ("deathtime", "ts"), ("admission_type", "s"),
                        ("admit_provider_id", "s"), ("admission_location", "s"),
                        ("discharge_location", "s"), ("insurance", "s"), ("language", "s"),
                        ("marital_status", "s"), ("race", "s"), ("edregtime", "ts"),
                        ("edouttime", "ts"), ("hospital_expire_flag", "i2")),
    "hosp/diagnoses_icd": (("subject_id", "i4"), ("hadm_id", "i4"), ("seq_num", "i4"),
                           ("icd_code", "s"), ("icd_version", "i2")),
    "hosp/d_icd_diagnoses": (("icd_code", "s"), ("icd_version", "i2"), ("long_title", "s")),
    "hosp/procedures_icd": (("subject_id", "i4"), ("hadm_id", "i4"), ("seq_num", "i4"),
                            ("chartdate", "date"), ("icd_code", "s"), ("icd_version", "i2")),
    "hosp/d_icd_procedures": (("icd_code", "s"), ("icd_version", "i2"), ("long_title", "s")),
    "hosp/labevents": (("labevent_id", "i4"), ("subject_id", "i4"), ("hadm_id", "i4"),
                       ("specimen_id", "i4"), ("itemid", "i4"), ("order_provider_id", "s"),
                       ("charttime", "ts"), ("storetime", "ts"), ("value", "s"),
                       ("valuenum", "f"), ("valueuom", "s"), ("ref_range_lower", "f"),
                       ("ref_range_upper", "f"), ("flag", "s"), ("priority", "s"),
                       ("comments", "s")),
    "hosp/d_labitems": (("itemid", "i4"), ("label", "s"), ("fluid", "s"), ("category", "s")),
    "hosp/services": (("subject_id", "i4"), ("hadm_id", "i4"), ("transfertime", "ts"),
                      ("prev_service", "s"), ("curr_service", "s")),
    "hosp/transfers": (("subject_id", "i4"), ("hadm_id", "i4"), ("transfer_id", "i4"),
                       ("eventtype", "s"), ("careunit", "s"), ("intime", "ts"),
                       ("outtime", "ts")),
    "hosp/omr": (("subject_id", "i4"), ("chartdate", "date"), ("seq_num", "i4"),
                 ("result_name", "s"), ("result_value", "s")),
    "hosp/provider": (("provider_id", "s"),),
    "icu/icustays": (("subject_id", "i4"), ("hadm_id", "i4"), ("stay_id", "i4"),
                     ("first_careunit", "s"), ("last_careunit", "s"), ("intime", "ts"),
                     ("outtime", "ts"), ("los", "f")),
    "icu/chartevents": (("subject_id", "i4"), ("hadm_id", "i4"), ("stay_id", "i4"),
                        ("caregiver_id", "i4"), ("charttime", "ts"), ("storetime", "ts"),
                        ("itemid", "i4"), ("value", "s"), ("valuenum", "f"),
                        ("valueuom", "s"), ("warning", "i2")),
    "icu/d_items": (("itemid", "i4"), ("label", "s"), ("abbreviation", "s"), ("linksto", "s"),
                    ("category", "s"), ("unitname", "s"), ("param_type", "s"),
                    ("lownormalvalue", "f"), ("highnormalvalue", "f")),
    "icu/inputevents": (("subject_id", "i4"), ("hadm_id", "i4"), ("stay_id", "i4"),
                        ("caregiver_id", "i4"), ("starttime", "ts"), ("endtime", "ts"),
                        ("storetime", "ts"), ("itemid", "i4"), ("amount", "f"),
                        ("amountuom", "s"), ("rate", "f"), ("rateuom", "s"),
                        ("orderid", "i4"), ("linkorderid", "i4"),
                        ("ordercategoryname", "s"), ("secondaryordercategoryname", "s"),
                        ("ordercomponenttypedescription", "s"),
                        ("ordercategorydescription", "s"), ("patientweight", "f"),
                        ("totalamount", "f"), ("totalamountuom", "s"), ("isopenbag", "i2"),
                        ("continueinnextdept", "i2"), ("statusdescription", "s"),
                        ("originalamount", "f"), ("originalrate", "f")),
    "icu/procedureevents": (("subject_id", "i4"), ("hadm_id", "i4"), ("stay_id", "i4"),
                            ("caregiver_id", "i4"), ("starttime", "ts"), ("endtime", "ts"),
                            ("storetime", "ts"), ("itemid", "i4"), ("value", "f"),
                            ("valueuom", "s"), ("location", "s"), ("locationcategory", "s"),
                            ("orderid", "i4"), ("linkorderid", "i4"),
                            ("ordercategoryname", "s"), ("ordercategorydescription", "s"),
                            ("patientweight", "f"), ("isopenbag", "i2"),
                            ("continueinnextdept", "i2"), ("statusdescription", "s"),
                            ("originalamount", "f"), ("originalrate", "f")),
    "icu/caregiver": (("caregiver_id", "i4"),),
}

_ARROW = {"i4": pa.int32(), "i2": pa.int16(), "s": pa.string(), "ts": pa.timestamp("s"),
          "date": pa.date32(), "f": pa.float64()}
_NEEDS_QUOTES = '[,"\r\n]'


@dataclass(frozen=True)
class Text:
    """A string column as codes into a vocabulary (code -1 = NULL)."""

    codes: np.ndarray
    vocab: Sequence[str]

    def __len__(self) -> int:
        return len(self.codes)

    def take(self, index: np.ndarray) -> "Text":
        return Text(self.codes[index], self.vocab)


def _to_arrow(name: str, kind: str, values: Any, n: int) -> pa.Array:
    if isinstance(values, pa.Array | pa.ChunkedArray):
        arr = values
    elif kind == "s":
        if isinstance(values, Text):
            codes = np.asarray(values.codes, dtype=np.int32)
            arr = pa.DictionaryArray.from_arrays(
                pa.array(codes, mask=codes < 0), pa.array(list(values.vocab), pa.string()))
        else:
            arr = pa.array(np.asarray(values, dtype=object), pa.string(), from_pandas=True)
    elif kind == "f":
        v = np.asarray(values, dtype=np.float64)
        arr = pa.array(v, mask=np.isnan(v))
    else:
        v = np.asarray(values, dtype=np.int64)
        null = v == NULL_INT
        if kind in ("i4", "i2"):
            info = np.iinfo(np.int32 if kind == "i4" else np.int16)
            bad = (~null) & ((v < info.min) | (v > info.max))
            if bad.any():
                raise ValueError(f"column {name}: value {v[bad][0]} does not fit {kind}")
            arr = pa.array(np.where(null, 0, v).astype(np.int32 if kind == "i4" else np.int16),
                           mask=null)
        else:
            arr = pa.array(np.where(null, 0, v), pa.int64(), mask=null).cast(
                pa.int32() if kind == "date" else pa.int64())
    if len(arr) != n:
        raise ValueError(f"column {name}: {len(arr)} values, expected {n}")
    if kind == "s":
        return arr
    return arr.cast(_ARROW[kind])


def arrow_table(table: str, cols: Mapping[str, Any]) -> pa.Table:
    """Columns of ``table`` in DDL order as an Arrow table; missing or extra columns raise."""
    spec = TABLES[table]
    names = [c for c, _ in spec]
    missing = [c for c in names if c not in cols]
    extra = [c for c in cols if c not in names]
    if missing or extra:
        raise ValueError(f"table {table}: missing columns {missing}, unexpected columns {extra}")
    n = len(cols[names[0]])
    return pa.table({c: _to_arrow(c, k, cols[c], n) for c, k in spec})


def header_line(table: str) -> bytes:
    return (",".join(c for c, _ in TABLES[table]) + "\n").encode()


def header_member(table: str) -> bytes:
    """The header line of ``table`` as a gzip member of its own (the start of a streamed file)."""
    comp = zlib.compressobj(GZIP_LEVEL, zlib.DEFLATED, 31)
    return comp.compress(header_line(table)) + comp.flush()


def _needs_quoting(tbl: pa.Table) -> bool:
    for col in tbl.columns:
        if pa.types.is_dictionary(col.type):
            values = pa.chunked_array([c.dictionary for c in col.chunks], col.type.value_type) \
                if col.num_chunks else pa.chunked_array([], pa.string())
        elif pa.types.is_string(col.type):
            values = col
        else:
            continue
        if len(values) and pc.any(pc.match_substring_regex(values, _NEEDS_QUOTES)).as_py():
            return True
    return False


def _csv_bytes_minimal_quotes(tbl: pa.Table) -> bytes:
    """CSV with quotes only where needed (Python's csv module); for the small d_* tables."""
    as_text = [pc.cast(c, pa.string()).to_pylist() for c in tbl.columns]
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n", quoting=csv.QUOTE_MINIMAL)
    writer.writerows(zip(*as_text))
    return out.getvalue().encode()


def encode_member(table: str, cols: Mapping[str, Any] | pa.Table, *,
                  include_header: bool = False) -> bytes:
    """One gzip member holding the rows of ``cols`` (and the header line if asked)."""
    tbl = cols if isinstance(cols, pa.Table) else arrow_table(table, cols)
    comp = zlib.compressobj(GZIP_LEVEL, zlib.DEFLATED, 31)  # wbits 31: gzip wrapper, mtime 0
    parts = [comp.compress(header_line(table))] if include_header else []
    if _needs_quoting(tbl):
        parts.append(comp.compress(_csv_bytes_minimal_quotes(tbl)))
    else:
        opts = pacsv.WriteOptions(include_header=False, quoting_style="none")
        for start in range(0, tbl.num_rows, _BATCH_ROWS):
            sink = pa.BufferOutputStream()
            pacsv.write_csv(tbl.slice(start, _BATCH_ROWS), sink, opts)
            parts.append(comp.compress(sink.getvalue()))
    parts.append(comp.flush())
    return b"".join(parts)

"""The manifest bound into the tables the feature SQL reads: methods, item ids, ranges, aggregates.

:func:`item_rows` is ``clinops_fx_items`` (one row per feature and item id of the chart and lab
aggregates), :func:`chart_itemids` the chartevents items to stage, :data:`METHODS` the tables and
columns each extraction method reads. The worst value of a feature is its ``aggregate``: ``min``,
``max`` or ``farthest_from_normal`` (the value farthest outside ``source.normal_range``, the
APACHE II zero-point band, so hypothermia and bradycardia count as well as fever and
tachycardia; ties and stays entirely inside the band give the maximum).

Examples
--------
>>> from clinops.features.manifest import FeatureManifest
>>> items = item_rows(FeatureManifest.load("mortality"))
>>> items.loc[items["feature"] == "temperature", ["itemid", "agg", "normal_lo", "normal_hi"]
...           ].to_dict("records")[0]
{'itemid': 223762, 'agg': 'farthest_from_normal', 'normal_lo': 36.0, 'normal_hi': 38.4}
"""
from __future__ import annotations

import math

import pandas as pd

from clinops.features.manifest import FeatureManifest, FeatureSpec, ManifestError

__all__ = ["METHODS", "REQUIRED_COLUMNS", "AGGREGATES", "required_columns", "method_of", "int_list",
           "item_rows", "chart_itemids", "role_itemid"]

#: Worst-value aggregates of the chart and lab features (see the module docstring).
AGGREGATES = ("min", "max", "farthest_from_normal")

#: Tables and columns each extraction method reads.
METHODS: dict[str, dict[str, list[str]]] = {
    "age": {"mimiciv_hosp.patients": ["subject_id", "anchor_age", "anchor_year"]},
    "sex": {"mimiciv_hosp.patients": ["subject_id", "gender"]},
    "icd_chapter": {"mimiciv_hosp.diagnoses_icd": ["hadm_id", "seq_num", "icd_code",
                                                   "icd_version"]},
    "chart_aggregate": {"mimiciv_icu.chartevents": ["stay_id", "charttime", "storetime",
                                                    "itemid", "value", "valuenum"]},
    "gcs": {"mimiciv_icu.chartevents": ["stay_id", "charttime", "storetime", "itemid", "value",
                                        "valuenum"]},
    "ventilation": {
        "mimiciv_icu.chartevents": ["stay_id", "charttime", "storetime", "itemid", "value",
                                    "valuenum"],
        "mimiciv_icu.procedureevents": ["stay_id", "starttime", "endtime", "itemid"],
    },
    "lab_aggregate": {"mimiciv_hosp.labevents": ["subject_id", "charttime", "storetime", "itemid",
                                                 "valuenum"]},
    "vasoactive_overlap": {"mimiciv_icu.inputevents": ["stay_id", "starttime", "endtime",
                                                       "itemid"]},
}


def required_columns(manifest: FeatureManifest) -> dict[str, list[str]]:
    """Tables and columns extracting ``manifest`` reads (union over its methods)."""
    out: dict[str, list[str]] = {}
    for s in manifest.specs:
        for table, cols in METHODS[method_of(s)].items():
            have = out.setdefault(table, [])
            have += [c for c in cols if c not in have]
    return out


def method_of(s: FeatureSpec) -> str:
    """The extraction method of a feature (``source.method``), checked against :data:`METHODS`."""
    method = s.source.get("method")
    if method not in METHODS:
        raise ManifestError(f"feature {s.name!r}: source.method must be one of "
                            f"{sorted(METHODS)}, got {method!r}")
    return method


#: What the packaged mortality manifest needs (checked before any work starts).
REQUIRED_COLUMNS: dict[str, list[str]] = {}
for _cols in METHODS.values():
    for _t, _c in _cols.items():
        REQUIRED_COLUMNS.setdefault(_t, [])
        REQUIRED_COLUMNS[_t] += [c for c in _c if c not in REQUIRED_COLUMNS[_t]]


def int_list(s: FeatureSpec, key: str, value) -> list[int]:
    """``source.<key>`` as a list of integer item ids (one id or a list)."""
    vals = value if isinstance(value, list) else [value]
    if not vals or not all(isinstance(v, int) and not isinstance(v, bool) for v in vals):
        raise ManifestError(f"feature {s.name!r}: source.{key} must be integer item id(s), "
                            f"got {value!r}")
    return [int(v) for v in vals]


def item_rows(manifest: FeatureManifest) -> pd.DataFrame:
    """clinops_fx_items: one row per (feature, itemid) of chart/lab aggregate features.

    Columns: method, feature, feature_id, itemid, agg, the plausible range (lo, hi and whether
    each end is kept), fahrenheit, round_digits and the normal band (normal_lo, normal_hi; NaN
    unless ``agg`` is ``farthest_from_normal``).
    """
    rows = []
    for s in manifest.specs:
        method = method_of(s)
        if method not in ("chart_aggregate", "lab_aggregate"):
            continue
        agg = s.aggregate
        if agg not in AGGREGATES:
            raise ManifestError(f"feature {s.name!r}: aggregate must be one of {list(AGGREGATES)} "
                                f"for {method}, got {agg!r}")
        normal = _normal_range(s) if agg == "farthest_from_normal" else (math.nan, math.nan)
        lo, hi = s.plausible_range if s.plausible_range else (-math.inf, math.inf)
        fahrenheit = set(int_list(s, "fahrenheit_itemids", s.source["fahrenheit_itemids"])
                         ) if "fahrenheit_itemids" in s.source else set()
        round_digits = s.source.get("round_digits")
        for itemid in int_list(s, "itemids", s.source.get("itemids")):
            if itemid in fahrenheit:
                f_lo, f_hi = s.source.get("fahrenheit_range", [None, None])
                if f_lo is None or f_hi is None:
                    raise ManifestError(f"feature {s.name!r}: source.fahrenheit_range "
                                        "[lo, hi] is required with fahrenheit_itemids")
                # mimic-code vitalsign.sql: strict bounds on the Fahrenheit value.
                row_range = (float(f_lo), float(f_hi), False, False)
            else:
                row_range = (lo, hi, *s.range_closed)
            rows.append({"method": method, "feature": s.name,
                         "feature_id": manifest.names.index(s.name), "itemid": itemid, "agg": agg,
                         "lo": row_range[0], "hi": row_range[1], "lo_closed": row_range[2],
                         "hi_closed": row_range[3], "fahrenheit": itemid in fahrenheit,
                         "round_digits": round_digits, "normal_lo": normal[0],
                         "normal_hi": normal[1]})
    cols = ["method", "feature", "feature_id", "itemid", "agg", "lo", "hi", "lo_closed",
            "hi_closed", "fahrenheit", "round_digits", "normal_lo", "normal_hi"]
    df = pd.DataFrame(rows, columns=cols)
    dup = df.duplicated(["method", "itemid"])
    if dup.any():
        raise ManifestError(f"item id(s) {df.loc[dup, 'itemid'].tolist()} are used by two "
                            "features; each item may feed one feature")
    return df.astype({"itemid": "int32", "feature_id": "int16", "lo": "float64",
                      "hi": "float64", "round_digits": "Int32",
                      "normal_lo": "float64", "normal_hi": "float64"})


def _normal_range(s: FeatureSpec) -> tuple[float, float]:
    # farthest_from_normal needs the band it measures the distance from
    band = s.source.get("normal_range")
    if not (isinstance(band, list) and len(band) == 2
            and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in band)
            and band[0] < band[1]):
        raise ManifestError(f"feature {s.name!r}: source.normal_range must be [lo, hi] with lo < hi "
                            f"for aggregate 'farthest_from_normal', got {band!r}")
    return float(band[0]), float(band[1])


def chart_itemids(manifest: FeatureManifest, items: pd.DataFrame
                   ) -> tuple[list[int], list[int]]:
    """(every chartevents item id to stage, the ones whose text ``value`` is read)."""
    ids = set(items.loc[items["method"] == "chart_aggregate", "itemid"].tolist())
    text: set[int] = set()
    for s in manifest.specs:
        m = method_of(s)
        if m in ("gcs", "ventilation"):
            src = s.source.get("itemids")
            if not isinstance(src, dict):
                raise ManifestError(f"feature {s.name!r}: source.itemids must map roles to "
                                    "item ids for method " + m)
            for role, v in src.items():
                ids.update(int_list(s, f"itemids.{role}", v))
            # GCS reads the text only of the verbal item ('No Response-ETT'); ventilation
            # classifies the text of all its items
            text.update([role_itemid(s, "verbal")] if m == "gcs" else
                        [i for r, v in src.items() for i in int_list(s, f"itemids.{r}", v)])
    return sorted(ids), sorted(text)


def role_itemid(s: FeatureSpec, role: str) -> int:
    """The item id of one role of ``source.itemids`` (``verbal``, ``o2_device``, ...)."""
    try:
        return int_list(s, f"itemids.{role}", s.source["itemids"][role])[0]
    except (KeyError, TypeError):
        raise ManifestError(f"feature {s.name!r}: source.itemids.{role} is required") from None



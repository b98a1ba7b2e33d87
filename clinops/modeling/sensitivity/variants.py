"""The sensitivity variants: one small function per design choice, frame -> rows, features, label.

A variant takes the task table (joined, for mortality, with the cohort's ``intime``,
``death_time`` and ``hospital_expire_flag``) and a :class:`VariantContext`, and returns a
:class:`Variant`: the training and test rows, the features and the label column. A variant whose
columns the table does not carry raises :class:`NotAvailable` naming the column; the table then
says "not available" for it rather than failing (the columns come from other steps: the split
rule's ``split_*``, the readmission definitions' ``label_*``, the features' ``proxy_*``).

Rows of the main analysis are ``in_analysis & split == 'train'`` / ``'test'`` (``in_analysis``
defaults to ``split in {train, test} & excluded_reason is null`` when the column is absent).

Examples
--------
>>> import pandas as pd
>>> frame = pd.DataFrame({"split": ["train", "test", "ambiguous"], "label": [0, 1, 0],
...                       "split_real_year": ["train", "test", "ambiguous"],
...                       "split_anchor_group": ["train", "test", "test"]})
>>> ctx = VariantContext(features=("age",))
>>> v = MORTALITY_VARIANTS["split_ambiguous_to_test"].build(frame, ctx)
>>> len(v.train), len(v.test)
(1, 2)
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import duckdb
import numpy as np
import pandas as pd

from clinops.data.mimic import install_macros
from clinops.tasks.temporal_split import analysis_rows

__all__ = ["NotAvailable", "Variant", "VariantContext", "VariantSpec", "MORTALITY_VARIANTS",
           "READMISSION_VARIANTS", "VARIANTS", "horizon_variant", "mortality_labels",
           "variants_for"]

#: The proxy columns of the at-admission variant (integer-coded, not in the manifest).
PROXY_COLUMNS = ("proxy_first_careunit", "proxy_admission_type")


class NotAvailable(Exception):
    """A variant's columns are not in this run's table; the message names the missing column."""


@dataclass(frozen=True)
class VariantContext:
    """What a variant needs besides the table: the main features and the label's window."""

    features: tuple[str, ...]
    window_hours: float = 24.0


@dataclass(frozen=True)
class Variant:
    """Rows, features and label of one sensitivity refit."""

    train: pd.DataFrame
    test: pd.DataFrame
    features: tuple[str, ...]
    label: str = "label"


@dataclass(frozen=True)
class VariantSpec:
    """A registered variant: what it changes (one line) and the function that builds it."""

    changed: str
    build: Callable[[pd.DataFrame, VariantContext], Variant]


def _require(frame: pd.DataFrame, *columns: str) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise NotAvailable(f"not available (column{'s' if len(missing) > 1 else ''} {', '.join(missing)} missing)")


def _split(frame: pd.DataFrame, keep: pd.Series, split: pd.Series, features, label="label") -> Variant:
    return Variant(train=frame[keep & split.eq("train")].reset_index(drop=True),
                   test=frame[keep & split.eq("test")].reset_index(drop=True), features=tuple(features), label=label)


def _main(frame: pd.DataFrame, ctx: VariantContext) -> Variant:
    return _split(frame, analysis_rows(frame), frame["split"], ctx.features)


# ------------------------------------------------------------------------------ mortality
def _without_dx_chapter(frame: pd.DataFrame, ctx: VariantContext) -> Variant:
    return _split(frame, analysis_rows(frame), frame["split"], [f for f in ctx.features if f != "dx_chapter"])


def _admission_proxy(frame: pd.DataFrame, ctx: VariantContext) -> Variant:
    _require(frame, *PROXY_COLUMNS)
    names = [f for f in ctx.features if f != "dx_chapter"] + list(PROXY_COLUMNS)
    return _split(frame, analysis_rows(frame), frame["split"], names)


def mortality_labels(frame: pd.DataFrame, *, window_hours: float, horizon_hours: float | None) -> np.ndarray:
    """The mortality label of each row under a horizon: the cohort SQL's own macro, run on the rows.

    ``clinops_mortality_label`` (``clinops/sql/macros.sql``) is the one statement of the label:
    death in ``(intime + window, intime + window + horizon]``; ``None`` = any in-hospital death
    (``hospital_expire_flag = 1``).

    Examples
    --------
    >>> t0 = pd.Timestamp("2150-01-01 00:00")
    >>> rows = pd.DataFrame({"intime": [t0] * 4, "hospital_expire_flag": [1, 1, 1, 0],
    ...     "death_time": [t0 + pd.Timedelta(hours=h) for h in (30, 80, 200)] + [pd.NaT]})
    >>> mortality_labels(rows, window_hours=24, horizon_hours=48).tolist()
    [1, 0, 0, 0]
    >>> mortality_labels(rows, window_hours=24, horizon_hours=None).tolist()
    [1, 1, 1, 0]
    """
    _require(frame, "intime", "death_time", "hospital_expire_flag")
    rows = pd.DataFrame({"row": np.arange(len(frame)), "intime": pd.to_datetime(frame["intime"]).to_numpy(),
                         "death_time": pd.to_datetime(frame["death_time"]).to_numpy(),
                         "hospital_expire_flag": pd.to_numeric(frame["hospital_expire_flag"]).to_numpy()})
    con = duckdb.connect()
    try:
        install_macros(con)
        con.register("clinops_sensitivity_rows", rows)
        out = con.execute(
            "SELECT clinops_mortality_label(intime, death_time, hospital_expire_flag, ?, ?) AS label "
            "FROM clinops_sensitivity_rows ORDER BY row", [float(window_hours), horizon_hours]).df()
    finally:
        con.close()
    return out["label"].to_numpy(dtype=int)


def _horizon(hours: float | None) -> Callable[[pd.DataFrame, VariantContext], Variant]:
    def build(frame: pd.DataFrame, ctx: VariantContext) -> Variant:
        relabelled = frame.assign(label_horizon=mortality_labels(frame, window_hours=ctx.window_hours,
                                                                 horizon_hours=hours))
        return _split(relabelled, analysis_rows(frame), frame["split"], ctx.features, label="label_horizon")
    return build


def horizon_variant(hours: float | None, window_hours: float = 24.0) -> VariantSpec:
    """The label-horizon variant: death within ``hours`` after the window, or any in-hospital death."""
    changed = ("label: any in-hospital death" if hours is None else
               f"label: death in ({window_hours:g} h, {window_hours + hours:g} h] after intime ({hours:g} h horizon)")
    return VariantSpec(changed, _horizon(hours))


def _split_rule(column: str, ambiguous_to: str | None) -> Callable[[pd.DataFrame, VariantContext], Variant]:
    def build(frame: pd.DataFrame, ctx: VariantContext) -> Variant:
        _require(frame, column)
        split = frame[column].astype(object)
        if ambiguous_to is not None:
            split = split.where(~split.eq("ambiguous"), ambiguous_to)
        return _split(frame, split.isin(["train", "test"]), split, ctx.features)
    return build


MORTALITY_VARIANTS: dict[str, VariantSpec] = {
    "main": VariantSpec("none: the paper-faithful design, refitted the same way as every row", _main),
    "without_dx_chapter": VariantSpec("features: dx_chapter (principal diagnosis, coded after discharge) left out",
                                      _without_dx_chapter),
    "admission_proxy": VariantSpec("features: dx_chapter replaced by the first care unit and the admission type "
                                   "(known at admission)", _admission_proxy),
    "split_anchor_group": VariantSpec("split: by the patient's anchor_year_group (the old rule)",
                                      _split_rule("split_anchor_group", None)),
    "split_real_year": VariantSpec("split: by the stay's real-year interval, ambiguous stays excluded",
                                   _split_rule("split_real_year", None)),
    "split_ambiguous_to_train": VariantSpec("split: by the stay's real year, ambiguous stays to train",
                                            _split_rule("split_real_year", "train")),
    "split_ambiguous_to_test": VariantSpec("split: by the stay's real year, ambiguous stays to test",
                                           _split_rule("split_real_year", "test")),
}


# ------------------------------------------------------------------------------ readmission
def _label_column(column: str) -> Callable[[pd.DataFrame, VariantContext], Variant]:
    def build(frame: pd.DataFrame, ctx: VariantContext) -> Variant:
        _require(frame, column)
        return _split(frame, analysis_rows(frame), frame["split"], ctx.features, label=column)
    return build


def _excluded_only_for(frame: pd.DataFrame, flag: str, other: str) -> pd.Series:
    """Rows outside the main analysis only because of ``flag`` (a split verdict of train/test)."""
    reason = frame["excluded_reason"].notna() if "excluded_reason" in frame.columns else ~analysis_rows(frame)
    return (~analysis_rows(frame) & frame["split"].isin(["train", "test"]) & reason
            & frame[flag].fillna(0).astype(int).eq(1) & frame[other].fillna(0).astype(int).eq(0))


def _deaths(rule: str) -> Callable[[pd.DataFrame, VariantContext], Variant]:
    def build(frame: pd.DataFrame, ctx: VariantContext) -> Variant:
        _require(frame, "died_without_readmission", "followup_censored")
        died = frame["died_without_readmission"].fillna(0).astype(int)
        main = analysis_rows(frame)
        if rule == "exclude":
            return _split(frame, main & died.eq(0), frame["split"], ctx.features)
        keep = main | _excluded_only_for(frame, "died_without_readmission", "followup_censored")
        if rule == "label_zero":
            return _split(frame.assign(label_deaths=frame["label"].where(died.eq(0), 0)), keep, frame["split"],
                          ctx.features, label="label_deaths")
        composite = np.maximum(frame["label"].fillna(0).astype(int), died)
        return _split(frame.assign(label_deaths=composite), keep, frame["split"], ctx.features, label="label_deaths")
    return build


def _censored(rule: str) -> Callable[[pd.DataFrame, VariantContext], Variant]:
    def build(frame: pd.DataFrame, ctx: VariantContext) -> Variant:
        _require(frame, "followup_censored", "died_without_readmission")
        censored = frame["followup_censored"].fillna(0).astype(int)
        main = analysis_rows(frame)
        if rule == "exclude":
            return _split(frame, main & censored.eq(0), frame["split"], ctx.features)
        keep = main | _excluded_only_for(frame, "followup_censored", "died_without_readmission")
        return _split(frame, keep, frame["split"], ctx.features)
    return build


READMISSION_VARIANTS: dict[str, VariantSpec] = {
    "main": VariantSpec("none: the configured definition, refitted the same way as every row", _main),
    "planned_cms": VariantSpec("label: first readmission, planned ones by the CMS algorithm not counted",
                               _label_column("label_cms")),
    "planned_admission_type": VariantSpec("label: first readmission, planned ones by admission_type not counted",
                                          _label_column("label_admission_type")),
    "deaths_excluded": VariantSpec("competing deaths: deaths within the horizon without readmission excluded",
                                   _deaths("exclude")),
    "deaths_label_zero": VariantSpec("competing deaths: kept, labelled 0 (not readmitted)", _deaths("label_zero")),
    "deaths_composite": VariantSpec("competing deaths: kept, labelled 1 (readmission or death)",
                                    _deaths("composite")),
    "censored_excluded": VariantSpec("follow-up censored (discharged near the data's end): excluded",
                                     _censored("exclude")),
    "censored_kept": VariantSpec("follow-up censored (discharged near the data's end): kept", _censored("kept")),
}

#: The registry per task name (the mortality horizons are added by :func:`variants_for`).
VARIANTS: dict[str, dict[str, VariantSpec]] = {"mortality": MORTALITY_VARIANTS, "readmission": READMISSION_VARIANTS}


def variants_for(task: str, *, horizons=(), window_hours: float = 24.0) -> dict[str, VariantSpec]:
    """A task's variants in table order; for mortality one label-horizon variant per horizon.

    Examples
    --------
    >>> list(variants_for("mortality", horizons=[24, None]))[3:5]
    ['horizon_24h', 'horizon_any']
    >>> variants_for("los")
    Traceback (most recent call last):
    ...
    ValueError: task: no sensitivity variants for 'los' (known: mortality, readmission)
    """
    if task not in VARIANTS:
        raise ValueError(f"task: no sensitivity variants for {task!r} (known: {', '.join(VARIANTS)})")
    specs = dict(VARIANTS[task])
    if task != "mortality":
        return specs
    names = list(specs)
    cut = names.index("admission_proxy") + 1
    hz = {("horizon_any" if h is None else f"horizon_{h:g}h"): horizon_variant(h, window_hours) for h in horizons}
    return {**{k: specs[k] for k in names[:cut]}, **hz, **{k: specs[k] for k in names[cut:]}}

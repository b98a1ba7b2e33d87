"""Report writing: tables as CSV + Markdown, and the generated paper-comparison table.

Every table carries its data source in its header, so a table computed on synthetic data says so
wherever it is read. Stages record the numbers they reproduce with :func:`record_values`; the last
workflow step joins them with the paper's own values (``clinops/paper_values.yaml``, the only
hand-typed numbers in the project) into ``reports/paper_comparison.md``.
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Mapping

import pandas as pd
import yaml

PAPER_VALUES_PATH = Path(__file__).with_name("paper_values.yaml")


def _fmt(value: Any, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int) or (isinstance(value, float) and value.is_integer() and abs(value) >= 100):
        return f"{int(value):,}"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def to_markdown(df: pd.DataFrame, *, digits: int = 3, index: bool = False) -> str:
    """A GitHub-flavoured Markdown table (no tabulate dependency at run time)."""
    frame = df.reset_index() if index else df
    cols = [str(c) for c in frame.columns]
    lines = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    for row in frame.itertuples(index=False):
        lines.append("| " + " | ".join(_fmt(v, digits) for v in row) + " |")
    return "\n".join(lines)


def write_table(df: pd.DataFrame, path_stem: str | Path, *, title: str, data_label: str,
                note: str | None = None, digits: int = 3, index: bool = False) -> tuple[Path, Path]:
    """Write ``<stem>.csv`` and ``<stem>.md``; the Markdown names the data source.

    Returns the two paths. The CSV keeps full precision; the Markdown rounds to ``digits``.
    """
    stem = Path(path_stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    csv_path, md_path = stem.with_suffix(".csv"), stem.with_suffix(".md")
    df.to_csv(csv_path, index=index)
    parts = [f"# {title}", "", f"Data: **{data_label}**.", ""]
    if note:
        parts += [note, ""]
    parts.append(to_markdown(df, digits=digits, index=index))
    md_path.write_text("\n".join(parts) + "\n")
    return csv_path, md_path


def _jsonable(value: Any) -> Any:
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def record_values(build_dir: str | Path, stage: str, values: Mapping[str, Any]) -> Path:
    """Record the numbers a stage reproduces, keyed by the ids in ``paper_values.yaml``."""
    known = {row["id"] for row in paper_values()}
    unknown = sorted(set(values) - known)
    if unknown:
        raise KeyError(f"record_values({stage!r}): ids not in paper_values.yaml: {unknown}")
    path = Path(build_dir) / "comparison" / f"{stage}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({k: _jsonable(v) for k, v in values.items()}, indent=1, sort_keys=True))
    return path


def paper_values() -> list[dict]:
    return yaml.safe_load(PAPER_VALUES_PATH.read_text())


def holds_by_construction(item: Mapping[str, Any], synthetic_scale: float | None) -> bool:
    """Whether a paper number agrees by construction of the synthetic generator in this run.

    The generator is calibrated to the paper's cohort statistics (``calibrated: true`` in
    ``paper_values.yaml``): proportions at every scale, counts only at paper scale (1.0).
    ``synthetic_scale`` is the scale in the generator's ``SYNTHETIC.json`` as the data step
    recorded it (from the generated directory, or from the provenance ``clinops load-postgres``
    stored in the database), None for real or user data (nothing holds by construction).

    Examples
    --------
    >>> count = {"calibrated": True, "kind": "count"}
    >>> holds_by_construction(count, 1.0), holds_by_construction(count, 0.05), holds_by_construction(count, None)
    (True, False, False)
    """
    if synthetic_scale is None or not item.get("calibrated"):
        return False
    return item.get("kind") != "count" or float(synthetic_scale) == 1.0


def paper_comparison(build_dir: str | Path, *, data_label: str, synthetic_scale: float | None = None) -> pd.DataFrame:
    """One row per paper number: paper value, this run's value, difference, data source, and
    whether the number holds by construction of the synthetic data (:func:`holds_by_construction`)."""
    recorded: dict[str, Any] = {}
    for path in sorted((Path(build_dir) / "comparison").glob("*.json")):
        recorded.update(json.loads(path.read_text()))
    rows = []
    for item in paper_values():
        ours = recorded.get(item["id"])
        diff = None
        if isinstance(ours, (int, float)) and isinstance(item["paper"], (int, float)):
            diff = ours - item["paper"]
        if item.get("kind") == "count" and isinstance(ours, float) and ours.is_integer():
            ours, diff = int(ours), int(diff)
        short = "synthetic" if "synthetic" in data_label.lower() else data_label
        rows.append({"quantity": item["quantity"], "paper section": item["section"],
                     "paper": item["paper"], "this run": ours, "difference": diff,
                     "data": short if ours is not None else "not computed",
                     "holds by construction": "yes" if holds_by_construction(item, synthetic_scale) else ""})
    # object dtype keeps counts as integers in the Markdown (no "5.000" for a tree depth)
    return pd.DataFrame(rows, dtype=object)


def write_paper_comparison(build_dir: str | Path, reports_dir: str | Path, *, data_label: str,
                           source: str, synthetic_scale: float | None = None) -> Path:
    """Write ``paper_comparison.{csv,md}``; for a user's own cohort, say why there is none."""
    reports_dir = Path(reports_dir)
    reports_dir.mkdir(parents=True, exist_ok=True)
    if source == "table":
        path = reports_dir / "paper_comparison.md"
        path.write_text("# Paper comparison\n\nNot produced: this run used a user-provided cohort "
                        "table, and the paper reports nothing about it to compare with.\n")
        return path
    df = paper_comparison(build_dir, data_label=data_label, synthetic_scale=synthetic_scale)
    note = ("Paper values are quoted from the paper (section given); 'this run' values are "
            "computed by the workflow. Model metrics are not targets: on synthetic data they "
            "describe the generator's latent risk model, not real patients.")
    if source == "synthetic":
        note += (" The cohort counts, prevalence, missingness and ventilation prevalence are the "
                 "statistics the synthetic generator is calibrated to, so their agreement is by "
                 "construction.")
    _, md = write_table(df, reports_dir / "paper_comparison", title="Paper comparison",
                        data_label=data_label, note=note)
    return md


def _implied_ppv(sens: float, spec: float, prevalence: float) -> float:
    """PPV from Bayes' rule: sens * p / (sens * p + (1 - spec) * (1 - p))."""
    tp, fp = sens * prevalence, (1 - spec) * (1 - prevalence)
    return tp / (tp + fp)


def _implied_prevalence(sens: float, spec: float, ppv: float) -> float:
    """The prevalence at which (sens, spec) give this PPV (Bayes' rule solved for p)."""
    return ppv * (1 - spec) / (sens * (1 - ppv) + ppv * (1 - spec))


def paper_consistency() -> pd.DataFrame:
    """Arithmetic checks of the paper's own numbers against each other (no data involved).

    Sensitivity, specificity, PPV and prevalence are tied by Bayes' rule, so three of them fix
    the fourth; counts and rates are tied by division. A check fails when the paper's stated value
    differs from the value its other numbers imply by more than rounding allows (0.005).
    """
    v = {row["id"]: row["paper"] for row in paper_values()}
    rows = []

    def add(check: str, stated: float, implied: float, how: str) -> None:
        rows.append({"check": check, "paper states": stated, "implied by the paper's other numbers": implied,
                     "how": how, "consistent": abs(stated - implied) <= 0.005})

    add("mortality prevalence", v["prevalence"], v["positives_n"] / v["cohort_n"], "2,694 / 23,841")
    add("train + test = cohort", v["cohort_n"], v["cohort_train_n"] + v["cohort_test_n"], "16,751 + 7,090")
    add("test PPV at 0.40 (overall)", v["test_ppv"],
        _implied_ppv(v["test_sensitivity"], v["test_specificity"], v["prevalence"]),
        "Bayes: sensitivity 0.781, specificity 0.833, prevalence 0.113")
    rows.append({"check": "prevalence that would give the stated overall PPV", "paper states": v["prevalence"],
                 "implied by the paper's other numbers": _implied_prevalence(v["test_sensitivity"],
                                                                             v["test_specificity"], v["test_ppv"]),
                 "how": "Bayes solved for prevalence", "consistent": False})
    add("readmission rate", v["readm_prevalence"], v["readm_positives_n"] / v["readm_cohort_n"], "4,681 / 31,847")
    add("readmission PPV", v["readm_ppv"],
        _implied_ppv(v["readm_sensitivity"], v["readm_specificity"], v["readm_prevalence"]),
        "Bayes: sensitivity 0.712, specificity 0.801, prevalence 0.147")
    add("drift relative AUROC drop", v["drift_relative_drop"],
        (v["drift_auroc_before"] - v["drift_auroc_after"]) / v["drift_auroc_before"], "(0.847 - 0.793) / 0.847")
    add("largest AUROC gap (Table 2)", v["max_auroc_gap"], v["t2_auroc_65_79"] - v["t2_auroc_18_44"], "0.853 - 0.821")
    add("PPV difference by sex", v["ppd_sex"], v["t2_ppv_male"] - v["t2_ppv_female"], "0.624 - 0.597")
    ages = ["18_44", "45_64", "65_79", "80plus"]
    add("PPV difference by age group", v["ppd_age"],
        max(v[f"t2_ppv_{a}"] for a in ages) - min(v[f"t2_ppv_{a}"] for a in ages), "max - min of Table 2 PPVs")
    add("equalized-odds difference by age (TPR part)", v["eod_age"],
        max(v[f"t2_sens_{a}"] for a in ages) - min(v[f"t2_sens_{a}"] for a in ages), "max - min of Table 2 sensitivities")
    return pd.DataFrame(rows)


def write_paper_consistency(reports_dir: str | Path) -> Path:
    """``paper_consistency.md``: where the paper's numbers contradict each other, with the arithmetic."""
    df = paper_consistency()
    note = ("Only the paper's own numbers enter these checks. Sensitivity, specificity and prevalence "
            "fix the PPV (Bayes' rule): the paper's PPVs (0.612 for mortality, 0.431 for readmission) "
            "are higher than its own sensitivities, specificities and prevalences allow, so at least one "
            "of those numbers cannot be what the paper's pipeline produced. Our reports compute all four "
            "from the same predictions, so they are consistent by construction.")
    _, md = write_table(df, Path(reports_dir) / "paper_consistency", title="Consistency of the paper's numbers",
                        data_label="the paper's published values (no data)", note=note)
    return md

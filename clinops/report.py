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

from clinops.data.synth.calibration import TOLERANCE

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
    ``paper_values.yaml``: cohort counts, prevalence, missingness, ventilation prevalence,
    readmission counts): proportions at every scale, counts only at paper scale (1.0).
    ``synthetic_scale`` is the scale in the generator's ``SYNTHETIC.json`` as the data step
    recorded it (from the generated directory, or from the provenance ``clinops load-postgres``
    stored in the database), None for real or user data (nothing holds by construction).

    Examples
    --------
    >>> count = {"calibrated": True, "kind": "count"}
    >>> holds_by_construction(count, 1.0), holds_by_construction(count, 0.05), holds_by_construction(count, None)
    (True, False, False)
    >>> holds_by_construction({"kind": "proportion", "calibrated": True}, 0.05)
    True
    """
    if synthetic_scale is None or not item.get("calibrated"):
        return False
    return item.get("kind") != "count" or float(synthetic_scale) == 1.0


def construction_note(item: Mapping[str, Any], synthetic_scale: float | None) -> str:
    """Why a row holds by construction, or what the generator aimed at for a scaled count.

    Examples
    --------
    >>> construction_note({"kind": "count", "calibrated": True, "paper": 23841}, 0.05)
    'generator target scaled: 1,192 (paper x 0.05)'
    >>> construction_note({"kind": "proportion", "calibrated": True, "paper": 0.113}, 0.05)
    'generator target'
    >>> construction_note({"kind": "metric", "paper": 0.847}, 1.0)
    ''
    """
    if synthetic_scale is None or not item.get("calibrated"):
        return ""
    if holds_by_construction(item, synthetic_scale):
        return "generator target"
    return f"generator target scaled: {round(item['paper'] * synthetic_scale):,} (paper x {synthetic_scale:g})"


def _construction_mark(item: Mapping[str, Any], ours: Any, synthetic_scale: float | None) -> str:
    """``yes`` when a generator target agrees with this run within the generator's tolerance
    (:data:`clinops.data.synth.calibration.TOLERANCE`: counts ``count``, 2 % of the paper value;
    proportions ``proportion``, 2 points); when the run's own definitions (e.g. the real-year
    split, the lab pre-window) move a target away, say so instead of claiming agreement.

    Every proportion gets the 2 points, the mortality prevalence and the readmission rate
    included, which the generator's own check (:func:`clinops.data.synth.calibration.target_table`)
    holds to 0.5 and 1 point plus binomial noise at small scales: a mark says whether this run's
    definitions moved a figure, not whether the data are calibrated (the calibration table
    under ``reports/synthetic/`` says that), and without the noise allowance the tighter
    tolerances would call quick-scale sampling noise a definition change.

    Examples
    --------
    >>> target = {"kind": "count", "calibrated": True, "paper": 23841}
    >>> _construction_mark(target, 23841, 1.0), _construction_mark(target, 22854, 1.0)
    ('yes', "no: this run's definitions move it")
    >>> _construction_mark({"kind": "metric", "paper": 0.847}, 0.85, 1.0)
    ''
    """
    if not holds_by_construction(item, synthetic_scale):
        return ""
    paper = item["paper"]
    if not isinstance(ours, (int, float)) or not isinstance(paper, (int, float)):
        return "yes"
    tolerance = TOLERANCE["count"] * abs(paper) if item.get("kind") == "count" else TOLERANCE["proportion"]
    return "yes" if abs(ours - paper) <= tolerance else "no: this run's definitions move it"


def _relative_drop(before: Any, after: Any) -> float | None:
    if isinstance(before, (int, float)) and isinstance(after, (int, float)) and before:
        return (before - after) / before
    return None


def paper_comparison(build_dir: str | Path, *, data_label: str, synthetic_scale: float | None = None) -> pd.DataFrame:
    """One row per paper number: paper value, this run's value, difference, data source, and
    whether the number holds by construction of the synthetic data (:func:`holds_by_construction`,
    with :func:`construction_note` saying why).

    A value another stage records by contract (``recorded_by`` in ``paper_values.yaml``) that is
    absent reads "not recorded"; ``relative_drop_of: [before, after]`` rows are computed here.
    """
    recorded: dict[str, Any] = {}
    by_stage: dict[str, dict[str, Any]] = {}
    for path in sorted((Path(build_dir) / "comparison").glob("*.json")):
        by_stage[path.stem] = json.loads(path.read_text())
        recorded.update(by_stage[path.stem])
    rows = []
    short = "synthetic" if "synthetic" in data_label.lower() else data_label
    for item in paper_values():
        if "relative_drop_of" in item:
            before, after = (recorded.get(k) for k in item["relative_drop_of"])
            ours = _relative_drop(before, after)
        elif item.get("recorded_by"):
            # a contract value of the primary (paper) task: the secondary task's stage of the same
            # name may record the same id, and must not overwrite it
            ours = by_stage.get(f"{item['recorded_by']}_primary", {}).get(item["id"])
        else:
            ours = recorded.get(item["id"])
        diff = None
        if isinstance(ours, (int, float)) and isinstance(item["paper"], (int, float)):
            diff = ours - item["paper"]
        if item.get("kind") == "count" and isinstance(ours, float) and ours.is_integer():
            ours, diff = int(ours), (int(diff) if diff is not None else None)
        missing = "not recorded" if item.get("recorded_by") or "relative_drop_of" in item else "not computed"
        rows.append({"quantity": item["quantity"], "paper section": item["section"],
                     "paper": item["paper"], "this run": ours, "difference": diff,
                     "data": short if ours is not None else missing,
                     "holds by construction": _construction_mark(item, ours, synthetic_scale),
                     "construction": construction_note(item, synthetic_scale)})
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
    note += (" Fairness gaps are compared with the paper's bootstrap 95% CIs (sections 4.6 and 4.9); "
             "the paper gives no CI for the Table 2 cells. The drift scenario is reported twice: the "
             "paper's comparison (whole test set before, the 2,000 shifted rows after) and the effect "
             "of the shift within the same 2,000 rows. Sensitivity and specificity at 0.40 are given "
             "on the calibrated score and on the raw (uncalibrated, class-weighted) score, since the "
             "paper does not say which one it thresholded. 'not recorded': the stage that should "
             "record the value did not.")
    if source == "synthetic":
        note += (" Rows marked 'holds by construction' are the statistics the synthetic generator is "
                 "calibrated to (cohort counts, prevalence, missingness, ventilation prevalence, "
                 "readmission counts): their agreement with the paper is by construction, not a finding. "
                 "Below paper scale the counts aim at the paper's count times the scale (column "
                 "'construction').")
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


#: MIMIC-IV v2.2 row counts (mimic-code ``validate.sql``, commit 5dc61171; MIMIC_IV_REFERENCE.md
#: section 6), against which the paper's description of the database is checked.
MIMIC_IV_V22_ICU_STAYS = 73_181
MIMIC_IV_V22_ADMISSIONS = 431_231


def paper_consistency() -> pd.DataFrame:
    """Checks of the paper's own numbers against each other, and of its statements against its
    own references and the MIMIC-IV v2.2 documentation (no data involved).

    Sensitivity, specificity, PPV and prevalence are tied by Bayes' rule, so three of them fix
    the fourth; counts and rates are tied by division. A numeric check fails when the paper's
    stated value differs from the value its other numbers imply by more than rounding allows
    (0.005). The last rows set a statement of the paper against the evidence named in ``how /
    evidence``.

    Examples
    --------
    >>> df = paper_consistency().set_index("check")
    >>> bool(df.loc["readmission rate", "consistent"]), bool(df.loc["test PPV at 0.40 (overall)", "consistent"])
    (True, False)
    """
    v = {row["id"]: row["paper"] for row in paper_values()}
    rows = []

    def add(check: str, stated: Any, against: Any, how: str, consistent: bool | None = None) -> None:
        if consistent is None:
            consistent = abs(stated - against) <= 0.005
        rows.append({"check": check, "paper states": stated, "against": against,
                     "how / evidence": how, "consistent": bool(consistent)})

    add("mortality prevalence", v["prevalence"], v["positives_n"] / v["cohort_n"], "2,694 / 23,841")
    add("train + test = cohort", v["cohort_n"], v["cohort_train_n"] + v["cohort_test_n"], "16,751 + 7,090")
    add("test PPV at 0.40 (overall)", v["test_ppv"],
        _implied_ppv(v["test_sensitivity"], v["test_specificity"], v["prevalence"]),
        "Bayes: sensitivity 0.781, specificity 0.833, prevalence 0.113")
    add("prevalence that would give the stated overall PPV", v["prevalence"],
        _implied_prevalence(v["test_sensitivity"], v["test_specificity"], v["test_ppv"]),
        "Bayes solved for prevalence", consistent=False)
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
    # Statements against the database's documentation and the paper's own references.
    add("MIMIC-IV v2.2 ICU stays (4.1: 'over 40,000')", 40_000, MIMIC_IV_V22_ICU_STAYS,
        "icustays rows of v2.2 (mimic-code validate.sql): 'over 40,000' is a lower bound 45 % below the "
        "count; v2.0 had 76,943", consistent=False)
    add("MIMIC-IV v2.2 hospital admissions (4.1: 'approximately 190,000')", 190_000, MIMIC_IV_V22_ADMISSIONS,
        "admissions rows of v2.2 (mimic-code validate.sql); v2.0 had 454,324", consistent=False)
    add("readmission has 'the higher class imbalance' (4.9)", v["readm_prevalence"], v["prevalence"],
        "4.9 explains the lower readmission PPV by 'the higher class imbalance', but 14.7 % positives "
        "(4.9) is less imbalanced than the mortality task's 11.3 % (4.2)",
        consistent=v["readm_prevalence"] < v["prevalence"])
    add("calibration method (4.5)", "isotonic regression [13]", "[13] Platt 1999",
        "reference 13 is Platt's sigmoid scaling, a different method from isotonic regression "
        "(Zadrozny and Elkan 2002); this project fits isotonic regression (clinops.uncertainty.calibration)",
        consistent=False)
    add("GCS missing 'attributable predominantly to sedated patients' (4.4)", v["missing_gcs"],
        "mimic-code gcs.sql: verbal 'No Response-ETT' -> GCS 15",
        "mimic-code charts a sedated or intubated patient's verbal score as 'No Response-ETT' and sets the "
        "total to 15 (gcs_unable = 1), so sedation does not make GCS missing; a missing GCS is a stay with "
        "no GCS row in the window", consistent=False)
    return pd.DataFrame(rows, dtype=object)


def write_paper_consistency(reports_dir: str | Path) -> Path:
    """``paper_consistency.md``: where the paper's numbers contradict each other, with the arithmetic."""
    df = paper_consistency()
    note = ("The first rows use only the paper's own numbers. Sensitivity, specificity and prevalence "
            "fix the PPV (Bayes' rule): the paper's PPVs (0.612 for mortality, 0.431 for readmission) "
            "are higher than its own sensitivities, specificities and prevalences allow, so at least one "
            "of those numbers cannot be what the paper's pipeline produced. Our reports compute all four "
            "from the same predictions, so they are consistent by construction. The last rows set the "
            "paper's statements against the MIMIC-IV v2.2 row counts (mimic-code validate.sql), its own "
            "reference list and mimic-code's GCS rule.")
    _, md = write_table(df, Path(reports_dir) / "paper_consistency", title="Consistency of the paper's numbers",
                        data_label="the paper's published values and the MIMIC-IV v2.2 documentation (no data)", note=note)
    return md

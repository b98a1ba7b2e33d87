"""Sensitivity models (issue 15): labels per horizon, rows per split rule and readmission definition,
the refit's known answer, and the stage writing both tables. Hand-made MIMIC-shaped frames only."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from clinops.config import load_params
from clinops.features import FeatureManifest
from clinops.modeling import sensitivity as S
from clinops.pipeline import cli as pipeline_cli
from clinops.pipeline.sensitivity import sensitivity_frame

from tests.fixtures.params import tiny_params

T0 = pd.Timestamp("2150-03-01 08:00")
TOY = FeatureManifest.from_dict({"name": "toy", "features": [
    {"name": "x", "kind": "numeric", "unit": "-", "aggregate": "max", "source": {"method": "toy"},
     "plausible_range": [-100, 100], "justification": "separates the classes"},
    {"name": "dx_chapter", "kind": "categorical", "unit": "chapter", "aggregate": "first", "source": {"method": "toy"},
     "categories": ["circulatory", "respiratory"], "justification": "billing diagnosis"}]})
CONFIG = {"n_estimators": 10, "max_depth": 2, "learning_rate": 0.3, "subsample": 1.0, "colsample_bytree": 1.0,
          "min_child_weight": 1}
CTX = S.VariantContext(features=("x", "dx_chapter"), window_hours=24)


def deaths_frame() -> pd.DataFrame:
    """Six ICU stays: deaths at 20 h (in the window), 30 h, 72 h (the 48 h edge), 90 h, 200 h; one survivor."""
    hours = [20, 30, 72, 90, 200, None]
    return pd.DataFrame({
        "id": range(30000001, 30000007), "intime": [T0] * 6,
        "death_time": [T0 + pd.Timedelta(hours=h) if h is not None else pd.NaT for h in hours],
        "hospital_expire_flag": [1, 1, 1, 1, 1, 0], "split": ["train", "test"] * 3,
        "x": [1.0, 2.0, 3.0, 4.0, 5.0, 6.0], "dx_chapter": ["circulatory"] * 6, "label": [0, 1, 1, 0, 0, 0]})


@pytest.mark.parametrize("horizon, expected", [
    (24, [0, 1, 0, 0, 0, 0]),      # (24 h, 48 h]
    (48, [0, 1, 1, 0, 0, 0]),      # (24 h, 72 h]: 72 h is inside (the right edge is closed)
    (72, [0, 1, 1, 1, 0, 0]),      # (24 h, 96 h]
    (None, [1, 1, 1, 1, 1, 0]),    # any in-hospital death (a death inside the window counts too)
])
def test_labels_per_horizon_from_hand_made_death_times(horizon, expected):
    assert S.mortality_labels(deaths_frame(), window_hours=24, horizon_hours=horizon).tolist() == expected


def test_horizon_variant_relabels_the_same_rows():
    frame = deaths_frame()
    v = S.variants_for("mortality", horizons=[72])["horizon_72h"].build(frame, CTX)
    assert v.train[v.label].tolist() == [0, 1, 0] and v.test[v.label].tolist() == [1, 1, 0]
    assert list(v.features) == ["x", "dx_chapter"]


def split_frame() -> pd.DataFrame:
    return pd.DataFrame({"subject_id": [1, 2, 3, 4, 5, 6],
                         "split_anchor_group": ["train", "train", "train", "test", "test", None],
                         "split_real_year": ["train", "ambiguous", "test", "test", "ambiguous", "ambiguous"],
                         "split": ["train", "ambiguous", "test", "test", "ambiguous", "ambiguous"],
                         "in_analysis": [True, False, True, True, False, False], "label": [0, 1, 0, 1, 0, 1]})


@pytest.mark.parametrize("variant, train, test", [
    ("main", [1], [3, 4]),
    ("split_anchor_group", [1, 2, 3], [4, 5]),
    ("split_real_year", [1], [3, 4]),
    ("split_ambiguous_to_train", [1, 2, 5, 6], [3, 4]),
    ("split_ambiguous_to_test", [1], [2, 3, 4, 5, 6]),
])
def test_rows_selected_per_split_rule(variant, train, test):
    v = S.MORTALITY_VARIANTS[variant].build(split_frame(), CTX)
    assert v.train["subject_id"].tolist() == train and v.test["subject_id"].tolist() == test


def test_dx_chapter_variants_change_only_the_features():
    frame = split_frame().assign(x=1.0, dx_chapter="circulatory")
    assert S.MORTALITY_VARIANTS["without_dx_chapter"].build(frame, CTX).features == ("x",)
    with pytest.raises(S.NotAvailable, match=r"columns proxy_first_careunit, proxy_admission_type missing"):
        S.MORTALITY_VARIANTS["admission_proxy"].build(frame, CTX)
    proxied = frame.assign(proxy_first_careunit=[1, 2, 1, 2, 1, 2], proxy_admission_type=3)
    assert S.MORTALITY_VARIANTS["admission_proxy"].build(proxied, CTX).features == (
        "x", "proxy_first_careunit", "proxy_admission_type")


def readmission_frame() -> pd.DataFrame:
    """Eight index admissions: readmitted, not, a death without readmission, a censored discharge,
    an ambiguous split, and one excluded for another reason."""
    return pd.DataFrame({
        "subject_id": [1, 1, 2, 3, 4, 5, 6, 7],
        "split": ["train", "test", "train", "test", "test", "ambiguous", "train", "test"],
        "label": [1, 0, 0, 0, 1, 0, 0, 1],
        "label_cms": [1, 0, 0, 0, 0, 0, 0, 1], "label_admission_type": [0, 0, 0, 0, 1, 0, 0, 1],
        "died_without_readmission": [0, 0, 1, 1, 0, 0, 0, 0], "followup_censored": [0, 0, 0, 0, 1, 0, 0, 0],
        "excluded_reason": [None, None, "death_without_readmission", "death_without_readmission",
                            "censored_followup", None, "other", None]})


@pytest.mark.parametrize("variant, rows, label", [
    ("main", [0, 1, 7], [1, 0, 1]),
    ("planned_cms", [0, 1, 7], [1, 0, 1]),
    ("planned_admission_type", [0, 1, 7], [0, 0, 1]),
    ("deaths_excluded", [0, 1, 7], [1, 0, 1]),
    ("deaths_label_zero", [0, 1, 2, 3, 7], [1, 0, 0, 0, 1]),
    ("deaths_composite", [0, 1, 2, 3, 7], [1, 0, 1, 1, 1]),
    ("censored_excluded", [0, 1, 7], [1, 0, 1]),
    ("censored_kept", [0, 1, 4, 7], [1, 0, 1, 1]),
])
def test_readmission_definitions_select_rows_and_labels(variant, rows, label):
    frame = readmission_frame().assign(row=range(8))
    v = S.READMISSION_VARIANTS[variant].build(frame, CTX)
    both = pd.concat([v.train, v.test]).sort_values("row")
    assert both["row"].tolist() == rows and both[v.label].tolist() == label


def test_a_missing_definition_column_is_named():
    with pytest.raises(S.NotAvailable, match=r"^not available \(column label_cms missing\)$"):
        S.READMISSION_VARIANTS["planned_cms"].build(readmission_frame().drop(columns="label_cms"), CTX)


def toy_rows(n: int = 40, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    label = np.tile([0, 1], n // 2)
    return pd.DataFrame({"x": np.where(label == 1, 5.0, -5.0) + rng.uniform(-1, 1, n),
                         "dx_chapter": rng.choice(["circulatory", "respiratory", None], n), "label": label})


def test_refit_on_a_separable_problem_has_auroc_one():
    out = S.refit_and_evaluate(toy_rows(seed=1), toy_rows(seed=2), TOY, ["x", "dx_chapter"], CONFIG, seed=3, n_boot=50)
    assert out["auroc"] == 1.0 and out["auroc_lo"] == 1.0 and out["auprc"] == 1.0
    assert (out["n_train"], out["n_test"], out["prevalence_test"]) == (40, 40, 0.5)
    noise = toy_rows(seed=1).assign(x=0.0)  # no information: the score is constant, AUROC 0.5
    assert S.refit_and_evaluate(noise, noise, TOY, ["x"], CONFIG, seed=3, n_boot=20)["auroc"] == 0.5


def test_refit_takes_a_proxy_outside_the_manifest_as_a_category():
    rows = toy_rows().assign(x=0.0)
    rows["proxy_first_careunit"] = np.where(rows["label"] == 1, 3, 7)  # integer codes carry the label
    assert S.refit_and_evaluate(rows, rows, TOY, ["x", "proxy_first_careunit"], CONFIG, seed=0, n_boot=20)["auroc"] == 1.0
    m = S.variant_manifest(TOY, ["proxy_first_careunit"], rows)
    assert m["proxy_first_careunit"].categories == ("3", "7")


def test_refit_refuses_a_part_with_one_class():
    rows = toy_rows()
    with pytest.raises(ValueError, match="test: needs both classes"):
        S.refit_and_evaluate(rows, rows[rows.label == 1], TOY, ["x"], CONFIG, seed=0, n_boot=20)


def test_table_reports_delta_against_main_and_keeps_unavailable_rows():
    frame = pd.concat([toy_rows(seed=1).assign(split="train"), toy_rows(seed=2).assign(split="test")],
                      ignore_index=True)
    frame.loc[frame["split"].eq("test") & frame["label"].eq(1), "x"] = -5.0  # the test years broke x
    specs = {k: S.MORTALITY_VARIANTS[k] for k in ("main", "without_dx_chapter", "split_real_year")}
    table = S.sensitivity_table(frame, specs, CTX, TOY, CONFIG, seed=0, n_boot=20)
    assert list(table.columns) == list(S.TABLE_COLUMNS)
    main = table.set_index("variant")
    assert main.loc["main", "delta_auroc"] == 0.0 and main.loc["main", "auroc"] < 0.7
    assert main.loc["without_dx_chapter", "delta_auroc"] == pytest.approx(
        main.loc["without_dx_chapter", "auroc"] - main.loc["main", "auroc"])
    assert main.loc["split_real_year", "status"] == "not available (column split_real_year missing)"
    assert np.isnan(main.loc["split_real_year", "auroc"])


def test_settings_defaults_and_rules():
    assert S.sensitivity_settings({"sensitivity": {"n_boot": 50}}) == {"horizons": [24.0, 48.0, 72.0, None],
                                                                       "n_boot": 50}
    with pytest.raises(ValueError, match=r"sensitivity.n_boot: must be an integer >= 10"):
        S.sensitivity_settings({"sensitivity": {"n_boot": 5}})
    with pytest.raises(ValueError, match=r"sensitivity.horizons: must not repeat"):
        S.sensitivity_settings({"sensitivity": {"horizons": [48, 48.0]}})


def test_the_cohort_death_columns_join_on_stay_id():
    table = deaths_frame().drop(columns=["intime", "death_time", "hospital_expire_flag"])
    cohort = deaths_frame().rename(columns={"id": "stay_id"})
    joined = sensitivity_frame(table, cohort)
    assert joined["hospital_expire_flag"].tolist() == [1, 1, 1, 1, 1, 0]
    with pytest.raises(ValueError, match="cohort: missing column"):
        sensitivity_frame(table, cohort.drop(columns="death_time"))


# ------------------------------------------------------------------------------------- the stage
def manifest_rows(manifest: FeatureManifest, label: np.ndarray, rng) -> pd.DataFrame:
    """Valid values of every feature of a packaged manifest; the first numeric one carries the label."""
    n, cols, carrier = len(label), {}, True
    for s in manifest.specs:
        if s.kind == "categorical":
            cols[s.name] = rng.choice(list(s.categories[:3]), n)
        elif s.kind == "binary":
            cols[s.name] = rng.integers(0, 2, n).astype(float)
        else:
            lo, hi = s.plausible_range
            lo, hi = max(lo, -1e3), min(hi, 1e3)
            mid, width = (lo + hi) / 2, (hi - lo) / 8
            cols[s.name] = mid + width * (label if carrier else rng.uniform(-1, 1, n))
            carrier = False
    return pd.DataFrame(cols)


@pytest.fixture(scope="module")
def stage_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("sensitivity-run")
    P = load_params(tiny_params(folder, sensitivity={"horizons": [24, 48, None], "n_boot": 20}), root=folder)
    rng = np.random.default_rng(0)
    for slot, name in (("primary", "mortality"), ("readmission", "readmission")):
        n = 60
        label = np.tile([0, 1], n // 2)
        table = manifest_rows(FeatureManifest.load(name), label, rng)
        table.insert(0, "id", np.arange(30000000, 30000000 + n))
        table["label"], table["split"] = label, np.where(np.arange(n) < 40, "train", "test")
        (P.build_dir / slot / "bundle").mkdir(parents=True)
        table.to_parquet(P.build_dir / slot / "task_table.parquet")
        (P.build_dir / slot / "bundle" / "bundle.json").write_text(
            json.dumps({"lineage": {"params": CONFIG, "max_bin": 16}}))
        if slot == "primary":  # deaths at 30 h for every positive: inside every horizon
            pd.DataFrame({"stay_id": table["id"], "intime": T0, "hospital_expire_flag": label,
                          "death_time": [T0 + pd.Timedelta(hours=30) if y else pd.NaT for y in label]}
                         ).to_parquet(P.build_dir / slot / "cohort.parquet")
    for task in ("primary", "readmission"):
        assert pipeline_cli.main(["sensitivity", str(P.path), "--task", task]) == 0
    return P


def test_the_stage_writes_both_tables(stage_run):
    P = stage_run
    mortality = pd.read_csv(P.reports_dir / "sensitivity" / "mortality.csv")
    readmission = pd.read_csv(P.reports_dir / "readmission" / "sensitivity" / "readmission.csv")
    assert (P.reports_dir / "sensitivity" / "mortality.md").read_text().count("synthetic") >= 1
    assert mortality["variant"].tolist() == ["main", "without_dx_chapter", "admission_proxy", "horizon_24h",
                                             "horizon_48h", "horizon_any", "split_anchor_group", "split_real_year",
                                             "split_ambiguous_to_train", "split_ambiguous_to_test"]
    ok = mortality.set_index("variant")
    assert ok.loc["main", "auroc"] == 1.0 and ok.loc["main", "n_train"] == 40 and ok.loc["main", "n_test"] == 20
    assert ok.loc["horizon_24h", "auroc"] == 1.0 and ok.loc["horizon_any", "prevalence_test"] == 0.5
    assert ok.loc["admission_proxy", "status"].startswith("not available (columns proxy_first_careunit")
    assert readmission["variant"].iloc[0] == "main" and readmission["status"].iloc[0] == "ok"
    assert readmission["status"].iloc[1:].str.startswith("not available").all()

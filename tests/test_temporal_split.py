"""Temporal split by the stay's real year and grouped CV folds, on hand-made MIMIC-shaped rows.

MIMIC-IV: a patient with anchor_year_group 'G1 - G2' and a stay in anchor_year + k had that stay in
the real years [G1 + k, G2 + k]. Each answer below is counted by hand from those intervals.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import clinops.modeling.candidates as candidates_module
import clinops.modeling.search as search_module
from clinops.config import ParamsError, load_params
from clinops.data.mimic import open_mimic
from clinops.modeling.candidates import cross_validate_candidates
from clinops.modeling.cv import stratified_folds
from clinops.modeling.search import random_search_xgb
from clinops.tasks.mortality.cohort import build_icu_cohort
from clinops.tasks.own_table import CohortTableError, make_task_table
from clinops.tasks.readmission.cohort import build_readmission_cohort
from clinops.tasks.temporal_split import (analysis_masks, assign_split, parse_anchor_year_group,
                                          split_by_rule_table)
from tests.fixtures import mimic_tables

TRAIN = ["2008 - 2010", "2011 - 2013", "2014 - 2016"]
TEST = ["2017 - 2019"]


def rows(*spec):
    """(group, anchor_year, event_year) triples as the cohort SQL returns them."""
    return pd.DataFrame([{"subject_id": i, "anchor_year_group": g, "anchor_year": a, "event_year": e,
                          "label": i % 2} for i, (g, a, e) in enumerate(spec)])


# --------------------------------------------------------------------------------------------
# the rule on its own
# --------------------------------------------------------------------------------------------
def test_known_answers_of_the_real_year_rule():
    out = assign_split(rows(("2014 - 2016", 2015, 2017),    # k = 2: [2016, 2018] straddles 2016/2017
                            ("2014 - 2016", 2015, 2015),    # k = 0: [2014, 2016] train
                            ("2017 - 2019", 2015, 2015),    # k = 0: [2017, 2019] test
                            ("2014 - 2016", 2015, 2018),    # k = 3: [2017, 2019] certainly test
                            ("2011 - 2013", 2130, 2133)),   # k = 3: [2014, 2016] still train
                       train_groups=TRAIN, test_groups=TEST)
    assert out[["real_year_min", "real_year_max"]].values.tolist() == [
        [2016, 2018], [2014, 2016], [2017, 2019], [2017, 2019], [2014, 2016]]
    assert out["split_real_year"].tolist() == ["ambiguous", "train", "test", "test", "train"]
    assert out["split_anchor_group"].tolist() == ["train", "train", "test", "train", "train"]
    assert out["split"].tolist() == ["ambiguous", "train", "test", "test", "train"]
    assert out["in_analysis"].tolist() == [False, True, True, True, True]


@pytest.mark.parametrize("rule, ambiguous, expected", [
    ("real_year", "train", ["train", "train", "test", "test"]),
    ("real_year", "test", ["test", "train", "test", "test"]),
    ("anchor_group", "exclude", ["train", "train", "test", "train"]),   # the paper's rule
])
def test_options_move_the_ambiguous_rows(rule, ambiguous, expected):
    out = assign_split(rows(("2014 - 2016", 2015, 2017), ("2014 - 2016", 2015, 2015),
                            ("2017 - 2019", 2015, 2015), ("2014 - 2016", 2015, 2018)),
                       train_groups=TRAIN, test_groups=TEST, rule=rule, ambiguous=ambiguous)
    assert out["split"].tolist() == expected
    assert out["in_analysis"].all()
    # the verdicts of both rules are kept whatever the configured one
    assert out["split_real_year"].tolist() == ["ambiguous", "train", "test", "test"]


def test_excluded_reason_leaves_the_analysis_and_masks_never_use_not_train():
    frame = rows(("2014 - 2016", 2015, 2015), ("2014 - 2016", 2015, 2017), ("2017 - 2019", 2015, 2015),
                 ("2017 - 2019", 2015, 2015))
    frame["excluded_reason"] = [None, None, None, "died within the horizon"]
    out = assign_split(frame, train_groups=TRAIN, test_groups=TEST)
    assert out["in_analysis"].tolist() == [True, False, True, False]
    train, test = analysis_masks(out)
    assert train.tolist() == [True, False, False, False]
    assert test.tolist() == [False, False, True, False]   # the ambiguous row is not test


def test_bad_values_name_the_field():
    frame = rows(("2014 - 2016", 2015, 2015))
    with pytest.raises(ValueError, match=r"cohort\.split_rule: must be one of \['real_year', 'anchor_group'\]"):
        assign_split(frame, train_groups=TRAIN, test_groups=TEST, rule="calendar")
    with pytest.raises(ValueError, match=r"cohort\.ambiguous_split: must be one of"):
        assign_split(frame, train_groups=TRAIN, test_groups=TEST, ambiguous="drop")
    with pytest.raises(ValueError, match="test_groups: anchor_year_group: must read 'YYYY - YYYY'"):
        assign_split(frame, train_groups=TRAIN, test_groups=["2017"])
    with pytest.raises(ValueError, match="last training year .2019. must come before"):
        assign_split(frame, train_groups=["2017 - 2019"], test_groups=["2014 - 2016"])
    with pytest.raises(ValueError, match="anchor_year_group: must read"):
        assign_split(rows(("2014-16", 2015, 2015)), train_groups=TRAIN, test_groups=TEST)
    assert parse_anchor_year_group(" 2008 - 2010 ") == (2008, 2010)


def test_split_table_counts_rows_subjects_and_outcomes():
    frame = rows(("2014 - 2016", 2015, 2017), ("2014 - 2016", 2015, 2015), ("2017 - 2019", 2015, 2015))
    frame["subject_id"] = [7, 7, 8]   # subject 7 on both sides of the boundary
    frame["label"] = [1, 0, 1]
    t = split_by_rule_table(assign_split(frame, train_groups=TRAIN, test_groups=TEST)).set_index(["rule", "verdict"])
    assert t.loc[("anchor_group", "train"), ["n", "n_subjects", "n_positive"]].tolist() == [2, 1, 1]
    assert t.loc[("real_year", "ambiguous"), ["n", "n_positive", "prevalence"]].tolist() == [1, 1, 1.0]
    assert t.loc[("real_year", "train"), "prevalence"] == 0.0
    assert t.loc[("offset k", "k = 2"), "n"] == 1 and t.loc[("offset k", "k = 0"), "n"] == 2


def test_params_keys_are_validated(tmp_path, project_root):
    base = "name: t\nseed: 1\ndata: {source: synthetic}\n"
    bad = tmp_path / "bad.yaml"
    bad.write_text(base + "cohort: {split_rule: calendar}\n")
    with pytest.raises(ParamsError, match=r"cohort\.split_rule"):
        load_params(bad, root=project_root)
    bad.write_text(base + "cohort: {split_rule: anchor_group, ambiguous_split: train}\n")
    with pytest.raises(ParamsError, match=r"cohort\.ambiguous_split: only with cohort\.split_rule real_year"):
        load_params(bad, root=project_root)
    good = tmp_path / "good.yaml"
    good.write_text(base + "cohort: {split_rule: real_year, ambiguous_split: test}\n")
    assert load_params(good, root=project_root)["cohort"]["ambiguous_split"] == "test"


# --------------------------------------------------------------------------------------------
# both tasks on MIMIC-shaped rows
# --------------------------------------------------------------------------------------------
def _pat(subject, group, anchor_year=2150):
    return {"subject_id": subject, "gender": "F", "anchor_age": 60, "anchor_year": anchor_year,
            "anchor_year_group": group}


def _adm(subject, hadm, admit, disch, admission_type="EW EMER."):
    return {"subject_id": subject, "hadm_id": hadm, "admittime": admit, "dischtime": disch,
            "admission_type": admission_type, "discharge_location": "HOME", "hospital_expire_flag": 0}


PATIENTS = [_pat(1, "2014 - 2016"), _pat(2, "2014 - 2016"), _pat(3, "2017 - 2019"), _pat(4, "2014 - 2016")]
ADMISSIONS = [
    _adm(1, 11, "2152-03-01 08:00", "2152-03-06 08:00"),   # anchor_year + 2: [2016, 2018] ambiguous
    _adm(2, 21, "2150-03-01 08:00", "2150-03-06 08:00"),   # k = 0: train
    _adm(3, 31, "2150-03-01 08:00", "2150-03-06 08:00"),   # 2017 - 2019, k = 0: test
    # subject 4: repeated admissions across the boundary (readmission indexes all three)
    _adm(4, 41, "2150-01-01 08:00", "2150-01-05 08:00"),   # k = 0: train
    _adm(4, 42, "2150-01-20 08:00", "2150-01-25 08:00"),   # k = 0: train; readmission of 41 (day 15)
    _adm(4, 43, "2153-06-01 08:00", "2153-06-04 08:00"),   # k = 3: [2017, 2019] test
]
STAYS = [{"subject_id": s, "hadm_id": h, "stay_id": 100 * h, "intime": admit.replace("08:00", "10:00"),
          "outtime": admit.replace("-01 08:00", "-03 10:00"), "los": 2.0}
         for s, h, admit in [(1, 11, "2152-03-01 08:00"), (2, 21, "2150-03-01 08:00"),
                             (3, 31, "2150-03-01 08:00"), (4, 41, "2150-01-01 08:00")]]


@pytest.fixture(scope="module")
def icu_db(tmp_path_factory):
    root = tmp_path_factory.mktemp("split_icu")
    mimic_tables.write_mimic(root, {"mimiciv_hosp.patients": PATIENTS, "mimiciv_hosp.admissions": ADMISSIONS,
                                    "mimiciv_icu.icustays": STAYS})
    with open_mimic(root, hash_cache=root / "sha.json") as d:
        yield d


@pytest.fixture(scope="module")
def ward_db(tmp_path_factory):
    # the same admissions without ICU stays, all discharged by MED: every one is an index
    root = tmp_path_factory.mktemp("split_ward")
    services = [{"subject_id": a["subject_id"], "hadm_id": a["hadm_id"], "transfertime": a["admittime"],
                 "curr_service": "MED"} for a in ADMISSIONS]
    mimic_tables.write_mimic(root, {"mimiciv_hosp.patients": PATIENTS, "mimiciv_hosp.admissions": ADMISSIONS,
                                    "mimiciv_hosp.services": services})
    with open_mimic(root, hash_cache=root / "sha.json") as d:
        yield d


def test_mortality_cohort_splits_by_the_stays_real_year(icu_db):
    cohort, flow = build_icu_cohort(icu_db)
    c = cohort.set_index("stay_id")
    assert c["split"].to_dict() == {1100: "ambiguous", 2100: "train", 3100: "test", 4100: "train"}
    assert c["split_anchor_group"].to_dict() == {1100: "train", 2100: "train", 3100: "test", 4100: "train"}
    assert c.loc[1100, ["anchor_year", "real_year_min", "real_year_max"]].tolist() == [2150, 2016, 2018]
    assert c["in_analysis"].tolist() == [False, True, True, True]
    assert flow.iloc[-1][["step", "n_remaining", "n_excluded"]].tolist() == [8, 3, 1]
    _, paper = build_icu_cohort(icu_db, split_rule="anchor_group")
    assert paper.iloc[-1][["n_remaining", "n_excluded"]].tolist() == [4, 0]
    as_test, _ = build_icu_cohort(icu_db, ambiguous_split="test")
    assert as_test.set_index("stay_id").loc[1100, "split"] == "test"


def test_readmission_cohort_with_repeated_subjects(ward_db):
    cohort, flow = build_readmission_cohort(ward_db)
    c = cohort.set_index("hadm_id")
    assert c["split"].to_dict() == {11: "ambiguous", 21: "train", 31: "test", 41: "train", 42: "train", 43: "test"}
    # subject 4 is on both sides of the boundary under the real-year rule, train only under the paper's
    assert set(c.loc[[41, 42, 43], "split_anchor_group"]) == {"train"}
    assert c.loc[43, ["real_year_min", "real_year_max"]].tolist() == [2017, 2019]
    assert c.loc[41, "label"] == 1 and c.loc[42, "label"] == 0
    assert flow.iloc[-1][["n_remaining", "n_excluded"]].tolist() == [5, 1]
    t = split_by_rule_table(cohort).set_index(["rule", "verdict"])
    assert t.loc[("real_year", "train"), ["n", "n_subjects"]].tolist() == [3, 2]
    assert t.loc[("anchor_group", "train"), ["n", "n_subjects", "n_positive"]].tolist() == [5, 3, 1]


# --------------------------------------------------------------------------------------------
# grouped folds
# --------------------------------------------------------------------------------------------
def _repeated_subjects(n_subjects=40, seed=0):
    rng = np.random.default_rng(seed)
    subjects = np.repeat(np.arange(n_subjects), rng.integers(1, 6, n_subjects))
    y = (rng.random(len(subjects)) < 0.3).astype(int)
    y[:4] = 1
    return subjects, y


def test_grouped_folds_never_put_a_subject_on_both_sides():
    subjects, y = _repeated_subjects()
    grouped = stratified_folds(y, 3, seed=1, groups=subjects)
    assert len(grouped) == 3
    assert sorted(np.concatenate([va for _, va in grouped]).tolist()) == list(range(len(y)))
    for tr, va in grouped:
        assert not set(subjects[tr]) & set(subjects[va])
    # without groups the same rows do put subjects on both sides (the test can fail)
    plain = stratified_folds(y, 3, seed=1)
    assert any(set(subjects[tr]) & set(subjects[va]) for tr, va in plain)


def test_grouped_folds_reject_missing_or_too_few_subjects():
    y = np.array([0, 1, 0, 1])
    with pytest.raises(ValueError, match="groups: subject id missing in 1 row"):
        stratified_folds(y, 2, seed=0, groups=[1.0, np.nan, 2.0, 3.0])
    with pytest.raises(ValueError, match="groups: 1 subject.s. cannot fill 2 folds"):
        stratified_folds(y, 2, seed=0, groups=[5, 5, 5, 5])
    with pytest.raises(ValueError, match="groups: must be one subject id per row"):
        stratified_folds(y, 2, seed=0, groups=[1, 2])


def test_candidates_and_search_use_the_grouped_folds(monkeypatch):
    subjects, y = _repeated_subjects(30, seed=2)
    X = np.random.default_rng(3).normal(size=(len(y), 3))
    seen = []

    def spy(y_, n_splits, seed, *, groups=None):
        seen.append(groups)
        return stratified_folds(y_, n_splits, seed, groups=groups)

    monkeypatch.setattr(candidates_module, "stratified_folds", spy)
    monkeypatch.setattr(search_module, "stratified_folds", spy)
    table = cross_validate_candidates(X, y, n_splits=3, seed=0, groups=subjects, n_jobs=1,
                                      models={"xgboost": candidates_module.candidate_models(0)["xgboost"]})
    _, results = random_search_xgb(X, y, n_iter=2, n_splits=3, seed=0, groups=subjects, n_jobs=1)
    assert len(seen) == 2 and all(g is subjects for g in seen)
    assert table["model"].tolist() == ["xgboost"] and len(results) == 2


# --------------------------------------------------------------------------------------------
# a hospital's own table: an optional patient column
# --------------------------------------------------------------------------------------------
OWN_SPEC = [{"name": "lactate", "kind": "numeric", "unit": "mmol/L", "plausible_range": [0, 30]}]


def _own(patients):
    return pd.DataFrame({"ref": ["a", "b", "c", "d"], "died": [0, 1, 0, 1], "lactate": [1.0, 2.5, None, 4.0],
                         "part": ["train", "train", "test", "test"], "patient": patients})


def test_own_table_subject_column_becomes_subject_id():
    table = make_task_table(_own(["p1", "p1", "p2", " p3"]), id_column="ref", outcome_column="died",
                            features=OWN_SPEC, split_column="part", subject_column="patient")
    assert table["subject_id"].tolist() == ["p1", "p1", "p2", "p3"]
    assert [m.tolist() for m in analysis_masks(table)] == [[True, True, False, False], [False, False, True, True]]
    without = make_task_table(_own(["p1"] * 4), id_column="ref", outcome_column="died", features=OWN_SPEC,
                              split_column="part")
    assert "subject_id" not in without.columns


def test_own_table_subject_column_rules():
    with pytest.raises(CohortTableError, match="patient.*subject id missing in 1 row"):
        make_task_table(_own(["p1", None, "p2", "p3"]), id_column="ref", outcome_column="died",
                        features=OWN_SPEC, split_column="part", subject_column="patient")
    with pytest.raises(CohortTableError, match="column.s. missing from the cohort table: \\['mrn'\\]"):
        make_task_table(_own(["p1"] * 4), id_column="ref", outcome_column="died", features=OWN_SPEC,
                        split_column="part", subject_column="mrn")

"""ICU cohort flow, label and split on a crafted set of stays with hand-counted answers."""
from __future__ import annotations


import pandas as pd
import pytest

from clinops.tasks.flow import append_flow_step
from clinops.tasks.mortality.cohort import (
    build_icu_cohort,
    label_prevalence_by_horizon,
    plot_flow,
)
from clinops.data.mimic import MimicSchemaError, open_mimic

from tests.fixtures import mimic_tables  # noqa: E402

T = pd.Timestamp("2150-01-01 00:00:00")


def h(hours: float, base: pd.Timestamp = T) -> str:
    return str(base + pd.Timedelta(hours=hours))


def pat(subject, age=60, group="2008 - 2010", anchor_year=2150):
    return {"subject_id": subject, "gender": "F" if subject % 2 else "M", "anchor_age": age,
            "anchor_year": anchor_year, "anchor_year_group": group}


def adm(subject, hadm, admit_h, disch_h, *, flag=0, death_h=None, no_disch=False):
    return {"subject_id": subject, "hadm_id": hadm, "admittime": h(admit_h),
            "dischtime": None if no_disch else h(disch_h),
            "deathtime": None if death_h is None else h(death_h),
            "admission_type": "EW EMER.", "hospital_expire_flag": flag}


def stay(subject, hadm, stay_id, in_h, los_h):
    return {"subject_id": subject, "hadm_id": hadm, "stay_id": stay_id, "intime": h(in_h),
            "outtime": h(in_h + los_h), "los": los_h / 24}


D = 24  # hours per day, for readability

PATIENTS = [
    pat(1), pat(2, age=16), pat(3), pat(4), pat(5, group="2020 - 2022"),
    pat(6, group="2017 - 2019"), pat(7, group="2011 - 2013"), pat(9, group="2014 - 2016"),
    pat(10, age=17),
]
ADMISSIONS = [
    adm(1, 100, 0, 10 * D), adm(1, 101, 150 * D, 160 * D),
    adm(2, 200, 0, 5 * D),
    adm(3, 300, 0, 5 * D),
    adm(4, 400, 0, 0, no_disch=True),                       # missing dischtime
    adm(5, 500, 0, 5 * D),
    adm(6, 600, 0, 2 * D, flag=1, death_h=31),              # dies 30 h after ICU intime
    adm(7, 700, 0, 5 * D, flag=1, death_h=81),              # dies 80 h after intime
    adm(9, 900, 0, 61, flag=1),                             # died, deathtime NULL: dischtime
    adm(10, 1000, 120 * D, 125 * D),                        # age 17 in 2150
    adm(10, 1001, 400 * D, 405 * D),                        # age 18 in 2151
]
STAYS = [
    stay(1, 100, 1000, 1, 48), stay(1, 100, 1001, 60, 30),  # 2nd ICU stay, same admission
    stay(1, 101, 1002, 151 * D, 48),                         # 2nd admission of the patient
    stay(2, 200, 2000, 1, 48),                               # child
    stay(3, 300, 3000, 1, 20),                               # ICU LOS 20 h
    stay(4, 400, 4000, 1, 48),
    stay(5, 500, 5000, 1, 48),                               # outside the study period
    stay(6, 600, 6000, 1, 29),
    stay(7, 700, 7000, 1, 48),
    stay(9, 900, 9000, 1, 48),
    stay(10, 1000, 10000, 121 * D, 48),                      # first ICU stay, as a child
    stay(10, 1001, 10001, 401 * D, 24),                      # first adult stay, LOS exactly 24 h
]


@pytest.fixture(scope="module")
def db(tmp_path_factory):
    root = tmp_path_factory.mktemp("cohort")
    mimic_tables.write_mimic(root, {"mimiciv_hosp.patients": PATIENTS,
                                    "mimiciv_hosp.admissions": ADMISSIONS,
                                    "mimiciv_icu.icustays": STAYS})
    with open_mimic(root, hash_cache=root / "sha.json") as d:
        yield d


def test_flow_counts_follow_the_architecture_steps(db):
    cohort, flow = build_icu_cohort(db)
    assert flow["step"].tolist() == [1, 2, 3, 4, 5, 6, 7, 8]
    # 12 stays; -2 children (2000, 10000); -1 repeat stay in hadm 100 (1001); -1 second
    # admission of subject 1 (1002); -1 group 2020-2022 (5000); -1 LOS 20 h (3000);
    # -1 missing dischtime (4000); step 8, the real-year split: no stay here is ambiguous
    assert flow["n_remaining"].tolist() == [12, 10, 9, 8, 7, 6, 5, 5]
    assert flow["n_excluded"].tolist() == [0, 2, 1, 1, 1, 1, 1, 0]
    assert flow["criterion"].iloc[-1].startswith("temporal split by the real year")
    assert cohort["stay_id"].tolist() == [1000, 6000, 7000, 9000, 10001]
    assert list(cohort.columns) == ["subject_id", "hadm_id", "stay_id", "intime", "outtime",
                                    "anchor_year_group", "anchor_year", "real_year_min", "real_year_max",
                                    "split_anchor_group", "split_real_year", "split", "in_analysis",
                                    "age", "gender", "label", "death_time", "hospital_expire_flag"]


def test_label_split_and_age(db):
    cohort, _ = build_icu_cohort(db)
    c = cohort.set_index("stay_id")
    # 48 h horizon after the 24 h window: death in (24 h, 72 h] after intime
    assert c["label"].to_dict() == {1000: 0, 6000: 1, 7000: 0, 9000: 1, 10001: 0}
    assert c.loc[9000, "death_time"] == pd.Timestamp(h(61))   # dischtime stands in
    assert pd.isna(c.loc[1000, "death_time"])
    assert c["split"].to_dict() == {1000: "train", 6000: "test", 7000: "train",
                                    9000: "train", 10001: "train"}
    assert c.loc[10001, "age"] == 18 and c.loc[1000, "age"] == 60
    # 10001 is in anchor_year + 1: real years [2009, 2011] of the group 2008 - 2010
    assert c.loc[10001, ["real_year_min", "real_year_max"]].tolist() == [2009, 2011]


def test_other_horizons_and_prevalence_table(db):
    any_death, _ = build_icu_cohort(db, horizon_hours=None)
    assert any_death.set_index("stay_id")["label"].to_dict() == {
        1000: 0, 6000: 1, 7000: 1, 9000: 1, 10001: 0}
    cohort, _ = build_icu_cohort(db)
    prev = label_prevalence_by_horizon(db, cohort)
    allrows = prev[prev["split"] == "all"].set_index("horizon")
    # deaths at 30 h (6000), 60 h (9000), 80 h (7000) after intime
    assert allrows["n_positive"].tolist() == [1, 2, 3, 3]   # 24, 48, 72 h, any death
    assert allrows["n"].tolist() == [5, 5, 5, 5]
    assert allrows["prevalence"].tolist() == [0.2, 0.4, 0.6, 0.6]
    test48 = prev[(prev["split"] == "test") & (prev["horizon_hours"] == 48)]
    assert test48[["n", "n_positive"]].values.tolist() == [[1, 1]]


def test_parameters_change_the_flow(db):
    _, flow = build_icu_cohort(db, min_age=16, min_icu_los_hours=30)
    # min_age 16 keeps 2000 and 10000 (17), and 10000 is then subject 10's first ICU stay
    # (so 10001 goes at step 4); LOS >= 30 h also drops 6000 (29 h)
    assert flow["n_remaining"].tolist() == [12, 12, 11, 9, 8, 6, 5, 5]


def test_bad_arguments_name_the_field(db):
    with pytest.raises(ValueError, match="horizon_hours: must be > 0"):
        build_icu_cohort(db, horizon_hours=0)
    with pytest.raises(ValueError, match="train_groups/test_groups: must be disjoint"):
        build_icu_cohort(db, test_groups=("2014 - 2016",))
    with pytest.raises(ValueError, match="train_groups: must be a non-empty list"):
        build_icu_cohort(db, train_groups="2008 - 2010")


def test_missing_column_is_reported_before_work(tmp_path):
    root = mimic_tables.write_mimic(tmp_path / "m", {})
    mimic_tables.write_table(root, "mimiciv_hosp.admissions", [],
                             columns=["subject_id", "hadm_id", "admittime"])
    with open_mimic(root, hash_cache=tmp_path / "c.json") as d:
        with pytest.raises(MimicSchemaError, match="dischtime, deathtime, hospital_expire_flag"):
            build_icu_cohort(d)


def test_append_flow_step_and_plot(db):
    _, flow = build_icu_cohort(db)
    # a step from a producer (the split's, the features') is numbered after the last step
    full = append_flow_step(flow, {"criterion": "features", "n_remaining": 4, "n_excluded": 1})
    assert full["step"].tolist()[-2:] == [8, 9] and full["n_remaining"].tolist()[-2:] == [5, 4]
    with pytest.raises(ValueError, match="must equal the 5 remaining after step 8"):
        append_flow_step(flow, {"criterion": "x", "n_remaining": 4, "n_excluded": 2})
    with pytest.raises(ValueError, match="flow_step.step: not given by the producer"):
        append_flow_step(flow, {"step": 9, "criterion": "x", "n_remaining": 5, "n_excluded": 0})
    fig = plot_flow(full)
    texts = [t.get_text() for t in fig.axes[0].texts]
    assert any("n = 12" in t for t in texts) and any("excluded\nn = 1" in t for t in texts)
    assert sum(t.startswith("excluded\n") for t in texts) == 8

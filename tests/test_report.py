"""Report helpers: tables name their data source; the comparison joins recorded values with the paper's."""
from __future__ import annotations

import pandas as pd
import pytest

from clinops.report import paper_comparison, paper_values, record_values, write_paper_comparison, write_table


def test_write_table_names_the_data_source(tmp_path):
    df = pd.DataFrame({"group": ["a", "b"], "auroc": [0.81234, float("nan")], "n": [1200, 30]})
    csv, md = write_table(df, tmp_path / "t", title="T", data_label="synthetic MIMIC-IV")
    text = md.read_text()
    assert "Data: **synthetic MIMIC-IV**" in text
    assert "| a | 0.812 | 1,200 |" in text and "n/a" in text
    assert pd.read_csv(csv)["auroc"].iloc[0] == pytest.approx(0.81234)


def test_paper_values_have_unique_ids_and_sections():
    ids = [row["id"] for row in paper_values()]
    assert len(ids) == len(set(ids))
    assert all(row["section"] for row in paper_values())


def test_comparison_joins_recorded_values(tmp_path):
    record_values(tmp_path, "cohort", {"cohort_n": 23000, "prevalence": 0.12})
    df = paper_comparison(tmp_path, data_label="synthetic")
    row = df.set_index("quantity").loc["ICU cohort (after inclusion/exclusion)"]
    assert row["this run"] == 23000 and row["difference"] == 23000 - 23841
    missing = df.set_index("quantity").loc["Test AUROC (2017-2019)"]
    assert missing["data"] == "not computed"


def test_unknown_ids_are_refused(tmp_path):
    with pytest.raises(KeyError, match="not_a_paper_number"):
        record_values(tmp_path, "x", {"not_a_paper_number": 1})


def test_custom_cohort_has_no_comparison(tmp_path):
    path = write_paper_comparison(tmp_path, tmp_path / "r", data_label="user table", source="table")
    assert "Not produced" in path.read_text()


def test_paper_consistency_flags_the_ppv_contradiction():
    from clinops.report import _implied_ppv, paper_consistency

    # Bayes' rule on a case worked by hand: sens 0.8, spec 0.9, prevalence 0.1 -> 0.08 / (0.08 + 0.09)
    assert _implied_ppv(0.8, 0.9, 0.1) == pytest.approx(0.08 / 0.17)
    df = paper_consistency().set_index("check")
    row = df.loc["test PPV at 0.40 (overall)"]
    assert row["implied by the paper's other numbers"] == pytest.approx(0.373, abs=0.001)
    assert not row["consistent"]
    assert df.loc["mortality prevalence", "consistent"] and df.loc["drift relative AUROC drop", "consistent"]


def test_only_the_generators_calibration_targets_hold_by_construction():
    from clinops.report import holds_by_construction

    count = {"id": "cohort_n", "kind": "count", "calibrated": True}
    share = {"id": "prevalence", "kind": "proportion", "calibrated": True}
    metric = {"id": "test_auroc", "kind": "metric"}
    assert holds_by_construction(count, 1.0) and holds_by_construction(share, 1.0)
    assert not holds_by_construction(count, 0.05) and holds_by_construction(share, 0.05)  # counts scale
    assert not holds_by_construction(metric, 1.0)
    assert not holds_by_construction(share, None)                                           # real data

"""The reproduction check compares regenerated tables with the committed copies, cell by cell."""
from __future__ import annotations

import subprocess

import pandas as pd
import pytest

from clinops import reproduction
from clinops.reproduction import FLOAT_ABS_TOL, compare_frames, compare_tables


def frame(**cols):
    return pd.DataFrame(cols).astype(str)


def test_identical_tolerated_and_differing_cells():
    a = frame(n=[10, 20], auroc=[0.81234567891, 0.7])
    assert compare_frames(a, a)["status"] == "identical"
    near = frame(n=[10, 20], auroc=[0.81234567891 + FLOAT_ABS_TOL / 10, 0.7])
    assert compare_frames(a, near)["status"] == "within tolerance"
    far = frame(n=[10, 20], auroc=[0.8124, 0.7])
    result = compare_frames(a, far)
    assert result["status"] == "differs" and result["n_differing"] == 1 and "auroc[0]" in result["cells"]


def test_counts_must_be_identical_and_shape_changes_are_named():
    a = frame(n=[10], auroc=[0.8])
    assert compare_frames(a, frame(n=[11], auroc=[0.8]))["status"] == "differs"
    changed = compare_frames(a, frame(n=[10], auroc=[0.8], extra=[1]))
    assert changed["status"] == "differs" and "shape/header" in changed["cells"]


def test_cells_naming_the_run_are_not_compared():
    a = frame(item=["MLflow run id (model version)", "registered model"], value=["abc", "m"])
    b = frame(item=["MLflow run id (model version)", "registered model"], value=["xyz", "m"])
    result = compare_frames(a, b, rel="model/lineage.csv")
    assert result["status"] == "identical" and result["volatile_cells"] == 1
    assert compare_frames(a, b, rel="model/other.csv")["status"] == "differs"


@pytest.fixture()
def repo(tmp_path):
    def git(*args):
        subprocess.run(["git", "-C", str(tmp_path), *args], check=True, capture_output=True)
    git("init", "-q")
    git("config", "user.email", "t@example.org")
    git("config", "user.name", "t")
    (tmp_path / "reports").mkdir()
    frame(n=[1, 2], v=[0.5, 0.25]).to_csv(tmp_path / "reports" / "a.csv", index=False)
    frame(n=[3]).to_csv(tmp_path / "reports" / "b.csv", index=False)
    git("add", "-A")
    git("commit", "-qm", "tables")
    return tmp_path


def test_against_the_committed_copy(repo):
    reports = repo / "reports"
    frame(n=[1, 2], v=[0.5, 0.26]).to_csv(reports / "b.csv", index=False)   # differs from HEAD
    frame(n=[9]).to_csv(reports / "new.csv", index=False)                   # untracked
    table = compare_tables(repo, reports, [reports / "a.csv", reports / "b.csv", reports / "new.csv",
                                           reports / "gone.csv"]).set_index("table")
    assert table.loc["a.csv", "status"] == "identical"
    assert table.loc["b.csv", "status"] == "differs"
    assert table.loc["new.csv", "status"] == "no committed copy"
    assert table.loc["gone.csv", "status"] == "missing"


def test_check_fails_listing_the_tables_that_differ(repo, capsys):
    class P:  # the two attributes check() reads
        reports_dir = repo / "reports"
    pd.DataFrame([{"table": "a.csv", "status": "identical", "cells": ""},
                  {"table": "b.csv", "status": "differs", "cells": "v[1]: 0.25 -> 0.26"}]).to_csv(
        repo / "reports" / "reproduction.csv", index=False)
    assert reproduction.check(P) == 1
    err = capsys.readouterr().err
    assert "b.csv: differs: v[1]: 0.25 -> 0.26" in err and "a.csv" not in err
    pd.DataFrame([{"table": "a.csv", "status": "identical", "cells": ""}]).to_csv(
        repo / "reports" / "reproduction.csv", index=False)
    assert reproduction.check(P) == 0

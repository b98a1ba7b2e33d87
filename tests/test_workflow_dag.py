"""The workflow knows its inputs: a fresh project runs everything; an edit reruns exactly its steps.

A copy of the project (what git tracks, committed reports included, as a fresh clone has them) is
made in a temporary folder. Snakemake is asked, without running anything (``--dry-run``), which
steps it would run: all of them at first (committed reports never look up to date); then the
outputs are created and marked done (``--touch``), after which nothing is scheduled; then one
input of each kind is edited and the scheduled steps are compared with the steps that read it.
"""
from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

SNAKEMAKE = Path(sys.executable).with_name("snakemake")
PRIMARY = {"model_selection", "fairness", "drift", "governance"}
REPORTING = {"paper_comparison", "reproduction", "reviewer_index", "all"}
READMISSION = {"readmission", "readmission_governance", "readmission_sensitivity"}
SENSITIVITY = {"sensitivity"}  # MIMIC-IV tasks only (it reads the cohort's death times)
ALL_QUICK = {"data", "synthetic_calibration", "cohort", "features"} | PRIMARY | SENSITIVITY | READMISSION | REPORTING
ALL_OWN = {"data", "task_table"} | PRIMARY | REPORTING

pytestmark = pytest.mark.skipif(not SNAKEMAKE.exists(), reason=f"snakemake not installed beside {sys.executable}")


def _copy_project(src: Path, dst: Path) -> None:
    files = subprocess.run(["git", "-C", str(src), "ls-files", "-co", "--exclude-standard"], capture_output=True,
                           text=True, check=True).stdout.split()
    for rel in files:
        if (src / rel).is_file():
            (dst / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src / rel, dst / rel)


def _snakemake(root: Path, params: str, *args: str) -> str:
    out = subprocess.run([str(SNAKEMAKE), "--cores", "1", "--config", f"params={params}", "--rerun-triggers", "mtime",
                          *args], cwd=root, capture_output=True, text=True)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    return out.stdout + out.stderr


def scheduled(root: Path, params: str) -> set[str]:
    """The rules a dry run would execute (empty when nothing is to be done)."""
    text = _snakemake(root, params, "--dry-run")
    if "Nothing to be done" in text:
        return set()
    stats = text.split("Job stats:", 1)[1].split("total", 1)[0]
    return {m.group(1) for m in re.finditer(r"^(\w+)\s+\d+\s*$", stats, flags=re.M)}


def mark_done(root: Path, params: str) -> None:
    """Create every output the workflow declares (empty) and let Snakemake date them in order."""
    text = _snakemake(root, params, "--summary")
    for line in text.splitlines()[1:]:
        path = Path(line.split("\t")[0])
        if path.is_absolute() and str(path).startswith(str(root)) and not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            path.touch()
    _snakemake(root, params, "--touch")


@pytest.fixture(scope="module")
def project(project_root, tmp_path_factory):
    root = tmp_path_factory.mktemp("fresh-clone")
    _copy_project(project_root, root)
    return root


def edit(path: Path, old: str, new: str) -> str:
    text = path.read_text()
    assert old in text, f"{path}: {old!r} not found"
    path.write_text(text.replace(old, new, 1))
    return text


#: (what, file, text, replacement, the steps that must rerun)
EDITS = [
    ("params key (fairness bootstrap)", "params/quick.yaml", "fairness:\n  n_boot: 100", "fairness:\n  n_boot: 120",
     {"fairness", "governance"} | REPORTING),
    ("params key (drift scenario, inherited by readmission)", "params/quick.yaml", "n_shifted: 300", "n_shifted: 280",
     {"drift", "governance"} | READMISSION | REPORTING),
    ("policy file (a rule the model carries)", "params/policies/fairness.yaml", "equalized_odds_difference: 0.05",
     "equalized_odds_difference: 0.06", PRIMARY | SENSITIVITY | READMISSION | REPORTING),
    ("feature manifest", "clinops/manifests/mortality.yaml", "\n", "\n# edited\n",
     {"features"} | PRIMARY | SENSITIVITY | REPORTING),
    ("params key (sensitivity bootstrap, both tasks)", "params/default.yaml", "  n_boot: 1000                 # bootstrap resamples of each",
     "  n_boot: 900                  # bootstrap resamples of each",
     {"sensitivity", "readmission_sensitivity", "reproduction", "reviewer_index", "all"}),
    ("SQL file", "clinops/sql/readmission_src_lab.sql", "\n", "\n-- edited\n", READMISSION | REPORTING),
    ("CMS code list (the readmission task and the planned-procedure trap read it)", "clinops/data/cms_planned.csv",
     "\n", "\n\n", {"synthetic_calibration"} | READMISSION | REPORTING),
    ("notebook", "notebooks/04_fairness.ipynb", '"cells": [', '"cells":  [', {"fairness", "governance"} | REPORTING),
    ("package code", "clinops/report.py", "\n", "\n# edited\n", ALL_QUICK),
]


def test_a_fresh_clone_runs_everything_and_an_edit_reruns_exactly_its_steps(project):
    params = "params/quick.yaml"
    # Committed reports exist in a fresh clone, yet every step is scheduled: nothing starts from them.
    assert (project / "reports" / "fairness" / "table2.csv").is_file()
    assert scheduled(project, params) == ALL_QUICK
    mark_done(project, params)
    assert scheduled(project, params) == set(), "an unchanged rerun schedules nothing"
    wrong = {}
    for what, path, old, new, expected in EDITS:
        original = edit(project / path, old, new)
        got = scheduled(project, params)
        (project / path).write_text(original)
        _snakemake(project, params, "--touch")  # back to a finished run (the fingerprint moved twice)
        if got != expected:
            wrong[what] = {"extra": sorted(got - expected), "missing": sorted(expected - got)}
    assert not wrong, wrong
    assert scheduled(project, params) == set()


def test_own_cohort_table_edit_reruns_from_the_data_step(project):
    params = "params/example-own-cohort.yaml"
    assert scheduled(project, params) == ALL_OWN
    mark_done(project, params)
    assert scheduled(project, params) == set()
    table = project / "tests/fixtures/own_cohort/example_cohort.csv"
    lines = table.read_text().splitlines(keepends=True)
    table.write_text("".join(lines[:-1]))  # one stay fewer: new bytes, same layout
    # Every step but the paper comparison, which an own cohort does not have (it reads no table).
    assert scheduled(project, params) == ALL_OWN - {"paper_comparison"}


def test_a_failing_step_ends_with_one_line_naming_step_and_cause(project):
    """A step that fails for real (here: the fairness notebook on an unreadable predictions file)
    stops the run with one line: the step, the exception from the notebook cell, the log."""
    params = "params/quick.yaml"
    mark_done(project, params)                      # every output exists (empty files)
    edit(project / "notebooks/04_fairness.ipynb", '"cells": [', '"cells":   [')
    out = subprocess.run([str(SNAKEMAKE), str(project / "reports/quick/fairness/table2.csv"), "--cores", "1",
                          "--config", f"params={params}", "--rerun-triggers", "mtime"], cwd=project, capture_output=True,
                         text=True, timeout=600)
    assert out.returncode != 0
    assert (project / "build/quick/logs/FAILED").is_file(), out.stdout[-3000:] + out.stderr[-3000:]
    failed = (project / "build/quick/logs/FAILED").read_text().strip().splitlines()
    assert len(failed) == 1 and failed[0].startswith("clinops: step fairness failed: ")
    assert "PapermillExecutionError" not in failed[0], "the cause is the cell's exception, not the wrapper"
    assert failed[0] in out.stderr
    assert "build/quick/logs/fairness.log" in failed[0]

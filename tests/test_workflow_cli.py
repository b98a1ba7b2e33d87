"""A failing workflow step ends with one readable line: the step, the cause and the log."""
from __future__ import annotations

import sys

from clinops.workflow_cli import failure_cause, run_step

PAPERMILL_LOG = """Executing:  50%|█████     | 4/8
\x1b[0;31m---------------------------------------------------------------------------\x1b[0m
\x1b[0;31mPapermillExecutionError\x1b[0m: 
---------------------------------------------------------------------------
Exception encountered at "In [4]":
Traceback (most recent call last):
  File "<ipython-input>", line 1, in <module>
clinops.tasks.own_table.rules.CohortTableError: age_years: 3 values outside the plausible range [18, 120] (rule: plausible_range)
"""


def test_the_cause_is_the_cells_exception_not_the_wrapper():
    assert failure_cause(PAPERMILL_LOG) == ("CohortTableError: age_years: 3 values outside the plausible range "
                                            "[18, 120] (rule: plausible_range)")
    assert "no exception" in failure_cause("killed\n")


def test_a_failing_step_writes_one_line_and_its_log(tmp_path, capsys):
    log, failed = tmp_path / "logs" / "drift.log", tmp_path / "logs" / "FAILED"
    code = run_step("drift", log, [sys.executable, "-c", "raise KeyError('drift.feature: not a manifest feature')"],
                    failed)
    assert code == 1
    line = capsys.readouterr().err.strip()
    assert line.startswith("clinops: step drift failed: KeyError:") and "drift.feature" in line and str(log) in line
    assert failed.read_text().strip() == line
    assert "Traceback" in log.read_text()


def test_a_step_that_succeeds_leaves_no_failure(tmp_path):
    log, failed = tmp_path / "ok.log", tmp_path / "FAILED"
    assert run_step("data", log, [sys.executable, "-c", "print('fine')"], failed) == 0
    assert "fine" in log.read_text() and not failed.exists()

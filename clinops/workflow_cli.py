"""Run one workflow step with its log, and turn a failure into one line a user can read.

The Snakefile wraps every step's command in this module::

    clinops step --params P --rule NAME --log LOG -- COMMAND ...

The command's output goes to ``LOG`` (Snakemake's ``log:`` of the rule). When it fails, the
cause is taken from the log (the last exception line: for a notebook, the exception papermill
reports from the failing cell), printed as ``clinops: step NAME failed: Cause: message (log: LOG)``
and appended to ``build/<run>/logs/FAILED``, which ``make all`` prints at the end, so the reason
is the last thing a user reads rather than a traceback in the middle of Snakemake's output.
"""
from __future__ import annotations

import argparse
import re
import subprocess
import sys
from pathlib import Path

_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
#: A Python exception line: ``pkg.module.SomeError: message`` (also inside papermill's report).
_EXCEPTION = re.compile(r"^\s*(?:[A-Za-z_][\w.]*\.)?([A-Z]\w*(?:Error|Exception|Exit|Interrupt)):\s*(.+)$")
_WRAPPERS = {"PapermillExecutionError", "CalledProcessError", "WorkflowError"}


def failure_cause(log_text: str) -> str:
    """The most specific exception line of a log, e.g. ``ParamsError: file: key: rule``.

    Papermill's own error names the cell's exception; its wrapper lines are skipped. Returns a
    generic sentence when no exception line is found.

    Examples
    --------
    >>> failure_cause("Traceback ...\\nclinops.tasks.own_table.rules.CohortTableError: age_years: 3 values outside [18, 120]")
    'CohortTableError: age_years: 3 values outside [18, 120]'
    """
    causes = []
    for line in _ANSI.sub("", log_text).splitlines():
        m = _EXCEPTION.match(line)
        if m and m.group(1) not in _WRAPPERS:
            causes.append(f"{m.group(1)}: {m.group(2).strip()}")
    if causes:
        return causes[-1][:500]
    return "the command exited with an error and printed no exception (see the log)"


def run_step(rule: str, log: Path, command: list[str], failed_file: Path) -> int:
    """Run ``command`` with stdout and stderr appended to ``log``; on failure, say why in one line."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("a") as fh:
        fh.write(f"$ {' '.join(command)}\n")
        fh.flush()
        code = subprocess.call(command, stdout=fh, stderr=subprocess.STDOUT)
    if code == 0:
        return 0
    line = f"clinops: step {rule} failed: {failure_cause(log.read_text(errors='replace'))} (log: {log})"
    print(line, file=sys.stderr, flush=True)
    with failed_file.open("a") as fh:
        fh.write(line + "\n")
    return code


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if "--" not in argv:
        print("usage: clinops step --params P --rule NAME --log LOG -- COMMAND ...", file=sys.stderr)
        return 2
    cut = argv.index("--")
    ap = argparse.ArgumentParser(prog="clinops step")
    ap.add_argument("--params", required=True)
    ap.add_argument("--rule", required=True)
    ap.add_argument("--log", required=True, type=Path)
    args = ap.parse_args(argv[:cut])
    command = argv[cut + 1:]
    if not command:
        print("clinops step: no command after --", file=sys.stderr)
        return 2
    return run_step(args.rule, args.log, command, args.log.parent / "FAILED")


if __name__ == "__main__":
    raise SystemExit(main())

"""``clinops pipeline STEP PARAMS``: the workflow steps that are not notebooks (the Snakefile's).

Steps: ``data`` (generate or check the data, hash it), ``calibration`` (synthetic generator
targets and trap counts), ``task-table`` (a hospital's own cohort table), ``governance`` (merge the stages'
events), ``sensitivity`` (the sensitivity models of a task), ``compare`` (the paper comparison), and for the
Makefile ``where``, ``registered``,
``name``, ``build-dir``.
"""
from __future__ import annotations

import argparse

from clinops.pipeline.calibration import run_synthetic_calibration, run_synthetic_traps
from clinops.pipeline.context import ensure_data, load, synthetic_scale, task_config
from clinops.pipeline.governance import merge_governance_events
from clinops.pipeline.own_table import build_task_table
from clinops.pipeline.sensitivity import run_sensitivity
from clinops.report import write_paper_comparison, write_paper_consistency
from clinops.tasks import SLOTS

STEPS = ("data", "calibration", "task-table", "governance", "sensitivity", "compare", "where", "registered", "name", "build-dir")


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="clinops pipeline", description="Workflow steps that are not notebooks.")
    ap.add_argument("step", choices=STEPS)
    ap.add_argument("params")
    ap.add_argument("--task", default="primary", choices=SLOTS)
    return ap


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    P = load(args.params)
    if args.step == "data":
        print(ensure_data(P).summary_markdown)
    elif args.step == "calibration":
        table = run_synthetic_calibration(P)
        print(f"{int(table['within'].sum())} of {len(table)} calibration rows within tolerance")
        traps = run_synthetic_traps(P)
        print(f"{int((traps['count'] == 0).sum())} of {len(traps)} trap counts are 0")
    elif args.step == "task-table":
        print(f"wrote {build_task_table(P)}")
    elif args.step == "governance":
        events = merge_governance_events(P, args.task)
        print(f"{len(events)} governance events ({args.task})")
    elif args.step == "sensitivity":
        table = run_sensitivity(P, args.task)
        print(f"{int(table['status'].eq('ok').sum())} of {len(table)} sensitivity variants refitted ({args.task})")
    elif args.step == "compare":
        scale = synthetic_scale(P)  # from the data's provenance: files or a loaded database alike
        path = write_paper_comparison(P.build_dir, P.reports_dir, data_label=P.data_label, source=P.source,
                                      synthetic_scale=scale)
        print(f"wrote {path}")
        if P.source != "table":
            print(f"wrote {write_paper_consistency(P.reports_dir)}")
    elif args.step == "registered":
        print(task_config(P, "primary").resolved.mlflow["registered_model"])
    elif args.step == "name":
        print(P.name)
    elif args.step == "build-dir":
        print(P.build_dir)
    elif args.step == "where":
        print(f"\nDone. Reports for run '{P.name}' ({P.data_label}) are in {P.reports_dir}/ :\n"
              f"  {P.reports_dir / 'index.html'} (the reviewer's entry page: open it in a browser)\n"
              f"  {P.reports_dir / 'reproduction.md'}\n  {P.reports_dir / 'paper_comparison.md'}\n"
              f"  {P.reports_dir / 'notebooks'}/ (executed notebooks, .ipynb and .html)\n"
              f"  model registry: {P.root / 'mlruns'} (MLflow)")
    return 0

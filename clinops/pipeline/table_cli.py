"""``clinops table example|check|build``: a hospital's own one-row-per-stay table as the primary task.

::

    clinops table example OUT.csv [--n-stays 3000] [--seed 20260318]
    clinops table check PARAMS      # validate only, write nothing
    clinops table build PARAMS      # = clinops pipeline task-table PARAMS
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence

from clinops.config import ParamsError, load_params
from clinops.data.example_cohort import example_cohort
from clinops.pipeline.own_table import build_task_table
from clinops.tasks.own_table import CohortTableError, check_table
from clinops.tasks.own_table.source import is_parquet


def main(argv: Sequence[str] | None = None) -> int:
    """``clinops table example|check|build ...`` (see the module docstring)."""
    ap = argparse.ArgumentParser(prog="clinops table",
                                 description="A hospital's own one-row-per-stay table as the primary task.")
    sub = ap.add_subparsers(dest="command", required=True)
    ex = sub.add_parser("example", help="write the example cohort table (CSV or parquet by suffix)")
    ex.add_argument("out", type=Path)
    ex.add_argument("--n-stays", type=int, default=3000)
    ex.add_argument("--seed", type=int, default=20260318)
    for name, text in (("check", "validate the table named by a parameter file; write nothing"),
                       ("build", "validate and write build/<run>/primary/task_table.parquet")):
        sub.add_parser(name, help=text).add_argument("params")
    args = ap.parse_args(argv)
    if args.command == "example":
        frame = example_cohort(args.n_stays, seed=args.seed)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        if is_parquet(args.out):
            frame.to_parquet(args.out, index=False)
        else:
            frame.to_csv(args.out, index=False)
        print(f"wrote {args.out}: {len(frame)} stays, outcome prevalence {frame['died_in_hospital'].mean():.3f}")
        return 0
    try:
        P = load_params(args.params)
    except ParamsError as exc:
        print(f"INVALID {exc}", file=sys.stderr)
        return 1
    try:
        if args.command == "check":
            table = check_table(P)
            counts = table.groupby("split")["label"].agg(["size", "sum"])
            print(f"ok {P.resolve(P['data']['table']['path'])}: {len(table)} stays; "
                  + "; ".join(f"{s}: {int(r['size'])} stays, {int(r['sum'])} positive" for s, r in counts.iterrows()))
        else:
            print(f"wrote {build_task_table(P)}")
    except CohortTableError as exc:
        print(f"INVALID cohort table: {exc}", file=sys.stderr)
        return 1
    return 0



"""``clinops check DIR``: does a MIMIC-IV directory hold every table and column the tasks read?

The requirements come from the task registry (:func:`clinops.tasks.required_columns`); the data
layer only checks what it is given.
"""
from __future__ import annotations

import argparse
import sys

from clinops.data.mimic import MimicSchemaError, open_mimic
from clinops.tasks import REGISTRY, required_columns

MIMIC_TASKS = sorted(name for name, task in REGISTRY.items() if task.required_columns)


def main(argv: list[str] | None = None) -> int:
    """Check a MIMIC-IV directory; exit status 1 with one message listing everything missing."""
    ap = argparse.ArgumentParser(prog="clinops check", description="Check a MIMIC-IV directory for the pipeline.")
    ap.add_argument("dir")
    ap.add_argument("--task", choices=[*MIMIC_TASKS, "all"], default="mortality")
    ap.add_argument("--sha256", action="store_true", help="also print the input files' SHA-256")
    args = ap.parse_args(argv)
    try:
        spec = required_columns(*MIMIC_TASKS) if args.task == "all" else required_columns(args.task)
        db = open_mimic(args.dir, required=spec)
    except MimicSchemaError as exc:
        print(f"clinops check: FAILED\n{exc}", file=sys.stderr)
        return 1
    with db:
        print(f"{db.root}: {db.format}, {len(db.tables)} tables; all {len(spec)} tables and "
              f"{sum(len(c) for c in spec.values())} columns the {args.task} pipeline needs "
              "are present")
        if args.sha256:
            for rel, digest in db.file_sha256().items():
                print(f"{digest}  {rel}")
    return 0

"""Command line of :mod:`clinops.ops`."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from clinops.config import project_root


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m clinops.ops", description="The serving demo's operations stack.")
    sub = p.add_subparsers(dest="command", required=True)
    sub.add_parser("generate", help="write serving/ops/ from params/policies/*.yaml")
    sub.add_parser("check", help="fail, naming file and line, where serving/ops/ differs from the policies")
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    root = project_root()
    if args.command == "generate":
        from clinops.ops.files import write

        for path in write(root):
            print(f"wrote {path.relative_to(root)}")
        return 0
    if args.command == "check":
        from clinops.ops.files import check

        problems = check(root)
        for problem in problems:
            print(problem, file=sys.stderr)
        return 1 if problems else 0
    raise AssertionError(args.command)

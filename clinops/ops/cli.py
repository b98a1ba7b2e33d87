"""Command line of :mod:`clinops.ops`."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from clinops.config import project_root
from clinops.ops.files import check, write
from clinops.ops.sbom import write_sbom
from clinops.ops.stack import main_stack


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="clinops ops", description="The serving demo's operations stack.")
    sub = p.add_subparsers(dest="command", required=True)
    sub.add_parser("generate", help="write serving/ops/ from params/policies/*.yaml")
    sub.add_parser("check", help="fail, naming file and line, where serving/ops/ differs from the policies")
    sbom = sub.add_parser("sbom", help="write a CycloneDX SBOM of the serving runtime dependencies")
    sbom.add_argument("output", type=Path, nargs="?", default=Path("reports/serving/sbom.cdx.json"))
    stack = sub.add_parser("stack", help="run a server command and a Prometheus scraping it; Ctrl-C stops both")
    stack.add_argument("--target", default="127.0.0.1:8000", help="host:port of the server (default: %(default)s)")
    stack.add_argument("--task", default="mortality", help="the served model's task (default: %(default)s)")
    stack.add_argument("--prometheus-port", type=int, default=9090)
    stack.add_argument("--scrape-interval", default="15s", help="also the rule evaluation interval")
    stack.add_argument("--dir", type=Path, default=Path("build/stack"), help="Prometheus config and data")
    stack.add_argument("--metrics-token-file", type=Path,
                       help="bearer token for /metrics (default: the demo system token)")
    stack.add_argument("--tls-ca", type=Path, help="the server's certificate or CA: scrape over HTTPS")
    stack.add_argument("server_command", nargs=argparse.REMAINDER, help="-- python -m serving ...")
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    root = project_root()
    if args.command == "generate":
        for path in write(root):
            print(f"wrote {path.relative_to(root)}")
        return 0
    if args.command == "check":
        problems = check(root)
        for problem in problems:
            print(problem, file=sys.stderr)
        return 1 if problems else 0
    if args.command == "sbom":
        print(f"wrote {write_sbom(root / 'pyproject.toml', args.output)}")
        return 0
    if args.command == "stack":
        args.root = root
        args.server_command = args.server_command[1:] if args.server_command[:1] == ["--"] else args.server_command
        return main_stack(args)
    raise AssertionError(args.command)

"""The ``clinops`` command: one entry point, one subcommand per module.

Each subcommand lives next to the code it drives and exposes ``main(argv) -> int``;
this file only dispatches, so adding a command never touches another module.
"""
from __future__ import annotations

import importlib
import sys

# subcommand -> (module, function, one-line help)
COMMANDS: dict[str, tuple[str, str, str]] = {
    "synth": ("clinops.data.synthetic", "main", "generate a synthetic MIMIC-IV v2.2 directory"),
    "convert": ("clinops.data.mimic", "convert_main", "copy a MIMIC-IV directory to parquet"),
    "check": ("clinops.data.mimic", "check_main", "check a MIMIC-IV directory has what the pipeline needs"),
    "audit": ("clinops.audit.cli", "main", "verify, prove, witness, stack, show, erase, retention, key rotation"),
    "params": ("clinops.config", "main", "validate a parameter file"),
}


def _usage() -> str:
    lines = ["usage: clinops COMMAND [ARGS...]", "", "commands:"]
    lines += [f"  {name:<10} {help_}" for name, (_, _, help_) in COMMANDS.items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in {"-h", "--help", "help"}:
        print(_usage())
        return 0
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"clinops: unknown command {name!r}\n\n{_usage()}", file=sys.stderr)
        return 2
    module, func, _ = COMMANDS[name]
    return int(getattr(importlib.import_module(module), func)(rest) or 0)


if __name__ == "__main__":
    sys.exit(main())

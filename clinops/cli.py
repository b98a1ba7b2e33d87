"""The ``clinops`` command: one entry point, one sub-command per module.

Each sub-command lives next to the code it drives and exposes ``main(argv) -> int``; this file
only dispatches (importing a sub-command's module only when it runs), so adding a command is one
line in :data:`COMMANDS` and never touches another module.

Examples
--------
>>> main(["--help"])  # doctest: +ELLIPSIS
usage: clinops COMMAND [ARGS...]
...
  pipeline   workflow steps that are not notebooks (data, task-table, governance, compare, ...)
...
>>> main(["nonsense"])
2
"""
from __future__ import annotations

import importlib
import os
import sys

# sub-command -> (module, function, one-line help)
COMMANDS: dict[str, tuple[str, str, str]] = {
    "synth": ("clinops.data.synthetic", "main", "generate a synthetic MIMIC-IV v2.2 directory"),
    "convert": ("clinops.data.convert", "main", "copy a MIMIC-IV directory to parquet"),
    "check": ("clinops.tasks.check", "main", "check a MIMIC-IV directory has what the tasks read"),
    "load-postgres": ("clinops.data.postgres.load", "main", "load a MIMIC-IV csv.gz directory into PostgreSQL (mimic-code layout)"),
    "params": ("clinops.pipeline.preflight", "main", "validate a parameter file (and an own cohort's table)"),
    "table": ("clinops.pipeline.table_cli", "main", "own cohort table: write the example, check, build"),
    "pipeline": ("clinops.pipeline.cli", "main",
                 "workflow steps that are not notebooks (data, task-table, governance, compare, ...)"),
    "step": ("clinops.workflow_cli", "main", "run one workflow step with its log (the Snakefile's wrapper)"),
    "reproduce": ("clinops.reproduction", "main", "compare regenerated tables with the committed copies"),
    "review": ("clinops.reviewer", "main", "write the reviewer's index.html and the model cards"),
    "audit": ("clinops.audit.cli", "main", "verify, prove, witness, stack, show, erase, retention, key rotation"),
    "ops": ("clinops.ops.cli", "main", "operations stack: generate, check, stack, sbom"),
    "serve": ("clinops.cli", "serve", "start the scoring server (python -m serving ARGS)"),
}


def serve(argv: list[str]) -> int:
    """Replace this process with ``python -m serving ARGS``.

    The package never imports the server (the server depends on the package, not the other
    way round), so ``clinops serve`` execs the server's own entry point with the same Python.
    """
    os.execv(sys.executable, [sys.executable, "-m", "serving", *argv])
    return 0  # pragma: no cover - execv does not return


def _usage() -> str:
    lines = ["usage: clinops COMMAND [ARGS...]", "", "commands:"]
    lines += [f"  {name:<10} {help_}" for name, (_, _, help_) in COMMANDS.items()]
    lines += ["", "clinops COMMAND --help: the command's own arguments"]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Dispatch ``clinops COMMAND ARGS...`` to the command's ``main(ARGS)``; 2 for an unknown command."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in {"-h", "--help", "help"}:
        print(_usage())
        return 0
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"clinops: unknown command {name!r} (known: {', '.join(COMMANDS)})\n\n{_usage()}", file=sys.stderr)
        return 2
    module, func, _ = COMMANDS[name]
    return int(getattr(importlib.import_module(module), func)(rest) or 0)


if __name__ == "__main__":
    sys.exit(main())

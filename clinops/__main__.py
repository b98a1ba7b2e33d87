"""``python -m clinops COMMAND ...``: the ``clinops`` command with this interpreter (see :mod:`clinops.cli`)."""
from __future__ import annotations

import sys

from clinops.cli import main

if __name__ == "__main__":
    sys.exit(main())

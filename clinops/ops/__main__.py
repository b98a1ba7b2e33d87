"""``python -m clinops.ops generate|check|stack|sbom`` (see :mod:`clinops.ops`)."""
from __future__ import annotations

import sys

from clinops.ops.cli import main

if __name__ == "__main__":
    sys.exit(main())

"""The ``sensitivity:`` section of a parameter file, with its defaults stated once.

Examples
--------
>>> sensitivity_settings({})
{'horizons': [24.0, 48.0, 72.0, None], 'n_boot': 1000}
>>> sensitivity_settings({"sensitivity": {"horizons": [48, None], "n_boot": 200}})
{'horizons': [48.0, None], 'n_boot': 200}
>>> sensitivity_settings({"sensitivity": {"horizons": [0]}})
Traceback (most recent call last):
...
ValueError: sensitivity.horizons: every horizon must be a number > 0 (hours after the window) or null, got [0]
"""
from __future__ import annotations

import math
import numbers
from typing import Any, Mapping

__all__ = ["SENSITIVITY_DEFAULTS", "sensitivity_settings"]

#: Defaults of ``sensitivity:`` (params/default.yaml states the same values, with comments).
SENSITIVITY_DEFAULTS: dict[str, Any] = {"horizons": [24.0, 48.0, 72.0, None], "n_boot": 1000}


def _horizon_ok(h: Any) -> bool:
    return h is None or (isinstance(h, numbers.Real) and not isinstance(h, bool) and math.isfinite(h) and h > 0)


def sensitivity_settings(params: Mapping[str, Any]) -> dict[str, Any]:
    """The resolved ``sensitivity:`` section (defaults for absent keys), checked.

    Parameters
    ----------
    params : mapping
        A parameter file's content (:class:`clinops.config.Params` or a dict).

    Raises
    ------
    ValueError
        A horizon that is not a positive number or null, a repeated horizon, or ``n_boot`` < 10.
    """
    section = dict(params.get("sensitivity") or {})
    horizons = section.get("horizons", SENSITIVITY_DEFAULTS["horizons"])
    if not isinstance(horizons, (list, tuple)) or not horizons or not all(_horizon_ok(h) for h in horizons):
        raise ValueError("sensitivity.horizons: every horizon must be a number > 0 (hours after the window) "
                         f"or null, got {horizons!r}")
    horizons = [None if h is None else float(h) for h in horizons]
    if len(set(horizons)) != len(horizons):
        raise ValueError(f"sensitivity.horizons: must not repeat a horizon, got {horizons!r}")
    n_boot = section.get("n_boot", SENSITIVITY_DEFAULTS["n_boot"])
    if not isinstance(n_boot, int) or isinstance(n_boot, bool) or n_boot < 10:
        raise ValueError(f"sensitivity.n_boot: must be an integer >= 10, got {n_boot!r}")
    return {"horizons": horizons, "n_boot": n_boot}

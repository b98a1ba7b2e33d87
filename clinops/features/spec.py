"""One feature of a manifest: :class:`FeatureSpec`, its parsing from the plain form, and the errors.

Examples
--------
>>> spec = FeatureSpec(name="spo2", kind="numeric", unit="%", aggregate="min", source={},
...                    plausible_range=(0.0, 100.0), categories=None, justification="hypoxaemia",
...                    range_closed=(False, True))
>>> spec.range_text()
'(0, 100] %'
>>> spec.number_problem(0.0)
'value 0 is outside the plausible range (0, 100] %'
"""
from __future__ import annotations

import json
import math
import numbers
import re
from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np

__all__ = ["FeatureSpec", "FeatureValidationError", "ManifestError", "KINDS", "spec_from_dict", "is_number"]

KINDS = ("numeric", "binary", "categorical")
_NAME = re.compile(r"^[a-z][a-z0-9_]*$")


class FeatureValidationError(ValueError):
    """A value (or column) breaks the manifest's rule for one field.

    Attributes
    ----------
    field : str
        The feature (or column) name.
    rule : str
        What was expected and what was found.
    """

    def __init__(self, field: str, rule: str):
        self.field = field
        self.rule = rule
        super().__init__(f"{field}: {rule}")


class ManifestError(ValueError):
    """A manifest file or dict is malformed (the message names the feature and the key)."""


@dataclass(frozen=True, eq=True)
class FeatureSpec:
    """One feature of a manifest.

    Attributes
    ----------
    name : str
        Column name (lower snake case).
    kind : {'numeric', 'binary', 'categorical'}
    unit : str
        Raw unit as extracted (e.g. ``'mmHg'``, ``'degC'``).
    aggregate : str
        How the window is summarised (``'min'``, ``'max'``, ``'any'``, ...).
    source : dict
        Extraction method, MIMIC-IV table and item ids (see the manifest file).
    plausible_range : tuple of (float, float) or None
        Numeric features only; an open end is ``-inf`` / ``inf``.
    categories : tuple of str or None
        Categorical features only; the order defines the integer codes.
    justification : str
        One-line clinical reason for keeping the feature.
    range_closed : tuple of (bool, bool)
        Whether ``lo`` and ``hi`` themselves are allowed.
    """

    name: str
    kind: str
    unit: str
    aggregate: str
    source: dict = field(hash=False, compare=True)
    plausible_range: tuple[float, float] | None
    categories: tuple[str, ...] | None
    justification: str
    range_closed: tuple[bool, bool] = (True, True)

    def range_text(self) -> str:
        """The plausible range in interval notation with the unit, e.g. ``'(0, 300) bpm'``."""
        if self.plausible_range is None:
            return "no range"
        lo, hi = self.plausible_range
        left = "[" if self.range_closed[0] and math.isfinite(lo) else "("
        right = "]" if self.range_closed[1] and math.isfinite(hi) else ")"
        return f"{left}{_num(lo)}, {_num(hi)}{right} {self.unit}"

    def accepts(self, x: float) -> bool:
        """Whether one finite number lies inside the plausible range (scalar :meth:`in_range`)."""
        if self.plausible_range is None:
            return True
        lo, hi = self.plausible_range
        ok_lo = x >= lo if self.range_closed[0] else x > lo
        ok_hi = x <= hi if self.range_closed[1] else x < hi
        return ok_lo and ok_hi

    def number_problem(self, x: float) -> str | None:
        """Why one number is not an acceptable value of this feature, or None when it is.

        The one wording of the rule, used by :meth:`FeatureManifest.validate_record` and by the
        serving schema: a value must be finite and inside the plausible range.
        """
        if not math.isfinite(x) or not self.accepts(x):
            return f"value {x:g} is outside the plausible range {self.range_text()}"
        return None

    def in_range(self, values: np.ndarray) -> np.ndarray:
        """Boolean mask of values inside the plausible range (NaN counts as inside).

        Parameters
        ----------
        values : numpy.ndarray of float, shape (n,)
        """
        v = np.asarray(values, dtype=float)
        if self.plausible_range is None:
            return np.ones(v.shape, dtype=bool)
        lo, hi = self.plausible_range
        with np.errstate(invalid="ignore"):
            ok_lo = v >= lo if self.range_closed[0] else v > lo
            ok_hi = v <= hi if self.range_closed[1] else v < hi
        return np.isnan(v) | (ok_lo & ok_hi)

    def to_dict(self) -> dict:
        """Plain, YAML/JSON-ready form (open range ends as ``None``)."""
        d: dict[str, Any] = {
            "name": self.name, "kind": self.kind, "unit": self.unit,
            "aggregate": self.aggregate, "source": self.source,
            "plausible_range": None if self.plausible_range is None else [
                None if math.isinf(x) else x for x in self.plausible_range],
            "justification": self.justification,
        }
        if self.plausible_range is not None:
            d["range_closed"] = list(self.range_closed)
        if self.categories is not None:
            d["categories"] = list(self.categories)
        return d


def _num(x: float) -> str:
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"
    return f"{x:g}"


def is_number(x) -> bool:
    """A real number that is not a bool."""
    return isinstance(x, numbers.Real) and not isinstance(x, (bool, np.bool_))


def spec_from_dict(d: Mapping, i: int) -> FeatureSpec:
    """Validate and build entry ``i`` of a manifest's ``features`` list."""
    if not isinstance(d, Mapping):
        raise ManifestError(f"features[{i}]: must be a mapping, got {type(d).__name__}")
    name = d.get("name")
    where = f"feature {name!r}" if name else f"features[{i}]"
    if not isinstance(name, str) or not _NAME.match(name):
        raise ManifestError(f"{where}: 'name' must be lower snake case, got {name!r}")
    allowed = {"name", "kind", "unit", "aggregate", "source", "plausible_range", "range_closed",
               "categories", "justification"}
    extra = sorted(set(d) - allowed)
    if extra:
        raise ManifestError(f"{where}: unknown key(s) {extra}")
    kind = d.get("kind")
    if kind not in KINDS:
        raise ManifestError(f"{where}: 'kind' must be one of {list(KINDS)}, got {kind!r}")
    for key in ("unit", "aggregate", "justification"):
        if not isinstance(d.get(key), str) or not d[key].strip():
            raise ManifestError(f"{where}: '{key}' must be a non-empty string")
    source = d.get("source")
    if not isinstance(source, Mapping):
        raise ManifestError(f"{where}: 'source' must be a mapping (method, table, item ids)")
    rng = d.get("plausible_range")
    plausible = None
    closed = (True, True)
    if rng is not None:
        if kind != "numeric":
            raise ManifestError(f"{where}: 'plausible_range' is only for numeric features")
        if not isinstance(rng, (list, tuple)) or len(rng) != 2 or not all(
                x is None or is_number(x) for x in rng):
            raise ManifestError(f"{where}: 'plausible_range' must be [lo, hi] numbers or null, "
                                f"got {rng!r}")
        lo = -math.inf if rng[0] is None else float(rng[0])
        hi = math.inf if rng[1] is None else float(rng[1])
        if not lo < hi:
            raise ManifestError(f"{where}: 'plausible_range' needs lo < hi, got {rng!r}")
        plausible = (lo, hi)
        rc = d.get("range_closed", [True, True])
        if (not isinstance(rc, (list, tuple)) or len(rc) != 2
                or not all(isinstance(x, bool) for x in rc)):
            raise ManifestError(f"{where}: 'range_closed' must be [bool, bool], got {rc!r}")
        closed = (bool(rc[0]), bool(rc[1]))
    elif "range_closed" in d:
        raise ManifestError(f"{where}: 'range_closed' without 'plausible_range'")
    cats = d.get("categories")
    if kind == "categorical":
        if (not isinstance(cats, (list, tuple)) or not cats
                or not all(isinstance(c, str) and c for c in cats)):
            raise ManifestError(f"{where}: categorical features need 'categories', "
                                "a non-empty list of strings")
        if len(set(cats)) != len(cats):
            raise ManifestError(f"{where}: 'categories' has duplicates")
        cats = tuple(cats)
    elif cats is not None:
        raise ManifestError(f"{where}: 'categories' is only for categorical features")
    return FeatureSpec(name=name, kind=kind, unit=d["unit"], aggregate=d["aggregate"],
                       source=json.loads(json.dumps(source)), plausible_range=plausible,
                       categories=cats, justification=" ".join(d["justification"].split()),
                       range_closed=closed)

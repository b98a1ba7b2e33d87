"""The own-cohort task's error and shared vocabulary: reserved column names, splits, categories.

Every problem with a hospital's cohort table or its declaration is a :class:`CohortTableError`
naming the column (or parameter key) and the rule; one pass reports all problems it finds.

Examples
--------
>>> err = CohortTableError("age_years", "3 values outside the plausible range [18, 120]")
>>> str(err), err.column
('age_years: 3 values outside the plausible range [18, 120]', 'age_years')
>>> category_text(1.0), category_text(True), category_text(" icu ")
('1', 'true', 'icu')
"""
from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    from clinops.config import Params

# Columns of the task table that are not features (clinops.pipeline module docstring).
RESERVED = ("id", "label", "split", "sensitive_sex", "sensitive_age")
SPLITS = ("train", "test")


class CohortTableError(ValueError):
    """The cohort table or its declaration breaks a rule.

    Attributes
    ----------
    column : str
        The column (or parameter key) at fault; several are joined by ``', '``.
    rule : str
        What was required and what was found.
    problems : list of (column, rule)
        Every problem found in the same pass (one entry when there is one problem).
    """

    def __init__(self, column: str, rule: str, *, problems: Sequence[tuple[str, str]] | None = None):
        self.column = column
        self.rule = rule
        self.problems = list(problems) if problems else [(column, rule)]
        if len(self.problems) == 1:
            message = f"{column}: {rule}"
        else:
            message = (f"{len(self.problems)} problems in the cohort table:\n"
                       + "\n".join(f"  - {c}: {r}" for c, r in self.problems))
        super().__init__(message)


def raise_all(problems: list[tuple[str, str]]) -> None:
    if len(problems) == 1:
        raise CohortTableError(*problems[0])
    if problems:
        raise CohortTableError(", ".join(dict.fromkeys(c for c, _ in problems)),
                               "; ".join(r for _, r in problems), problems=problems)


def examples(values: Any, k: int = 5) -> str:
    uniq = list(dict.fromkeys(values))
    shown = ", ".join(repr(v.item() if hasattr(v, "item") else v) for v in uniq[:k])
    return shown + (f", ... ({len(uniq)} distinct)" if len(uniq) > k else "")


# ---------------------------------------------------------------------------------------------
# the declaration (data.table in the parameter file)
# ---------------------------------------------------------------------------------------------
def table_section(P: "Params") -> dict:
    if P.source != "table":
        raise CohortTableError("data.source", f"must be 'table' for a cohort table run, got {P.source!r}")
    return dict(P["data"]["table"])


def category_text(value: Any) -> str:
    """A category as the manifest's string: integral numbers lose their '.0' (1.0 -> '1')."""
    if isinstance(value, (bool, np.bool_)):
        return str(bool(value)).lower()
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)) and math.isfinite(value) and float(value).is_integer():
        return str(int(value))
    return str(value).strip()


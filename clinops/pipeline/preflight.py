"""``clinops params FILE...``: what ``make all`` checks before the workflow starts, beyond the schema.

Resolves every task's settings (policy files included), checks that each task's drift feature
is one of its manifest's features and, for a hospital's own table, validates the whole table.
"""
from __future__ import annotations

import sys

from clinops.config import Params, ParamsError, load_params
from clinops.features import FeatureManifest
from clinops.settings import resolve_task_settings, task_sections
from clinops.tasks import task_for
from clinops.tasks.own_table import check_table


def run_slots(P: Params) -> list[str]:
    """The run slots this parameter file fills (readmission only on MIMIC-IV data, when enabled)."""
    slots = ["primary"]
    if P.source != "table" and (P.get("readmission") or {}).get("enabled", True):
        slots.append("readmission")
    return slots


def preflight(P: Params) -> str:
    """Check a run before it starts; return a detail for the verdict line.

    Raises the first error (naming file, field and rule): ``ParamsError``, ``PolicyError``,
    ``SettingsError`` or ``CohortTableError`` (all ``ValueError``).
    """
    slots = run_slots(P)
    for slot in slots:
        resolve_task_settings(P, slot)
    for slot in slots:
        task = task_for(slot, P.source)
        if isinstance(task.manifest, str):  # a packaged manifest: the drift scenario must perturb one of its features
            feature = task_sections(P, slot)["drift"].get("feature")
            names = FeatureManifest.load(task.manifest).names
            if feature not in names:
                where = "drift.feature" if slot == "primary" else f"{slot}.drift.feature"
                raise ParamsError(f"{P.path}: {where}: {feature!r} is not a feature of the {task.manifest} manifest "
                                  f"(features: {', '.join(names)})")
    if P.source == "table":
        table = check_table(P)
        return f"; table ok: {len(table)} stays"
    return ""


def main(argv: list[str] | None = None) -> int:
    """Validate parameter files, print a one-line verdict each; exit status 1 if any is invalid."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv:
        print("usage: clinops params FILE [FILE...]", file=sys.stderr)
        return 2
    status = 0
    for arg in argv:
        try:
            prm = load_params(arg)
            detail = preflight(prm)
        except (ParamsError, ValueError) as exc:  # PolicyError, SettingsError, CohortTableError are ValueErrors
            print(f"INVALID {exc}", file=sys.stderr)
            status = 1
        else:
            print(f"ok {prm.path} (name={prm.name}, data={prm.source}, reports -> {prm.reports_dir}){detail}")
    return status

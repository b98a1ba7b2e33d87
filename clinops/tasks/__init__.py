"""The registry of prediction tasks: each task declares itself in one place (:class:`Task`).

A task is a configuration of the same modules: its cohort and label, its feature manifest and
SQL, the MIMIC-IV tables it reads and the paper values it reproduces. The data layer receives a
task's ``required_columns`` and imports no task; the workflow (:mod:`clinops.pipeline`) looks a
task up here and never branches on a task's name.

Adding a task: one new module or sub-package declaring a :class:`Task`, and one line in
:data:`REGISTRY`.

Examples
--------
>>> sorted(REGISTRY)
['mortality', 'readmission', 'table']
>>> task_for("primary", "synthetic").name, task_for("primary", "table").name
('mortality', 'table')
>>> "mimiciv_hosp.services" in required_columns("readmission")
True
"""
from __future__ import annotations

from clinops.tasks.mortality import MORTALITY
from clinops.tasks.own_table import OWN_TABLE
from clinops.tasks.readmission import READMISSION
from clinops.tasks.task import SLOTS, PaperIds, Task, merge_requirements

#: Every task, by name.
REGISTRY: dict[str, Task] = {t.name: t for t in (MORTALITY, READMISSION, OWN_TABLE)}


def get_task(name: str) -> Task:
    """The registered task called ``name``; an unknown name is refused, naming the known ones."""
    try:
        return REGISTRY[name]
    except KeyError:
        raise ValueError(f"task: unknown task {name!r} (known: {', '.join(sorted(REGISTRY))})") from None


def task_for(slot: str, source: str) -> Task:
    """The task that fills a run slot (``primary``, ``readmission``) for a data source."""
    if slot not in SLOTS:
        raise ValueError(f"task: unknown task {slot!r} (known: {', '.join(SLOTS)})")
    found = [t for t in REGISTRY.values() if t.slot == slot and source in t.sources]
    if len(found) != 1:
        raise ValueError(f"task: {len(found)} registered tasks fill slot {slot!r} for data.source {source!r} "
                         "(rule: exactly one)")
    return found[0]


def required_columns(*names: str) -> dict[str, list[str]]:
    """The MIMIC-IV tables and columns the named tasks read (all registered tasks when none named)."""
    tasks = [get_task(n) for n in names] if names else list(REGISTRY.values())
    return merge_requirements(*(t.required_columns for t in tasks))


__all__ = ["REGISTRY", "SLOTS", "PaperIds", "Task", "get_task", "task_for", "required_columns",
           "merge_requirements", "MORTALITY", "READMISSION", "OWN_TABLE"]

"""Policy files (``params/policies/*.yaml``): rules as data, shared reading logic.

A policy file is a YAML mapping of settings with an optional ``tasks: {name: {overrides}}``
section; a task's overrides replace top-level values, and mapping values are merged one level
deep (so a task can change one entry of a section). The fairness, drift and governance modules
each validate their own settings on top of this.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml


class PolicyError(ValueError):
    """A policy file breaks a rule; the message names the file, the key and the rule."""


def read_policy(path: str | Path, task: str | None = None) -> dict[str, Any]:
    """Read a policy file and apply the overrides of ``task`` (None: the file's defaults).

    Raises
    ------
    PolicyError : the file is not a mapping, or ``task`` is not one of its ``tasks``.
    """
    p = Path(path)
    raw = _read_mapping(p)
    tasks = raw.pop("tasks", {}) or {}
    if task is not None:
        if task not in tasks:
            raise PolicyError(f"{p}: tasks.{task}: no such task; defined: {sorted(tasks)}")
        for key, value in (tasks[task] or {}).items():
            if isinstance(value, dict) and isinstance(raw.get(key), dict):
                raw[key] = {**raw[key], **value}
            else:
                raw[key] = value
    return raw



def policy_tasks(path: str | Path) -> list[str]:
    """The task names a policy file has overrides for (its ``tasks:`` section), sorted.

    Raises
    ------
    PolicyError : as :func:`read_policy`, or ``tasks`` is not a mapping.
    """
    p = Path(path)
    tasks = _read_mapping(p).get("tasks") or {}
    if not isinstance(tasks, dict):
        raise PolicyError(f"{p}: tasks: must be a mapping task -> overrides")
    return sorted(tasks)


def _read_mapping(p: Path) -> dict[str, Any]:
    try:
        raw = yaml.safe_load(p.read_text()) or {}
    except FileNotFoundError:
        raise PolicyError(f"{p}: policy file not found") from None
    except yaml.YAMLError as exc:
        raise PolicyError(f"{p}: not valid YAML: {exc}") from None
    if not isinstance(raw, dict):
        raise PolicyError(f"{p}: must be a YAML mapping")
    return raw

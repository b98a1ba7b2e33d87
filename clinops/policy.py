"""Policy files (``params/policies/*.yaml``): rules as data, shared reading logic.

A policy file is a YAML mapping of settings with an optional ``tasks: {name: {overrides}}``
section; a task's overrides replace top-level values, and mapping values are merged one level
deep (so a task can change one entry of a section). The fairness, drift and governance modules
each describe their settings as a :class:`PolicyModel`: a typed, frozen pydantic model whose
field defaults and bounds are the one statement of each rule.

Examples
--------
>>> from pydantic import Field
>>> class ExamplePolicy(PolicyModel):
...     threshold: float = Field(0.2, gt=0, lt=1, description="alert when above")
>>> ExamplePolicy().threshold
0.2
>>> ExamplePolicy.from_mapping({"threshold": 1.5}, where="example.yaml")
Traceback (most recent call last):
...
clinops.policy.PolicyError: example.yaml: threshold: Input should be less than 1, got 1.5
>>> ExamplePolicy.from_mapping({"treshold": 0.1}, where="example.yaml")
Traceback (most recent call last):
...
clinops.policy.PolicyError: example.yaml: treshold: unknown setting
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError


class PolicyError(ValueError):
    """A policy file breaks a rule; the message names the file, the key and the rule."""


class PolicyModel(BaseModel):
    """Base of every policy: frozen, unknown keys refused, errors as :class:`PolicyError`.

    Subclasses declare fields with their defaults and bounds (``pydantic.Field``); nested
    sections are nested ``PolicyModel`` subclasses.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    @classmethod
    def from_mapping(cls, raw: Any, *, where: str = "policy"):
        """Validate a mapping; any broken rule raises :class:`PolicyError` naming ``where``,
        the setting's dotted path and the rule (every broken rule, one per ``;``)."""
        try:
            return cls.model_validate(raw)
        except ValidationError as exc:
            raise PolicyError(f"{where}: {_describe(exc)}") from None

    @classmethod
    def load(cls, path: str | Path, *, task: str | None = None):
        """Read a policy file, apply ``task``'s overrides (:func:`read_policy`), validate."""
        return cls.from_mapping(read_policy(path, task), where=str(path))


def _describe(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors():
        where = ".".join(str(x) for x in err["loc"]) or "(top level)"
        if err["type"] == "extra_forbidden":
            parts.append(f"{where}: unknown setting")
        else:
            parts.append(f"{where}: {err['msg']}, got {err.get('input')!r}")
    return "; ".join(parts)


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

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

Built in code, a policy checks the same rules and raises the same error:

>>> ExamplePolicy(threshold=0.3).to_dict()
{'threshold': 0.3}
>>> ExamplePolicy(threshold=0)
Traceback (most recent call last):
...
clinops.policy.PolicyError: ExamplePolicy: threshold: Input should be greater than 0, got 0
"""
from __future__ import annotations

from pathlib import Path
from collections.abc import Callable
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError


class PolicyError(ValueError):
    """A policy file breaks a rule; the message names the file, the key and the rule.

    ``broken`` lists each broken rule as (the setting's location, the rule) when the error
    comes from validating a :class:`PolicyModel`.
    """

    def __init__(self, message: str, broken: list[tuple[tuple[str, ...], str]] | None = None):
        super().__init__(message)
        self.broken = list(broken or [])


class PolicyModel(BaseModel):
    """Base of every policy: frozen, unknown keys refused, errors as :class:`PolicyError`.

    Subclasses declare fields with their defaults and bounds (``pydantic.Field``); nested
    sections are nested ``PolicyModel`` subclasses.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    def __init__(self, **values: Any):
        # keyword construction (``Policy(**flat)``, as settings and bundles do) breaks rules with
        # the same PolicyError as a file does, naming the class instead of a file
        try:
            super().__init__(**values)
        except ValidationError as exc:
            broken = _broken(exc)
            raise PolicyError(f"{type(self).__name__}: {_format(broken)}", broken) from None

    def to_dict(self) -> dict[str, Any]:
        """Field name -> value, nested sections as dicts (the form stored in model bundles)."""
        return self.model_dump()

    @classmethod
    def from_mapping(cls, raw: Any, *, where: str = "policy"):
        """Validate a mapping; any broken rule raises :class:`PolicyError` naming ``where``,
        the setting's dotted path and the rule (every broken rule, one per ``;``)."""
        try:
            return cls.model_validate(raw)
        except ValidationError as exc:
            broken = _broken(exc)
            raise PolicyError(f"{where}: {_format(broken)}", broken) from None

    @classmethod
    def load(cls, path: str | Path, *, task: str | None = None):
        """Read a policy file, apply ``task``'s overrides (:func:`read_policy`), validate."""
        return cls.from_mapping(read_policy(path, task), where=str(path))


def describe_validation_error(exc: ValidationError, *, name: Callable[[str], str] | None = None) -> str:
    """Every broken rule of ``exc`` as ``setting: rule, got value``, joined by ``; ``.

    ``name`` maps a top-level field name to the name the reader wrote (a policy whose file
    nests a section that its model stores flat).
    """
    return _format(_broken(exc), name)


def _broken(exc: ValidationError) -> list[tuple[tuple[str, ...], str]]:
    broken = []
    for err in exc.errors():
        loc = tuple(str(x) for x in err["loc"])
        inner = (err.get("ctx") or {}).get("error")
        if isinstance(inner, PolicyError) and inner.broken:
            # raised by a PolicyModel's own __init__, which pydantic also runs for nested
            # sections and model_validate: its rules lie below this location
            broken.extend((loc + where, rule) for where, rule in inner.broken)
        elif err["type"] == "extra_forbidden":
            broken.append((loc, "unknown setting"))
        else:
            broken.append((loc, f"{err['msg']}, got {err.get('input')!r}"))
    return broken


def _format(broken: list[tuple[tuple[str, ...], str]], name: Callable[[str], str] | None = None) -> str:
    parts = []
    for loc, rule in broken:
        if loc and name is not None:
            loc = (name(loc[0]), *loc[1:])
        parts.append(f"{'.'.join(loc) or '(top level)'}: {rule}")
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

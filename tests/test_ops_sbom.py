"""CycloneDX SBOM of the serving runtime (clinops.ops.sbom): the closure of the runtime
dependencies with their installed versions, and nothing from the optional extras."""
from __future__ import annotations

import json
from importlib import metadata

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from clinops.ops.sbom import SbomError, installed_closure, write_sbom


def test_closure_follows_requirements_with_installed_versions():
    closure = installed_closure([Requirement("httpx")])
    # httpx requires these unconditionally (its metadata), and nothing from its extras
    assert {"httpx", "httpcore", "anyio", "certifi", "idna", "h11"} <= set(closure)
    assert all(version == metadata.version(name) for name, version in closure.items())
    assert not {"h2", "brotli", "socksio"} & set(closure)  # httpx's extras http2, brotli, socks


def test_a_missing_runtime_dependency_is_named():
    with pytest.raises(SbomError, match="no-such-distribution-xyz: required by the serving runtime"):
        installed_closure([Requirement("no-such-distribution-xyz==1.0")])


def test_sbom_lists_the_runtime_closure_only(tmp_path):
    pyproject = tmp_path / "pyproject.toml"
    pyproject.write_text('[project]\nname = "clinops-sbom-test"\nversion = "0.1.0"\n'
                         'dependencies = ["httpx==0.28.1"]\n'
                         '[project.optional-dependencies]\ntest = ["pytest==9.2.0"]\n')
    bom = json.loads(write_sbom(pyproject, tmp_path / "out" / "sbom.cdx.json").read_text())
    assert bom["bomFormat"] == "CycloneDX" and bom["metadata"]["component"]["name"] == "clinops-sbom-test"
    components = {canonicalize_name(c["name"]): c for c in bom["components"]}
    assert set(components) == set(installed_closure([Requirement("httpx")]))
    assert "pytest" not in components
    assert components["httpx"]["purl"] == f"pkg:pypi/httpx@{metadata.version('httpx')}"

"""A CycloneDX SBOM of the serving runtime: what ``pip install .`` (no extras) brings in.

The runtime dependencies are the ``[project] dependencies`` of ``pyproject.toml`` (the test and
workflow tools are extras); their closure is read from the installed distributions' metadata
(``Requires-Dist``, markers evaluated for this interpreter, extras not followed unless a
requirement asks for them) with the installed versions, and handed to ``cyclonedx-py
requirements`` (cyclonedx-bom), which writes the SBOM. The serving image installs the same set
(serving/Dockerfile), so a scanner reading the SBOM sees what the image runs.
"""
from __future__ import annotations

import subprocess
import sys
import tempfile
import tomllib
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name


class SbomError(RuntimeError):
    """A runtime dependency is not installed, or cyclonedx-py failed."""


def runtime_requirements(pyproject: str | Path) -> list[Requirement]:
    """The ``[project] dependencies`` of ``pyproject`` (no optional dependencies)."""
    project = tomllib.loads(Path(pyproject).read_text())["project"]
    return [Requirement(spec) for spec in project.get("dependencies", [])]


def installed_closure(requirements: list[Requirement]) -> dict[str, str]:
    """Canonical name -> installed version of ``requirements`` and everything they require.

    Raises
    ------
    SbomError : a required distribution is not installed in this environment.
    """
    versions: dict[str, str] = {}
    pending = [(req, frozenset(req.extras)) for req in requirements]
    seen_extras: dict[str, frozenset[str]] = {}
    while pending:
        req, extras = pending.pop()
        name = canonicalize_name(req.name)
        if name in seen_extras and extras <= seen_extras[name]:
            continue
        seen_extras[name] = seen_extras.get(name, frozenset()) | extras
        try:
            dist = metadata.distribution(req.name)
        except metadata.PackageNotFoundError:
            raise SbomError(f"{req.name}: required by the serving runtime but not installed") from None
        versions[name] = dist.version
        for spec in dist.requires or []:
            child = Requirement(spec)
            wanted = [{"extra": e} for e in extras] or [{"extra": ""}]
            if child.marker is None or any(child.marker.evaluate(env) for env in wanted):
                pending.append((child, frozenset(child.extras)))
    return versions


def write_sbom(pyproject: str | Path, output: str | Path) -> Path:
    """Write the CycloneDX JSON SBOM of the serving runtime of ``pyproject`` to ``output``.

    The output is reproducible (no timestamp, no random serial number): it changes only when a
    dependency does.
    """
    pyproject, output = Path(pyproject), Path(output)
    pins = installed_closure(runtime_requirements(pyproject))
    project = canonicalize_name(tomllib.loads(pyproject.read_text())["project"]["name"])
    pins.pop(project, None)  # the root component, described by --pyproject
    output.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", suffix=".txt") as requirements:
        requirements.write("".join(f"{name}=={version}\n" for name, version in sorted(pins.items())))
        requirements.flush()
        result = subprocess.run(
            [sys.executable, "-m", "cyclonedx_py", "requirements", "--pyproject", str(pyproject),
             "--output-reproducible", "--of", "JSON", "-o", str(output), requirements.name],
            capture_output=True, text=True)
    if result.returncode != 0:
        raise SbomError(f"cyclonedx-py failed: {result.stderr.strip()[-2000:]}")
    return output

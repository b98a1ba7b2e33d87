"""Parameter files: every shipped file validates; bad ones fail naming the key and the rule."""
from __future__ import annotations

from pathlib import Path

import pytest

from clinops.config import ParamsError, load_params

from tests.fixtures.params import tiny_params


@pytest.mark.parametrize("name", ["default", "quick", "mimic-iv"])
def test_shipped_parameter_files_validate(project_root, name):
    prm = load_params(project_root / "params" / f"{name}.yaml", root=project_root)
    assert prm.name == name
    assert prm["cohort"]["min_age"] == 18


def test_extends_overrides_only_what_the_child_says(tmp_path):
    parent = load_params(tiny_params(tmp_path, name="default"), root=tmp_path)
    child_file = tmp_path / "child.yaml"
    child_file.write_text("extends: default.yaml\nname: child\ndata: {synthetic: {scale: 0.01}}\n"
                          "reports_dir: null\nbuild_dir: null\n")
    child = load_params(child_file, root=tmp_path)
    assert (child["data"]["synthetic"]["scale"], parent["data"]["synthetic"]["scale"]) == (0.01, 0.02)
    assert child["data"]["synthetic"]["seed"] == parent["data"]["synthetic"]["seed"]  # merged, not replaced
    assert child["cohort"] == parent["cohort"]
    assert [f.name for f in child.files] == ["child.yaml", "default.yaml"]
    # reports of a run other than 'default' go to reports/<name>/
    assert child.reports_dir == tmp_path / "reports" / "child"


def _write(tmp_path: Path, text: str, name="p.yaml") -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


BASE = "name: t\nseed: 1\ndata: {source: synthetic}\n"


def test_unknown_key_is_named(tmp_path, project_root):
    p = _write(tmp_path, BASE + "cohort: {min_agee: 18}\n")
    with pytest.raises(ParamsError, match=r"unknown key cohort\.min_agee"):
        load_params(p, root=project_root)


def test_wrong_type_names_key_and_rule(tmp_path, project_root):
    p = _write(tmp_path, BASE + "modeling: {n_iter: many}\n")
    with pytest.raises(ParamsError, match=r"modeling\.n_iter: 'many' is not of type 'integer'"):
        load_params(p, root=project_root)


def test_out_of_range_value(tmp_path, project_root):
    p = _write(tmp_path, BASE + "uncertainty: {confidence_level: 1.5}\n")
    with pytest.raises(ParamsError, match=r"uncertainty\.confidence_level.*exclusiveMaximum"):
        load_params(p, root=project_root)


def test_missing_required_top_level_key(tmp_path, project_root):
    p = _write(tmp_path, "name: t\ndata: {source: synthetic}\n")
    with pytest.raises(ParamsError, match="'seed' is a required property"):
        load_params(p, root=project_root)


def test_mimic_source_requires_directory(tmp_path, project_root):
    p = _write(tmp_path, "name: t\nseed: 1\ndata: {source: mimic-iv}\n")
    with pytest.raises(ParamsError, match=r"data\.mimic_dir: required"):
        load_params(p, root=project_root)


def test_extends_cycle_is_reported(tmp_path, project_root):
    _write(tmp_path, "extends: b.yaml\n" + BASE, "a.yaml")
    _write(tmp_path, "extends: a.yaml\n" + BASE, "b.yaml")
    with pytest.raises(ParamsError, match="cycle"):
        load_params(tmp_path / "a.yaml", root=project_root)


def test_not_yaml_mapping(tmp_path, project_root):
    p = _write(tmp_path, "- just\n- a list\n")
    with pytest.raises(ParamsError, match="top level must be a mapping"):
        load_params(p, root=project_root)


def test_project_root_found_from_notebooks_folder(project_root, monkeypatch):
    monkeypatch.chdir(project_root / "notebooks")
    from clinops import config
    assert config.project_root() == project_root


def test_cli_reports_invalid_file(tmp_path, capsys, project_root, monkeypatch):
    from clinops.pipeline.preflight import main
    monkeypatch.chdir(project_root)
    p = _write(tmp_path, BASE + "fairness: {age_edges: [80, 18]}\n")
    assert main([str(p)]) == 1
    assert "fairness.age_edges: must be increasing" in capsys.readouterr().err


def test_preflight_names_a_drift_feature_the_model_does_not_have(project_root, tmp_path):
    from clinops.pipeline.preflight import preflight

    path = tiny_params(tmp_path, name="bad", readmission={"drift": {"feature": "age"}})
    with pytest.raises(ParamsError, match=r"readmission.drift.feature: 'age' is not a feature of the readmission"):
        preflight(load_params(path, root=tmp_path))
    assert preflight(load_params(tiny_params(tmp_path, name="good"), root=tmp_path)) == ""


# --- engines: data.source postgres, data.engine spark ---------------------------------------------
@pytest.mark.parametrize("name, engine", [("quick-postgres", "postgres"), ("quick-spark", "spark"), ("quick", "duckdb")])
def test_engine_examples_validate(project_root, name, engine):
    assert load_params(project_root / "params" / f"{name}.yaml", root=project_root).engine == engine


@pytest.mark.parametrize("text, rule", [
    ("name: t\nseed: 1\ndata: {source: synthetic, engine: spark}\n", "data.engine: spark runs over the parquet copy"),
    ("name: t\nseed: 1\ndata: {source: synthetic, postgres: {dsn_env: X}}\n", "data.postgres: only with data.source postgres"),
    ("name: t\nseed: 1\ndata: {source: synthetic}\nspark: {master: 'local[2]'}\n", "spark: only with data.engine spark"),
    ("name: t\nseed: 1\ndata: {source: postgres, postgres: {dsn: 'host=x password=secret'}}\n", "dsn"),
])
def test_engine_settings_break_their_rule_by_name(tmp_path, text, rule):
    with pytest.raises(ParamsError, match=rule):
        load_params(_write(tmp_path, text), root=tmp_path)

"""The task registry and the layering it allows: data knows no task, tasks know no workflow."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

from clinops import cli, tasks, workflow
from clinops.data.mimic import MimicSchemaError, open_mimic
from clinops.tasks import REGISTRY, Task, get_task, required_columns, task_for
from clinops.tasks.own_table import CohortTableError, manifest_from_features

from tests.fixtures import mimic_tables

PACKAGE = Path(tasks.__file__).resolve().parents[1]


def imported_modules(folder: Path) -> dict[str, set[str]]:
    """Every ``clinops``/``serving`` module each file under ``folder`` imports, anywhere in the file."""
    out = {}
    for path in folder.rglob("*.py"):
        names = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names |= {a.name for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module:
                names.add(node.module)
        out[str(path.relative_to(PACKAGE))] = {n for n in names if n.split(".")[0] in ("clinops", "serving")}
    return out


@pytest.mark.parametrize("layer, forbidden", [
    ("data", ("clinops.tasks", "clinops.pipeline", "clinops.settings", "serving")),
    ("tasks", ("clinops.pipeline", "clinops.workflow", "clinops.settings", "serving")),
    ("pipeline", ("serving",)),
])
def test_layers_import_only_downwards(layer, forbidden):
    bad = {f: sorted(m for m in mods if m.startswith(forbidden))
           for f, mods in imported_modules(PACKAGE / layer).items()}
    assert not {f: m for f, m in bad.items() if m}


def test_the_workflow_modules_never_import_the_server():
    # clinops/ops (the serving demo's operations stack) is outside the workflow (NOT_IN_WORKFLOW)
    bad = {f: m for f, m in imported_modules(PACKAGE).items()
           if not f.startswith(workflow.NOT_IN_WORKFLOW) and any(x.startswith("serving") for x in m)}
    assert not bad


def test_registry_resolves_each_slot_and_source():
    assert task_for("primary", "synthetic") is task_for("primary", "mimic-iv") is REGISTRY["mortality"]
    assert task_for("primary", "table").name == "table"
    assert task_for("readmission", "mimic-iv").seed_offset != task_for("primary", "mimic-iv").seed_offset
    with pytest.raises(ValueError, match="0 registered tasks fill slot 'readmission' for data.source 'table'"):
        task_for("readmission", "table")
    with pytest.raises(ValueError, match="unknown task 'sepsis'"):
        get_task("sepsis")
    with pytest.raises(ValueError, match="slot must be one of"):
        Task(name="x", slot="tertiary", sources=("synthetic",), title="x", manifest="x")


def test_each_task_declares_what_it_reads():
    mortality, readmission = required_columns("mortality"), required_columns("readmission")
    assert "mimiciv_icu.chartevents" in mortality and "mimiciv_hosp.services" not in mortality
    assert "mimiciv_hosp.services" in readmission and "mimiciv_hosp.omr" in readmission
    both = required_columns("mortality", "readmission")
    assert set(both) == set(mortality) | set(readmission)
    assert set(both["mimiciv_hosp.admissions"]) == (set(mortality["mimiciv_hosp.admissions"])
                                                  | set(readmission["mimiciv_hosp.admissions"]))
    assert required_columns("table") == {}


def test_the_data_layer_checks_the_requirements_it_is_given(tmp_path):
    root = mimic_tables.write_mimic(tmp_path / "mimic", {})
    with open_mimic(root, required=required_columns("mortality")):
        pass  # every table the mortality task reads exists (empty)
    with pytest.raises(MimicSchemaError, match="mimiciv_hosp.services"):
        open_mimic(root, required=required_columns("readmission"))


def test_workflow_declares_every_sql_file_a_task_reads():
    sql = PACKAGE / "sql"
    declared = {p.name for kind in ("cohort", "features", "readmission") for p in workflow.sql_files(kind)}
    assert declared == {p.name for p in sql.glob("*.sql")}
    assert all(p.is_file() for kind in ("cohort", "features", "readmission") for p in workflow.sql_files(kind))
    with pytest.raises(ValueError, match="kind: must be one of"):
        workflow.sql_files("sepsis")


def test_own_table_features_follow_the_manifest_rules():
    with pytest.raises(CohortTableError) as info:
        manifest_from_features([{"name": "vent", "kind": "binary", "plausible_range": [0, 1]},
                                {"name": "Bad Name", "kind": "numeric"}, {"name": "split", "kind": "numeric"}],
                               name="t", description="d")
    assert [c for c, _ in info.value.problems] == ["vent", "Bad Name", "split"]  # all of them, in order
    rules = " ".join(r for _, r in info.value.problems)
    assert "plausible_range' is only for numeric" in rules and "lower snake case" in rules and "reserved" in rules


def test_one_command_lists_and_dispatches(capsys, monkeypatch):
    assert cli.main(["--help"]) == 0
    listed = capsys.readouterr().out
    for name in ("synth", "convert", "check", "params", "table", "audit", "pipeline", "reproduce", "ops", "serve"):
        assert f"  {name} " in listed
    assert cli.main(["sepsis"]) == 2
    assert "unknown command 'sepsis'" in capsys.readouterr().err
    calls = []
    monkeypatch.setattr(cli.os, "execv", lambda exe, args: calls.append(args))
    cli.main(["serve", "--port", "9"])
    assert calls and calls[0][1:] == ["-m", "serving", "--port", "9"]


#: Modules of the workflow layers; an import inside a function is allowed only for a heavy optional
#: dependency deferred on purpose (and says so in a comment on that line).
LAYERED = ("tasks", "pipeline", "data", "cli.py", "config.py", "settings.py", "workflow.py", "workflow_cli.py",
           "reproduction.py", "reviewer.py", "report.py", "task_table.py")
DEFERRED = ("matplotlib", "mlflow", "evidently", "shap", "sqlglot", "psycopg", "pyspark")


def test_no_import_is_hidden_inside_a_function():
    hidden = []
    for entry in LAYERED:
        for path in ((PACKAGE / entry).rglob("*.py") if (PACKAGE / entry).is_dir() else [PACKAGE / entry]):
            lines = path.read_text().splitlines()
            for node in ast.walk(ast.parse("\n".join(lines))):
                if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    continue
                for sub in ast.walk(node):
                    if isinstance(sub, (ast.Import, ast.ImportFrom)):
                        module = sub.module if isinstance(sub, ast.ImportFrom) else sub.names[0].name
                        said_why = "#" in lines[sub.lineno - 1]
                        if not (module.split(".")[0] in DEFERRED and said_why):
                            hidden.append(f"{path.relative_to(PACKAGE)}:{sub.lineno} {module}")
    assert not hidden

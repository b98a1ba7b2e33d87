# The workflow: one rule per notebook or step; a parameter file in, build/ and reports/ out.
#
#   make all                                               (= the command below, then the checks)
#   .venv/bin/snakemake --cores 2 --config params=params/default.yaml
#   .venv/bin/snakemake --cores 2 --config params=params/quick.yaml --dry-run    (what would run)
#
# Run Snakemake from the project's .venv (no activation needed: every step runs with the Python
# that runs Snakemake). Every rule declares what it reads and writes:
#   * real files: its notebook, its SQL files and feature manifest, upstream artifacts;
#   * fingerprints (build/<run>/inputs/*.json, clinops.workflow): the settings the step reads,
#     resolved from the parameter file, every file it `extends` and the policy files; the
#     package code (SHA-256 of clinops/*.py); the data source by content (file SHA-256s).
#     A fingerprint file is rewritten only when its content changes, so an edit reruns exactly
#     the steps that read what changed, and an unchanged rerun runs nothing.
# Nothing starts from committed files: a fresh clone has no build/, so every step runs and
# rewrites its reports; `reproduction` then compares each regenerated table with the committed copy.
import sys
from pathlib import Path

sys.path.insert(0, workflow.basedir)  # this checkout's clinops, whichever one the .venv installed
from clinops.config import load_params
from clinops.data.cms_planned import CODE_LIST as CMS_CODE_LIST
from clinops.workflow import manifest_file, sql_files, write_fingerprints

PARAMS_FILE = config.get("params") or (workflow.configfiles[0] if workflow.configfiles else "params/default.yaml")
P = load_params(PARAMS_FILE)
FP = write_fingerprints(P)
B, R, ROOT = str(P.build_dir), str(P.reports_dir), str(P.root)
PY = sys.executable  # the interpreter running Snakemake: the project's .venv
LOGS = f"{B}/logs"
MIMIC_SOURCE = P.source in ("synthetic", "mimic-iv", "postgres")
READMISSION = MIMIC_SOURCE and P.get("readmission", {}).get("enabled", True)
COMPARISON = P.source != "table"
NB = f"{ROOT}/notebooks"


def step(name):
    """A workflow step with a one-line error for `make all` (clinops step: clinops.workflow_cli)."""
    return f"{PY} -m clinops step --params {P.path} --rule {name} --log {LOGS}/{name}.log --"


def notebook(nb, rule):
    """papermill with the parameter file injected; then an HTML copy (the one git keeps)."""
    return (step(rule) + f" {PY} -m papermill --cwd {NB} --log-level WARNING {NB}/{nb}.ipynb "
            f"{R}/notebooks/{nb}.ipynb -p params_file {P.path} && "
            + step(rule) + f" {PY} -m jupyter nbconvert --to html --template basic --log-level WARN {R}/notebooks/{nb}.ipynb")


def tables(base, *stems):
    return [f"{base}/{s}.{ext}" for s in stems for ext in ("csv", "md")]


def nb_out(nb):
    return [f"{R}/notebooks/{nb}.ipynb", f"{R}/notebooks/{nb}.html"]


def model_outputs(build, reports):
    return dict(
        bundle=f"{build}/bundle/bundle.json", preds=f"{build}/test_predictions.parquet",
        model_files=[f"{build}/bundle/model.json", f"{build}/bundle/calibrator.joblib"],
        tables=tables(f"{reports}/model", "calibration", "chosen_configuration", "conformal_coverage", "coverage_by_class",
                      "cv_candidates", "lineage", "random_search_top20", "ranking", "reliability", "test_metrics"),
        figure=f"{reports}/model/reliability.png")


def fairness_outputs(build, reports):
    return dict(tables=tables(f"{reports}/fairness", "table2", "fairness_gaps", "alerts_by_rule"),
                other=[f"{reports}/fairness/alerts.md", f"{reports}/fairness/subgroups.png"],
                events=f"{build}/governance/fairness.json")


def drift_outputs(build, reports):
    return dict(tables=tables(f"{reports}/drift", "scenario", "detection", "evidently_psi", "governance_events",
                              "cbpe", "benchmark", "scenario_strength"),
                other=[f"{reports}/drift/evidently_psi.json", f"{reports}/drift/evidently_psi.html",
                       f"{reports}/drift/score_stream.png",
                       f"{reports}/drift/psi_over_time.png"],
                events=f"{build}/governance/drift.json")


def comparison(*stages):
    return [f"{B}/comparison/{s}.json" for s in stages] if COMPARISON else []


PRIMARY_B, READM_B, READM_R = f"{B}/primary", f"{B}/readmission", f"{R}/readmission"
CODE = FP["code"]

rule all:
    input:
        f"{R}/reproduction.md",
        f"{R}/index.html",
    default_target: True


rule data:
    input: FP["data"], CODE
    output: f"{B}/stamps/data.json"
    log: f"{LOGS}/data.log"
    shell: step("data") + f" {PY} -m clinops pipeline data {P.path}"


if P.is_synthetic:
    # The generator's calibration targets and the real data's traps (one count per trap) on the
    # data this run generated; at paper scale also the slow tests of tests/test_synthetic_calibration.py.
    PAPER_SCALE = float(P["data"].get("synthetic", {}).get("scale", 1.0)) == 1.0
    rule synthetic_calibration:
        # the planned-procedure trap counts with the readmission task's CMS code list
        input: rules.data.output, CODE, str(CMS_CODE_LIST)
        output: tables(f"{R}/synthetic", "calibration", "traps")
        log: f"{LOGS}/synthetic_calibration.log"
        shell:
            step("synthetic_calibration") + f" {PY} -m clinops pipeline calibration {P.path}"
            + (f" && CLINOPS_SYNTH_DIR={P.mimic_dir} {PY} -m pytest -q -m slow -p no:cacheprovider "
               f"{ROOT}/tests/test_synthetic_calibration.py" if PAPER_SCALE else "")


if MIMIC_SOURCE:
    rule cohort:
        input: rules.data.output, FP["cohort"], CODE, f"{NB}/01_cohort.ipynb", [str(p) for p in sql_files("cohort")]
        output:
            nb=nb_out("01_cohort"),
            cohort=f"{PRIMARY_B}/cohort.parquet",
            flow=f"{PRIMARY_B}/cohort_flow.parquet",
            tables=tables(f"{R}/cohort", "flow", "label_ambiguity", "split_by_real_year"),
            figure=f"{R}/cohort/flow.png",
        log: f"{LOGS}/cohort.log"
        shell: notebook("01_cohort", "cohort")

    rule features:
        input:
            rules.cohort.output.cohort, rules.cohort.output.flow, FP["features"], CODE,
            f"{NB}/02_features.ipynb", [str(p) for p in sql_files("features")], str(manifest_file("mortality")),
        output:
            nb=nb_out("02_features"),
            table=f"{PRIMARY_B}/task_table.parquet",
            sources=f"{PRIMARY_B}/task_table.sources.json",
            flow=f"{PRIMARY_B}/cohort_flow_final.parquet",
            tables=(tables(f"{R}/features", "missingness", "missingness_prewindow", "manifest", "split_summary")
                    + tables(f"{R}/cohort", "flow_final")),
            values=comparison("features"),
        log: f"{LOGS}/features.log"
        shell: notebook("02_features", "features")

    TASK_TABLE, TASK_SOURCES = rules.features.output.table, rules.features.output.sources
else:
    rule task_table:
        input: rules.data.output, FP["table"], CODE
        output:
            table=f"{PRIMARY_B}/task_table.parquet",
            sources=f"{PRIMARY_B}/task_table.sources.json",
            tables=tables(f"{R}/cohort", "split_summary", "sensitive_groups") + tables(f"{R}/features", "manifest", "missingness"),
        log: f"{LOGS}/task_table.log"
        shell: step("task_table") + f" {PY} -m clinops pipeline task-table {P.path}"

    TASK_TABLE, TASK_SOURCES = rules.task_table.output.table, rules.task_table.output.sources


rule model_selection:
    input: TASK_TABLE, TASK_SOURCES, FP["model-primary"], CODE, f"{NB}/03_model_selection.ipynb"
    output:
        nb=nb_out("03_model_selection"),
        values=comparison("model_primary"),
        **model_outputs(PRIMARY_B, R),
    log: f"{LOGS}/model_selection.log"
    threads: 2
    shell: notebook("03_model_selection", "model_selection")


rule fairness:
    input: rules.model_selection.output.preds, FP["fairness-primary"], CODE, f"{NB}/04_fairness.ipynb"
    output:
        nb=nb_out("04_fairness"),
        values=comparison("fairness_primary"),
        **fairness_outputs(PRIMARY_B, R),
    log: f"{LOGS}/fairness.log"
    shell: notebook("04_fairness", "fairness")


rule drift:
    input:
        rules.model_selection.output.bundle, rules.model_selection.output.preds, TASK_TABLE,
        FP["drift-primary"], CODE, f"{NB}/05_drift.ipynb",
    output:
        nb=nb_out("05_drift"),
        values=comparison("drift_primary"),
        **drift_outputs(PRIMARY_B, R),
    log: f"{LOGS}/drift.log"
    shell: notebook("05_drift", "drift")


rule governance:
    # The stages' governance events, joined by a declared step (no state shared between rules).
    input: rules.fairness.output.events, rules.drift.output.events, CODE
    output: tables(f"{R}/governance", "events")
    log: f"{LOGS}/governance.log"
    shell: step("governance") + f" {PY} -m clinops pipeline governance {P.path} --task primary"


if MIMIC_SOURCE:
    # Sensitivity models (issue 15): the main model's recipe refitted without dx_chapter, with the
    # at-admission proxy, per label horizon and per split rule (clinops.modeling.sensitivity).
    rule sensitivity:
        input:
            TASK_TABLE, rules.cohort.output.cohort, rules.model_selection.output.bundle,
            FP["sensitivity-primary"], CODE,
        output: tables(f"{R}/sensitivity", "mortality")
        log: f"{LOGS}/sensitivity.log"
        shell: step("sensitivity") + f" {PY} -m clinops pipeline sensitivity {P.path} --task primary"

    SENSITIVITY_TABLES = rules.sensitivity.output
else:
    SENSITIVITY_TABLES = []


READMISSION_TABLES = []
if READMISSION:
    rule readmission:
        input:
            rules.data.output, FP["readmission-data"], FP["model-readmission"], FP["fairness-readmission"],
            FP["drift-readmission"], CODE, f"{NB}/06_readmission.ipynb",
            [str(p) for p in sql_files("readmission")], str(manifest_file("readmission")),
            str(CMS_CODE_LIST),  # the planned-readmission code lists (data, not in CODE)
        output:
            nb=nb_out("06_readmission"),
            summary=f"{READM_R}/summary.md",
            task_table=[f"{READM_B}/task_table.parquet", f"{READM_B}/task_table.sources.json",
                        f"{READM_B}/cohort.parquet"],
            data=tables(f"{READM_R}/cohort", "flow", "outcomes", "split_by_real_year", "definitions") + tables(f"{READM_R}/features", "manifest", "missingness"),
            values=comparison("readmission_cohort", "model_readmission", "fairness_readmission"),
            fairness_events=fairness_outputs(READM_B, READM_R)["events"],
            fairness=fairness_outputs(READM_B, READM_R)["tables"] + fairness_outputs(READM_B, READM_R)["other"],
            drift_events=drift_outputs(READM_B, READM_R)["events"],
            drift=drift_outputs(READM_B, READM_R)["tables"] + drift_outputs(READM_B, READM_R)["other"],
            **model_outputs(READM_B, READM_R),
        log: f"{LOGS}/readmission.log"
        threads: 2
        shell: notebook("06_readmission", "readmission")

    rule readmission_governance:
        input: rules.readmission.output.fairness_events, rules.readmission.output.drift_events, CODE
        output: tables(f"{READM_R}/governance", "events")
        log: f"{LOGS}/readmission_governance.log"
        shell: step("readmission_governance") + f" {PY} -m clinops pipeline governance {P.path} --task readmission"

    # Readmission definitions (planned rule, competing deaths, censored follow-up) refitted the same way.
    rule readmission_sensitivity:
        input:
            rules.readmission.output.task_table, rules.readmission.output.bundle,
            FP["sensitivity-readmission"], CODE,
        output: tables(f"{READM_R}/sensitivity", "readmission")
        log: f"{LOGS}/readmission_sensitivity.log"
        shell: step("readmission_sensitivity") + f" {PY} -m clinops pipeline sensitivity {P.path} --task readmission"

    READMISSION_TABLES = (rules.readmission.output.data + rules.readmission.output.tables
                          + rules.readmission.output.fairness + rules.readmission.output.drift
                          + rules.readmission_governance.output + rules.readmission_sensitivity.output)


rule paper_comparison:
    input:
        values=(rules.features.output.values if MIMIC_SOURCE else []) + rules.model_selection.output.values
               + rules.fairness.output.values + rules.drift.output.values
               + (rules.readmission.output.values if READMISSION else []),
        paper=f"{ROOT}/clinops/paper_values.yaml",
        # the data stamp: its SYNTHETIC.json provenance decides what holds by construction (an own
        # cohort has no comparison and reads no stamp)
        data=rules.data.output if COMPARISON else [],
        report=FP["report"], code=CODE,
    output: [f"{R}/paper_comparison.md"] + ([f"{R}/paper_comparison.csv"] + tables(R, "paper_consistency") if COMPARISON else [])
    log: f"{LOGS}/paper_comparison.log"
    shell: step("paper_comparison") + f" {PY} -m clinops pipeline compare {P.path}"


# Every table the run regenerates (CSV), compared with the committed copy.
ALL_TABLES = [f for f in (
    (rules.features.output.tables + rules.cohort.output.tables if MIMIC_SOURCE else rules.task_table.output.tables)
    + rules.model_selection.output.tables + rules.fairness.output.tables + rules.drift.output.tables
    + rules.governance.output + SENSITIVITY_TABLES + READMISSION_TABLES + rules.paper_comparison.output
    + (rules.synthetic_calibration.output if P.is_synthetic else [])) if f.endswith(".csv")]


rule reproduction:
    input: ALL_TABLES, CODE
    output: tables(R, "reproduction")
    log: f"{LOGS}/reproduction.log"
    shell: step("reproduction") + f" {PY} -m clinops reproduce {P.path} " + " ".join(ALL_TABLES)


rule reviewer_index:
    # The reviewer's entry page and one model card per registered model (clinops review: clinops.reviewer).
    input:
        rules.reproduction.output, rules.paper_comparison.output, rules.model_selection.output.bundle,
        (rules.readmission.output.bundle if READMISSION else []),
        [x for r in ([rules.cohort, rules.features] if MIMIC_SOURCE else []) + [rules.model_selection, rules.fairness,
         rules.drift] + ([rules.readmission] if READMISSION else []) for x in r.output.nb],
        CODE,
    output: f"{R}/index.html", f"{R}/model_cards/primary.html", ([f"{R}/model_cards/readmission.html"] if READMISSION else [])
    log: f"{LOGS}/reviewer_index.log"
    shell: step("reviewer_index") + f" {PY} -m clinops review {P.path}"

# The workflow: one rule per notebook; a parameter file in, reports/ out.
#
#   snakemake --cores 2 --config params=params/default.yaml     (what `make all` runs)
#   snakemake --cores 2 --configfile params/mimic-iv.yaml       (equivalent: the file itself)
#   snakemake --cores 2 --config params=params/quick.yaml reports/quick/fairness/table2.md
#
# Each notebook rule runs papermill with the parameter file injected into the notebook's
# `parameters` cell; the executed copy goes to <reports>/notebooks/. Intermediate artifacts
# (cohort, features, model bundle) go to build/<name>/ and are not committed.
from pathlib import Path

from clinops.config import load_params

PARAMS_FILE = config.get("params") or (workflow.configfiles[0] if workflow.configfiles else "params/default.yaml")
P = load_params(PARAMS_FILE)
B = str(P.build_dir)
R = str(P.reports_dir)
ROOT = str(P.root)
MIMIC_SOURCE = P.source in ("synthetic", "mimic-iv")
READMISSION = MIMIC_SOURCE and P.get("readmission", {}).get("enabled", True)


def papermill(nb):
    # The executed notebook stays in reports/notebooks/ (not committed: notebooks are committed
    # without outputs); an HTML copy beside it is what the repository keeps for reviewers.
    return (f"papermill --cwd {ROOT}/notebooks --progress-bar --log-level WARNING "
            f"{ROOT}/notebooks/{nb}.ipynb {R}/notebooks/{nb}.ipynb -p params_file {P.path}"
            f" && jupyter nbconvert --to html --template basic --log-level WARN {R}/notebooks/{nb}.ipynb")


TASKS = ["mortality"] + (["readmission"] if READMISSION else [])
FINAL = [f"{R}/paper_comparison.md", f"{R}/fairness/table2.md", f"{R}/drift/detection.md"]
if READMISSION:
    FINAL.append(f"{R}/readmission/summary.md")
if P.is_synthetic:
    FINAL.append(f"{R}/synthetic/calibration.md")


rule all:
    input: FINAL
    default_target: True


rule data:
    output: f"{B}/stamps/data.json"
    shell: "python -m clinops.pipeline data {PARAMS_FILE}"


if P.is_synthetic:
    # The generator's calibration targets: a table in reports/ and, at paper scale, the slow
    # tests of tests/test_synthetic_calibration.py run on the data this workflow generated.
    PAPER_SCALE = float(P["data"].get("synthetic", {}).get("scale", 1.0)) == 1.0
    rule synthetic_calibration:
        input: rules.data.output
        output: f"{R}/synthetic/calibration.md"
        shell:
            "python -m clinops.pipeline calibration {PARAMS_FILE}"
            + (f" && CLINOPS_SYNTH_DIR={P.mimic_dir} python -m pytest -q -m slow -p no:cacheprovider "
               f"{ROOT}/tests/test_synthetic_calibration.py" if PAPER_SCALE else "")


if MIMIC_SOURCE:
    rule cohort:
        input: rules.data.output, f"{ROOT}/notebooks/01_cohort.ipynb"
        output:
            nb=f"{R}/notebooks/01_cohort.ipynb",
            cohort=f"{B}/primary/cohort.parquet",
            flow=f"{R}/cohort/flow.md",
        shell: papermill("01_cohort")

    rule features:
        input: rules.cohort.output.cohort, f"{ROOT}/notebooks/02_features.ipynb"
        output:
            nb=f"{R}/notebooks/02_features.ipynb",
            table=f"{B}/primary/task_table.parquet",
            missing=f"{R}/features/missingness.md",
        shell: papermill("02_features")

    TASK_TABLE = rules.features.output.table
else:
    rule task_table:
        input: rules.data.output
        output: table=f"{B}/primary/task_table.parquet"
        shell: "python -m clinops.pipeline task-table {PARAMS_FILE}"

    TASK_TABLE = rules.task_table.output.table


rule model_selection:
    input: TASK_TABLE, f"{ROOT}/notebooks/03_model_selection.ipynb"
    output:
        nb=f"{R}/notebooks/03_model_selection.ipynb",
        bundle=f"{B}/primary/bundle/bundle.json",
        preds=f"{B}/primary/test_predictions.parquet",
        table=f"{R}/model/test_metrics.md",
    threads: 2
    shell: papermill("03_model_selection")


rule fairness:
    input: rules.model_selection.output.preds, f"{ROOT}/notebooks/04_fairness.ipynb"
    output:
        nb=f"{R}/notebooks/04_fairness.ipynb",
        table=f"{R}/fairness/table2.md",
    shell: papermill("04_fairness")


rule drift:
    input: rules.model_selection.output.bundle, rules.model_selection.output.preds, f"{ROOT}/notebooks/05_drift.ipynb"
    output:
        nb=f"{R}/notebooks/05_drift.ipynb",
        table=f"{R}/drift/detection.md",
    shell: papermill("05_drift")


if READMISSION:
    rule readmission:
        input: rules.data.output, rules.model_selection.output.bundle, f"{ROOT}/notebooks/06_readmission.ipynb"
        output:
            nb=f"{R}/notebooks/06_readmission.ipynb",
            summary=f"{R}/readmission/summary.md",
        threads: 2
        shell: papermill("06_readmission")


rule paper_comparison:
    input: [x for x in FINAL if not x.endswith("paper_comparison.md")]
    output: f"{R}/paper_comparison.md"
    shell: "python -m clinops.pipeline compare {PARAMS_FILE}"

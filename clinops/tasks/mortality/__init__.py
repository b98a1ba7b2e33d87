"""ICU mortality, the paper's primary task on MIMIC-IV: cohort and label (:mod:`.cohort`), the
17 first-day features of :mod:`clinops.features`, the packaged ``mortality`` manifest and the
at-admission proxies of the diagnosis the task table also carries (:mod:`.proxies`)."""
from __future__ import annotations

from clinops.features import FEATURE_SQL_FILES, feature_sql_sha256
from clinops.features import REQUIRED_COLUMNS as FEATURE_COLUMNS
from clinops.tasks.mortality.cohort import REQUIRED_COLUMNS as COHORT_COLUMNS
from clinops.tasks.mortality.proxies import REQUIRED_COLUMNS as PROXY_COLUMNS
from clinops.tasks.task import PaperIds, Task, merge_requirements

MORTALITY = Task(
    name="mortality", slot="primary", sources=("synthetic", "mimic-iv", "postgres"), title="ICU mortality",
    manifest="mortality", required_columns=merge_requirements(COHORT_COLUMNS, FEATURE_COLUMNS, PROXY_COLUMNS),
    sql_by_stage={"cohort": ("macros.sql", "icu_cohort.sql", "label_prevalence.sql"), "features": FEATURE_SQL_FILES},
    feature_sql_sha256=feature_sql_sha256, seed_offset=0, policy_task="mortality",
    age_feature="age", sex_feature="sex_male",
    paper=PaperIds(model={"auroc": "test_auroc", "sensitivity": "test_sensitivity", "specificity": "test_specificity",
                          "ppv": "test_ppv", "ece": "ece", "conformal_coverage": "conformal_coverage"},
                   cv_and_hyperparameters=True, table2=True, drift=True))

__all__ = ["MORTALITY"]

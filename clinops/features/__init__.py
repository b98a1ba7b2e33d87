"""The 24 h window features, feature manifests and frozen imputation (Layer 1).

- :mod:`clinops.features.manifest`: :class:`FeatureManifest`, the single list of features a
  model may use (``FeatureManifest.load('mortality')``).
- :mod:`clinops.features.extract`: :func:`extract_features`, the window SQL over MIMIC-IV.
- :mod:`clinops.features.items`: the manifest bound into the tables the SQL reads.
- :mod:`clinops.features.lab_window`: lab missingness with and without the 6 h pre-window.
- :mod:`clinops.features.imputation`: medians frozen on the training set.
"""
from clinops.features.extract import (
    FEATURE_SQL_FILES,
    LAB_TIMES,
    METHODS,
    REQUIRED_COLUMNS,
    check_lab_options,
    extract_features,
    feature_sql_sha256,
    icd_chapter,
    required_columns,
)
from clinops.features.imputation import (
    freeze_medians,
    freeze_training_medians,
    impute,
    missingness_table,
)
from clinops.features.lab_window import lab_missingness_by_prewindow
from clinops.features.manifest import (
    FeatureManifest,
    FeatureSpec,
    FeatureValidationError,
    ManifestError,
)

__all__ = [
    "FeatureManifest", "FeatureSpec", "FeatureValidationError", "ManifestError",
    "extract_features", "missingness_table", "feature_sql_sha256", "required_columns", "icd_chapter",
    "freeze_medians", "freeze_training_medians", "impute",
    "REQUIRED_COLUMNS", "METHODS", "FEATURE_SQL_FILES", "LAB_TIMES", "check_lab_options",
    "lab_missingness_by_prewindow",
]

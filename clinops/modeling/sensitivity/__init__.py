"""Sensitivity models (issue 15): the main model's recipe refitted under other design choices.

``refit`` (:func:`refit_and_evaluate`: one refit, raw-score AUROC with the one bootstrap CI and
AUPRC), ``variants`` (the registry: one small function per variant, frame -> rows, features,
label), ``table`` (:func:`sensitivity_table`: every variant, its change against the main row),
``settings`` (the ``sensitivity:`` parameters and their defaults).
The workflow step is :mod:`clinops.pipeline.sensitivity`.
"""
from clinops.modeling.sensitivity.refit import RESULT_COLUMNS, refit_and_evaluate, variant_manifest, xgb_config_from_bundle
from clinops.modeling.sensitivity.settings import SENSITIVITY_DEFAULTS, sensitivity_settings
from clinops.modeling.sensitivity.table import TABLE_COLUMNS, sensitivity_table
from clinops.modeling.sensitivity.variants import (MORTALITY_VARIANTS, READMISSION_VARIANTS, VARIANTS, NotAvailable,
                                                   Variant, VariantContext, VariantSpec,
                                                   horizon_variant, mortality_labels, variants_for)

__all__ = ["RESULT_COLUMNS", "SENSITIVITY_DEFAULTS", "TABLE_COLUMNS", "MORTALITY_VARIANTS", "READMISSION_VARIANTS", "VARIANTS",
           "NotAvailable", "Variant", "VariantContext", "VariantSpec", "horizon_variant",
           "mortality_labels", "refit_and_evaluate", "sensitivity_settings", "sensitivity_table", "variant_manifest", "variants_for",
           "xgb_config_from_bundle"]

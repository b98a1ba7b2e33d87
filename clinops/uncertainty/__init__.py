"""Uncertainty (Layer 2): calibration, split-conformal sets and the single-patient predictor.

- :mod:`clinops.uncertainty.calibration`: :func:`fit_isotonic`, :func:`expected_calibration_error`,
  :func:`reliability_table`, :func:`plot_reliability`.
- :mod:`clinops.uncertainty.conformal`: :func:`fit_conformal` (MAPIE, LAC),
  :func:`conformal_threshold`, :func:`conformal_sets`, :func:`sets_from_probability`,
  :func:`coverage_table`; class-conditional (Mondrian) sets: :func:`class_conditional_thresholds`,
  :func:`class_conditional_sets`, :func:`sets_for_mode`.
- :mod:`clinops.uncertainty.class_coverage`: :func:`class_coverage_table` (both modes, per class
  and group) and :func:`contradicting_singleton` (the low-confidence flag).
- :mod:`clinops.uncertainty.predictor`: :class:`RiskPredictor`, :class:`RiskResult`.

Imports go one way: ``uncertainty -> bundle`` (the predictor reads a
:class:`~clinops.bundle.ModelBundle`); :mod:`clinops.modeling` imports this package to
calibrate and conformalize, never the reverse.
"""
from clinops.uncertainty.calibration import (
    expected_calibration_error,
    fit_isotonic,
    plot_reliability,
    reliability_table,
)
from clinops.uncertainty.conformal import (
    CONFORMAL_MODES,
    SET_TOLERANCE,
    class_conditional_sets,
    class_conditional_thresholds,
    conformal_sets,
    conformal_threshold,
    coverage_table,
    fit_conformal,
    sets_for_mode,
    sets_from_probability,
)
from clinops.uncertainty.class_coverage import class_coverage_table, contradicting_singleton
from clinops.uncertainty.predictor import RiskPredictor, RiskResult

__all__ = [
    "fit_isotonic", "expected_calibration_error", "reliability_table", "plot_reliability",
    "fit_conformal", "conformal_threshold", "conformal_sets", "sets_from_probability",
    "coverage_table", "SET_TOLERANCE", "RiskResult", "RiskPredictor",
    "CONFORMAL_MODES", "class_conditional_thresholds", "class_conditional_sets", "sets_for_mode",
    "class_coverage_table", "contradicting_singleton",
]

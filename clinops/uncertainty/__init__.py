"""Uncertainty (Layer 2): calibration, split-conformal sets and the single-patient predictor.

- :mod:`clinops.uncertainty.calibration`: :func:`fit_isotonic`, :func:`expected_calibration_error`,
  :func:`ece_interval` (bootstrap CI), :func:`reliability_table`, :func:`plot_reliability`.
- :mod:`clinops.uncertainty.calibrators`: :func:`fit_calibrator` (``isotonic`` or the strictly
  increasing ``isotonic_interpolated``), :func:`cross_fitted_probabilities`.
- :mod:`clinops.uncertainty.conformal`: :func:`fit_conformal` (MAPIE, LAC),
  :func:`conformal_threshold`, :func:`lac_threshold` (cross-conformal), :func:`conformal_sets`, :func:`sets_from_probability`,
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
    ECE_STRATEGIES,
    ece_interval,
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
    lac_threshold,
    sets_for_mode,
    sets_from_probability,
)
from clinops.uncertainty.calibrators import (
    CALIBRATORS,
    cross_fitted_probabilities,
    fit_calibrator,
    fit_interpolated_isotonic,
    isotonic_blocks,
)
from clinops.uncertainty.class_coverage import class_coverage_table, contradicting_singleton
from clinops.uncertainty.predictor import RiskPredictor, RiskResult

__all__ = [
    "fit_isotonic", "expected_calibration_error", "reliability_table", "plot_reliability",
    "fit_conformal", "conformal_threshold", "conformal_sets", "sets_from_probability",
    "coverage_table", "SET_TOLERANCE", "RiskResult", "RiskPredictor",
    "CONFORMAL_MODES", "class_conditional_thresholds", "class_conditional_sets", "sets_for_mode",
    "class_coverage_table", "contradicting_singleton", "ECE_STRATEGIES", "ece_interval", "lac_threshold",
    "CALIBRATORS", "fit_calibrator", "fit_interpolated_isotonic", "isotonic_blocks", "cross_fitted_probabilities",
]

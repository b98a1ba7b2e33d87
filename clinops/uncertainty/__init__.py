"""Uncertainty (Layer 2): calibration, split-conformal sets and the single-patient predictor.

- :mod:`clinops.uncertainty.calibration`: :func:`fit_isotonic`, :func:`expected_calibration_error`,
  :func:`reliability_table`, :func:`plot_reliability`.
- :mod:`clinops.uncertainty.conformal`: :func:`fit_conformal` (MAPIE, LAC),
  :func:`conformal_threshold`, :func:`conformal_sets`, :func:`sets_from_probability`,
  :func:`coverage_table`.
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
    SET_TOLERANCE,
    conformal_sets,
    conformal_threshold,
    coverage_table,
    fit_conformal,
    sets_from_probability,
)
from clinops.uncertainty.predictor import RiskPredictor, RiskResult

__all__ = [
    "fit_isotonic", "expected_calibration_error", "reliability_table", "plot_reliability",
    "fit_conformal", "conformal_threshold", "conformal_sets", "sets_from_probability",
    "coverage_table", "SET_TOLERANCE", "RiskResult", "RiskPredictor",
]

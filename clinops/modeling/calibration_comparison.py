"""Raw against calibrated ranking, per calibration scheme and map: what calibration costs.

:func:`fit_calibrated` fits the final model under one scheme (``split``: the paper's held-out
slice; ``cross_fit``: out-of-fold scores over every training row) and one calibration map
(``isotonic`` or the strictly increasing ``isotonic_interpolated``). :func:`calibration_ranking`
fits every combination and reports, on the test rows, the raw booster score's AUROC and AUPRC
beside the calibrated probability's, the number of distinct values each takes, and the ECE with
a bootstrap interval in uniform and equal-mass bins. The target of issue 18: calibrated AUROC
within :data:`AUROC_TOLERANCE` of raw.

Examples
--------
>>> import numpy as np
>>> y = np.array([0, 0, 1, 1, 0, 1])
>>> raw = np.array([0.1, 0.2, 0.3, 0.8, 0.4, 0.9])
>>> step = np.array([0.0, 0.0, 0.5, 1.0, 0.5, 1.0])   # a step map tying 0.3 with 0.4
>>> row = ranking_row(y, raw, step, n_bins=2, n_boot=50, seed=0)
>>> round(row["raw_auroc"], 4), round(row["calibrated_auroc"], 4), row["n_distinct_calibrated"]
(0.8889, 0.9444, 3)
>>> row["auroc_target_met"]   # ties moved the AUROC (here up: a tie counts 1/2, a wrong order 0)
False
"""
from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd
from sklearn.metrics import average_precision_score, roc_auc_score

from clinops.bundle import ModelBundle
from clinops.labels import binary_labels, probabilities
from clinops.modeling.final_fit import calibration_split_positions, fit_final_maps
from clinops.settings import CALIBRATION_SCHEMES, CALIBRATORS, TaskSettings
from clinops.uncertainty import RiskPredictor, ece_interval

__all__ = ["AUROC_TOLERANCE", "fit_calibrated", "ranking_row", "calibration_ranking"]

#: Issue 18's target: the calibrated AUROC within this distance of the raw score's.
AUROC_TOLERANCE = 0.002


def fit_calibrated(X_train: pd.DataFrame, y_train: np.ndarray, *, params: Mapping[str, Any], manifest: Any,
                   seed: int, calibration: str = "split", calibrator: str = "isotonic", fraction: float = 0.2, n_folds: int = 5,
                   groups: np.ndarray | None = None, settings: TaskSettings | None = None,
                   lineage: Mapping[str, Any] | None = None) -> ModelBundle:
    """The final model of the whole training split under a calibration scheme and map.

    ``split``: :func:`~clinops.modeling.split_for_calibration` (``fraction``, by subject when
    ``groups`` is given) then :func:`~clinops.modeling.fit_final`; ``cross_fit``:
    :func:`~clinops.modeling.fit_final` on every row with ``n_folds`` folds. With ``settings``
    the scheme, map and fold count are the settings' (the served model); without, the arguments'.
    """
    if settings is not None:
        calibration = settings.modeling.get("calibration", "split")
        calibrator = settings.calibrator
        n_folds = int(settings.modeling.get("cv_folds", n_folds))
    return _fit_scheme(X_train, y_train, calibration=calibration, calibrators=(calibrator,), params=params,
                       manifest=manifest, seed=seed, fraction=fraction, n_folds=n_folds, groups=groups,
                       settings=settings, lineage=lineage)[calibrator]


def _fit_scheme(X_train: pd.DataFrame, y_train: np.ndarray, *, calibration: str, calibrators: Sequence[str],
                fraction: float, groups: np.ndarray | None, **options: Any) -> dict[str, ModelBundle]:
    """:func:`fit_calibrated` for several maps of one scheme: one booster (and one set of folds) for all."""
    if calibration == "cross_fit":
        return fit_final_maps(X_train, y_train, calibration=calibration, calibrators=calibrators, groups=groups,
                              **options)
    if calibration != "split":
        raise ValueError(f"modeling.calibration: must be one of {list(CALIBRATION_SCHEMES)}, got {calibration!r}")
    kept, held = calibration_split_positions(X_train, y_train, fraction=fraction, seed=options["seed"], groups=groups)
    ya = binary_labels(y_train, "y_train")
    # subject ids of the fitting rows, then of the slice (fit_final's order), by position
    g = None if groups is None else np.asarray(groups, dtype=object)[np.concatenate([kept, held])]
    return fit_final_maps(X_train.iloc[kept], ya[kept], X_train.iloc[held], ya[held], calibration=calibration,
                          calibrators=calibrators, groups=g, **options)


def ranking_row(y: np.ndarray, raw: np.ndarray, prob: np.ndarray, *, n_bins: int, n_boot: int,
                seed: int) -> dict[str, Any]:
    """Raw vs calibrated AUROC / AUPRC, distinct values, and ECE (uniform, equal-mass) with 95 % CIs."""
    yy = binary_labels(y, "y")
    r = probabilities(raw, len(yy), "raw")
    p = probabilities(prob, len(yy), "prob")
    row: dict[str, Any] = {
        "raw_auroc": float(roc_auc_score(yy, r)), "calibrated_auroc": float(roc_auc_score(yy, p)),
        "raw_auprc": float(average_precision_score(yy, r)), "calibrated_auprc": float(average_precision_score(yy, p)),
    }
    row["auroc_change"] = row["calibrated_auroc"] - row["raw_auroc"]
    row["auprc_change"] = row["calibrated_auprc"] - row["raw_auprc"]
    row["auroc_target_met"] = bool(abs(row["auroc_change"]) <= AUROC_TOLERANCE)
    row["n_distinct_raw"] = int(len(np.unique(r)))
    row["n_distinct_calibrated"] = int(len(np.unique(p)))
    for strategy in ("uniform", "equal_mass"):
        ece, lo, hi = ece_interval(yy, p, n_bins=n_bins, strategy=strategy, n_boot=n_boot, seed=seed)
        row[f"ece_{strategy}"], row[f"ece_{strategy}_ci_low"], row[f"ece_{strategy}_ci_high"] = ece, lo, hi
    return row


def calibration_ranking(X_train: pd.DataFrame, y_train: np.ndarray, X_test: pd.DataFrame, y_test: np.ndarray, *,
                        params: Mapping[str, Any], manifest: Any, seed: int, settings: TaskSettings,
                        served: ModelBundle, n_boot: int, groups: np.ndarray | None = None) -> pd.DataFrame:
    """Every calibration scheme x map, fitted on the training rows and measured on the test rows.

    Parameters
    ----------
    X_train, y_train : encoded training features (manifest order, NaN = missing) and outcomes
    X_test, y_test : the same for the test rows
    params, manifest, seed : as for :func:`~clinops.modeling.fit_final`
    settings : the task's settings: ECE bins, the fraction and fold count, which combination is served
    served : the served bundle (its combination is not refitted)
    n_boot : bootstrap resamples of the ECE intervals
    groups : subject ids of the training rows, optional

    Returns
    -------
    DataFrame
        One row per (``calibration``, ``calibrator``): ``served``, ``n_booster_rows``,
        ``n_calibration_rows``, then the columns of :func:`ranking_row`.
    """
    scheme = settings.modeling.get("calibration", "split")
    m = settings.modeling
    rows = []
    for calibration in CALIBRATION_SCHEMES:
        # the maps of one scheme share its booster: one fit for all the maps not served
        refit = [c for c in CALIBRATORS if (calibration, c) != (scheme, settings.calibrator)]
        fitted = _fit_scheme(X_train, y_train, calibration=calibration, calibrators=refit, params=params,
                             manifest=manifest, seed=seed, fraction=float(m.get("calibration_fraction", 0.2)),
                             n_folds=int(m.get("cv_folds", 5)), groups=groups) if refit else {}
        for calibrator in CALIBRATORS:
            is_served = calibrator not in fitted
            bundle = served if is_served else fitted[calibrator]
            pred = RiskPredictor(bundle).predict_frame(X_test, encoded=True)
            rows.append({"calibration": calibration, "calibrator": calibrator, "served": is_served,
                         "n_booster_rows": bundle.lineage["n_fit"], "n_calibration_rows": bundle.lineage["n_isotonic"],
                         **ranking_row(y_test, pred["raw_score"].to_numpy(), pred["probability"].to_numpy(),
                                       n_bins=settings.ece_bins, n_boot=n_boot, seed=seed)})
    return pd.DataFrame(rows)

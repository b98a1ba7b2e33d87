"""Model selection, the final model and the test evaluation (paper section 4.5).

The procedure follows the paper's two stages on the training years only:

1. :func:`cross_validate_candidates` (:mod:`~clinops.modeling.candidates`) -- stratified 5-fold
   CV of logistic regression (L2, C = 1.0), random forest (300 trees, depth 10) and XGBoost;
   mean AUROC with a 95 % t-interval across folds.
2. :func:`random_search_xgb` (:mod:`~clinops.modeling.search`) -- 100 random configurations
   over :data:`PAPER_XGB_SPACE`, each scored by stratified 5-fold CV; ``scale_pos_weight`` =
   negatives / positives of each training fold.

Then (``modeling.calibration: split``, the paper's) :func:`split_for_calibration` holds out a
stratified slice of the training years and :func:`fit_final` (:mod:`~clinops.modeling.final_fit`)
fits XGBoost on the rest and the calibrator and the split-conformal threshold on the held-out
slice, or (``cross_fit``) :func:`fit_final` calibrates on out-of-fold scores of every training
row (:mod:`~clinops.modeling.cross_fit`) and refits XGBoost on all of them; either returns a
:class:`~clinops.bundle.ModelBundle` -- the one contract the server, the drift monitor and the
audit trail read. :func:`evaluate` (:mod:`~clinops.modeling.evaluation`) is the single use of the
temporal test set.

Missing values
--------------
Inputs are encoded float features with NaN = missing. The paper imputes with training medians
(section 4.4), so every model here sees imputed inputs, with the values computed on the
training part only: inside cross-validation by :func:`fold_imputer` fitted on each training
fold, for the final model by the frozen values of :func:`clinops.features.freeze_medians`
(median for numeric features, mode for binary / categorical ones; the CV imputer follows the
same rule when given the manifest). XGBoost could take NaN natively (it learns a default
direction per split), but it is imputed too so that CV scores the same kind of input the final,
served model receives.

Imports go one way: ``modeling -> uncertainty -> bundle``; ``ModelBundle`` and
``CalibratedBooster`` are re-exported here under their old names.
"""
from clinops.bundle import BUNDLE_FORMAT_VERSION, CalibratedBooster, ModelBundle
from clinops.modeling.candidates import candidate_models, cross_validate_candidates
from clinops.modeling.cv import discrete_mask, fold_imputer
from clinops.modeling.evaluation import evaluate
from clinops.modeling.final_fit import calibration_split_positions, fit_final, fit_final_maps, split_for_calibration
from clinops.modeling.cross_fit import calibration_folds, out_of_fold_scores
from clinops.modeling.calibration_comparison import AUROC_TOLERANCE, calibration_ranking, fit_calibrated
from clinops.modeling.search import random_search_xgb, sample_configurations
from clinops.modeling.xgb_config import (
    DEFAULT_MAX_BIN,
    PAPER_XGB_CONFIG,
    PAPER_XGB_SPACE,
    XGB_PARAM_NAMES,
    compare_with_paper,
    scale_pos_weight,
)

__all__ = [
    "PAPER_XGB_SPACE", "PAPER_XGB_CONFIG", "XGB_PARAM_NAMES", "DEFAULT_MAX_BIN", "ModelBundle",
    "CalibratedBooster", "BUNDLE_FORMAT_VERSION", "candidate_models", "cross_validate_candidates",
    "random_search_xgb", "sample_configurations", "compare_with_paper", "split_for_calibration",
    "fit_final", "scale_pos_weight", "evaluate",
    "fold_imputer", "discrete_mask", "calibration_folds", "out_of_fold_scores", "AUROC_TOLERANCE",
    "calibration_ranking", "fit_calibrated", "fit_final_maps", "calibration_split_positions",
]

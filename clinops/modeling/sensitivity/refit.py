"""One sensitivity refit: the final model's recipe on other rows, features or labels (issue 15).

A sensitivity model answers "what if the design were different": another label horizon, no
``dx_chapter``, another split rule, another readmission definition. To compare like with like,
every row of a sensitivity table (the main design included) is refitted here the same way:

* the features encoded by the one encoder (:meth:`FeatureManifest.encode`) of a manifest
  restricted to the variant's features (:func:`variant_manifest`);
* the final model's imputation rule, :func:`clinops.features.freeze_medians` on the training
  rows only;
* XGBoost with the configuration the main model's random search chose (read from its bundle,
  no new search), ``scale_pos_weight`` = negatives / positives of the variant's training rows;
* on the test rows: the raw (uncalibrated) score's AUROC with the project's one bootstrap
  interval (:func:`clinops.bootstrap.auroc_interval`) and the AUPRC. AUROC and AUPRC are rank
  measures, so no calibrator is fitted: the whole training part fits the booster.

Examples
--------
>>> import numpy as np, pandas as pd
>>> from clinops.features import FeatureManifest
>>> m = FeatureManifest.from_dict({"name": "toy", "features": [
...     {"name": "x", "kind": "numeric", "unit": "-", "aggregate": "max", "source": {"method": "toy"},
...      "plausible_range": [-10, 10], "justification": "separates the classes"}]})
>>> rows = pd.DataFrame({"x": [-2.0, -1.5, -1.0, 1.0, 1.5, 2.0] * 4, "label": [0, 0, 0, 1, 1, 1] * 4})
>>> config = {"n_estimators": 5, "max_depth": 2, "learning_rate": 0.3, "subsample": 1.0,
...           "colsample_bytree": 1.0, "min_child_weight": 1}
>>> r = refit_and_evaluate(rows, rows, m, ["x"], config, seed=0, n_boot=50)
>>> r["auroc"], r["n_train"], r["prevalence_test"]
(1.0, 24, 0.5)
"""
from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd
from sklearn.metrics import average_precision_score, roc_auc_score

from clinops import features
from clinops.bootstrap import auroc_interval
from clinops.features import FeatureManifest
from clinops.labels import binary_labels
from clinops.modeling.cross_fit import fit_booster
from clinops.modeling.xgb_config import DEFAULT_MAX_BIN, XGB_PARAM_NAMES

__all__ = ["RESULT_COLUMNS", "variant_manifest", "refit_and_evaluate", "xgb_config_from_bundle"]

#: What :func:`refit_and_evaluate` returns, in table order.
RESULT_COLUMNS = ("n_train", "n_test", "prevalence_test", "auroc", "auroc_lo", "auroc_hi", "auprc")


def variant_manifest(manifest: FeatureManifest, names: Sequence[str], frame: pd.DataFrame) -> FeatureManifest:
    """The manifest restricted to ``names``; a name outside it becomes a categorical feature.

    A column the manifest does not declare (an at-admission proxy such as ``proxy_first_careunit``,
    integer-coded or text) is added as a categorical feature whose categories are its observed
    values as text, so the one encoder and the imputation rule (mode for categories) apply to it.

    Parameters
    ----------
    manifest : FeatureManifest
        The task's manifest.
    names : sequence of str
        The variant's features, in the order wanted.
    frame : pandas.DataFrame
        Rows holding every column of ``names`` (categories of extra columns are read from it).

    Raises
    ------
    ValueError
        A name is neither in the manifest nor a column of ``frame``.
    """
    specs = []
    for name in names:
        if name in manifest.names:
            specs.append(manifest[name].to_dict())
            continue
        if name not in frame.columns:
            raise ValueError(f"features: {name!r} is neither in manifest {manifest.name!r} nor a column of the rows")
        cats = sorted({_category_text(v) for v in frame[name].dropna()})
        if not cats:
            raise ValueError(f"{name}: no observed value, cannot be a feature")
        specs.append({"name": name, "kind": "categorical", "unit": "code", "aggregate": "at admission",
                      "source": {"method": "task table column", "column": name}, "categories": cats,
                      "justification": "sensitivity feature outside the manifest (not served)"})
    return FeatureManifest.from_dict({"name": f"{manifest.name}_variant", "features": specs})


def _category_text(value: Any) -> str:
    """A category value as text: integer codes without a trailing '.0'."""
    if isinstance(value, (float, np.floating)) and float(value).is_integer():
        return str(int(value))
    return str(value)


def _encode(manifest: FeatureManifest, frame: pd.DataFrame) -> pd.DataFrame:
    """Encode ``frame`` with ``manifest``, extra categorical columns read as text first."""
    raw = frame[manifest.names].copy()
    for spec in manifest.specs:
        if spec.kind == "categorical" and spec.source.get("method") == "task table column":
            col = raw[spec.name]
            raw[spec.name] = col.map(_category_text).where(col.notna(), None)
    return manifest.encode(raw)


def xgb_config_from_bundle(bundle_json: Mapping[str, Any]) -> tuple[dict[str, Any], int]:
    """The chosen XGBoost configuration and ``max_bin`` stored in a bundle's ``bundle.json``.

    Examples
    --------
    >>> xgb_config_from_bundle({"lineage": {"params": {"max_depth": 4}, "max_bin": 64}})
    ({'max_depth': 4}, 64)
    >>> xgb_config_from_bundle({})
    Traceback (most recent call last):
    ...
    ValueError: bundle.json: lineage.params (the chosen XGBoost configuration) is missing
    """
    lineage = bundle_json.get("lineage") or {}
    if not isinstance(lineage.get("params"), Mapping):
        raise ValueError("bundle.json: lineage.params (the chosen XGBoost configuration) is missing")
    return dict(lineage["params"]), int(lineage.get("max_bin", DEFAULT_MAX_BIN))


def refit_and_evaluate(train: pd.DataFrame, test: pd.DataFrame, manifest: FeatureManifest,
                       feature_names: Sequence[str], xgb_params: Mapping[str, Any], *, seed: int, n_boot: int,
                       label: str = "label", max_bin: int = DEFAULT_MAX_BIN) -> dict[str, float]:
    """Refit the final model's recipe on ``train`` and score it once on ``test``.

    Parameters
    ----------
    train, test : pandas.DataFrame
        Task-table rows holding ``feature_names`` and the binary ``label`` column.
    manifest : FeatureManifest
        The task's manifest (see :func:`variant_manifest` for columns outside it).
    feature_names : sequence of str
        The variant's features.
    xgb_params : mapping
        The chosen configuration (exactly :data:`clinops.modeling.XGB_PARAM_NAMES`).
    seed : int
        XGBoost's and the bootstrap's seed.
    n_boot : int
        Bootstrap resamples of the AUROC interval.
    label : str
        The label column.
    max_bin : int
        XGBoost's histogram bins (the main model's).

    Returns
    -------
    dict
        ``n_train, n_test, prevalence_test, auroc, auroc_lo, auroc_hi, auprc`` (raw score).

    Raises
    ------
    ValueError
        A bad argument, or a part without both classes.
    """
    if not isinstance(n_boot, (int, np.integer)) or isinstance(n_boot, bool) or n_boot < 1:
        raise ValueError(f"n_boot: must be an integer >= 1, got {n_boot!r}")
    for part, rows in (("train", train), ("test", test)):
        if label not in rows.columns:
            raise ValueError(f"{part}: label column {label!r} is missing")
        y = binary_labels(rows[label].to_numpy(), f"{part}.{label}")
        if len(np.unique(y)) < 2:
            raise ValueError(f"{part}: needs both classes of {label!r} (got only {sorted(set(y.tolist()))})")
    names = list(feature_names)
    m = variant_manifest(manifest, names, pd.concat([train, test], ignore_index=True))
    X_train, X_test = _encode(m, train), _encode(m, test)
    y_train = binary_labels(train[label].to_numpy(), "train.label")
    y_test = binary_labels(test[label].to_numpy(), "test.label")
    config = {k: xgb_params[k] for k in XGB_PARAM_NAMES if k in xgb_params}
    # the final model's recipe: medians frozen on the training rows, class weight, the configuration
    booster, medians, _ = fit_booster(X_train, y_train, params=config, manifest=m, seed=seed, max_bin=max_bin)
    X_test, _ = features.impute(X_test, medians)
    raw = booster.inplace_predict(X_test[m.names].to_numpy(dtype=float))
    lo, hi = auroc_interval(y_test, raw, n_boot=int(n_boot), seed=seed)
    return {"n_train": int(len(y_train)), "n_test": int(len(y_test)), "prevalence_test": float(y_test.mean()),
            "auroc": float(roc_auc_score(y_test, raw)), "auroc_lo": float(lo), "auroc_hi": float(hi),
            "auprc": float(average_precision_score(y_test, raw))}

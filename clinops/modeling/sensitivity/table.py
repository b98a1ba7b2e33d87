"""The sensitivity table: every variant refitted, one row each, with its change against the main row.

Examples
--------
>>> import pandas as pd
>>> from clinops.features import FeatureManifest
>>> from clinops.modeling.sensitivity.variants import VariantContext, VariantSpec, Variant, NotAvailable
>>> m = FeatureManifest.from_dict({"name": "toy", "features": [
...     {"name": "x", "kind": "numeric", "unit": "-", "aggregate": "max", "source": {"method": "toy"},
...      "plausible_range": [-10, 10], "justification": "separates the classes"}]})
>>> rows = pd.DataFrame({"x": [-2.0, -1.0, 1.0, 2.0] * 6, "label": [0, 0, 1, 1] * 6,
...                      "split": ["train", "test"] * 12})
>>> def missing(frame, ctx):
...     raise NotAvailable("not available (column label_cms missing)")
>>> specs = {"main": VariantSpec("none", lambda f, c: Variant(f[f.split == "train"], f[f.split == "test"], c.features)),
...          "cms": VariantSpec("label: CMS", missing)}
>>> config = {"n_estimators": 5, "max_depth": 2, "learning_rate": 0.3, "subsample": 1.0,
...           "colsample_bytree": 1.0, "min_child_weight": 1}
>>> t = sensitivity_table(rows, specs, VariantContext(features=("x",)), m, config, seed=0, n_boot=20)
>>> t[["variant", "auroc", "delta_auroc", "status"]].values.tolist()
[['main', 1.0, 0.0, 'ok'], ['cms', nan, nan, 'not available (column label_cms missing)']]
"""
from __future__ import annotations

from typing import Any, Callable, Mapping

import numpy as np
import pandas as pd

from clinops.features import FeatureManifest
from clinops.modeling.sensitivity.refit import RESULT_COLUMNS, refit_and_evaluate
from clinops.modeling.sensitivity.variants import NotAvailable, VariantContext, VariantSpec
from clinops.modeling.xgb_config import DEFAULT_MAX_BIN

__all__ = ["TABLE_COLUMNS", "sensitivity_table"]

TABLE_COLUMNS = ("variant", "changed", *RESULT_COLUMNS, "delta_auroc", "status")


def sensitivity_table(frame: pd.DataFrame, specs: Mapping[str, VariantSpec], ctx: VariantContext,
                      manifest: FeatureManifest, xgb_params: Mapping[str, Any], *, seed: int, n_boot: int,
                      max_bin: int = DEFAULT_MAX_BIN, progress: Callable[[str], None] | None = None) -> pd.DataFrame:
    """Refit every variant of ``specs`` on ``frame`` and tabulate them, in ``specs`` order.

    A variant whose columns are missing, or whose rows lack a class, gets a row with empty
    numbers and its reason in ``status``; ``delta_auroc`` is the AUROC minus the ``main`` row's.

    Returns
    -------
    pandas.DataFrame
        Columns ``variant, changed, n_train, n_test, prevalence_test, auroc, auroc_lo, auroc_hi,
        auprc, delta_auroc, status``, one row per variant in ``specs`` order.
    """
    rows = []
    for name, spec in specs.items():
        if progress is not None:
            progress(name)
        row: dict[str, Any] = {"variant": name, "changed": spec.changed, **{k: np.nan for k in RESULT_COLUMNS}}
        try:
            v = spec.build(frame, ctx)
            row.update(n_train=len(v.train), n_test=len(v.test))
            row.update(refit_and_evaluate(v.train, v.test, manifest, v.features, xgb_params, seed=seed,
                                          n_boot=n_boot, label=v.label, max_bin=max_bin))
            row["status"] = "ok"
        except NotAvailable as exc:
            row["status"] = str(exc)
        except ValueError as exc:  # e.g. a part with one class: the reason, not a crash
            row["status"] = f"not estimable ({exc})"
        rows.append(row)
    table = pd.DataFrame(rows, columns=[c for c in TABLE_COLUMNS if c != "delta_auroc"])
    main = table.loc[table["variant"].eq("main") & table["status"].eq("ok"), "auroc"]
    table.insert(len(table.columns) - 1, "delta_auroc", table["auroc"] - (main.iloc[0] if len(main) else np.nan))
    return table

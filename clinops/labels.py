"""Checked inputs of the metrics: binary outcome labels and probability vectors.

The one place where modeling, evaluation, calibration, conformal sets and fairness check what
they are given. The checks are scikit-learn's (:func:`~sklearn.utils.validation.check_array`,
:func:`~sklearn.utils.validation.check_consistent_length`,
:func:`~sklearn.utils.multiclass.type_of_target`); this module only words their failures so that
every message names the field and the rule it breaks.

Examples
--------
>>> binary_labels([0, 1, True, 0.0], "y_true")
array([0, 1, 1, 0])
>>> binary_labels([0, 2], "y_true")
Traceback (most recent call last):
...
ValueError: y_true: labels must be 0 or 1, got values [0, 2]
>>> probabilities([0.2, 1.5], 2, "prob")
Traceback (most recent call last):
...
ValueError: prob: must be probabilities in [0, 1]; range found [0.2, 1.5]
"""
from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from sklearn.utils.multiclass import type_of_target
from sklearn.utils.validation import check_array, check_consistent_length

__all__ = ["binary_labels", "probabilities"]


def binary_labels(y: Any, name: str = "y") -> np.ndarray:
    """A one-dimensional, non-empty vector of 0/1 labels (bool accepted), as int64.

    Parameters
    ----------
    y : array-like of shape (n,)
    name : str
        The field named in error messages.

    Returns
    -------
    numpy.ndarray of int64, shape (n,)

    Raises
    ------
    ValueError
        Not one-dimensional, empty, missing values, or a value other than 0 and 1.
    """
    arr = np.asarray(y)
    # check_array would accept a (n, 1) column; a label vector here is always 1-D.
    if arr.ndim != 1:
        raise ValueError(f"{name}: must be one-dimensional, got shape {arr.shape}")
    if arr.size == 0:
        raise ValueError(f"{name}: must not be empty")
    if pd.isna(arr).any():
        raise ValueError(f"{name}: must not contain missing labels ({int(pd.isna(arr).sum())} found)")
    if arr.dtype == object:
        # Numbers in an object array (e.g. a pandas object column) are labels too; type_of_target
        # calls an object array of non-strings 'unknown'.
        try:
            arr = arr.astype(np.float64)
        except (TypeError, ValueError):
            pass  # strings: refused below with the values found
    arr = check_array(arr, ensure_2d=False, dtype=None, input_name=name)
    values = np.unique(arr)
    if type_of_target(arr, input_name=name) != "binary" or not set(values.tolist()) <= {0, 1}:
        raise ValueError(f"{name}: labels must be 0 or 1, got values {values[:5].tolist()}")
    return arr.astype(np.int64)


def probabilities(p: Any, n: int | None = None, name: str = "prob", *,
                  like: str = "y_true") -> np.ndarray:
    """A one-dimensional vector of probabilities in [0, 1] without NaN, as float64.

    Parameters
    ----------
    p : array-like of shape (n,)
    n : int, optional
        Required length (the number of labels it goes with).
    name : str
        The field named in error messages.
    like : str
        The field whose length ``n`` is, named when the lengths differ.

    Raises
    ------
    ValueError
        Wrong shape or length, NaN or infinite values, values outside [0, 1].
    """
    arr = np.asarray(p, dtype=np.float64)
    if arr.ndim != 1 or (n is not None and arr.shape[0] != n):
        want = f" with {n} values (the shape of {like})" if n is not None else ""
        raise ValueError(f"{name}: must be one-dimensional{want}, got shape {arr.shape}")
    if n is not None:
        check_consistent_length(np.empty(n), arr)
    if not np.isfinite(arr).all():
        raise ValueError(f"{name}: must be probabilities in [0, 1] without NaN or infinite values "
                         f"({int((~np.isfinite(arr)).sum())} found)")
    check_array(arr, ensure_2d=False, input_name=name)
    if arr.size and ((arr < 0).any() or (arr > 1).any()):
        raise ValueError(f"{name}: must be probabilities in [0, 1]; range found "
                         f"[{arr.min():.4g}, {arr.max():.4g}]")
    return arr

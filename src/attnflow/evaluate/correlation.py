"""Agreement between an explanation and a ground truth: Spearman's rank correlation, layer by layer.

The paper (Abnar & Zuidema 2020, Tables 1-2) reports, per layer and method, the
mean ± standard deviation over examples of the per-example Spearman correlation
between the method's scores of the input tokens and a ground-truth importance
(blank-out, input gradients). This module computes exactly that from arrays.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..errors import AttnflowError


def spearman(x: Any, y: Any) -> float:
    """Spearman's rank correlation of two score vectors (ties get average ranks), via scipy.

    NaN when the vectors are shorter than 2, hold NaN or infinite values, or
    either is constant (a correlation is undefined there; scipy would warn).

    Examples
    --------
    >>> round(spearman([1, 2, 3, 4], [10, 20, 20, 40]), 6)
    0.948683
    >>> spearman([1, 1, 1], [1, 2, 3])
    nan
    """
    from scipy.stats import spearmanr

    a = np.asarray(x, dtype=np.float64).ravel()
    b = np.asarray(y, dtype=np.float64).ravel()
    if a.shape != b.shape:
        raise AttnflowError(f"spearman needs two vectors of the same length; got {a.shape[0]} and {b.shape[0]}.")
    if a.size < 2 or not (np.all(np.isfinite(a)) and np.all(np.isfinite(b))):
        return float("nan")
    if np.all(a == a[0]) or np.all(b == b[0]):
        return float("nan")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return float(spearmanr(a, b).statistic)


def layer_correlations(scores: Any, truth: Any, positions: Sequence[int] | None = None) -> np.ndarray:
    """Spearman correlation of each layer's scores with one ground truth: ``(L, n), (n,) -> (L,)``.

    Only the tokens at ``positions`` are compared (all when ``None``); the
    evaluation passes the non-special tokens.

    Examples
    --------
    >>> s = np.array([[0.1, 0.2, 0.7], [0.5, 0.3, 0.2]])
    >>> layer_correlations(s, [1.0, 2.0, 3.0])
    array([ 1., -1.])
    """
    values = np.asarray(scores, dtype=np.float64)
    target = np.asarray(truth, dtype=np.float64)
    if values.ndim != 2 or target.ndim != 1 or values.shape[1] != target.shape[0]:
        raise AttnflowError(
            f"layer_correlations needs scores (L, n) and a ground truth (n,); got {values.shape} and {target.shape}."
        )
    index = np.arange(target.shape[0]) if positions is None else np.asarray(list(positions), dtype=int)
    return np.array([spearman(row[index], target[index]) for row in values])


def mean_sd(values: Any, axis: int = 0) -> np.ndarray:
    """Mean and sample standard deviation (``ddof=1``) over ``axis``, ignoring NaN.

    Returns an array with a trailing axis of 2: ``[..., 0]`` the mean, ``[..., 1]``
    the sd. The mean is NaN where no value is finite; the sd where fewer than two are.

    Examples
    --------
    >>> mean_sd([[0.5, 1.0], [0.7, np.nan]])
    array([[0.6       , 0.14142136],
           [1.        ,        nan]])
    """
    array = np.asarray(values, dtype=np.float64)
    array = np.moveaxis(array, axis, 0)
    finite = np.isfinite(array)
    count = finite.sum(axis=0)
    filled = np.where(finite, array, 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(count > 0, filled.sum(axis=0) / np.maximum(count, 1), np.nan)
        squares = np.where(finite, (array - mean) ** 2, 0.0).sum(axis=0)
        sd = np.where(count > 1, np.sqrt(squares / np.maximum(count - 1, 1)), np.nan)
    return np.stack([mean, sd], axis=-1)

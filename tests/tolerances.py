"""Float tolerances derived from the arithmetic, not from one machine's rounding.

Two float32 computations of the same quantity that reduce in different orders
(another batch shape, another CPU kernel: oneDNN's SSE4.1, AVX2 and AVX-512
paths sum in different orders) differ by at most the classic bound for a sum
of ``k`` terms, ``gamma_k = k * eps / (1 - k * eps) ~ k * eps``, times the sum of
the terms' magnitudes (Higham, *Accuracy and Stability of Numerical
Algorithms*, §3.1). Through a network the difference of one layer's hidden
state feeds the next, so the bounds of ``depth`` layers add up.
"""

from __future__ import annotations

import numpy as np

EPS32 = float(np.finfo(np.float32).eps)
EPS64 = float(np.finfo(np.float64).eps)


def float32_sum_bound(terms: int, *, scale: float = 1.0, depth: int = 1) -> float:
    """Worst-case difference of two float32 evaluations of a ``terms``-long reduction.

    ``scale`` is the sum of the magnitudes of the terms (1 for a row of
    probabilities, about the activation size after a LayerNorm); ``depth`` is the
    number of such reductions in sequence, each feeding the next.

    >>> round(float32_sum_bound(384, depth=6) / EPS32)
    2304
    """
    return depth * terms * EPS32 * scale


def model_float32_bound(config) -> float:
    """Two float32 runs of one model that reduce in other orders (batch shape, padding, kernel).

    Each layer's projections reduce over ``hidden_size`` terms of O(1) activations (they follow
    a LayerNorm), and the hidden state that reaches layer ``l`` carries the differences of the
    ``l - 1`` layers below it; attention weights are at most 1, so they differ by no more:
    ``num_hidden_layers * hidden_size * eps32``.
    """
    return float32_sum_bound(config.hidden_size, depth=config.num_hidden_layers)

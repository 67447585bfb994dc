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


def model_layers(config) -> int:
    """The layers a forward pass runs through: both stacks of an encoder-decoder, else ``num_hidden_layers``.

    >>> from types import SimpleNamespace
    >>> model_layers(SimpleNamespace(num_hidden_layers=2))
    2
    >>> model_layers(SimpleNamespace(is_encoder_decoder=True, num_hidden_layers=2, decoder_layers=3))
    5
    """
    if not getattr(config, "is_encoder_decoder", False):
        return config.num_hidden_layers
    decoder = getattr(config, "decoder_layers", None) or getattr(config, "num_decoder_layers", None)
    return config.num_hidden_layers + (decoder or config.num_hidden_layers)


def model_float32_bound(config, *, scale: float = 1.0, backward: bool = False) -> float:
    """Two float32 runs of one model that reduce in other orders (batch shape, padding, kernel).

    Each layer's projections reduce over ``hidden_size`` terms of O(1) activations (they follow
    a LayerNorm), and the hidden state that reaches layer ``l`` carries the differences of the
    ``l - 1`` layers below it; attention weights are at most 1, so they differ by no more:
    ``layers * hidden_size * eps32`` (an encoder-decoder counts the layers of both stacks).

    A softmax's error is relative to each weight, so a row's differences sum to no more than
    this bound too, and rollout or flow of the attentions (walks along row-stochastic rows)
    keep it. ``scale`` is the size of a compared quantity that is not O(1) (a logit, a
    gradient-weighted score: take it from the arrays compared). ``backward=True`` counts the
    backward pass of a gradient, which retraces every layer's reductions once more: twice the
    depth.

    >>> from types import SimpleNamespace
    >>> config = SimpleNamespace(hidden_size=32, num_hidden_layers=2)
    >>> round(model_float32_bound(config) / EPS32), round(model_float32_bound(config, scale=3, backward=True) / EPS32)
    (64, 384)
    """
    depth = model_layers(config) * (2 if backward else 1)
    return float32_sum_bound(config.hidden_size, scale=scale, depth=depth)


def model_float64_bound(config, *, scale: float = 1.0, backward: bool = False) -> float:
    """:func:`model_float32_bound` for a model run in float64 (the tests' ``.double()`` models), with eps64.

    >>> from types import SimpleNamespace
    >>> model_float64_bound(SimpleNamespace(hidden_size=32, num_hidden_layers=2)) == 2 * 32 * EPS64
    True
    """
    return model_float32_bound(config, scale=scale, backward=backward) * (EPS64 / EPS32)


def rounded_bound(decimals: int, *, scale: float = 1.0) -> float:
    """Largest difference between a number of size ``scale`` and itself rounded to ``decimals`` decimals.

    Half a unit in the last kept decimal, plus the float64 rounding of the scaling that
    ``np.round`` does (a few ulps of ``scale``).

    >>> float(np.round(0.1234565, 6)) - 0.1234565 <= rounded_bound(6)
    True
    """
    return 0.5 * 10.0**-decimals + 4 * EPS64 * scale


def assert_within(actual, desired, bound, err_msg: str = "") -> None:
    """``|actual - desired| <= bound`` element by element, ``bound`` a number or an array of per-entry bounds.

    (``np.testing.assert_allclose`` takes only a number for ``atol``.)

    >>> assert_within(np.array([1.0, 2.0]), np.array([1.1, 2.0]), np.array([0.2, 0.0]))
    >>> assert_within(np.array([1.0]), np.array([1.1]), 0.05)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    AssertionError: 1 of 1 entries differ by more than their bound; the largest excess is 0.05 at [0]...
    """
    difference = np.abs(np.asarray(actual, dtype=np.float64) - np.asarray(desired, dtype=np.float64))
    excess = difference - np.broadcast_to(bound, difference.shape)
    if np.any(excess > 0) or np.any(np.isnan(difference)):
        worst = [int(i) for i in np.unravel_index(np.nanargmax(excess), excess.shape)]
        raise AssertionError(f"{int(np.sum(~(excess <= 0)))} of {excess.size} entries differ by more than their "
                             f"bound; the largest excess is {excess[tuple(worst)]:.3g} at {worst} {err_msg}".rstrip())


def flow_bound(arcs: int) -> float:
    """How far attnflow's max-flow value may lie from the exact one, over ``arcs`` arcs of capacity at most 1.

    The kernel's own allowances, not rounding alone: it declares a flow maximal within
    ``BOUND_TOL`` of a cut's capacity and counts an arc saturated within ``CUT_TOL`` of its
    capacity; each arc's float64 updates round once more (eps64 per arc).

    >>> flow_bound(0) == 1e-13
    True
    """
    from attnflow.methods._maxflow_kernel import BOUND_TOL, CUT_TOL

    return BOUND_TOL + arcs * (CUT_TOL + EPS64)


def significant_bound(digits: int) -> float:
    """Largest relative difference between a number and itself kept to ``digits`` significant digits (an rtol).

    Half a unit in the last kept digit, relative to a number whose leading digit is at least 1.

    >>> x = 3.14159265
    >>> abs(float(f"{x:.6g}") - x) <= significant_bound(6) * x
    True
    """
    return 0.5 * 10.0 ** (1 - digits)

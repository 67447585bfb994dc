"""The decomposition every vector-based graph starts from: each layer output as a sum over source tokens.

An attention block computes, for query ``i``,

    s_i = sum_j T_i(x_j) + b_O,   T_i(x_j) = sum_h alpha^h_ij v^h_j W_O^h + [i == j] x_i

where ``v^h_j`` is token ``j``'s value vector in head ``h`` (the value projection of the
attention input, bias included: ``f(x_j)`` of Kobayashi et al. 2020 is ``v^h_j W_O^h``),
``W_O^h`` head ``h``'s rows of the output projection and ``x_i`` the residual stream
entering the layer. The sum is exact: ``s_i`` is what a post-LN block hands its first
layer norm and what a pre-LN block adds to its residual stream.

A layer norm is linear but for its scale: ``LN(s) = gamma * (s - mean(s)) / sigma(s) + beta``
with ``sigma(s) = sqrt(var(s) + eps)``. With ``sigma`` taken from the actual ``s_i``
(Kobayashi et al. 2021), ``LN(sum_j z_j + b) = sum_j L_i(z_j) + L_i(b) + beta`` exactly,
``L_i(z) = gamma * (z - mean(z)) / sigma(s_i)``: :func:`through_layer_norm` applies ``L_i``.

Arrays are float64; ``vectors`` are ``(rows, n, D)`` (``[i, j]`` is ``T_i(x_j)``), computed
for a block of query rows at a time so that memory stays ``O(block * n * D)``.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from ..capture.mixing import LayerNormParams, LayerTensors

#: The most float64 numbers one block of decomposed vectors may hold (64 MiB).
BLOCK_NUMBERS = 2**23


def row_blocks(n: int, width: int) -> Iterator[slice]:
    """Slices of query rows such that ``rows * n * width`` stays under :data:`BLOCK_NUMBERS`.

    Examples
    --------
    >>> list(row_blocks(3, 4))
    [slice(0, 3, None)]
    """
    step = max(1, BLOCK_NUMBERS // max(1, n * width))
    for start in range(0, n, step):
        yield slice(start, min(n, start + step))


def transformed_values(layer: LayerTensors) -> np.ndarray:
    """``(H, n, D)``: ``v^h_j W_O^h``, each token's value vector mapped to the hidden size by its head."""
    return np.einsum("hjd,hdk->hjk", layer.head_values, layer.w_o)


def attention_vectors(
    layer: LayerTensors, rows: slice = slice(None), transformed: np.ndarray | None = None
) -> np.ndarray:
    """``(rows, n, D)``: ``T_i(x_j) = sum_h alpha^h_ij v^h_j W_O^h + [i == j] x_i`` for the query ``rows``.

    Examples
    --------
    >>> from attnflow.capture import load_model, capture_attention
    >>> from attnflow.capture.mixing import capture_mixing
    >>> lm = load_model()
    >>> cap = capture_mixing(lm, capture_attention("Sums.", lm).input_ids)
    >>> layer = cap.layers[0]
    >>> s = attention_vectors(layer).sum(axis=1) + layer.b_o   # what the first layer norm receives
    >>> bool(np.allclose(s, layer.ln1_input, atol=1e-4))
    True
    """
    if transformed is None:
        transformed = transformed_values(layer)
    vectors = np.einsum("hij,hjk->ijk", layer.weights[:, rows], transformed)
    queries = np.arange(layer.x.shape[0])[rows]
    vectors[np.arange(len(queries)), queries] += layer.x[queries]
    return vectors


def layer_norm_scale(ln_input: np.ndarray, params: LayerNormParams) -> np.ndarray:
    """``(n,)``: ``sigma(s_i) = sqrt(var(s_i) + eps)``, the scale the layer norm divided row ``i`` by."""
    return np.sqrt(ln_input.var(axis=-1) + params.eps)


def through_layer_norm(vectors: np.ndarray, scale: np.ndarray, params: LayerNormParams) -> np.ndarray:
    """``L_i(z) = gamma * (z - mean(z)) / sigma_i``: the layer norm's linear part, row ``i``'s scale.

    ``vectors`` ``(rows, n, D)`` or ``(rows, D)``; ``scale`` ``(rows,)``.
    """
    centred = vectors - vectors.mean(axis=-1, keepdims=True)
    shape = (-1,) + (1,) * (vectors.ndim - 1)
    return params.gamma * centred / scale.reshape(shape)


def normalise_rows(matrix: np.ndarray) -> np.ndarray:
    """Divide each row by its sum; a row with nothing in it (sum 0) becomes all self (1 on the diagonal).

    Examples
    --------
    >>> normalise_rows(np.array([[1.0, 3.0], [0.0, 0.0]]))
    array([[0.25, 0.75],
           [0.  , 1.  ]])
    """
    matrix = np.asarray(matrix, dtype=np.float64)
    sums = matrix.sum(axis=-1, keepdims=True)
    out = np.divide(matrix, sums, out=np.zeros_like(matrix), where=sums > 0)
    empty = np.flatnonzero(sums[..., 0] <= 0)
    out[empty, empty] = 1.0
    return out

"""``norm``: the norm of each token's transformed vector, residual included (Kobayashi et al. 2020, 2021).

Kobayashi et al. (2020, "Attention is Not Only a Weight") weigh the edge ``j -> i`` by
``||sum_h alpha^h_ij f^h(x_j)||``, ``f^h(x_j) = v^h_j W_O^h``, instead of ``alpha_ij``.
The residual connection is added as a vector, as Kobayashi et al. (2021) do
("ATTN + RES"; GlobEnc's ``N_RES``): the edge ``i -> i`` also carries ``x_i``, so

    N_ij = || T_i(x_j) ||_2,   T_i(x_j) = sum_h alpha^h_ij v^h_j W_O^h + [i == j] x_i

and the rows are normalised to sum to 1. The residual is inside: rollout and flow run
over these matrices with residual weight 0. No layer norm enters, so the graph is the
same for post-LN and pre-LN blocks (in a pre-LN block ``v_j`` is computed from the
first layer norm of ``x_j``, which is what the model's value projection reads;
Ferrando et al. 2023 decompose decoder blocks the same way).
"""

from __future__ import annotations

import numpy as np

from ..capture.mixing import LayerTensors, MixingCapture
from .decompose import attention_vectors, normalise_rows, row_blocks, transformed_values


def norm_matrix(layer: LayerTensors, capture: MixingCapture | None = None) -> np.ndarray:
    """``(n, n)``: ``||T_i(x_j)||_2`` with rows normalised to 1.

    Examples
    --------
    >>> from attnflow.capture import load_model, capture_attention
    >>> from attnflow.capture.mixing import capture_mixing
    >>> lm = load_model()
    >>> cap = capture_mixing(lm, capture_attention("Norms.", lm).input_ids)
    >>> m = norm_matrix(cap.layers[0])
    >>> m.shape, bool(np.allclose(m.sum(-1), 1.0))
    ((4, 4), True)
    """
    n, width = layer.x.shape
    transformed = transformed_values(layer)
    norms = np.empty((n, n))
    for rows in row_blocks(n, width):
        norms[rows] = np.linalg.norm(attention_vectors(layer, rows, transformed), axis=-1)
    return normalise_rows(norms)

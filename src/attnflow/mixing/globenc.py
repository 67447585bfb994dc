"""``globenc``: norms through both layer norms of a post-LN encoder layer (Modarressi et al. 2022).

GlobEnc ("Quantifying Global Token Attribution by Incorporating the Whole Encoder
Layer", NAACL 2022) carries the decomposition of :mod:`attnflow.mixing.decompose`
through the first layer norm (``L1_i``, Kobayashi et al. 2021) and then through the
second (``L2_i``, after the feed-forward network), each with the scale of the actual
input of that norm:

    G_ij = || L2_i( L1_i( T_i(x_j) ) ) ||_2

The feed-forward network's own contribution is not attributed to any token (it is
the part of ``LN2``'s input not in the sum; the paper leaves it out the same way).
The residual is inside (residual weight 0 in rollout and flow).

Aggregation, as the authors do it (``mohsenfayyaz/GlobEnc``: the running product of the
per-layer matrices, with the per-layer normalisation commented out):

- ``globenc/rollout`` is the explained row of the product ``N_l ... N_1`` of the *raw*
  norm matrices (:func:`globenc_norms`), divided by its sum for display only
  (:func:`globenc_rollout_scores`);
- ``globenc/raw`` is the top layer's row of ``N_l``, divided by its sum the same way;
- ``globenc/flow`` needs capacities that are a flow graph's: it runs on the
  row-normalised matrices (:func:`globenc_matrix`), which the authors never define a flow on;
- the graph ``globenc-rownorm`` keeps the rollout of the row-normalised matrices
  (attnflow's aggregation before; each layer's rows sum to 1, so the product's do too).

Defined for post-LN encoders only (BERT, RoBERTa, DistilBERT, MiniLM, ELECTRA): in a
pre-LN block (GPT-2, Llama, MegatronBert, ViT) the layer norms sit on the branches, not
on the residual stream, so there is no "layer norm after the residual" to carry the
vectors through, and no published adaptation; attnflow refuses it there.
"""

from __future__ import annotations

import numpy as np

from ..capture.mixing import LayerTensors, MixingCapture
from ..methods.rollout import output_walk
from .decompose import (
    attention_vectors,
    layer_norm_scale,
    normalise_rows,
    row_blocks,
    through_layer_norm,
    transformed_values,
)


def globenc_vectors(
    layer: LayerTensors, rows: slice = slice(None), transformed: np.ndarray | None = None
) -> np.ndarray:
    """``(rows, n, D)``: ``L2_i(L1_i(T_i(x_j)))``, each source token's share of the layer output (FFN left out)."""
    queries = np.arange(layer.x.shape[0])[rows]
    scale1 = layer_norm_scale(layer.ln1_input, layer.ln1)[queries]
    scale2 = layer_norm_scale(layer.ln2_input, layer.ln2)[queries]
    first = through_layer_norm(attention_vectors(layer, rows, transformed), scale1, layer.ln1)
    return through_layer_norm(first, scale2, layer.ln2)


def globenc_norms(layer: LayerTensors, capture: MixingCapture | None = None) -> np.ndarray:
    """``(n, n)``: ``||L2_i(L1_i(T_i(x_j)))||_2``, GlobEnc's ``N_Enc`` matrix of one layer, unnormalised."""
    n, width = layer.x.shape
    transformed = transformed_values(layer)
    norms = np.empty((n, n))
    for rows in row_blocks(n, width):
        norms[rows] = np.linalg.norm(globenc_vectors(layer, rows, transformed), axis=-1)
    return norms


def globenc_matrix(layer: LayerTensors, capture: MixingCapture | None = None) -> np.ndarray:
    """``(n, n)``: :func:`globenc_norms` with rows normalised to 1 (post-LN layers only).

    Examples
    --------
    >>> from attnflow.capture import load_model, capture_attention
    >>> from attnflow.capture.mixing import capture_mixing
    >>> lm = load_model()
    >>> cap = capture_mixing(lm, capture_attention("Whole layer.", lm).input_ids)
    >>> bool(np.allclose(globenc_matrix(cap.layers[-1]).sum(-1), 1.0))
    True
    """
    return normalise_rows(globenc_norms(layer, capture))


def globenc_rollout_scores(norms: np.ndarray, output: int | str) -> np.ndarray:
    """``(L, n)``: row ``output`` of ``N_l ... N_1`` for each layer ``l``, each row divided by its sum.

    ``norms`` is ``(L, n, n)`` of :func:`globenc_norms`. The product is of the raw
    matrices, as the authors compute it; only the explained row is normalised, for display.

    Examples
    --------
    >>> n1 = np.array([[2.0, 2.0], [0.0, 1.0]]); n2 = np.array([[1.0, 0.0], [1.0, 3.0]])
    >>> globenc_rollout_scores(np.stack([n1, n2]), 1).tolist()   # layer 2: [1, 3] @ n1 = [2, 5]
    [[0.0, 1.0], [0.2857142857142857, 0.7142857142857143]]
    """

    walk = output_walk(np.asarray(norms, dtype=np.float64), output)[:, 0]
    return walk / walk.sum(axis=-1, keepdims=True)

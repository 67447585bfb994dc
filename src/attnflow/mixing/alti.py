"""``alti``: contributions by distance to the output (Ferrando et al. 2022; decoders: Ferrando et al. 2023).

ALTI ("Measuring the Mixing of Contextual Information in the Transformer", EMNLP 2022)
decomposes the attention block's output ``y_i = sum_j T~_i(x_j) + b~`` and scores each
source token by how close its vector lies to the output, in the Manhattan norm:

    d_ij = || y_i - T~_i(x_j) ||_1,   c_ij = max(0, ||y_i||_1 - d_ij) / sum_k max(0, ||y_i||_1 - d_ik)

- post-LN encoders (BERT, RoBERTa, DistilBERT, MiniLM): ``T~_i = L1_i(T_i)``, the
  vectors through the first layer norm's linear part with the actual scale, and
  ``y_i`` the first layer norm's output (bias terms ``L1_i(b_O) + beta`` included);
- pre-LN blocks (GPT-2, Llama, MegatronBert, ViT), as Ferrando et al. (2023,
  "Explaining How Transformers Use Context to Build Predictions") adapt it to
  decoder-only models: the layer norm acts on each token's input alone, before the
  value projection, so ``T~_i = T_i`` exactly and ``y_i = x_i + attention_i`` is the
  residual stream after the attention block (bias ``b_O`` included).

The feed-forward network is left out (the paper's choice). The residual is inside
(``T_i(x_i)`` carries ``x_i``): rollout and flow run with residual weight 0. A row
whose every contribution is clipped to 0 becomes all self.
"""

from __future__ import annotations

import numpy as np

from ..capture.mixing import LayerTensors, MixingCapture
from .decompose import (
    attention_vectors,
    layer_norm_scale,
    normalise_rows,
    row_blocks,
    through_layer_norm,
    transformed_values,
)


def alti_vectors(
    layer: LayerTensors, rows: slice = slice(None), transformed: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """``(T~, y)``: the decomposed vectors ``(rows, n, D)`` and the outputs they sum to ``(rows, D)``.

    ``y_i = sum_j T~_i(x_j) + bias_i`` exactly (the bias terms ``L1_i(b_O) + beta`` post-LN, ``b_O`` pre-LN).
    """
    queries = np.arange(layer.x.shape[0])[rows]
    vectors = attention_vectors(layer, rows, transformed)
    if layer.ln1 is not None:
        scale = layer_norm_scale(layer.ln1_input, layer.ln1)[queries]
        vectors = through_layer_norm(vectors, scale, layer.ln1)
        bias = through_layer_norm(np.broadcast_to(layer.b_o, (len(queries), layer.b_o.shape[0])), scale, layer.ln1)
        bias = bias + layer.ln1.beta
    else:
        bias = np.broadcast_to(layer.b_o, (len(queries), layer.b_o.shape[0]))
    return vectors, vectors.sum(axis=1) + bias


def alti_matrix(layer: LayerTensors, capture: MixingCapture | None = None) -> np.ndarray:
    """``(n, n)``: ALTI's contributions ``c_ij``, rows summing to 1.

    Examples
    --------
    >>> from attnflow.capture import load_model, capture_attention
    >>> from attnflow.capture.mixing import capture_mixing
    >>> lm = load_model()
    >>> cap = capture_mixing(lm, capture_attention("Distances.", lm).input_ids)
    >>> m = alti_matrix(cap.layers[0])
    >>> bool(np.allclose(m.sum(-1), 1.0)), bool(m.min() >= 0)
    (True, True)
    """
    n, width = layer.x.shape
    transformed = transformed_values(layer)
    scores = np.empty((n, n))
    for rows in row_blocks(n, width):
        vectors, outputs = alti_vectors(layer, rows, transformed)
        distances = np.abs(outputs[:, None, :] - vectors).sum(axis=-1)
        size = np.abs(outputs).sum(axis=-1, keepdims=True)
        scores[rows] = np.maximum(0.0, size - distances)
    if capture is not None and capture.is_causal:
        scores = np.tril(scores)
    return normalise_rows(scores)

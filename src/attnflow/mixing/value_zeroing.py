"""``value-zeroing``: how much each output changes when one token's value vector is zeroed (Mohebbi et al. 2023).

Value Zeroing ("Quantifying Context Mixing in Transformers", EACL 2023): for layer ``l``
and token ``j``, rerun layer ``l`` on its original input with token ``j``'s value vector
set to 0 in every head (bias included, so token ``j`` gives the other tokens nothing
through attention but keeps its residual stream), and score

    VZ_ij = 1 - cos( x~_i, x~_i^(not j) )

the cosine distance between token ``i``'s original layer output (the whole layer: attention,
residual, layer norms and feed-forward network) and the output with ``j`` zeroed. Rows
are normalised to sum to 1 (the paper's choice); the residual is inside (zeroing
token ``i``'s own value leaves its residual), so rollout and flow run with residual
weight 0. Defined for every architecture: only the value projection is touched.

The reruns are batched: one copy of the input per (layer, token), all run in one
model call per chunk of ``batch_size`` copies, with a hook zeroing copy ``k``'s token
in its layer only and the forward stopped after the chunk's deepest layer. The layers
below the chunk's shallowest are the same in every copy, so they run once, on the
input alone, and a hook widens that layer's input (and its masks and positions) to
the copies. A chunk holds one layer's tokens, so its copies run that layer only: a
token costs one layer pass per layer, one forward pass in all. Each chunk carries
one unzeroed copy, so the original and zeroed outputs come from the same batched
kernels. In a decoder, outputs before ``j`` cannot depend on ``j``: those entries are
exactly 0.
"""

from __future__ import annotations

import numpy as np

from ..capture._eager import eager_attention
from ..capture.mixing import MixingCapture, layer_modules, run_model
from ..errors import AttnflowError
from .decompose import normalise_rows

#: Copies of the input per batched model call.
DEFAULT_BATCH_SIZE = 64


class _Stop(AttnflowError):
    """Raised by a hook once the deepest layer a chunk needs has run (passes model_failures unchanged)."""


def cosine_distances(original: np.ndarray, changed: np.ndarray) -> np.ndarray:
    """``1 - cos`` between matching rows of ``original`` ``(n, D)`` and ``changed`` ``(..., n, D)``.

    Examples
    --------
    >>> cosine_distances(np.array([[1.0, 0.0]]), np.array([[[0.0, 2.0]], [[3.0, 0.0]]])).tolist()
    [[1.0], [0.0]]
    """
    dot = (original * changed).sum(axis=-1)
    norms = np.linalg.norm(original, axis=-1) * np.linalg.norm(changed, axis=-1)
    return 1.0 - np.divide(dot, norms, out=np.ones_like(dot), where=norms > 0)


def zeroed_outputs(capture: MixingCapture, batch_size: int = DEFAULT_BATCH_SIZE) -> tuple[np.ndarray, np.ndarray]:
    """``(original (L, n, D), zeroed (L, n_j, n, D))``: layer outputs with nothing and with token ``j`` zeroed.

    ``zeroed[l, j, i]`` is token ``i``'s output of layer ``l + 1`` when token ``j``'s value
    vector in that layer is 0; ``original[l]`` the unzeroed output of the same chunk.
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 2:
        raise AttnflowError(f"The 'batch_size' parameter must be an integer of at least 2; got {batch_size!r}.")
    loaded = capture.loaded
    modules = layer_modules(loaded.model)
    n_layers, n = len(modules), capture.n_tokens
    width = capture.layers[0].output.shape[-1]
    zeroed = np.empty((n_layers, n, n, width))
    original = np.empty((n_layers, n, width))
    per_chunk = int(batch_size) - 1
    with eager_attention(loaded.model):  # evaluation mode (no dropout), restored afterwards
        for layer in range(n_layers):  # a chunk holds one layer's tokens: the copies run that layer only
            for start in range(0, n, per_chunk):
                chunk = [(layer, token) for token in range(start, min(n, start + per_chunk))]
                _run_chunk(capture, modules, chunk, original, zeroed)
    return original, zeroed


def _run_chunk(
    capture: MixingCapture, modules: list, chunk: list[tuple[int, int]], original: np.ndarray, zeroed: np.ndarray
) -> None:
    """One batched model call: copy 0 untouched, copy ``k`` with job ``chunk[k-1]``'s token zeroed in its layer."""
    import torch

    copies = len(chunk) + 1
    deepest = max(layer for layer, _ in chunk)
    shallowest = min(layer for layer, _ in chunk)
    by_layer: dict[int, list[tuple[int, int]]] = {}
    for copy, (layer, token) in enumerate(chunk, start=1):
        by_layer.setdefault(layer, []).append((copy, token))

    def zero_values(layer: int, output: torch.Tensor) -> torch.Tensor | None:
        targets = by_layer.get(layer)
        if not targets:
            return None
        out = output.clone()
        part = modules[layer].value_slice
        third = out.shape[-1] // 3
        columns = slice(None) if part is None else slice(part * third, (part + 1) * third)
        for copy, token in targets:
            out[copy, token, columns] = 0
        return out

    def read_output(layer: int, output: object) -> None:
        hidden = output[0] if isinstance(output, (tuple, list)) else output
        if layer < shallowest:
            return
        original[layer] = hidden[0].detach().cpu().double().numpy()
        for copy, token in by_layer.get(layer, ()):
            zeroed[layer, token] = hidden[copy].detach().cpu().double().numpy()
        if layer == deepest:
            raise _Stop

    def widen(value: object) -> object:
        """A batch-of-one tensor (hidden states, masks, positions) as ``copies`` copies; tuples element-wise."""
        if isinstance(value, torch.Tensor) and value.ndim >= 2 and value.shape[0] == 1:
            return value.repeat(copies, *([1] * (value.ndim - 1)))
        if isinstance(value, tuple):
            return tuple(widen(item) for item in value)
        return value

    def split(module: object, args: tuple, kwargs: dict) -> tuple[tuple, dict]:
        # the layers below the chunk's shallowest see the same input in every copy: they run once, and the
        # copies start at that layer's input (what it reads is exactly the unzeroed model's)
        return tuple(widen(a) for a in args), {key: widen(value) for key, value in kwargs.items()}

    handles = []
    try:
        for layer, parts in enumerate(modules):
            handles.append(parts.value.register_forward_hook(lambda m, a, o, layer=layer: zero_values(layer, o)))
            handles.append(parts.block.register_forward_hook(lambda m, a, o, layer=layer: read_output(layer, o)))
        handles.append(modules[shallowest].block.register_forward_pre_hook(split, with_kwargs=True))
        try:
            run_model(capture.loaded, dict(capture.inputs))
        except _Stop:
            pass
    finally:
        for handle in handles:
            handle.remove()


def value_zeroing_matrices(capture: MixingCapture, batch_size: int = DEFAULT_BATCH_SIZE) -> np.ndarray:
    """``(L, n, n)``: ``[l, i, j]``, token ``i``'s layer-``l+1`` output's cosine distance when ``j`` is zeroed.

    Rows normalised to sum to 1; above the diagonal 0 for decoders.

    Examples
    --------
    >>> from attnflow.capture import load_model, capture_attention
    >>> from attnflow.capture.mixing import capture_mixing
    >>> lm = load_model()
    >>> cap = capture_mixing(lm, capture_attention("Zero it.", lm).input_ids)
    >>> m = value_zeroing_matrices(cap)
    >>> m.shape, bool(np.allclose(m.sum(-1), 1.0))
    ((6, 5, 5), True)
    """
    original, zeroed = zeroed_outputs(capture, batch_size)
    matrices = []
    for layer in range(original.shape[0]):
        distances = cosine_distances(original[layer], zeroed[layer]).T  # [i, j]
        distances = np.clip(distances, 0.0, None)
        if capture.is_causal:
            distances = np.tril(distances)
        matrices.append(normalise_rows(distances))
    return np.stack(matrices)

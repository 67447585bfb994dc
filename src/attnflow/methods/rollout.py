"""Attention rollout (Abnar & Zuidema 2020, §3 of "Quantifying Attention Flow")."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import AttnflowError
from ..graph import AttentionGraph, HeadFusion
from ..outputs import select_output
from .registry import register_method


def rollout(
    attentions: Any,
    *,
    residual: float = 0.5,
    head_fusion: HeadFusion | np.ndarray = "mean",
    discard_ratio: float = 0.0,
    start_layer: int = 1,
    keep_token: int | None = 0,
) -> np.ndarray:
    """Roll attention out through the layers: ``R[l] = Ahat[l] @ R[l-1]``.

    Parameters
    ----------
    attentions
        ``(L, H, n, n)``, fused ``(L, n, n)`` or a list of per-layer arrays; numpy
        or torch. Rows must sum to 1 (softmax weights, padding removed).
    residual
        Weight ``r`` of the residual connection: ``Ahat = rownorm((1-r) Abar + r I)``.
    head_fusion
        ``"mean"`` (the paper), ``"max"``, ``"min"``, or head weights ``(L, H)``.
    discard_ratio
        Zero this fraction of the lowest fused attention weights in each layer
        before adding the residual (vit-explain); never in column ``keep_token``.
    start_layer
        Roll out from this layer (1-based) only; layers below it are NaN.
    keep_token
        The output token whose column ``discard_ratio`` never touches.

    Returns
    -------
    ndarray ``(L, n, n)``
        ``[l-1, t, j]`` is input token ``j``'s share in position ``t`` after
        layer ``l``. Rows sum to 1.

    Raises
    ------
    AttnflowError
        For malformed attention or options.

    Examples
    --------
    >>> a = np.array([[[0.0, 1.0], [0.0, 1.0]]] * 2)   # two layers, everyone attends to token 1
    >>> rollout(a)[-1]
    array([[0.25, 0.75],
           [0.  , 1.  ]])
    """
    graph = AttentionGraph.from_attentions(
        attentions,
        residual=residual,
        head_fusion=head_fusion,
        discard_ratio=discard_ratio,
        keep_column=keep_token,
    )
    n_layers, n = graph.n_layers, graph.n_tokens
    if isinstance(start_layer, bool) or not isinstance(start_layer, (int, np.integer)) or not (
        1 <= start_layer <= n_layers
    ):
        raise AttnflowError(
            f"The 'start_layer' parameter must be an integer from 1 to {n_layers}; "
            f"got {start_layer!r} instead."
        )
    result = np.full((n_layers, n, n), np.nan)
    current = np.eye(n)
    for layer in range(start_layer - 1, n_layers):
        current = graph.capacities[layer] @ current
        result[layer] = current
    return result


@register_method(
    "rollout",
    "attention rollout: products of residual-augmented attention (Abnar & Zuidema 2020)",
    options=("residual", "head_fusion", "discard_ratio", "start_layer"),
)
def rollout_scores(attentions: np.ndarray, output: int | str, **options: Any) -> np.ndarray:
    """Rollout scores of every input token for one output: ``(L, n)``."""
    keep = output if isinstance(output, int) else None
    return select_output(rollout(attentions, keep_token=keep, **options), output)

"""Attention rollout (Abnar & Zuidema 2020, §3 of "Quantifying Attention Flow")."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import AttnflowError
from ..graph import (
    AttentionGraph,
    HeadFusion,
    ResidualLayers,
    as_attention_array,
    check_keep_token,
    check_ratio,
    fused_layers,
)
from ..outputs import resolve_output
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
        before adding the residual, never in column ``keep_token`` (the whole
        column; vit-explain keeps only entry ``(0, 0)``; see docs/design.md §3).
    start_layer
        Roll out from this layer (1-based) only; layers below it are NaN.
    keep_token
        The output token whose column ``discard_ratio`` never touches: an index
        (negative from the end), ``"cls"``, ``"last"``, or ``None``/``"mean"`` for
        none. Checked even when ``discard_ratio`` is 0.

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


def node_shares(
    attentions: Any,
    *,
    residual: float = 0.5,
    head_fusion: HeadFusion | np.ndarray = "mean",
) -> np.ndarray:
    """How much of each output every node of the attention graph carries: rollout from every layer up.

    Node ``(k, j)`` is token ``j`` after layer ``k`` (``k = 0``: the input). Its share
    of output ``t`` after layer ``l > k`` is ``(Ahat[l] @ ... @ Ahat[k+1])[t, j]``,
    which is :func:`rollout` with ``start_layer=k+1``, read at layer ``l``. Read
    backwards from one output node, these are the shares ``v[k] = v[k+1] @ Ahat[k+1]``
    the report's attention graph highlights; the edge ``(k-1, j) -> (k, i)``
    carries ``v[k][i] * Ahat[k][i, j]`` of the output.

    Parameters
    ----------
    attentions, residual, head_fusion
        As for :func:`rollout`.

    Returns
    -------
    ndarray ``(L, L, n, n)``
        ``[l-1, k, t, j]`` is node ``(k, j)``'s share of output ``t`` after layer
        ``l``, for ``k < l`` (NaN for ``k >= l``). ``[l-1, 0]`` is ``rollout(...)[l-1]``
        exactly; ``[l-1, l-1]`` is ``Ahat[l]``. Rows sum to 1.

    Examples
    --------
    >>> a = np.array([[[0.0, 1.0], [0.0, 1.0]]] * 2)   # two layers, everyone attends to token 1
    >>> shares = node_shares(a)
    >>> shares[1, 0, 0].tolist(), shares[1, 1, 0].tolist()   # output 0 after layer 2: from the input, from layer 1
    ([0.25, 0.75], [0.5, 0.5])
    >>> bool(np.array_equal(shares[:, 0], rollout(a)))
    True
    """
    first = rollout(attentions, residual=residual, head_fusion=head_fusion)
    n_layers = first.shape[0]
    shares = np.full((n_layers, n_layers) + first.shape[1:], np.nan)
    shares[:, 0] = first
    for k in range(1, n_layers):
        shares[:, k] = rollout(attentions, residual=residual, head_fusion=head_fusion, start_layer=k + 1)
    return shares


def rollout_every_output(attentions: np.ndarray, **options: Any) -> np.ndarray:
    """Rollout scores of every output, ``(L, n, n)``: what :func:`rollout_scores` gives output by output.

    With ``discard_ratio`` the protected column is the output's own, so each output
    is then rolled out on its own; without it one :func:`rollout` serves them all.
    """
    if not options.get("discard_ratio"):
        return rollout(attentions, **options)
    n = np.shape(attentions)[-1]
    return np.stack([rollout(attentions, keep_token=t, **options)[:, t, :] for t in range(n)], axis=1)


@register_method(
    "rollout",
    "attention rollout: products of residual-augmented attention (Abnar & Zuidema 2020)",
    options=("residual", "head_fusion", "discard_ratio", "start_layer"),
    every_output=rollout_every_output,
)
def rollout_scores(attentions: np.ndarray, output: int | str, **options: Any) -> np.ndarray:
    """Rollout scores of every input token for one output: ``(L, n)``.

    Only the output's row of each layer's product is computed, right to left:
    ``e_t @ Ahat[l] @ ... @ Ahat[s]`` (``e_t`` the output's one-hot row, or ``1/n``
    for ``"mean"``), ``L(L+1)/2`` vector-matrix products instead of ``L`` matrix
    products: the same numbers as ``rollout(...)[:, t]``, in ``O(L^2 n^2)`` instead of
    ``O(L n^3)`` (seconds at 4096 tokens).
    """

    keep = output if isinstance(output, int) else None
    start_layer = options.pop("start_layer", 1)
    residual, head_fusion = options.pop("residual", 0.5), options.pop("head_fusion", "mean")
    discard_ratio = check_ratio(options.pop("discard_ratio", 0.0))
    if options:
        raise AttnflowError(f"rollout got unknown options {sorted(options)}.")
    if discard_ratio == 0:
        # Each layer's capacities made when the walk reaches it: no float64 copy of the whole capture.
        array = as_attention_array(attentions, keep_float32=True)  # a float32 capture is validated, not copied
        check_keep_token(keep, array.shape[-1])
        capacities: Any = ResidualLayers(fused_layers(array, head_fusion), residual)
    else:
        capacities = AttentionGraph.from_attentions(
            attentions, residual=residual, head_fusion=head_fusion, discard_ratio=discard_ratio, keep_column=keep
        ).capacities
    n_layers, n = capacities.shape[0], capacities.shape[-1]
    if isinstance(start_layer, bool) or not isinstance(start_layer, (int, np.integer)) or not (
        1 <= start_layer <= n_layers
    ):
        raise AttnflowError(
            f"The 'start_layer' parameter must be an integer from 1 to {n_layers}; got {start_layer!r} instead."
        )
    walk = output_walk(capacities, output, down_to=start_layer - 1)
    result = np.full((n_layers, n), np.nan)
    result[start_layer - 1 :] = walk[start_layer - 1 :, start_layer - 1]
    return result


def output_walk(capacities: np.ndarray, output: int | str, *, down_to: int = 0) -> np.ndarray:
    """One output's shares walked down the graph: ``(L, L, n)``, ``[l-1, k] = e_t @ Ahat[l] @ ... @ Ahat[k+1]``.

    ``e_t`` is the output's one-hot row (``1/n`` everywhere for ``"mean"``) and
    ``Ahat[m] = capacities[m-1]``; entries with ``k >= l`` or ``k < down_to`` are NaN.
    ``[l-1, 0]`` is rollout's row ``t`` at layer ``l`` (rollout with ``start_layer=k+1`` for
    ``[l-1, k]``), computed by vector-matrix products only: :func:`rollout_scores` and the
    report's route highlight both read this walk, so the scores a page shows and the
    route it draws are the same numbers.

    Examples
    --------
    >>> a = np.array([[[0.0, 1.0], [0.0, 1.0]]] * 2)
    >>> caps = AttentionGraph.from_attentions(a, residual=0.5).capacities
    >>> output_walk(caps, 0)[1].tolist()   # output 0 after layer 2: from the input, from layer 1
    [[0.25, 0.75], [0.5, 0.5]]
    """
    n_layers, n = capacities.shape[0], capacities.shape[-1]
    position = resolve_output(output, n)
    if position == "mean":
        first = np.full(n, 1.0 / n)
    else:
        first = np.zeros(n)
        first[position] = 1.0
    walk = np.full((n_layers, n_layers, n), np.nan)
    # Down the layers, each read once: at layer k every walk that started at k or above takes one step
    # (rows[i] is the walk from layer k + i), so a graph made layer by layer makes each layer once.
    rows = np.empty((0, n))
    for k in range(n_layers - 1, down_to - 1, -1):
        rows = np.vstack([first[None], rows]) @ capacities[k]
        walk[k:, k] = rows
    return walk

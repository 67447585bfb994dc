"""Attention flow (Abnar & Zuidema 2020, §3 of "Quantifying Attention Flow"), exact.

``F[l][t, j]`` is the value of the maximum flow from input node ``(0, j)`` to node
``(l, t)`` in the layered attention graph (DESIGN.md §3, §5): one
single-source, single-sink problem per entry, solved exactly in float64 by the
compiled kernel in :mod:`._maxflow_kernel`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from ..errors import AttnflowError
from ..graph import AttentionGraph, HeadFusion, layer_list
from ..outputs import resolve_output
from .registry import register_method

FlowFunc = Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]
Progress = Callable[[int, int], None]

#: Problems are handed to the kernel in chunks of about this many seconds of
#: work per thread, so progress is reported and Ctrl-C honoured that often.
_CHUNK_SECONDS = 0.25
#: Rough cost of one problem per edge of its graph, in seconds (measured, high side).
_SECONDS_PER_EDGE = 1e-9


def attention_flow(
    attentions: Any,
    *,
    outputs: int | str | Sequence[int | str] | None = None,
    layers: int | Sequence[int] | None = None,
    residual: float = 0.5,
    head_fusion: HeadFusion | np.ndarray = "mean",
    normalize: bool = True,
    flow_func: FlowFunc | None = None,
    progress: Progress | None = None,
) -> np.ndarray:
    """Exact attention flow: maximum flow from each input token to each output position.

    Parameters
    ----------
    attentions
        ``(L, H, n, n)``, fused ``(L, n, n)`` or a list of per-layer arrays; numpy
        or torch. Rows must sum to 1 (softmax weights, padding removed).
    outputs
        Which positions ``t`` to compute: a token index (negative counts from the
        end), ``"cls"``, ``"last"``, a sequence of those, or ``None`` for every
        token. ``"mean"`` asks instead for the flow into a super-sink fed by
        every token of the layer with capacity ``1/n`` (a mean-pooled output).
    layers
        Which layers ``l`` (1-based; negative counts from the top) to compute;
        ``None`` for all.
    residual
        Weight ``r`` of the residual connection: ``Ahat = rownorm((1-r) Abar + r I)``.
    head_fusion
        ``"mean"`` (the paper), ``"max"``, ``"min"``, or head weights ``(L, H)``.
    normalize
        Divide each computed row by its sum, as the paper reports flow. With
        ``False`` the raw maximum-flow values are returned.
    flow_func
        The max-flow solver. ``None`` uses the compiled kernel (exact in float64,
        parallel over the cores); the default may change. Any callable
        ``flow_func(capacities, sink_capacities, sources) -> values`` works,
        for example ``attnflow.methods._flow_reference.edmonds_karp_flow``: it is
        called once per output position and layer with that layer's graph
        ``capacities`` ``(D, n, n)``, the capacities ``(n,)`` of the edges from its
        top layer into the sink, and every token as a source.
    progress
        Called as ``progress(done, total)`` (numbers of max-flow problems) after
        every chunk of work, about four times a second, for a progress bar.
        Work runs in such chunks, so a ``KeyboardInterrupt`` (Ctrl-C) stops the
        computation between two of them and leaves nothing behind.

    Returns
    -------
    ndarray ``(L, n, n)``, or ``(L, n)`` for ``outputs="mean"``
        ``[l-1, t, j]`` is the flow from input token ``j`` to position ``t`` at
        layer ``l`` (``[l-1, j]`` for the mean output). Entries not asked for
        through ``outputs`` and ``layers`` are NaN. Computed rows sum to 1 when
        ``normalize`` is true; raw values lie in ``[0, 1]``.

    Raises
    ------
    AttnflowError
        For malformed attention or options.

    Notes
    -----
    Each entry is a separate maximum-flow problem on a graph of ``l * n^2``
    edges; the kernel stops a problem as soon as its flow reaches
    ``min(1, sum_i Ahat[1][i, j])``, which bounds it, and on graphs a few
    layers deep most problems do (DESIGN.md §5). Raw flow into layer 1 equals
    ``Ahat[1]`` exactly.

    Examples
    --------
    >>> a = np.array([[[0.0, 1.0], [0.0, 1.0]]] * 2)   # two layers, everyone attends to token 1
    >>> attention_flow(a)[-1]
    array([[0.33333333, 0.66666667],
           [0.        , 1.        ]])
    >>> attention_flow(a, outputs=0, layers=-1, normalize=False)[-1]
    array([[0.5, 1. ],
           [nan, nan]])
    """
    graph = AttentionGraph.from_attentions(attentions, residual=residual, head_fusion=head_fusion)
    cap = graph.capacities
    n_layers, n = graph.n_layers, graph.n_tokens
    wanted_layers = layer_list(layers, n_layers)
    positions = _output_list(outputs, n)
    if not isinstance(normalize, (bool, np.bool_)):
        raise AttnflowError(f"The 'normalize' parameter must be True or False; got {normalize!r}.")
    if flow_func is not None and not callable(flow_func):
        raise AttnflowError(
            "The 'flow_func' parameter must be None or a callable "
            f"flow_func(capacities, sink_capacities, sources); got {flow_func!r} instead."
        )
    if progress is not None and not callable(progress):
        raise AttnflowError(
            f"The 'progress' parameter must be None or a callable progress(done, total); "
            f"got {progress!r} instead."
        )

    # One group per computed row: (layer, position or "mean", depth, sink capacities).
    mean = positions == "mean"
    groups: list[tuple[int, int | None, int, np.ndarray]] = []
    for layer in wanted_layers:
        if mean:
            groups.append((layer, None, layer, np.full(n, 1.0 / n)))
        else:
            groups.extend((layer, t, layer - 1, cap[layer - 1, t]) for t in positions)
    values = _solve(cap, groups, n, flow_func, progress)

    result = np.full((n_layers, n) if mean else (n_layers, n, n), np.nan)
    for (layer, t, _, _), row in zip(groups, values, strict=True):
        if normalize:
            total = row.sum()
            row = row / total if total > 0 else row
        if mean:
            result[layer - 1] = row
        else:
            result[layer - 1, t] = row
    return result


def _output_list(outputs: Any, n: int) -> list[int] | str:
    """Resolve ``outputs`` to sorted distinct positions, or ``"mean"``."""
    if outputs is None:
        return list(range(n))
    if isinstance(outputs, (str, int, np.integer)):
        resolved = _resolve(outputs, n)
        return resolved if resolved == "mean" else [resolved]
    try:
        items = list(outputs)
    except TypeError:
        raise AttnflowError(
            "The 'outputs' parameter must be a token index, 'cls', 'last', 'mean', a sequence of "
            f"token indices or None; got {outputs!r} instead."
        ) from None
    if not items:
        raise AttnflowError("The 'outputs' parameter must name at least one position; got none.")
    resolved_items = [_resolve(item, n) for item in items]
    if "mean" in resolved_items:
        raise AttnflowError(
            "The 'outputs' parameter accepts 'mean' only on its own, not inside a sequence "
            f"of positions; got {outputs!r}."
        )
    return sorted(set(resolved_items))


def _resolve(output: Any, n: int) -> int | str:
    """:func:`resolve_output`, with errors that name this function's parameter."""
    try:
        return resolve_output(output, n)
    except AttnflowError as exc:
        raise AttnflowError(str(exc).replace("'output' parameter", "'outputs' parameter")) from None


def _solve(
    cap: np.ndarray,
    groups: list[tuple[int, int | None, int, np.ndarray]],
    n: int,
    flow_func: FlowFunc | None,
    progress: Progress | None,
) -> list[np.ndarray]:
    """Max-flow values for every source of every group, in chunks, reporting progress."""
    total = len(groups) * n
    done = 0
    if progress is not None:
        progress(0, total)
    sources = np.arange(n)
    if flow_func is not None:
        values = []
        for _, _, depth, sink_caps in groups:
            row = np.asarray(flow_func(cap[:depth], sink_caps, sources), dtype=np.float64)
            if row.shape != (n,):
                raise AttnflowError(
                    f"The 'flow_func' parameter returned shape {row.shape}; expected ({n},), "
                    "one value per source."
                )
            values.append(row)
            done += n
            if progress is not None:
                progress(done, total)
        return values

    from ._maxflow_kernel import LayeredMaxFlow

    max_depth = max(depth for _, _, depth, _ in groups)
    solver = LayeredMaxFlow(cap[:max_depth])
    sink_caps = np.stack([caps for _, _, _, caps in groups])
    depths = np.repeat([depth for _, _, depth, _ in groups], n)
    rows = np.repeat(np.arange(len(groups)), n)
    flat_sources = np.tile(sources, len(groups))
    out = np.empty(total)
    while done < total:
        # Size the chunk by the work it holds: about _CHUNK_SECONDS per thread.
        edges = max(1, int(depths[done]) + 1) * n * n
        size = solver.n_workers * max(1, math.ceil(_CHUNK_SECONDS / (_SECONDS_PER_EDGE * edges)))
        stop = min(total, done + size)
        out[done:stop] = solver.solve(
            depths[done:stop], rows[done:stop], flat_sources[done:stop], sink_caps
        )
        done = stop
        if progress is not None:
            progress(done, total)
    return list(out.reshape(len(groups), n))


@register_method(
    "flow",
    "attention flow: maximum flow through the attention graph, exact (Abnar & Zuidema 2020)",
    options=("residual", "head_fusion", "progress"),
)
def flow_scores(attentions: np.ndarray, output: int | str, **options: Any) -> np.ndarray:
    """Flow scores of every input token for one output, every layer: ``(L, n)``.

    Solves only the problems that output needs: one row per layer, or the
    super-sink of ``"mean"``. ``options`` are those of :func:`attention_flow`.
    """
    n = np.shape(attentions)[-1]
    position = resolve_output(output, n)
    if position == "mean":
        return attention_flow(attentions, outputs="mean", **options)
    return attention_flow(attentions, outputs=[position], **options)[:, position, :]


def saturated_sources(
    attentions: Any,
    output: int | str,
    *,
    residual: float = 0.5,
    head_fusion: HeadFusion | np.ndarray = "mean",
    tolerance: float = 1e-9,
) -> np.ndarray:
    """Which input tokens' flow to ``output`` at the top layer reaches its upper bound.

    The raw flow from ``(0, j)`` can never exceed ``min(1, sum_i Ahat[1][i, j])``:
    the sink takes in at most 1 and the source sends out its first-layer column
    sum. Where (almost) every token reaches this bound, flow only restates how
    much attention each token receives in the first layer (DESIGN.md §5), and
    users deserve to be told.

    Returns a boolean array ``(n,)``.

    Examples
    --------
    >>> a = np.full((3, 1, 4, 4), 0.25)   # uniform: only token 0's own input fills the bound
    >>> saturated_sources(a, 0)
    array([ True, False, False, False])
    """
    graph = AttentionGraph.from_attentions(attentions, residual=residual, head_fusion=head_fusion)
    n = graph.n_tokens
    position = resolve_output(output, n)
    outputs: Any = "mean" if position == "mean" else [position]
    raw = attention_flow(
        attentions, outputs=outputs, layers=-1, residual=residual, head_fusion=head_fusion, normalize=False
    )
    top = raw[-1] if position == "mean" else raw[-1, position]
    bound = np.minimum(1.0, graph.capacities[0].sum(axis=0))
    return np.abs(top - bound) <= tolerance

"""One attention graph through an encoder and a decoder: raw, rollout, exact flow and grad-rollout on it.

The graph (docs/design.md §11, docs/seq2seq.md) has the ``ns`` source tokens at
every encoder layer and the ``nt`` decoder positions at every decoder layer. A
decoder layer is two sublayers, each a layer of the graph:

1. **self-attention**: target ``i`` takes ``(1 - r) · Abar_self[i, j] + r · [i = j]``
   from target ``j`` of the layer below (causal: ``j <= i``);
2. **cross-attention**: target ``i`` takes ``(1 - r) · Abar_cross[i, j]`` from source
   token ``j`` of the encoder's *top* layer and ``r`` from itself.

To make the graph layered, as the rollout product and the flow kernel want it,
every node is present at every layer: the encoder's top-layer source nodes are
carried up through the decoder's sublayers, and the target positions (their
embeddings) up through the encoder layers, by identity edges of capacity 1.
The graph then has ``D = Le + 2 · Ld`` layers of ``N = ns + nt`` nodes (source
first, then target), each an ``(N, N)`` row-stochastic matrix, and the existing
rollout and flow code runs on it unchanged. The identity chains change no max-flow
value: every flow here is at most 1 (the sink takes in at most 1) and, the graph
being acyclic, splits into paths each of which crosses a chain edge at most once,
so no chain edge of capacity 1 ever binds; and rollout's product sums exactly the
paths of the un-layered graph.

Each rule has one implementation, shared with the text methods: rollout is
:func:`attnflow.rollout`, flow :func:`attnflow.solve_flow`, grad-rollout
:func:`~attnflow.methods.grad_rollout.grad_rollout` on the graph's gradient-weighted
layers (:meth:`Seq2SeqGraph.weighted`), each run on the layered graph with residual 0
(the residual is inside its edges) and read at the decoder layers' target rows. Only
raw attention is the graph's own (:meth:`Seq2SeqGraph.raw_rows`). The explain core
(:func:`attnflow.core.score_seq2seq`) runs them for ``attnflow explain``, evaluate and the report.

All functions return ``(Ld, nt, N)``: ``[l-1, t, :]`` scores every source token
(columns ``0..ns-1``) and target position (``ns..N-1``) for decoder position ``t``
after decoder layer ``l``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import AttnflowError
from ..graph import (
    ROW_SUM_TOLERANCE,
    HeadFusion,
    WeightedAttention,
    _to_numpy,
    add_residual,
    as_attention_array,
    check_residual,
    fuse_heads,
)
from .flow import solve_flow
from .grad_rollout import grad_rollout, weigh
from .rollout import rollout

Progress = Callable[[int, int], None]


def _check_cross(cross: Any, n_target: int, n_source: int) -> np.ndarray:
    array = _to_numpy(cross, "cross")
    if array.ndim == 3:
        array = array[:, None]
    if array.ndim != 4 or array.shape[-2:] != (n_target, n_source):
        raise AttnflowError(
            f"The 'cross' parameter must have shape (Ld, H, {n_target}, {n_source}) (decoder positions, source "
            f"tokens); got {array.shape} instead."
        )
    if not np.all(np.isfinite(array)) or array.min() < 0:
        raise AttnflowError("The 'cross' parameter must hold finite, non-negative attention weights.")
    worst = float(np.abs(array.sum(-1) - 1.0).max())
    if worst > ROW_SUM_TOLERANCE:
        raise AttnflowError(
            f"The 'cross' parameter must hold rows that sum to 1 over the source tokens; one is off by {worst:.3g}."
        )
    return array


def _rownorm(matrix: np.ndarray) -> np.ndarray:
    sums = matrix.sum(axis=-1, keepdims=True)
    return np.divide(matrix, sums, out=np.zeros_like(matrix), where=sums > 0)


@dataclass(frozen=True)
class Seq2SeqGraph:
    """The layered encoder–decoder graph: ``capacities`` ``(Le + 2 Ld, N, N)``, source nodes first.

    ``capacities[k-1, i, j]`` is the capacity of the edge from node ``j`` of graph
    layer ``k-1`` to node ``i`` of graph layer ``k``. Graph layers ``1..Le`` are the
    encoder's; decoder layer ``l`` is graph layers ``Le + 2l - 1`` (self-attention)
    and ``Le + 2l`` (cross-attention). ``attentions`` keeps the validated encoder,
    decoder and cross attention (heads unfused), which :meth:`weighted` weighs by
    their gradients; ``raw`` is :meth:`raw_rows`'s source.

    Examples
    --------
    >>> enc = np.full((1, 1, 2, 2), 0.5)
    >>> dec = np.array([[[[1.0, 0.0], [0.5, 0.5]]]])
    >>> cross = np.array([[[[1.0, 0.0], [0.0, 1.0]]]])
    >>> g = Seq2SeqGraph.from_attentions(enc, dec, cross)
    >>> g.capacities.shape, g.decoder_layers
    ((3, 4, 4), [3])
    >>> g.capacities[2, 3].tolist()        # target 1 after cross-attention: half source 1, half itself
    [0.0, 0.5, 0.0, 0.5]
    """

    capacities: np.ndarray
    n_source: int
    n_target: int
    n_encoder_layers: int
    n_decoder_layers: int
    attentions: tuple[np.ndarray, ...] = field(default=(), repr=False, compare=False)
    raw: np.ndarray | None = field(default=None, repr=False, compare=False)

    @property
    def n_nodes(self) -> int:
        return self.n_source + self.n_target

    @property
    def decoder_layers(self) -> list[int]:
        """The graph layers (1-based) holding each decoder layer's output, bottom to top."""
        return [self.decoder_layer(layer) for layer in range(1, self.n_decoder_layers + 1)]

    def decoder_layer(self, layer: int) -> int:
        """The graph layer (1-based) holding decoder layer ``layer``'s output (after its cross-attention)."""
        return self.n_encoder_layers + 2 * int(layer)

    def target_node(self, position: int) -> int:
        """The node index of decoder position ``position``."""
        return self.n_source + int(position)

    @classmethod
    def from_attentions(
        cls,
        encoder: Any,
        decoder: Any,
        cross: Any,
        *,
        residual: float = 0.5,
        head_fusion: HeadFusion = "mean",
    ) -> Seq2SeqGraph:
        """Validate the three attentions, fuse heads, add the residual to each sublayer, lay the graph out.

        ``encoder`` ``(Le, He, ns, ns)``, ``decoder`` ``(Ld, Hd, nt, nt)`` (causal) and ``cross``
        ``(Ld, Hd, nt, ns)`` (or fused, without the head axis). ``head_fusion`` is
        ``"mean"``, ``"max"`` or ``"min"`` (fused rows are renormalised).
        """
        residual = check_residual(residual)
        if not isinstance(head_fusion, str):
            raise AttnflowError(
                "For encoder-decoder models 'head_fusion' must be 'mean', 'max' or 'min' (head weights differ per "
                "stack and are not supported)."
            )
        enc = as_attention_array(encoder, name="encoder")
        dec = as_attention_array(decoder, name="decoder")
        ns, nt = enc.shape[-1], dec.shape[-1]
        crs = _check_cross(cross, nt, ns)
        if crs.shape[0] != dec.shape[0]:
            raise AttnflowError(
                f"The 'cross' and 'decoder' parameters must have one entry per decoder layer alike; got "
                f"{crs.shape[0]} and {dec.shape[0]}."
            )
        if np.triu(dec.max(axis=1), 1).max() > 1e-9:
            raise AttnflowError("The 'decoder' attention must be causal: zero above the diagonal.")
        dec_bar = fuse_heads(dec, head_fusion)
        enc_hat = add_residual(fuse_heads(enc, head_fusion), residual)
        dec_hat = add_residual(dec_bar, residual)
        cross_bar = _rownorm(fuse_heads(crs, head_fusion))
        n_enc, n_dec = enc.shape[0], dec.shape[0]
        n = ns + nt
        cap = np.zeros((n_enc + 2 * n_dec, n, n))
        eye_s, eye_t = np.eye(ns), np.eye(nt)
        cap[:n_enc, :ns, :ns] = enc_hat
        cap[:n_enc, ns:, ns:] = eye_t
        cap[n_enc:, :ns, :ns] = eye_s  # the encoder's top layer carried up through the decoder
        cap[n_enc::2, ns:, ns:] = dec_hat
        cap[n_enc + 1 :: 2, ns:, :ns] = (1.0 - residual) * cross_bar
        cap[n_enc + 1 :: 2, ns:, ns:] = residual * eye_t
        # raw: each decoder layer's own attention, half its cross row, half its (residual-free) self row
        raw = 0.5 * np.concatenate([cross_bar, add_residual(dec_bar, 0.0)], axis=-1)
        return cls(cap, ns, nt, n_enc, n_dec, (enc, dec, crs), raw)

    def decoder_rows(self, matrices: np.ndarray) -> np.ndarray:
        """From per-graph-layer matrices ``(D, N, N)``, the decoder outputs' rows: ``(Ld, nt, N)``."""
        return matrices[[layer - 1 for layer in self.decoder_layers]][:, self.n_source :, :]

    def raw_rows(self) -> np.ndarray:
        """Raw attention of every decoder position at each decoder layer, ``(Ld, nt, N)``: half cross, half self.

        The cross-attention over the source and the self-attention over the target
        each sum to 1; they are halved so that a row sums to 1 like the other methods' rows.
        """
        assert self.raw is not None, "build the graph with Seq2SeqGraph.from_attentions"
        return self.raw

    def weighted(self, gradients: Any) -> WeightedAttention:
        """The graph's gradient-weighted layers for grad-rollout: ``(D, N, N)``, ``Abar`` per sublayer, 0 elsewhere.

        ``gradients`` = ``(dS/dA_encoder, dS/dA_decoder, dS/dA_cross)``, each shaped like
        its attention; each sublayer gets ``Abar = mean_h max(0, dS/dA ⊙ A)`` where its
        attention sits in :attr:`capacities` (cross: target rows, source columns). The
        identity chains carry nothing (``R += 0 @ R``), so grad-rollout's ``R += Abar @ R``
        over these layers is Chefer et al. 2021b's rules 6-7 for self-attention and rule
        10 without its target-side factor ``(R̄_tt)^T`` for cross-attention, which for a
        causal decoder would credit position ``t`` with the cross-attention of positions after it.
        """
        if not isinstance(gradients, (tuple, list)) or len(gradients) != 3:
            raise AttnflowError("The 'gradients' parameter must be (encoder, decoder, cross) gradients.")
        enc, dec, crs = self.attentions
        ns, n_enc = self.n_source, self.n_encoder_layers
        weights = np.zeros_like(self.capacities)
        weights[:n_enc, :ns, :ns] = weigh(enc, gradients[0], "encoder gradients")
        weights[n_enc::2, ns:, ns:] = weigh(dec, gradients[1], "decoder gradients")
        weights[n_enc + 1 :: 2, ns:, :ns] = weigh(crs, gradients[2], "cross gradients")
        return WeightedAttention(weights)


def seq2seq_rollout(
    encoder: Any, decoder: Any, cross: Any, *, residual: float = 0.5, head_fusion: HeadFusion = "mean"
) -> np.ndarray:
    """Attention rollout through encoder and decoder: :func:`attnflow.rollout` on the layered graph.

    Returns ``(Ld, nt, N)``; every row sums to 1.

    Examples
    --------
    >>> enc = np.full((1, 1, 2, 2), 0.5)
    >>> dec = np.array([[[[1.0, 0.0], [0.5, 0.5]]]])
    >>> cross = np.array([[[[1.0, 0.0], [0.0, 1.0]]]])
    >>> seq2seq_rollout(enc, dec, cross)[0, 1].round(4).tolist()   # source 0, source 1, target 0, target 1
    [0.125, 0.375, 0.125, 0.375]
    """
    graph = Seq2SeqGraph.from_attentions(encoder, decoder, cross, residual=residual, head_fusion=head_fusion)
    return graph.decoder_rows(rollout(graph.capacities, residual=0.0))


def seq2seq_raw(encoder: Any, decoder: Any, cross: Any, *, head_fusion: HeadFusion = "mean") -> np.ndarray:
    """Each decoder layer's own attention of position ``t``: half its cross row, half its self row.

    Returns ``(Ld, nt, N)`` (:meth:`Seq2SeqGraph.raw_rows`).

    Examples
    --------
    >>> enc = np.full((1, 1, 2, 2), 0.5)
    >>> dec = np.array([[[[1.0, 0.0], [0.5, 0.5]]]])
    >>> cross = np.array([[[[1.0, 0.0], [0.0, 1.0]]]])
    >>> seq2seq_raw(enc, dec, cross)[0, 1].tolist()
    [0.0, 0.5, 0.25, 0.25]
    """
    return Seq2SeqGraph.from_attentions(encoder, decoder, cross, head_fusion=head_fusion).raw_rows()


def seq2seq_flow(
    encoder: Any,
    decoder: Any,
    cross: Any,
    *,
    outputs: int | list[int] | None = None,
    residual: float = 0.5,
    head_fusion: HeadFusion = "mean",
    normalize: bool = True,
    flow_func: Any = None,
    progress: Progress | None = None,
) -> np.ndarray:
    """Exact attention flow through encoder and decoder: max flow from every node of graph layer 0.

    ``[l-1, t, j]`` is the maximum flow from node ``j`` of the input layer (a source
    token's embedding, or a target position's) to decoder position ``t`` after
    decoder layer ``l``, in the graph of :class:`Seq2SeqGraph`, solved by
    :func:`attnflow.solve_flow`'s kernel. ``outputs``: the decoder positions to
    compute (others are NaN; ``None`` for all). With ``normalize`` each row is
    divided by its sum, as the paper reports flow; raw values lie in ``[0, 1]``.

    Examples
    --------
    >>> enc = np.full((1, 1, 2, 2), 0.5)
    >>> dec = np.array([[[[1.0, 0.0], [0.5, 0.5]]]])
    >>> cross = np.array([[[[1.0, 0.0], [0.0, 1.0]]]])
    >>> seq2seq_flow(enc, dec, cross, outputs=1, normalize=False)[0, 1].round(4).tolist()
    [0.25, 0.5, 0.25, 0.5]
    """

    graph = Seq2SeqGraph.from_attentions(encoder, decoder, cross, residual=residual, head_fusion=head_fusion)
    nt = graph.n_target
    if outputs is None:
        positions = list(range(nt))
    else:
        items = [outputs] if isinstance(outputs, (int, np.integer)) and not isinstance(outputs, bool) else outputs
        try:
            positions = sorted({int(p) + (nt if int(p) < 0 else 0) for p in items})
        except (TypeError, ValueError):
            raise AttnflowError(f"The 'outputs' parameter must be decoder positions; got {outputs!r}.") from None
        if any(isinstance(p, bool) for p in items) or any(not 0 <= p < nt for p in positions):
            raise AttnflowError(
                f"The 'outputs' parameter must hold decoder positions from 0 to {nt - 1}; got {outputs!r}."
            )
    layers = [graph.decoder_layer(layer) for layer in range(1, graph.n_decoder_layers + 1)]
    solution = solve_flow(
        graph.capacities, outputs=[graph.target_node(p) for p in positions], layers=layers, residual=0.0,
        flow_func=flow_func, progress=progress, keep_cuts=False,
    )
    values = solution.normalized() if normalize else solution.values
    out = np.full((graph.n_decoder_layers, nt, graph.n_nodes), np.nan)
    for index, layer in enumerate(layers):
        for p in positions:
            out[index, p] = values[layer - 1, graph.target_node(p)]
    return out


def seq2seq_grad_rollout(
    encoder: Any, decoder: Any, cross: Any, gradients: tuple[Any, Any, Any]
) -> np.ndarray:
    """Gradient-weighted rollout through encoder and decoder: grad-rollout on :meth:`Seq2SeqGraph.weighted`.

    ``gradients`` = ``(dS/dA_encoder, dS/dA_decoder, dS/dA_cross)``, each shaped like
    its attention. Unnormalised; ``(Ld, nt, N)``.

    Examples
    --------
    >>> enc = np.full((1, 1, 2, 2), 0.5)
    >>> dec = np.array([[[[1.0, 0.0], [0.5, 0.5]]]])
    >>> cross = np.array([[[[1.0, 0.0], [0.0, 1.0]]]])
    >>> ones = (np.ones_like(enc), np.ones_like(dec), np.ones_like(cross))
    >>> seq2seq_grad_rollout(enc, dec, cross, ones)[0, 1].tolist()
    [0.5, 1.5, 0.5, 1.5]
    """
    graph = Seq2SeqGraph.from_attentions(encoder, decoder, cross)
    return graph.decoder_rows(grad_rollout(graph.capacities, graph.weighted(gradients)))
